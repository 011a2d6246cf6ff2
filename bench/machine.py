"""How fast this machine is, printed beside every benchmark's figures.

The targets are absolute seconds, but the machines these benchmarks run on differ: on
2026-12-02 the same code and store gave page, verify and bundle figures 1.8-2.7 times those
measured on 2026-11-30. A figure is comparable with another only beside these two numbers
(both computed in a function, as the dashboard's code runs: a loop at module level is about
three times slower and says nothing of the machine).
"""

from __future__ import annotations

import hashlib
import time

LOOP = 10_000_000
HASHED = 64 * 2**20  # bytes


def _loop() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(LOOP):
        total += i
    return time.perf_counter() - start


def speed_note(repeat: int = 3) -> str:
    """One line: the best of ``repeat`` runs of a pure-Python loop (10^7 additions, seconds)
    and SHA-256 throughput (MB/s, 10^6 bytes, over 64 MiB in 1 MiB updates)."""
    loop = min(_loop() for _ in range(repeat))
    block = b"\x5a" * 2**20
    start = time.perf_counter()
    hasher = hashlib.sha256()
    for _ in range(HASHED // len(block)):
        hasher.update(block)
    hashed = time.perf_counter() - start
    return (f"[machine: pure-Python loop of 10^7 additions {loop:.2f} s (best of {repeat}); "
            f"SHA-256 {HASHED / hashed / 1e6:.0f} MB/s: compare figures across machines by these]")

"""Benchmark: WinRM collection of a realistic fleet, in one process (issue 14).

A real probe runs seconds to a minute on each server. Here 1,000 hosts run it for 5 to 30 s
each (evenly spread, in a shuffled order; ``--scale`` shortens every runtime for a quick run),
probed 64 at a time by the real pywinrm against the WS-Management test peer running in a
process of its own (NTLM over HTTPS, as in production). Like Windows, the peer holds a Receive
for at most the client's OperationTimeout (20 s by default) and then answers the
OperationTimeout fault, so a probe longer than that is asked for again.

Prints the wall time next to the ideal (the sum of the runtimes / concurrency), the makespan
of the same order with no overhead at all (what the longest hosts started last add), the
collector's CPU time and its peak memory (RSS). Targets: within 1.10x of the ideal, under
400 MB. Exit status 0 when every host answered and both targets were met.

Run: .venv/bin/python bench/collection.py [--hosts N] [--scale F] [--concurrency C]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.probe import compact, probe_script  # noqa: E402
from collectors.remote import Target, WinrmConfig, probe_all  # noqa: E402
from compliance.models import Host  # noqa: E402
from tests.collectors.documents import dumps, probe_document  # noqa: E402
from tests.peers.wsman import start_fleet_process  # noqa: E402

RATIO_TARGET = 1.10
RSS_TARGET_MB = 400


def runtimes(hosts: int, low: float, high: float, seed: int) -> list[float]:
    """``hosts`` runtimes evenly spread over [low, high], shuffled with ``seed``."""
    step = (high - low) / max(1, hosts - 1)
    values = [low + step * i for i in range(hosts)]
    random.Random(seed).shuffle(values)
    return values


def makespan(durations: Sequence[float], slots: int) -> float:
    """When the last host ends if each starts as soon as a slot frees, in order, at no cost."""
    ends = [0.0] * min(slots, len(durations))
    for duration in durations:
        heapq.heapreplace(ends, ends[0] + duration)
    return max(ends, default=0.0)


class ThreadCount:
    """The most threads seen in this process, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, threading.active_count())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--min", type=float, default=5.0, dest="low",
                        help="shortest probe runtime, seconds (default 5)")
    parser.add_argument("--max", type=float, default=30.0, dest="high",
                        help="longest probe runtime, seconds (default 30)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every runtime, e.g. 0.1 for a quick run (default 1)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--transport", default="ntlm", choices=("ntlm", "basic"))
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    if args.hosts < 1 or args.concurrency < 1 or args.scale <= 0 or not 0 <= args.low <= args.high:
        parser.error("need --hosts >= 1, --concurrency >= 1, --scale > 0, 0 <= --min <= --max")

    durations = [d * args.scale for d in runtimes(args.hosts, args.low, args.high, args.seed)]
    names = [f"BENCH{i:04d}" for i in range(args.hosts)]
    collected_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory() as workdir:
        fleet = {name: {"stdout": dumps(probe_document(name, "15.1.2176.9", kbs=["KB5000871"],
                                                       collected_at=collected_at)),
                        "runtime": duration}
                 for name, duration in zip(names, durations, strict=True)}
        fleet_file = Path(workdir) / "fleet.json"
        fleet_file.write_text(json.dumps(fleet))
        del fleet
        script = Path(workdir) / "probe.ps1"
        script.write_text(compact(probe_script()))
        process, ready = start_fleet_process(fleet_file, expected_script=script)
        try:
            base = f"https://{ready['host']}:{ready['https_port']}/wsman"
            targets = [Target(Host(name), f"{base}/{name}") for name in names]
            # The shipped defaults (deadline 120 s, read 30 s, OperationTimeout 20 s).
            config = WinrmConfig(username=ready["username"], transport=args.transport,
                                 ca_file=ready["ca_file"], concurrency=args.concurrency)
            rss_before = _rss_mb()
            threads = ThreadCount()
            cpu_before = time.process_time()
            started = time.perf_counter()
            observations = probe_all(targets, config, ready["password"])
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            peak_threads = threads.stop()
            peak = _rss_mb()
        finally:
            process.terminate()
            process.wait(timeout=10)
    peer_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = [o for o in observations if o.failure]
    ideal = sum(durations) / args.concurrency
    bound = makespan(durations, args.concurrency)
    ratio = wall / ideal
    print(f"{args.hosts} hosts, probe runtimes {min(durations):.1f}-{max(durations):.1f} s "
          f"(sum {sum(durations):.0f} s), concurrency {args.concurrency}, {args.transport} over "
          f"HTTPS, one process: {len(failed)} failed")
    for observation in failed[:5]:
        assert observation.failure is not None
        print(f"  {observation.host.name}: {observation.failure.reason}: "
              f"{observation.failure.detail}")
    print(f"wall time {wall:.1f} s; ideal (sum / concurrency) {ideal:.1f} s -> {ratio:.3f}x "
          f"(target <= {RATIO_TARGET:.2f}x: {'MET' if ratio <= RATIO_TARGET else 'MISSED'})")
    print(f"the same order with no overhead at all ends at {bound:.1f} s ({bound / ideal:.3f}x); "
          f"overhead of the collector and the peer over it: {wall - bound:+.1f} s")
    print(f"collector CPU {cpu:.1f} s ({cpu / args.hosts * 1000:.1f} ms a host, "
          f"{cpu / wall:.1%} of one core); peer CPU "
          f"{peer_cpu.ru_utime + peer_cpu.ru_stime:.1f} s; threads at most {peak_threads}")
    print(f"collector peak RSS {peak:.0f} MB (before probing {rss_before:.0f} MB; target < "
          f"{RSS_TARGET_MB} MB: {'MET' if peak < RSS_TARGET_MB else 'MISSED'})")
    print(f"sequential, as the field's PowerShell tools do it: {sum(durations):.0f} s")
    met = ratio <= RATIO_TARGET and peak < RSS_TARGET_MB
    return 0 if met and not failed else 1


if __name__ == "__main__":
    sys.exit(main())

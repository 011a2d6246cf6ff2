"""Python's cyclic garbage collector paused around bulk work (discovery, a page's tables)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Blocks inside (any thread), and whether the collector was on when the first of them began.
# One lock around both: reading gc.isenabled() and turning the collector off as two steps let
# a block ending in another thread in between leave it off for good (review 2026-12-02).
_lock = threading.Lock()
_inside = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block and back as it was after it (also when
    the block raises). Reading 5,000 servers and 10,000 virtual directories allocates about
    a million objects, which hold no reference cycle to collect: the collector's passes over
    them and every long-lived object of the process took a fifth to a quarter of discovery's
    time (bench/discovery.py). Reference counting still frees everything as usual; only
    cycles made meanwhile, by any thread (the setting is process-wide), wait for the last
    block's end. Blocks may nest and overlap across threads: the first one in turns the
    collector off, the last one out restores what the first found. Not for a block inside a
    generator that may be abandoned unfinished: its end would wait for the collector."""
    global _inside, _was_enabled
    with _lock:
        if _inside == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _was_enabled:
                gc.enable()

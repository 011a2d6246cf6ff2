"""Python's cyclic garbage collector paused around bulk work (discovery, a page's tables)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block and back as it was after it (also when
    the block raises). Reading 5,000 servers and 10,000 virtual directories allocates about
    a million objects, which hold no reference cycle to collect: the collector's passes over
    them and every long-lived object of the process took a fifth to a quarter of discovery's
    time (bench/discovery.py). Reference counting still frees everything as usual; only
    cycles made meanwhile, by any thread (the setting is process-wide), wait for the block's
    end (about a second). Blocks may nest or overlap across threads: the collector is only
    turned back on by a block that found it on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

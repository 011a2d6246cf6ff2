"""Reading files an attacker may have chosen: bounded, regular files only.

Used for probe documents, inventory files and evidence bundles, all of which may come from
someone else. ``stat()`` is never trusted for the size (``/proc`` files and growing files lie),
and nothing waits on a FIFO.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileRefused(ValueError):
    """The file was not read; the message says why (unreadable, not a regular file, too big)."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, of at most ``limit`` bytes: never more than
    ``limit`` + 1 bytes are read, whatever ``stat()`` says. A link is followed, but what it
    leads to must be a regular file. Raises ``FileRefused``."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise FileRefused(f"cannot be read: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise FileRefused("not a regular file (a directory, FIFO, socket or device, "
                              "perhaps behind a link): refused")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise FileRefused(f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise FileRefused(f"file is over the {_size(limit)} limit")
    return data


def _size(limit: int) -> str:
    return f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 1024} KB"

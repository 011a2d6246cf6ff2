"""A test peer process dies with the test run: Linux's parent-death signal (prctl)."""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Callable
from typing import cast


def _load_prctl() -> Callable[[int, int], int] | None:
    try:
        return cast(Callable[[int, int], int], ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):  # not Linux/glibc
        return None


_PRCTL = _load_prctl()  # resolved in the parent: the forked child only calls it
_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(signal_number: int) -> None:
    """Call in the forked child (``preexec_fn``): the kernel sends ``signal_number`` when the
    thread that started it dies. A later credential change clears it, so set it afterwards."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal_number)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a peer's process and wait for it, killing it after 10 s (idempotent)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

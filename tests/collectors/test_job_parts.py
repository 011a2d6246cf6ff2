"""The job's small parts: run lock, progress display."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.job import JobError, Progress, run_lock

ROOT = Path(__file__).resolve().parents[2]


def test_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from collectors.job import run_lock; from pathlib import Path\n"
         "with run_lock(Path(sys.argv[2])):\n print('held', flush=True); time.sleep(30)",
         str(ROOT), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(JobError, match="another collection is running") as caught, \
                run_lock(tmp_path):
            pass
        assert f"pid {holder.pid}" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # released when its holder died
        pass


def test_progress_bar_on_a_terminal():
    stream, ticks = io.StringIO(), iter([0.0, 1.0, 2.0])
    progress = Progress(2, stream, tty=True, clock=lambda: next(ticks))
    progress(False)
    progress(True)
    text = stream.getvalue()
    assert "\r[" in text and "1/2 hosts, 0 failed" in text and "2/2 hosts, 1 failed" in text
    assert text.endswith("\n")


def test_progress_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    progress = Progress(20, stream, tty=False, clock=lambda: 0.0)
    for _ in range(20):
        progress(False)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("probed 20/20 hosts")
    assert "\r" not in stream.getvalue()

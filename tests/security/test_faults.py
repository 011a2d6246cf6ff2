"""Faults end with the previous state intact and a clear message."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from compliance.catalog import load_catalog
from compliance.evaluate import Policy, assess, evaluate
from compliance.models import Host, Observation, Status
from store import SnapshotStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _snapshot(catalog, at: datetime):
    return assess([Observation(Host("EX1"), at, "t", exsetup_version="15.1.2176.9")], catalog, at,
                  source="t", tool_version="t")


def test_a_full_database_loses_nothing_and_says_so(tmp_path):
    catalog = load_catalog()
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    store.save(_snapshot(catalog, NOW))

    def full(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO RESULTS"):
            raise OperationalError(statement, parameters, Exception("database or disk is full"))

    event.listen(store.engine, "before_cursor_execute", full)
    with pytest.raises(StoreError, match=r"disk is full.*nothing was written"):
        store.save(_snapshot(catalog, NOW + timedelta(days=1)))
    event.remove(store.engine, "before_cursor_execute", full)
    assert len(store.history()) == 1 and store.verify().ok
    store.dispose()


def test_an_export_to_a_full_disk_fails_clearly(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(url)
    store.save(_snapshot(load_catalog(), NOW))
    store.dispose()
    done = subprocess.run([sys.executable, "-m", "store", "--db", url, "export", "--format",
                           "json", "--output", "/dev/full"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot write /dev/full" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("jump", [timedelta(days=-400), timedelta(hours=2), timedelta(days=30)])
def test_a_clock_that_jumps_never_makes_a_host_patched(jump):
    """Observed 'in the future' or long ago by a jumping clock: unknown, never patched."""
    catalog = load_catalog()
    observed = NOW + jump
    obs = Observation(Host("EX1"), observed, "t", exsetup_version="15.1.2176.9")
    verdict = evaluate(obs, catalog, NOW, Policy())
    assert verdict.status is Status.UNKNOWN

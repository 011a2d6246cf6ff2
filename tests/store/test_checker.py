"""store/checker.py: the dashboard's chain check in a child process gives verify()'s report."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore
from store.checker import CHECK_KEY, CHECK_URL, CheckFailed, from_json, to_json, verify_in_child
from store.verification import ChainProblem, Pruning, VerifyReport

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"dummy-signing-key-for-tests"


def _fill(store: SnapshotStore, catalog, weeks: int = 3) -> None:
    for week in range(weeks):
        at = NOW - timedelta(weeks=weeks - week)
        observations = [Observation(Host(f"EX{i}"), at, "test", exsetup_version="15.1.2176.2")
                        for i in range(3)]
        store.save(assess(observations, catalog, at, source="test", tool_version="t"), catalog)


def test_the_report_survives_json_whole():
    report = VerifyReport(checked=3, pruned=1, signed=2, head="ab", audit_entries=4,
                          problems=[ChainProblem(2, 2, "digest differs", None),
                                    ChainProblem(None, None, "entry moved", 7)],
                          prunings=[Pruning(1, "2026-11-01T00:00:00+00:00", "ops")],
                          adopted="2026-11-02 by ops", state="cd", rehashed=2)
    assert from_json(to_json(report)) == report


def test_a_sound_store_verifies_in_the_child_with_its_key(store_url, shipped_catalog):
    store = SnapshotStore.open(store_url, KEY)
    _fill(store, shipped_catalog)
    store.dispose()
    report = verify_in_child(store_url, KEY)
    assert report.ok and report.checked == 3 and report.signed == 3
    assert not verify_in_child(store_url, b"another-key").ok  # the key reached the child


def test_a_changed_row_is_named_by_the_child(store_url, shipped_catalog):
    store = SnapshotStore.open(store_url)
    _fill(store, shipped_catalog)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched' WHERE host = 'EX1' "
                          "AND snapshot_id = 2"))
    expected = [(p.snapshot_id, p.message) for p in store.verify().problems]
    store.dispose()
    report = verify_in_child(store_url, None)
    assert expected and [(p.snapshot_id, p.message) for p in report.problems] == expected


def test_an_unreadable_store_is_a_failure_without_its_password(tmp_path):
    url = f"postgresql+psycopg://auditor:s3cret-dummy@127.0.0.1:9/{tmp_path.name}"
    with pytest.raises(CheckFailed) as caught:
        verify_in_child(url, None, timeout=60)
    assert "cannot read the store" in str(caught.value) and "s3cret" not in str(caught.value)


def test_the_url_and_key_travel_in_the_environment_not_the_command_line(monkeypatch):
    seen = {}

    def run(args, **kwargs):
        seen["args"], seen["env"] = args, kwargs["env"]
        return subprocess.CompletedProcess(args, 0, to_json(VerifyReport()), "")
    monkeypatch.setattr(subprocess, "run", run)
    verify_in_child("postgresql://u:pw@127.0.0.1/db", b"k3y")
    assert not any("u:pw@" in arg or b"k3y".hex() in arg for arg in seen["args"])
    assert seen["env"][CHECK_URL] == "postgresql://u:pw@127.0.0.1/db"
    assert seen["env"][CHECK_KEY] == b"k3y".hex()


def test_a_child_that_prints_no_report_is_a_failure(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(
        args, 0, "OK, trust me", ""))
    with pytest.raises(CheckFailed, match="no report"):
        verify_in_child("sqlite://", None)


def test_the_child_checks_at_a_lower_cpu_priority_than_the_dashboard(tmp_path, monkeypatch):
    """The check is background work: its process (and the verify workers it starts, which
    inherit it) runs at niceness +NICENESS, so the page scripts beside it keep the CPU."""
    import os
    import sys

    from store import checker

    probe = ("import os, store.checker as c; before = os.nice(0); c.lower_priority(); "
             "print(os.nice(0) - before)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(checker.ROOT)})
    assert int(done.stdout) == min(checker.NICENESS, 19 - os.nice(0))
    called = []
    monkeypatch.setattr(checker, "lower_priority", lambda: called.append(True))
    monkeypatch.setenv(CHECK_URL, f"sqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.delenv(CHECK_KEY, raising=False)
    checker.main()
    assert called == [True]

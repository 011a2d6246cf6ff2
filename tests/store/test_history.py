"""History: diff cases, as-of, per-host timeline, re-evaluation with today's catalogue."""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compliance.evaluate import assess
from compliance.models import Failure, Host, MitigationState, Observation, Status
from store.history import diff, reevaluate

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = ("X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound")


def _obs(name: str, build: str, at: datetime, rules: tuple[str, ...] = ()) -> Observation:
    return Observation(Host(name), at, "test", exsetup_version=build,
                       mitigations=MitigationState(rewrite_rules=rules))


def _snapshots(catalog):
    before_at, after_at = NOW - timedelta(days=7), NOW
    before = assess([
        _obs("FIXED", "15.1.2176.2", before_at),
        _obs("RESTORED", "15.1.2176.9", before_at),
        _obs("UNMITIGATED", "15.1.2176.2", before_at, RULES),
        _obs("GONE", "15.1.2176.9", before_at),
        _obs("SAME", "15.1.2176.9", before_at),
        _obs("WENTDARK", "15.1.2176.2", before_at, RULES),
    ], catalog, before_at, source="t", tool_version="t")
    after = assess([
        _obs("FIXED", "15.1.2176.9", after_at),
        _obs("RESTORED", "15.1.2176.2", after_at),  # a VM restored from an old image
        _obs("UNMITIGATED", "15.1.2176.2", after_at),
        _obs("SAME", "15.1.2176.9", after_at),
        _obs("NEWCOMER", "15.2.792.3", after_at),
        Observation(Host("WENTDARK"), after_at, "test",
                    failure=Failure("connect", "refused")),  # unknown now: nothing was removed
    ], catalog, after_at, source="t", tool_version="t")
    return before, after


def test_diff_cases(shipped_catalog):
    before, after = _snapshots(shipped_catalog)
    result = diff([a.verdict for a in before.assessments], [a.verdict for a in after.assessments])
    assert [c.host for c in result.newly_patched] == ["FIXED"]
    assert [(c.host, c.before, c.after) for c in result.regressed] == [
        ("RESTORED", "patched", "vulnerable")]
    assert result.regressed[0].detail == ("status patched \u2192 vulnerable; build 15.1.2176.9 "
                                          "\u2192 15.1.2176.2")
    assert [(c.host, c.before, c.after) for c in result.mitigation_removed] == [
        ("UNMITIGATED", "mitigated", "vulnerable")]
    assert "mitigations" in result.mitigation_removed[0].detail
    assert [c.host for c in result.new_hosts] == ["NEWCOMER"]
    assert [c.host for c in result.removed_hosts] == ["GONE"]
    # Each host once, in its most important category; every row says what changed.
    assert [c.host for c in result.status_changes] == ["WENTDARK"]
    hosts = [row["host"] for row in result.rows()]
    assert sorted(hosts) == sorted(set(hosts)) and all(row["detail"] for row in result.rows())
    assert result.rows()[0]["category"] == "Regressed"


def test_as_of_and_timeline(empty_store, shipped_catalog):
    before, after = _snapshots(shipped_catalog)
    first, second = empty_store.save(before, shipped_catalog), empty_store.save(after, shipped_catalog)
    assert empty_store.as_of(NOW - timedelta(days=8)) is None
    assert empty_store.as_of(NOW - timedelta(days=7)).id == first
    assert empty_store.as_of(NOW - timedelta(days=1)).id == first
    assert empty_store.as_of(NOW + timedelta(hours=5)).id == second
    timeline = empty_store.host_timeline("restored")
    assert [(info.id, verdict["status"], observed_in)
            for info, verdict, observed_in in timeline] == [
        (first, "patched", None), (second, "vulnerable", None)]
    # A host the second run did not observe is carried into it, and the timeline says so.
    assert [(info.id, observed_in) for info, _verdict, observed_in
            in empty_store.host_timeline("gone")] == [(first, None), (second, first)]


def test_reevaluation_shows_where_today_differs_and_keeps_the_record(shipped_catalog):
    _, after = _snapshots(shipped_catalog)
    assert reevaluate(after.assessments, shipped_catalog, NOW) == []
    # Yesterday's catalogue did not know 2016 CU19's fix: the recorded verdict said vulnerable.
    old = [replace(a, verdict=replace(a.verdict, status=Status.VULNERABLE))
           if a.verdict.host == "FIXED" else a for a in after.assessments]
    changes = reevaluate(old, shipped_catalog, NOW)
    assert [(c.host, c.recorded.status, c.today.status) for c in changes] == [
        ("FIXED", Status.VULNERABLE, Status.PATCHED)]


def _cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "store", "--db", store_url, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_diff_and_export_commands(empty_store, shipped_catalog, store_url):
    before, after = _snapshots(shipped_catalog)
    first, second = empty_store.save(before, shipped_catalog), empty_store.save(after, shipped_catalog)
    done = _cli(store_url, "diff", str(first), "latest", "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [c["host"] for c in data["regressed"]] == ["RESTORED"]

    exported = _cli(store_url, "export", "--as-of", (NOW - timedelta(days=2)).isoformat(),
                    "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    for column in ("host", "fqdn", "status", "product", "cu", "build", "build_source",
                   "mitigations", "flags", "action", "reason", "observed_at"):
        assert column in rows[0]
    assert {r["host"]: r["status"] for r in rows}["RESTORED"] == "patched"  # as of then
    whole = _cli(store_url, "export", "--snapshot", str(second), "--format", "json")
    document = json.loads(whole.stdout)
    # The second run did not observe GONE: it is carried forward, never dropped.
    assert document["header"]["id"] == second and len(document["results"]) == 7
    gone = next(r for r in document["results"] if r["host"] == "GONE")
    assert gone["observed_in"] == first and json.loads(gone["observation"])["observed_at"] == (
        NOW - timedelta(days=7)).isoformat()
    assert not data["removed_hosts"]
    refused = _cli(store_url, "export", "--format", "bundle")
    assert refused.returncode == 2 and "--output" in refused.stderr
    missing = _cli(store_url, "export", "--as-of", "2020-01-01", "--format", "csv")
    # Nothing to export is an empty result (1), not a usage error (2): python -m store --help.
    assert missing.returncode == 1 and "no snapshot at or before" in missing.stderr
    assert missing.stderr.startswith("nothing to export: ") and not missing.stdout


def test_exports_are_audited_and_the_log_is_exportable(empty_store, shipped_catalog, store_url):
    _, after = _snapshots(shipped_catalog)
    snapshot_id = empty_store.save(after, shipped_catalog)
    assert _cli(store_url, "export", "--format", "csv").returncode == 0
    done = _cli(store_url, "audit")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["action"], r["snapshot_id"]) for r in rows] == [("export", str(snapshot_id))]
    assert "csv to standard output" in rows[0]["detail"]


def test_the_diff_of_changed_hosts_is_the_diff_of_whole_fleets(empty_store, shipped_catalog):
    from sqlalchemy import text

    from collectors.demo import seed_demo

    ids = seed_demo(empty_store, shipped_catalog, datetime(2026, 11, 25, tzinfo=UTC))
    with empty_store.engine.begin() as conn:  # rows no writer makes, in one snapshot only
        for position, change in ((3, "status = 'fine'"), (4, "flags = 'bogus'"),
                                 (5, "roles = 'Bogus'"), (6, "indicator_count = 'many'")):
            conn.execute(text(f"UPDATE results SET {change} WHERE snapshot_id = :id AND "
                              f"position = {position}"), {"id": ids[-1]})
    pairs = [*itertools.pairwise(ids), (ids[0], ids[-1]), (ids[-1], ids[0])]
    for before, after in pairs:
        whole = diff(empty_store.summaries(before, shipped_catalog),
                     empty_store.summaries(after, shipped_catalog))
        old, new = empty_store.changed_summaries(before, after, shipped_catalog)
        assert diff(old, new) == whole, (before, after)
        assert len(new) < len(empty_store.summaries(after, shipped_catalog))  # a subset
    roll_out = diff(*empty_store.changed_summaries(ids[0], ids[-1], shipped_catalog))
    assert roll_out.newly_patched and roll_out.rows()  # not a comparison of nothing


def test_one_name_twice_is_diffed_as_a_whole_fleet(empty_store, shipped_catalog):
    from sqlalchemy import text

    at = datetime(2026, 11, 25, tzinfo=UTC)
    ids = [empty_store.save(assess([Observation(Host(name), at, "test",
                                                exsetup_version="15.1.2176.2")
                                    for name in ("EX1", "EX2")], shipped_catalog, at,
                                   source="test", tool_version="t"), shipped_catalog)
           for _ in range(2)]
    with empty_store.engine.begin() as conn:  # no writer makes this: a forged second EX1
        conn.execute(text("UPDATE results SET host = 'ex1' WHERE snapshot_id = :id AND "
                          "host = 'EX2'"), {"id": ids[1]})
    old, new = empty_store.changed_summaries(*ids, shipped_catalog)
    assert len(new) == 2  # the whole fleet, not the one changed key
    assert diff(old, new) == diff(empty_store.summaries(ids[0], shipped_catalog),
                                  empty_store.summaries(ids[1], shipped_catalog))


def test_a_host_name_that_is_not_text_is_diffed_as_a_whole_fleet(empty_store, shipped_catalog):
    from sqlalchemy import text

    from collectors.demo import seed_demo

    ids = seed_demo(empty_store, shipped_catalog, datetime(2026, 11, 25, tzinfo=UTC))
    with empty_store.engine.begin() as conn:  # a forged name, as bytes: no writer makes it
        conn.execute(text("UPDATE results SET host = X'DEADBEEF' WHERE snapshot_id = :id AND "
                          "position = 7"), {"id": ids[-1]})
    for _ in range(5):  # the names' order once varied from run to run
        old, new = empty_store.changed_summaries(ids[-2], ids[-1], shipped_catalog)
        assert len(new) == len(empty_store.summaries(ids[-1], shipped_catalog))
        assert diff(old, new) == diff(empty_store.summaries(ids[-2], shipped_catalog),
                                      empty_store.summaries(ids[-1], shipped_catalog))

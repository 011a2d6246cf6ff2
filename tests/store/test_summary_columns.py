"""The summary columns (schema 7, snapshot format 4): what the pages read instead of the JSON.

Boundaries: a store with snapshots written before the columns existed (migrated, verdicts
unchanged, chain still verifying, columns derived from the JSON); columns that disagree with
the JSON (format 3: found by verify; format 4: the digest breaks); any assessment's columns
equal its JSON's derivation (property test, through a real save).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Failure, Host, Observation, ServerRole
from compliance.summary import COLUMNS, HostSummary, summarise
from store import SnapshotStore, chain
from store.verification import summary_matches

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SUMMARY_ONLY = [*(name for name in COLUMNS if name not in ("host", "status")),
                "investigation_detail"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def _run(catalog, at: datetime, names: list[str], failing: tuple[str, ...] = ()):
    observations = []
    for i, name in enumerate(names):
        host = Host(name, f"{name.lower()}.test.example", site=f"S{i % 2}", dag=f"D{i % 3}",
                    roles=frozenset({ServerRole.MAILBOX, ServerRole.CLIENT_ACCESS}))
        if name in failing:
            observations.append(Observation(host, at, "test",
                                            failure=Failure("unreachable", "timed out")))
        else:
            observations.append(Observation(
                host, at, "test", exsetup_version="15.1.2176.9" if i % 2 else "15.1.2176.2",
                indicators=("web shell in ECP log",) if i == 3 else ()))
    return assess(observations, catalog, at, source="test", tool_version="t",
                  discovered=[o.host for o in observations], scope="summary test")


def _summaries_from_json(store: SnapshotStore, snapshot_id: int) -> list[HostSummary]:
    found = store.investigations(snapshot_id)
    return [summarise(a, found.get(a.observation.host.name))
            for a in store.assessments(snapshot_id)]


def test_a_store_of_schema_6_is_migrated_without_changing_a_verdict(any_url, shipped_catalog,
                                                                     monkeypatch):
    names = [f"EX{i:02d}" for i in range(8)]
    store = SnapshotStore.open(any_url)
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 3)  # what schema 6 wrote
    ids = [store.save(_run(shipped_catalog, NOW - timedelta(days=2), names), shipped_catalog),
           # a partial run that fails on two hosts: the rest carried, failures recorded
           store.save(_run(shipped_catalog, NOW - timedelta(days=1), names[:4],
                           failing=("EX00", "EX01")), shipped_catalog)]
    monkeypatch.undo()
    before = {i: store.assessments(i) for i in ids}
    assert store.verify().ok and {store.info(i).format for i in ids} == {3}
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_results_investigation"))  # schema 12's
        conn.execute(text("DROP INDEX ix_results_judged"))  # schema 14's
        for name in (*SUMMARY_ONLY,):
            conn.execute(text(f"ALTER TABLE results DROP COLUMN {name}"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
    store.dispose()

    store = SnapshotStore.open(any_url)  # migration 0007 adds and fills the columns
    try:
        assert {i: store.assessments(i) for i in ids} == before
        assert store.verify().ok
        for snapshot_id in ids:
            assert store.summaries(snapshot_id, shipped_catalog) == \
                _summaries_from_json(store, snapshot_id)
            rows, _inventory = store.raw_rows(snapshot_id)
            assert rows and all(summary_matches(row) for row in rows)
        failed = [(h, r, run) for h, r, _d, _o, run in store.failures(ids[1], shipped_catalog)]
        assert failed == [("EX00", "unreachable", True), ("EX01", "unreachable", True)]
        newest = store.save(_run(shipped_catalog, NOW, names[:2]), shipped_catalog)
        assert store.info(newest).format == chain.CURRENT_FORMAT and store.verify().ok
    finally:
        store.dispose()


@pytest.mark.parametrize(("version", "message"), [
    (3, "its summary columns differ from its stored observation and verdict"),
    (4, "content does not match its recorded digest"),
])
def test_a_summary_column_that_disagrees_with_the_json_is_caught(empty_store, shipped_catalog,
                                                                 monkeypatch, version, message):
    """A writer hides the web shell from the Overview by blanking one host's flags column."""
    monkeypatch.setattr(chain, "CURRENT_FORMAT", version)
    snapshot_id = empty_store.save(_run(shipped_catalog, NOW, [f"EX{i:02d}" for i in range(5)]),
                                   shipped_catalog)
    assert empty_store.verify().ok
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET flags = '', indicator_count = 0 "
                          "WHERE snapshot_id = :id AND host = 'EX03'"), {"id": snapshot_id})
    problems = [p.message for p in empty_store.verify().problems]
    assert any(message in p for p in problems), problems


def _forged(store, catalog, tmp_path, change) -> list[str]:
    """verify_bundle's problems with a bundle whose snapshot.json ``change`` edited, the
    digest, the file hash and the manifest recomputed (as a forger without a key can)."""
    import hashlib
    import io
    import json
    import zipfile

    from store.evidence import build_bundle, document_digest, verify_bundle

    snapshot_id = store.save(_run(catalog, NOW, ["EX00", "EX01", "EX02", "EX03"]), catalog)
    data = build_bundle(store, store.info(snapshot_id), NOW)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["snapshot.json"])
    change(document)
    document["header"]["hash"] = document_digest(document)
    members["snapshot.json"] = json.dumps(document).encode()
    manifest = json.loads(members["manifest.json"])
    manifest["snapshot_hash"] = document["header"]["hash"]
    manifest["files"]["snapshot.json"] = hashlib.sha256(members["snapshot.json"]).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()
    path = tmp_path / "forged.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return verify_bundle(path)


def test_a_bundle_with_forged_summary_columns_is_refused(empty_store, shipped_catalog, tmp_path):
    def blank_flags(document):
        document["results"][3]["flags"] = ""

    problems = _forged(empty_store, shipped_catalog, tmp_path, blank_flags)
    assert any("summary columns differ" in p for p in problems), problems


def test_a_bundle_whose_statuses_and_counts_were_rewritten_is_refused(empty_store,
                                                                      shipped_catalog, tmp_path):
    """Review: status columns and header counts were not compared with the rows' JSON."""
    def all_patched(document):
        for row in document["results"]:
            row["status"] = "patched"
        document["header"]["counts"] = json.dumps({"patched": len(document["results"])})

    import json

    problems = _forged(empty_store, shipped_catalog, tmp_path, all_patched)
    assert any("host, status or summary columns differ" in p for p in problems), problems
    assert any("header counts differ" in p for p in problems), problems


# -- property: the columns always agree with the JSON they are derived from ---------------

ROLES = st.frozensets(st.sampled_from(list(ServerRole)), max_size=4)
BUILDS = st.sampled_from([None, "15.1.2176.2", "15.1.2176.9", "15.2.792.10", "15.0.1497.2",
                          "14.3.513.0", "15.1.999.1", "garbage", "15.2.1118.7"])
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=20)


@st.composite
def observations(draw, at: datetime = NOW):
    name = draw(NAMES)
    host = Host(name, draw(st.none() | NAMES), draw(st.none() | NAMES), draw(st.none() | NAMES),
                draw(st.none() | ROLES), draw(st.none() | st.sampled_from(
                    ["Version 15.1 (Build 32176.2)", "junk"])))
    if draw(st.booleans()) and draw(st.booleans()):
        return Observation(host, at, "test",
                           failure=Failure(draw(st.sampled_from(["unreachable", "auth", "x, y"])),
                                           draw(NAMES)))
    observed = draw(st.none() | st.just(at) | st.just(at - timedelta(days=30)))
    return Observation(host, observed, "test", exsetup_version=draw(BUILDS),
                       indicators=tuple(draw(st.lists(NAMES, max_size=3))))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(observations(), min_size=1, max_size=6,
                unique_by=lambda o: o.host.name.lower()),
       st.lists(observations(), max_size=4, unique_by=lambda o: o.host.name.lower()))
def test_stored_columns_always_agree_with_the_stored_json(tmp_path_factory, shipped_catalog,
                                                           first, second):
    store = SnapshotStore.open(f"sqlite:///{tmp_path_factory.mktemp('p') / 'store.db'}")
    try:
        ids = [store.save(assess(first, shipped_catalog, NOW - timedelta(days=1), source="t",
                                 tool_version="t"), shipped_catalog),
               store.save(assess(second, shipped_catalog, NOW, source="t", tool_version="t"),
                          shipped_catalog)]
        for snapshot_id in ids:
            assert store.summaries(snapshot_id, shipped_catalog) == \
                _summaries_from_json(store, snapshot_id)
            rows, _inventory = store.raw_rows(snapshot_id)
            assert all(summary_matches(row) for row in rows)
        assert store.verify().ok
    finally:
        store.dispose()


@given(st.lists(observations(), min_size=1, max_size=3))
def test_columns_round_trip(shipped_catalog_observations):
    from compliance.catalog import load_catalog

    catalog = load_catalog()
    for observation in shipped_catalog_observations:
        summary = summarise(assess([observation], catalog, NOW, source="t",
                                   tool_version="t").assessments[0])
        columns = summary.to_columns()
        assert list(columns) == list(COLUMNS)
        assert HostSummary.from_columns(columns) == summary
        assert HostSummary.from_columns(tuple(columns.values())) == summary
        # A table asking for some columns gets exactly those of the whole derivation.
        for names in (COLUMNS[::3], ("investigation", "roles", "status", "advisories"), ()):
            assert summary.to_columns(names) == {name: columns[name] for name in names}


def test_a_write_without_the_key_into_a_signed_store_is_refused(store_url, shipped_catalog):
    """Review: one unsigned save after signed ones left the store unverifiable with its key
    for good (no keyed write or adoption may sign over it)."""
    from store import StoreError

    signed = SnapshotStore.open(store_url, signing_key=b"dummy-key")
    signed.save(_run(shipped_catalog, NOW, ["EX00"]), shipped_catalog)
    signed.dispose()
    keyless = SnapshotStore.open(store_url)
    try:
        with pytest.raises(StoreError, match="this store is signed"):
            keyless.save(_run(shipped_catalog, NOW, ["EX01"]), shipped_catalog)
        with pytest.raises(StoreError, match="this store is signed"):
            keyless.record("someone", "export", None, "a CSV")
        assert len(keyless.history()) == 1
    finally:
        keyless.dispose()
    again = SnapshotStore.open(store_url, signing_key=b"dummy-key")
    try:
        assert again.verify(b"dummy-key").ok
    finally:
        again.dispose()


@pytest.mark.parametrize("forged", [
    # Review: the Worklist and Snapshots pages raised on status='weird'.
    pytest.param("status = 'weird', indicator_count = 'many'", id="unknown-status"),
    # Review (2026-12-02): SQLite keeps 1e400 as an infinite REAL in an INTEGER column; int()
    # of it raised OverflowError, which crashed every summary read (the worklist's included).
    pytest.param("indicator_count = 1e400, steps_missed = -1e400", id="infinite-count"),
])
def test_a_row_with_values_no_writer_makes_reads_as_unknown(empty_store, shipped_catalog,
                                                            forged):
    """Such a row is unknown (never what it claims), is on the worklist, and verify names
    it."""
    snapshot_id = empty_store.save(_run(shipped_catalog, NOW, ["EX00", "EX01"]), shipped_catalog)
    with empty_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE results SET {forged} "
                          "WHERE snapshot_id = :id AND host = 'EX01'"), {"id": snapshot_id})
    by_host = {s.host: s for s in empty_store.summaries(snapshot_id, shipped_catalog)}
    assert by_host["EX01"].status.value == "unknown" and "verify" in by_host["EX01"].action
    assert "EX01" in {s.host for s in empty_store.summaries(snapshot_id, shipped_catalog,
                                                            needing_work=True)}
    assert "EX01" in {host for host, *_ in empty_store.open_judgements(snapshot_id,
                                                                       shipped_catalog)}
    assert not empty_store.verify().ok


def test_unknown_builds_are_read_from_the_columns_as_the_summaries_say(any_url, shipped_catalog):
    """The Catalog page's "builds the catalogue does not know": the database's answer from the
    summary columns equals the one from the whole summaries (a failed host reports no build,
    a catalogued build is not listed)."""
    at = NOW - timedelta(days=1)
    observations = [
        Observation(Host("EX-NEW"), at, "test", exsetup_version="15.1.9999.1"),  # not catalogued
        Observation(Host("EX-OK"), at, "test", exsetup_version="15.1.2176.9"),
        Observation(Host("EX-DOWN"), at, "test", failure=Failure("unreachable", "timed out")),
        Observation(Host("EX-ODD"), at, "test", exsetup_version="15.2.9998.3"),
    ]
    store = SnapshotStore.open(any_url)
    try:
        snapshot_id = store.save(assess(observations, shipped_catalog, at, source="test",
                                        tool_version="t", discovered=[o.host for o in observations],
                                        scope="unknown builds"), shipped_catalog)
        found = store.unknown_builds(snapshot_id, shipped_catalog)
        expected = [(s.host, s.build, s.product, s.cu, s.status.value, ", ".join(f.value for f in s.flags))
                    for s in store.summaries(snapshot_id, shipped_catalog)
                    if s.build and not s.known_build]
        assert [row[0] for row in found] == ["EX-NEW", "EX-ODD"]
        assert found == expected
    finally:
        store.dispose()

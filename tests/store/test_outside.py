"""The outside view stored with its snapshot (issue 18): read back whole, under the snapshot's
digest (an altered, removed or added document is named by verify), carried while fresh, pruned
with the hosts, and in the evidence bundle. Snapshots saved without it read as not fingerprinted.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from compliance.evaluate import Policy, assess
from compliance.models import Build, Failure, Flag, Host, Observation, Status
from compliance.outside import FindingKind, ViewKind
from compliance.outside_record import AnswerRecord, EndpointRecord, Seen, TlsRecord
from store import SnapshotStore, chain
from store.evidence import build_bundle, verify_bundle

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SEEN = NOW - timedelta(minutes=2)
KEY = b"dummy-signing-key-for-tests"
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
NAMESPACE = "mail.corp.example"


def _run(catalog, at: datetime = NOW):
    """EX1 and EX2 publish the namespace; EX1 is patched inside, EX2 is not; EX3 not behind it."""
    behind = {"internal_names": (NAMESPACE,)}
    observations = [
        Observation(Host("EX1", "ex1.corp.example", **behind), at - timedelta(minutes=5), "test",
                    exsetup_version=PATCHED),
        Observation(Host("EX2", "ex2.corp.example", **behind), at - timedelta(minutes=5), "test",
                    exsetup_version=VULNERABLE),
        Observation(Host("EX3", "ex3.corp.example"), at - timedelta(minutes=5), "test",
                    exsetup_version=PATCHED),
    ]
    return assess(observations, catalog, at, source="test", tool_version="t")


def _seen(*builds: str) -> tuple[Seen, ...]:
    return tuple(Seen("x_owa_version", b, "/owa/", Build(*map(int, b.split("."))), "full_build")
                 for b in builds)


def _endpoints(at: datetime = SEEN) -> tuple[EndpointRecord, ...]:
    tls = TlsRecord("TLSv1.3", True, "", "ab" * 32)
    return (
        # EX1: ExSetup at the March SU, OWA/ECP still the old build (an SU run without elevation)
        EndpointRecord("EX1", ViewKind.SERVER, "https://ex1.corp.example/", at, _seen(VULNERABLE),
                       tls, AnswerRecord("/owa/auth/logon.aspx", 200, 0.03),
                       AnswerRecord("/ecp/x.application", 200, 0.01)),
        # EX3: broken after its update, and EX2's answer was cut: data, not errors
        EndpointRecord("EX3", ViewKind.SERVER, "https://ex3.corp.example/", at, (), tls,
                       AnswerRecord("/owa/", 500, 0.2), AnswerRecord("/ecp/x.application", 500, 0.1)),
        EndpointRecord("EX2", ViewKind.SERVER, "https://ex2.corp.example/", at,
                       failure=Failure("timeout", "cut at the deadline", "raise the deadline")),
        EndpointRecord(NAMESPACE, ViewKind.NAMESPACE, f"https://{NAMESPACE}/", at,
                       _seen(PATCHED, VULNERABLE), tls, AnswerRecord("/owa/", 200, 0.02)),
    )


def _problems(store: SnapshotStore, key: bytes | None = None) -> list[str]:
    return [f"{p.where}: {p.message}" for p in store.verify(key).problems]


def test_the_outside_view_is_stored_with_its_snapshot_and_read_back(empty_store, shipped_catalog):
    before = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1)), shipped_catalog)
    snapshot_id = empty_store.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
    assert empty_store.outside(before) is None  # not fingerprinted
    stored = empty_store.outside(snapshot_id)
    assert stored is not None
    assert stored.endpoints == _endpoints()  # every field, as seen
    (finding,) = stored.namespaces
    assert (finding.namespace, finding.kind, finding.hosts) == (
        NAMESPACE, FindingKind.NAMESPACE_SERVES_UNPATCHED, ("EX1", "EX2"))
    assert [str(b) for b in finding.builds] == [VULNERABLE]
    verdicts = {v.host: v for v in empty_store.verdicts(snapshot_id)}
    assert Flag.OUTSIDE_OLDER_THAN_INSIDE in verdicts["EX1"].flags
    assert verdicts["EX1"].status is Status.PATCHED  # needs action; never changed
    assert "without elevation" in verdicts["EX1"].action
    assert Flag.OUTSIDE_OLDER_THAN_INSIDE not in verdicts["EX3"].flags
    assert any("disclosed no build" in e.value for e in verdicts["EX3"].evidence)
    assert verdicts["EX2"].status is Status.VULNERABLE
    assert empty_store.verify().ok and empty_store.info(snapshot_id).format == chain.CURRENT_FORMAT >= 5


@pytest.mark.parametrize("forgery", [
    pytest.param("UPDATE outside SET document = replace(document, '15.1.2176.2', '15.1.2176.9')",
                 id="builds-rewritten"),
    pytest.param("UPDATE outside SET document = replace(document, "
                 "'namespace_serves_unpatched', 'not_in_inventory')", id="finding-renamed"),
    pytest.param("DELETE FROM outside", id="removed"),
])
def test_altering_the_stored_outside_view_is_caught_by_verify(empty_store, shipped_catalog,
                                                              forgery):
    snapshot_id = empty_store.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
    with empty_store.engine.begin() as conn:
        assert conn.execute(text(forgery)).rowcount == 1
    assert _problems(empty_store) == [
        f"snapshot #{snapshot_id} (position 1): content does not match its recorded digest (a "
        "stored observation, verdict, summary column, outside view, time, id or header was "
        "changed)"]


def test_a_document_added_to_a_snapshot_that_had_none_is_caught(empty_store, shipped_catalog,
                                                                monkeypatch):
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 4)  # saved before schema 9
    old = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=2)), shipped_catalog)
    monkeypatch.undo()
    unfingerprinted = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1)),
                                       shipped_catalog)
    fingerprinted = empty_store.save(_run(shipped_catalog), shipped_catalog,
                                     outside=_endpoints())
    assert empty_store.verify().ok and empty_store.outside(old) is None
    with empty_store.engine.begin() as conn:
        conn.execute(text("INSERT INTO outside (snapshot_id, document) SELECT :old, document "
                          "FROM outside WHERE snapshot_id = :id UNION ALL SELECT :none, "
                          "document FROM outside WHERE snapshot_id = :id"),
                     {"old": old, "none": unfingerprinted, "id": fingerprinted})
    problems = _problems(empty_store)
    assert [p.split(":")[0] for p in problems] == [f"snapshot #{old} (position 1)",
                                                   f"snapshot #{unfingerprinted} (position 2)"]


def test_a_run_without_fingerprints_carries_the_view_while_fresh(empty_store, shipped_catalog):
    first = empty_store.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
    # An import of EX3 alone, an hour later: EX1 keeps its flag, the namespace its finding.
    later = NOW + timedelta(hours=1)
    second = empty_store.save(assess([Observation(Host("EX3", "ex3.corp.example"), later, "test",
                                                  exsetup_version=PATCHED)], shipped_catalog,
                                     later, source="import", tool_version="t"), shipped_catalog)
    carried = empty_store.outside(second)
    assert carried is not None
    assert {(r.name, r.observed_in, r.observed_at) for r in carried.endpoints} == {
        (r.name, first, SEEN) for r in _endpoints()}
    assert [f.kind for f in carried.namespaces] == [FindingKind.NAMESPACE_SERVES_UNPATCHED]
    ex1 = empty_store.assessment(second, "EX1")
    assert ex1 is not None and Flag.OUTSIDE_OLDER_THAN_INSIDE in ex1.verdict.flags
    # Once older than max_age, it is dropped: the snapshot holds no outside view any more.
    stale = NOW + Policy().max_age + timedelta(hours=2)
    third = empty_store.save(assess([Observation(Host("EX3"), stale, "test",
                                                 exsetup_version=PATCHED)], shipped_catalog,
                                    stale, source="import", tool_version="t"), shipped_catalog)
    assert empty_store.outside(third) is None
    assert all(Flag.OUTSIDE_OLDER_THAN_INSIDE not in v.flags
               for v in empty_store.verdicts(third))
    assert empty_store.verify().ok


def test_pruning_removes_the_view_with_the_hosts(empty_store, shipped_catalog):
    first = empty_store.save(_run(shipped_catalog, NOW - timedelta(hours=2)), shipped_catalog,
                             outside=_endpoints(NOW - timedelta(hours=2, minutes=2)))
    second = empty_store.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
    assert empty_store.prune(keep=1) == 1
    assert empty_store.outside(first) is None and empty_store.outside(second) is not None
    assert empty_store.verify().ok
    with empty_store.engine.begin() as conn:  # put back by hand: the pruned snapshot "holds" it
        conn.execute(text("INSERT INTO outside (snapshot_id, document) SELECT :first, document "
                          "FROM outside WHERE snapshot_id = :second"),
                     {"first": first, "second": second})
    assert any("marked pruned but still holds" in p for p in _problems(empty_store))


def test_signed_store_and_evidence_bundle_carry_the_view(store_url, shipped_catalog, tmp_path):
    signed = SnapshotStore.open(store_url, signing_key=KEY)
    try:
        snapshot_id = signed.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
        assert signed.verify(KEY).ok
        data = build_bundle(signed, signed.info(snapshot_id), NOW)
        document = signed.raw_outside(snapshot_id)
    finally:
        signed.dispose()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert json.loads(archive.read("snapshot.json"))["outside"] == document
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    assert verify_bundle(path, KEY) == []


def test_reevaluating_a_fingerprinted_snapshot_applies_its_own_outside_view(empty_store,
                                                                            shipped_catalog):
    from store.history import reevaluate

    snapshot_id = empty_store.save(_run(shipped_catalog), shipped_catalog, outside=_endpoints())
    fleet = empty_store.fleet(snapshot_id, shipped_catalog)
    assert reevaluate(fleet, shipped_catalog, NOW, None, empty_store.outside(snapshot_id)) == []
    # Without it, the outside flag would pass for something today's catalogue changed.
    assert [r.host for r in reevaluate(fleet, shipped_catalog, NOW)] == ["EX1"]

"""The Worklist's "internet-facing" from AD's published names (issue 18 part 2), through the
store: ``SnapshotStore.published_names`` reads them from the open hosts' stored observations,
and ``compliance.worklist.rank`` puts them on the items, so a server publishing an external
name is internet-facing whatever its roles, and one with internal names only is not."""

from __future__ import annotations

from datetime import UTC, datetime

from compliance.evaluate import assess
from compliance.models import Host, Observation, ServerRole
from compliance.worklist import plan_waves, rank

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CAS = frozenset({ServerRole.MAILBOX, ServerRole.CLIENT_ACCESS})
MBX = frozenset({ServerRole.MAILBOX})


def test_published_names_decide_internet_facing_on_the_worklist(empty_store, shipped_catalog):
    hosts = [
        Host("EX-EXT", roles=MBX, external_names=("mail.corp.example",)),  # published outside
        Host("EX-INT", roles=CAS, internal_names=("ex-int.corp.example",)),  # internal only
        Host("EX-OLD", roles=CAS),  # no names read: its roles decide
        Host("EX-BACK", roles=MBX),
    ]
    observations = [Observation(h, NOW, "test", exsetup_version="15.1.2176.2") for h in hosts]
    snapshot_id = empty_store.save(assess(observations, shipped_catalog, NOW, source="test",
                                          tool_version="t", discovered=hosts, scope="names"),
                                   shipped_catalog)
    open_ = empty_store.summaries(snapshot_id, shipped_catalog, needing_work=True)
    assert {s.host for s in open_} == {h.name for h in hosts}  # all four vulnerable
    names = empty_store.published_names(snapshot_id, [s.host for s in open_])
    assert names == {"EX-EXT": ((), ("mail.corp.example",)),
                     "EX-INT": (("ex-int.corp.example",), ())}
    facing = {i.host: i.internet_facing for i in plan_waves(rank(open_, names), 10)}
    assert facing == {"EX-EXT": True, "EX-INT": False, "EX-OLD": True, "EX-BACK": False}
    # without the names, the roles alone decided (the behaviour before)
    assert {i.host: i.internet_facing for i in rank(open_)}["EX-EXT"] is False


def test_a_damaged_or_forged_observation_never_stops_the_worklist(empty_store, shipped_catalog):
    """Review finding: a row whose observation text names "_names" but is not a host object
    raised AttributeError out of published_names (the Worklist page crashed)."""
    from sqlalchemy import text

    hosts = [Host(f"EX{i}", roles=MBX, external_names=("mail.corp.example",)) for i in range(4)]
    observations = [Observation(h, NOW, "test", exsetup_version="15.1.2176.2") for h in hosts]
    snapshot_id = empty_store.save(assess(observations, shipped_catalog, NOW, source="test",
                                          tool_version="t", discovered=hosts, scope="damaged"),
                                   shipped_catalog)
    forged = ['{"host":"a","x_names":1}', '{"host":[1],"internal_names":1}',
              '["external_names", 1]', '{"host":{"external_names":[1, {"a": 2}]}}']
    with empty_store.engine.begin() as conn:
        for i, value in enumerate(forged):
            conn.execute(text("UPDATE results SET observation = :v WHERE snapshot_id = :s AND "
                              "host = :h"), {"v": value, "s": snapshot_id, "h": f"EX{i}"})
    assert empty_store.published_names(snapshot_id, [h.name for h in hosts]) == {}


def test_more_names_than_one_query_holds_are_read_in_one_pass_and_only_those_asked(
        empty_store, shipped_catalog, monkeypatch):
    # Past HOSTS_PER_QUERY names the snapshot is read once and the names kept here: the same
    # answer as batches of IN (...), and never a host that was not asked for.
    import store.snapshots as snapshots

    hosts = [Host(f"EX{i}", roles=MBX, external_names=(f"mail{i}.corp.example",))
             for i in range(5)]
    observations = [Observation(h, NOW, "test", exsetup_version="15.1.2176.2") for h in hosts]
    snapshot_id = empty_store.save(assess(observations, shipped_catalog, NOW, source="test",
                                          tool_version="t", discovered=hosts, scope="many"),
                                   shipped_catalog)
    asked = ["EX0", "EX2", "EX3", "EX4"]
    batched = empty_store.published_names(snapshot_id, asked)
    assert set(batched) == set(asked)
    monkeypatch.setattr(snapshots, "HOSTS_PER_QUERY", 2)
    assert empty_store.published_names(snapshot_id, asked) == batched
    assert empty_store.published_names(snapshot_id, ["EX1", "EX4"]) == {
        "EX1": ((), ("mail1.corp.example",)), "EX4": ((), ("mail4.corp.example",))}

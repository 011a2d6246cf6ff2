"""Format 1 snapshots (saved before whole-fleet snapshots): their fleet, composed on read.

A format 1 snapshot holds only the hosts its own run assessed. Its fleet is what a save of
this version would have composed: every host of it and of the format 1 snapshots before it,
each with its newest observation. Those runs never remove anyone (their directory filters
were not recorded, so no discovery among them can be known to be complete); a host gets the
scope its runs imply (``legacy_scope``), so a complete discovery saved by this version can
remove it later. A pruned snapshot's hosts are gone and do not count.

Composing reads host names first and decodes only each host's newest observation, so a store
of S snapshots of H hosts costs about S x H names and H decodes, not S x H decodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Connection, bindparam, case, cast, select, type_coerce

from compliance.codec import (
    host_from_dict,
    observation_from_dict,
    stored_assessment,
    verdict_from_dict,
)
from compliance.fleet import (
    DEMO,
    IMPORT,
    INVENTORY,
    NOT_FRESH,
    carried_evidence,
    directory_scope,
    membership,
    never_probed,
)
from compliance.models import Assessment, Observation, Status, Verdict
from store import schema

_NOT_FRESH = {reason.value for reason in NOT_FRESH}
_CHUNK = 500  # positions per IN list: well under every backend's limit on bound parameters


def legacy_scope(source: str, scope: str, listed: bool) -> str:
    """The scope a format 1 run implies for a host: the AD discovery its ``scope`` text names
    (``AD <server> <base>``) for a host its inventory listed, else the demo, an import or an
    inventory file by the run's source."""
    if listed:
        for part in scope.split("; "):
            if part.startswith("AD ") and part.count(" ") >= 2:
                return directory_scope(part.split(" ", 2)[2])
    if source == DEMO:
        return DEMO
    return IMPORT if source.startswith("import") else INVENTORY


@dataclass
class _Header:
    id: int
    taken_at: datetime
    source: str
    scope: str


@dataclass
class Fold:
    """Where each member's newest row is, in fleet order (first appearance)."""

    order: list[str] = field(default_factory=list)           # lower-case names
    newest: dict[str, tuple[int, int]] = field(default_factory=dict)  # -> (snapshot, position)
    unprobed: dict[str, tuple[int, str]] = field(default_factory=dict)  # -> (snapshot, record)
    scopes: dict[str, set[str]] = field(default_factory=dict)
    own: set[str] = field(default_factory=set)               # the last folded snapshot's hosts

    def add(self, conn: Connection, header: _Header) -> list[tuple[str, int, str]]:
        """Fold one snapshot in; returns its (name, position, status) rows, one per host."""
        rows = conn.execute(
            select(schema.results.c.host, schema.results.c.position, schema.results.c.status)
            .where(schema.results.c.snapshot_id == header.id)
            .order_by(schema.results.c.position)).all()
        records = conn.execute(
            select(schema.discovered.c.host, schema.discovered.c.record)
            .where(schema.discovered.c.snapshot_id == header.id)
            .order_by(schema.discovered.c.position)).all()
        listed = {host.lower() for host, _record in records}
        by_inventory = legacy_scope(header.source, header.scope, True)
        by_source = legacy_scope(header.source, header.scope, False)
        self.own = set()
        kept = []
        for host, position, status in rows:
            key = host.lower()
            if key in self.own:
                continue  # one row per host, whatever an older store holds
            self.own.add(key)
            kept.append((host, position, status))
            if key not in self.newest and key not in self.unprobed:
                self.order.append(key)
            self.unprobed.pop(key, None)
            self.newest[key] = (header.id, position)
            self.scopes.setdefault(key, set()).add(by_inventory if key in listed else by_source)
        for host, record in records:
            key = host.lower()
            if key not in self.newest and key not in self.unprobed:
                self.order.append(key)
                self.unprobed[key] = (header.id, record)
                self.scopes.setdefault(key, set()).add(by_inventory)
        return kept


def headers(conn: Connection, before_sequence: int | None = None) -> list[_Header]:
    """The format 1 snapshots that still have their hosts, oldest first."""
    query = (select(schema.snapshots.c.id, schema.snapshots.c.taken_at,
                    schema.snapshots.c.source, schema.snapshots.c.scope)
             .where(schema.snapshots.c.format < 2, schema.snapshots.c.pruned.is_(False))
             .order_by(schema.snapshots.c.sequence))
    if before_sequence is not None:
        query = query.where(schema.snapshots.c.sequence < before_sequence)
    return [_Header(i, datetime.fromisoformat(t), s, sc) for i, t, s, sc in conn.execute(query)]


def fold(conn: Connection, before_sequence: int) -> Fold:
    """Every format 1 snapshot before chain position ``before_sequence``, folded."""
    folded = Fold()
    for header in headers(conn, before_sequence):
        folded.add(conn, header)
    return folded


def rows_at(conn: Connection, wanted: dict[int, list[int]],
          columns: Sequence[Any]) -> dict[tuple[int, int], tuple[Any, ...]]:
    """``columns`` of the rows at (snapshot -> positions), keyed by (snapshot, position)."""
    found: dict[tuple[int, int], tuple[Any, ...]] = {}
    for snapshot_id, positions in wanted.items():
        if len(positions) > _CHUNK:  # most of a snapshot: one query, filtered here
            chosen = set(positions)
            for position, *values in conn.execute(
                    select(schema.results.c.position, *columns)
                    .where(schema.results.c.snapshot_id == snapshot_id)).all():
                if position in chosen:
                    found[(snapshot_id, position)] = tuple(values)
            continue
        for start in range(0, len(positions), _CHUNK):
            chunk = positions[start:start + _CHUNK]
            for position, *values in conn.execute(
                    select(schema.results.c.position, *columns)
                    .where(schema.results.c.snapshot_id == snapshot_id,
                           schema.results.c.position.in_(chunk))).all():
                found[(snapshot_id, position)] = tuple(values)
    return found


def members(conn: Connection, folded: Fold, stand_in: Verdict,
            verdicts: bool = True) -> list[Assessment]:
    """The folded fleet as members to compose with: each host's newest observation (and its
    recorded verdict when ``verdicts``, else ``stand_in``), ``observed_in`` its snapshot."""
    wanted: dict[int, list[int]] = {}
    for snapshot_id, position in folded.newest.values():
        wanted.setdefault(snapshot_id, []).append(position)
    columns = [schema.results.c.observation, *([schema.results.c.verdict] if verdicts else [])]
    decoded = rows_at(conn, wanted, columns)
    result = []
    for key in folded.order:
        scopes = membership(folded.scopes.get(key, ()))
        if key in folded.newest:
            snapshot_id, position = folded.newest[key]
            text, *verdict = decoded[(snapshot_id, position)]
            observation = observation_from_dict(json.loads(text))
            result.append(Assessment(
                observation, verdict_from_dict(json.loads(verdict[0])) if verdict
                else stand_in, observed_in=snapshot_id, scopes=scopes))
        else:
            snapshot_id, record = folded.unprobed[key]
            observation = never_probed(host_from_dict(json.loads(record)), "inventory")
            result.append(Assessment(observation, stand_in,
                                     observed_in=snapshot_id, scopes=scopes))
    return result


def _aged(at: datetime, observed_at: datetime | None, max_age: timedelta,
          skew: timedelta) -> bool:
    """Whether an observation is too old (or too far ahead) to stand at ``at``."""
    return observed_at is not None and (at - observed_at > max_age or observed_at - at > skew)


def carry(members_: Sequence[Assessment], at: datetime, grade: Callable[[Observation, datetime],
          Verdict], max_age: timedelta, skew: timedelta, run: str) -> list[Assessment]:
    """A format 1 snapshot's composed fleet at its time ``at``: its own rows as recorded; a
    carried host keeps the verdict its own run recorded (what was known then), with evidence
    that it was carried, unless its observation is too old or too far ahead at ``at`` (then it
    is graded again: unknown, stale); a never-probed server is graded (unknown)."""
    result = []
    for member in members_:
        if member.observed_in is None:
            result.append(member)
            continue
        obs = member.observation
        unprobed = obs.observed_at is None and obs.failure is None
        verdict = (grade(obs, at) if unprobed or _aged(at, obs.observed_at, max_age, skew)
                   else member.verdict)
        evidence = (carried_evidence(member.observed_in, obs, run), *verdict.evidence)
        result.append(replace(member, verdict=replace(verdict, evidence=evidence)))
    return result


def figures(conn: Connection, max_age: timedelta, skew: timedelta) -> dict[int, dict[str, Any]]:
    """For each format 1 snapshot: ``counts``, ``host_count``, ``fresh_count`` and
    ``observed_count`` of its composed fleet, as ``carry`` grades it, in one pass. No
    observation is decoded: the database reads each row's status, an unknown row's reason, and
    the observation time of a row once it is carried."""
    unknown = Status.UNKNOWN.value
    folded = Fold()
    state: dict[tuple[int, int], tuple[str, bool]] = {}   # -> (status, fresh as recorded)
    seen: dict[tuple[int, int], datetime | None] = {}     # -> observed_at, once carried
    result: dict[int, dict[str, Any]] = {}
    observed_at_ = json_field(conn, schema.results.c.observation, "observed_at")
    # CASE: the reason is only read (and the JSON only parsed) for unknown rows.
    reason = case((schema.results.c.status == unknown,
                   json_field(conn, schema.results.c.verdict, "unknown_reason")), else_=None)

    for header in headers(conn):
        rows = folded.add(conn, header)
        for where, (status, why) in rows_at(conn, {header.id: [p for _h, p, _s in rows]},
                                          [schema.results.c.status, reason]).items():
            state[where] = (status, status != unknown or why not in _NOT_FRESH)
        carried = [where for key, where in folded.newest.items() if key not in folded.own]
        need: dict[int, list[int]] = {}
        for snapshot_id, position in carried:
            if (snapshot_id, position) not in seen:
                need.setdefault(snapshot_id, []).append(position)
        for where, (at,) in rows_at(conn, need, [observed_at_]).items():
            seen[where] = datetime.fromisoformat(at) if at else None
        counts = {status.value: 0 for status in Status}
        fresh = 0
        for _host, position, _status in rows:
            status, current = state[(header.id, position)]
            counts[status] = counts.get(status, 0) + 1
            fresh += current
        for where in carried:
            status, current = state[where]
            if _aged(header.taken_at, seen[where], max_age, skew):
                status, current = unknown, False
            counts[status] = counts.get(status, 0) + 1
            fresh += current
        counts[unknown] += len(folded.unprobed)
        result[header.id] = {"counts": counts, "host_count": len(folded.order),
                             "fresh_count": fresh, "observed_count": len(rows)}
    return result


def json_field(conn: Connection, column: Any, key: str) -> Any:
    """``column``'s JSON text's top-level ``key`` as text, read by the database."""
    if conn.dialect.name == "postgresql":
        return cast(column, JSON)[key].as_string()
    return type_coerce(column, JSON)[key].as_string()


def own_rows(members_: Iterable[Assessment], folded: Fold, snapshot_id: int) -> list[Assessment]:
    """The rows the last folded snapshot stored are its own run's (``observed_in`` None: their
    recorded verdict stands); every other member keeps ``observed_in`` and is graded again."""
    return [replace(m, observed_in=None)
            if m.observed_in == snapshot_id and m.observation.host.name.lower() in folded.own
            else m for m in members_]


def fill_summaries(conn: Connection) -> int:
    """Derive the summary columns (compliance/summary.py) of every result row that has none,
    from the row's own stored JSON: the schema 7 migration, for rows written before it. A row
    whose JSON cannot be read is left without them (``verify`` names it). Returns the number
    of rows filled. Reads one snapshot's rows at a time, so memory stays bounded."""
    from compliance.summary import INVESTIGATION_COLUMNS, summarise
    from store.chain import SUMMARY_FIELDS

    # The columns schema 7 added (``advisories`` came with schema 10, and a row from before
    # it holds none: NULL).
    fields = tuple(name for name in SUMMARY_FIELDS
                   if name != "advisories" and name not in INVESTIGATION_COLUMNS)
    results = schema.results
    update_row = (results.update()
                  .where(results.c.snapshot_id == bindparam("k_snapshot"),
                         results.c.position == bindparam("k_position"))
                  .values({name: bindparam(name) for name in fields}))
    filled = 0
    snapshot_ids = conn.execute(select(results.c.snapshot_id).distinct()
                                .where(results.c.indicator_count.is_(None))).scalars().all()
    for snapshot_id in snapshot_ids:
        rows = conn.execute(select(results.c.position, results.c.observation, results.c.verdict,
                                   results.c.observed_in)
                            .where(results.c.snapshot_id == snapshot_id,
                                   results.c.indicator_count.is_(None))).all()
        values = []
        for position, observation, verdict, observed_in in rows:
            try:
                columns = summarise(stored_assessment(json.loads(observation),
                                                      json.loads(verdict),
                                                      observed_in=observed_in)).to_columns()
            except Exception:  # damaged or foreign JSON: verify names the row
                continue
            values.append({"k_snapshot": snapshot_id, "k_position": position,
                           **{name: columns[name] for name in fields}})
        if values:
            conn.execute(update_row, values)
            filled += len(values)
    return filled

"""When each open host's clock started (issue 17 deadlines): the ``open_items`` table.

For every snapshot, one row per host that needs work (compliance.worklist.priority, as its
stored row reads): ``since``, the time of the first snapshot of its current open stretch. A
save derives it from the previous snapshot's rows (the host was open there: the same
``since``; else this snapshot's time), so a page reads one short row per open host instead of
the whole history. The rows are derived, not signed: ``verify`` derives them again from the
chain's snapshots and names any that differ (``problems``).

Where pruned snapshots (whose hosts are gone) lie between a retained snapshot and the next
one, a host open in the later one may have been open since any of them: ``since`` is the
earliest (fail closed: a deadline is never later than the history allows) and
``pruned_before`` is set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from store import schema


@dataclass(frozen=True)
class OpenItem:
    position: int
    host: str
    since: str  # ISO 8601, as the snapshot's taken_at is stored
    pruned_before: bool = False


# The previous retained snapshot's open items by lower-case name: (since, pruned_before).
Previous = Mapping[str, tuple[str, bool]]


def derive(previous: Previous, open_rows: Iterable[tuple[int, str]], taken_at: str,
           gap_start: str | None = None) -> list[OpenItem]:
    """This snapshot's open items: ``open_rows`` (position, host) of its rows that need work.

    ``previous``: the open items of the retained snapshot before it (empty for the first).
    ``gap_start``: the time of the first pruned snapshot between that one and this one (None:
    no gap); a host not open before the gap starts from there, marked ``pruned_before``."""
    items = []
    for position, host in open_rows:
        before = previous.get(host.casefold())
        if gap_start is not None and before is None:
            items.append(OpenItem(position, host, gap_start, True))
        elif before is not None:
            items.append(OpenItem(position, host, before[0], before[1]))
        else:
            items.append(OpenItem(position, host, taken_at))
    return items


def digest(items: Iterable[OpenItem]) -> str:
    """SHA-256 of a snapshot's open items in position order: what a pruning records of the
    first snapshot it keeps, whose clocks no longer follow from the rows before it."""
    canonical = json.dumps(sorted([i.position, i.host, i.since, i.pruned_before] for i in items),
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def by_name(items: Iterable[OpenItem]) -> dict[str, tuple[str, bool]]:
    return {item.host.casefold(): (item.since, item.pruned_before) for item in items}


def read(conn: Connection, snapshot_id: int) -> list[OpenItem]:
    table = schema.open_items
    rows = conn.execute(select(table.c.position, table.c.host, table.c.since,
                               table.c.pruned_before)
                        .where(table.c.snapshot_id == snapshot_id)
                        .order_by(table.c.position)).all()
    return [OpenItem(int(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]


def write(conn: Connection, snapshot_id: int, items: Sequence[OpenItem]) -> None:
    if items:
        conn.execute(insert(schema.open_items), [
            {"snapshot_id": snapshot_id, "position": i.position, "host": i.host,
             "since": i.since, "pruned_before": i.pruned_before} for i in items])


def forget(conn: Connection, snapshot_ids: Sequence[int]) -> None:
    """Drop the rows of pruned snapshots (their hosts are gone; later snapshots keep the
    times they carried)."""
    if snapshot_ids:
        conn.execute(delete(schema.open_items)
                     .where(schema.open_items.c.snapshot_id.in_(list(snapshot_ids))))


# What a chain walk needs of each snapshot: (id, taken_at, pruned, open rows, and for a
# format 1 snapshot, which held only its run's hosts, the lower-case names it held; None for
# a whole-fleet one).
Walked = tuple[int, str, bool, Sequence[tuple[int, str]], frozenset[str] | None]


def _retained(snapshots: Iterable[Walked]) -> Iterator[tuple[int, str, Sequence[tuple[int, str]],
                                                               str | None, frozenset[str] | None]]:
    """The retained snapshots of a chain walk: (id, taken_at, open rows, the time of the
    first pruned snapshot since the previous retained one or None, the names a format 1
    snapshot held or None)."""
    gap_start: str | None = None
    for snapshot_id, taken_at, pruned, open_rows, present in snapshots:
        if pruned:
            gap_start = gap_start or taken_at
            continue
        yield snapshot_id, taken_at, open_rows, gap_start, present
        gap_start = None


def carry(previous: Previous, items: Iterable[OpenItem],
          present: frozenset[str] | None) -> dict[str, tuple[str, bool]]:
    """The clocks the next snapshot carries on: this snapshot's, and, after a format 1
    snapshot (its run's hosts only), those of earlier ones for the hosts it did not hold (a
    run that did not reach a host says nothing about it)."""
    following = by_name(items)
    if present is not None:
        following.update({h: v for h, v in previous.items()
                          if h not in present and h not in following})
    return following


def walk(snapshots: Iterable[Walked]) -> Iterator[tuple[int, list[OpenItem]]]:
    """The open items each retained snapshot should hold, in chain order (``snapshots`` in
    chain order): what the saves derived, one after the other."""
    previous: dict[str, tuple[str, bool]] = {}
    for snapshot_id, taken_at, open_rows, gap_start, present in _retained(snapshots):
        items = derive(previous, open_rows, taken_at, gap_start)
        yield snapshot_id, items
        previous = carry(previous, items, present)


def replay(conn: Connection, upto: int) -> dict[str, tuple[str, bool]]:
    """The clocks a save carries on when the snapshot at chain position ``upto`` (the newest
    before it) is format 1: the stored ones of the snapshots since the newest whole-fleet one,
    carried as ``walk`` carries them."""
    snapshots = schema.snapshots
    headers = conn.execute(select(snapshots.c.id, snapshots.c.pruned, snapshots.c.format)
                           .where(snapshots.c.sequence <= upto)
                           .order_by(snapshots.c.sequence)).all()
    start = max((i for i, h in enumerate(headers) if (h[2] or 1) >= 2 and not h[1]), default=0)
    previous: dict[str, tuple[str, bool]] = {}
    for snapshot_id, pruned, version in headers[start:]:
        if pruned:
            continue
        partial = (version or 1) < 2
        previous = carry(previous, read(conn, int(snapshot_id)),
                         _present(conn, int(snapshot_id)) if partial else None)
    return previous


def _present(conn: Connection, snapshot_id: int) -> frozenset[str]:
    results = schema.results
    return frozenset(str(h).casefold() for h in conn.execute(
        select(results.c.host).where(results.c.snapshot_id == snapshot_id)).scalars())


def backfill(conn: Connection, open_rows: Callable[[Connection, int], list[tuple[int, str]]],
             ) -> None:
    """Fill ``open_items`` for every snapshot of a store written before schema 8 (the
    migration): ``open_rows(conn, snapshot_id)`` gives a snapshot's open rows."""
    snapshots = schema.snapshots
    headers = conn.execute(select(snapshots.c.id, snapshots.c.taken_at, snapshots.c.pruned,
                                  snapshots.c.format).order_by(snapshots.c.sequence)).all()
    conn.execute(delete(schema.open_items))
    walked = ((int(h[0]), str(h[1]), bool(h[2]), [] if h[2] else open_rows(conn, int(h[0])),
               _present(conn, int(h[0])) if not h[2] and (h[3] or 1) < 2 else None)
              for h in headers)
    for snapshot_id, items in walk(walked):
        write(conn, snapshot_id, items)


def problems(snapshots: Iterable[Walked], stored: Mapping[int, Sequence[OpenItem]],
             anchors: Mapping[int, str] | None = None) -> list[tuple[int, str]]:
    """(snapshot id, message) for each retained snapshot (``snapshots`` in chain order) whose
    stored open items are not what a save derives: one per open row, each carrying the time
    the previous retained snapshot held for its host, else its own snapshot's. After pruned
    snapshots, whose rows are gone, a time from the first of them up to the snapshot's own
    is accepted (the save saw them), unless the pruning recorded that snapshot's clocks
    (``anchors``: snapshot id -> ``digest``, from the signed prune entries): then exactly
    those."""
    found = []
    previous: dict[str, tuple[str, bool]] = {}
    for snapshot_id, taken_at, open_rows, gap_start, present in _retained(snapshots):
        items = list(stored.get(snapshot_id, ()))
        anchor = (anchors or {}).get(snapshot_id) if gap_start is not None else None
        if anchor is not None and anchor != digest(items):
            message = "differs from what the pruning before it recorded"
        else:
            message = _mismatch(items, open_rows, previous, taken_at, gap_start)
        if message:
            found.append((snapshot_id, f"its deadline clock {message} (open_items was changed "
                                       "outside the tool)"))
        previous = carry(previous, items, present)
    return found


def _mismatch(items: Sequence[OpenItem], open_rows: Sequence[tuple[int, str]],
              previous: Previous, taken_at: str, gap_start: str | None) -> str:
    have = {(i.position, i.host) for i in items}
    want = set(open_rows)
    if have != want:
        position, host = sorted(have ^ want)[0]
        state = "is missing" if (position, host) in want else "is not an open row"
        return f"for row {position} ({host[:80]!r}) {state}"
    for item in items:
        before = previous.get(item.host.casefold())
        if before is not None and (item.since, item.pruned_before) == before:
            continue
        if gap_start is None:
            if before is None and (item.since, item.pruned_before) == (taken_at, False):
                continue
        elif _within(item.since, gap_start, taken_at):
            continue
        return f"for row {item.position} ({item.host[:80]!r}) starts at a time its chain " \
               "does not give"
    return ""


def _within(since: str, first: str, last: str) -> bool:
    try:
        return (datetime.fromisoformat(first) <= datetime.fromisoformat(since)
                <= datetime.fromisoformat(last))
    except (TypeError, ValueError):
        return False

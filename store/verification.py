"""What ``python -m store verify`` proves: both chains, their heads, prunings, the key.

Pure over the stored rows (the store reads them), so every rule is testable on its own:

- **Snapshots.** Each digest recomputed over its stored header and rows, each link and
  chain position followed; a pruned snapshot's header compared with what its pruning recorded.
  Rows written before format 4 carry summary columns their digest does not cover (the
  migration derived them): each is derived again from the row's JSON and compared.
- **One snapshot** (``only``, for an evidence bundle): every header link, both heads and the
  audit chain as above, but only that snapshot's rows are hashed again; the others' recorded
  digests are taken as the links name them.
- **Audit log.** The same for its entries (``chain.entry_digest``). An entry naming a snapshot
  that is not in the store is a problem: the newest snapshots were removed.
- **Prunings.** A snapshot without hosts must be named, with its position and digest, by a
  valid prune (or schema upgrade) entry.
- **With the signing key.** Every snapshot and entry carries its HMAC, except what a valid,
  signed ``adopt-key`` entry accepted as it stood (written before the key was set, or before
  schema 5). A head whose newest element is signed must carry its own signature, so removing
  the newest snapshots or entries and moving the head back is caught. Nothing the tool
  writes without a person holding the key is trusted: the schema upgrade signs nothing.

Limits, stated in SECURITY.md: without the key a database writer can rewrite both chains
consistently; with it, putting back a whole earlier copy of the database (heads and all), or
emptying it, is not detectable from inside it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compliance.codec import stored_assessment
from compliance.investigation_record import loads as investigation_loads
from compliance.summary import summarise
from store import chain

GENESIS_HEAD = f"0:{chain.GENESIS}"
ADOPT = "adopt-key"
UNSIGNED_HINT = ("written without this key (before it was set, or before schema 5). If the "
                 "state digest verify prints (without the key) matches one you kept from "
                 "before, adopt the store once: python -m store adopt-key --state <that digest>")


@dataclass(frozen=True)
class RowCheck:
    """What one snapshot's stored rows say, reduced to what ``verify`` needs of them: computed
    by ``check_rows`` wherever the rows are (another process may hash some snapshots while
    this one hashes others), then judged against the chain here."""

    holds_rows: bool  # any results or inventory rows
    digest: str | None  # chain.stored_digest of header and rows; None: no writer makes them
    fleet_fields_in_format1: bool  # a format 1 snapshot with whole-fleet fields set
    summary_mismatch: tuple[Any, Any] | None  # (position, host) of the first row before
    # format 4 whose summary columns differ from its JSON
    # (position, host) of the rows that need work (store.snapshots.open_rows), for the
    # deadline clocks' check (store/clock.py); filled by the worker that read the rows.
    open_rows: tuple[tuple[int, str], ...] = ()


# One snapshot's header to its RowCheck (store.snapshots reads its rows and calls check_rows).
RowChecker = Callable[[Mapping[str, Any]], RowCheck]


def check_rows(header: Mapping[str, Any], results: Iterable[tuple[Any, ...]],
               inventory: Sequence[tuple[Any, ...]], outside: str | None = None,
               each: Callable[[tuple[Any, ...]], object] | None = None,
               hashed_json: bool = False) -> RowCheck:
    """The ``RowCheck`` of one snapshot: ``results`` as stored (store.snapshots.ROW_KEYS:
    position, host, status, observation, verdict, observed_in, scopes, summary columns),
    ``inventory`` rows (position, host, record), each in position order, and its outside
    document (None: none stored). A pruned snapshot's rows are only counted. ``results`` is
    read once, to its end, so it may be a stream straight from the database (each row is
    hashed as it arrives); ``each`` is called with every row of a snapshot that is not
    pruned (store.snapshots notes the open rows), and what it raises is raised here, after
    the digest. ``hashed_json``: the rows' JSON columns are their SHA-256 as the database
    computed it (format 8, chain.digest)."""
    rows = iter(results)
    first = next(rows, None)
    holds_rows = first is not None or bool(inventory) or outside is not None
    if header["pruned"]:
        for _ in rows:  # read to its end: the stream's connection is wanted again
            pass
        return RowCheck(holds_rows, None, False, None)
    version = _format(header)
    rows = itertools.chain(() if first is None else (first,), rows)
    seen = _Seen(version, each)

    def observed() -> Iterator[tuple[Any, ...]]:
        for row in rows:
            seen(row)
            yield row

    digest = chain.stored_digest(dict(header), observed(), inventory, outside, hashed_json)
    # The digest stops at a row no writer makes (None): the rows after it are checked still.
    for row in rows:
        seen(row)
    if seen.error is not None:
        raise seen.error
    return RowCheck(
        holds_rows, digest,
        version < 2 and (header.get("observed_count") is not None
                         or header.get("fresh_count") is not None or seen.fleet_fields),
        seen.mismatch)


class _Seen:
    """What ``check_rows`` learns of each row besides the digest: before format 2 whether it
    holds whole-fleet fields, before format 4 whether its summary columns agree with its JSON
    (the first that does not), and whatever ``each`` notes. An error ``each`` raises is kept
    for ``check_rows`` to raise: inside the digest's reading it would count as a row no
    writer makes."""

    def __init__(self, version: int, each: Callable[[tuple[Any, ...]], object] | None) -> None:
        self.version = version
        self.each = each
        self.fleet_fields = False
        self.mismatch: tuple[Any, Any] | None = None
        self.error: Exception | None = None

    def __call__(self, row: tuple[Any, ...]) -> None:
        if self.each is not None and self.error is None:
            try:
                self.each(row)
            except Exception as error:  # raised by check_rows, after the digest
                self.error = error
        if self.version < 2 and (row[5] is not None or row[6] is not None):
            self.fleet_fields = True
        if self.version < 4 and self.mismatch is None and not summary_matches(row):
            self.mismatch = (row[0], row[1])


@dataclass(frozen=True)
class ChainProblem:
    snapshot_id: int | None
    sequence: int | None
    message: str
    entry: int | None = None  # an audit log entry's id

    @property
    def where(self) -> str:
        """What the problem is in, for a person: a snapshot, an audit entry or a chain head."""
        if self.snapshot_id is not None:
            return f"snapshot #{self.snapshot_id} (position {self.sequence})"
        if self.entry is not None:
            return f"audit entry #{self.entry} (position {self.sequence})"
        return "chain"


@dataclass(frozen=True)
class Pruning:
    """A pruning the audit chain accounts for: which snapshot, when, by whom."""

    snapshot_id: int
    at: str
    who: str


@dataclass
class VerifyReport:
    checked: int = 0
    pruned: int = 0
    signed: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    head: str = chain.GENESIS
    audit_entries: int = 0
    prunings: list[Pruning] = field(default_factory=list)
    adopted: str | None = None  # when and by whom the key adopted earlier unsigned rows
    # SHA-256 over both chain heads and every pruned snapshot's header: what adopt-key --state
    # is compared with (a person keeps it from an earlier verify).
    state: str = ""
    rehashed: int = 0  # snapshots whose rows were hashed again (all but pruned ones, or one)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Accounted:
    position: int
    digest: str
    header: Mapping[str, Any] | None  # the header as it was when pruned (schema 5 prunings)
    at: str
    who: str


@dataclass
class _Audit:
    accounted: dict[int, _Accounted] = field(default_factory=dict)
    adopted_snapshots: tuple[int, str] | None = None
    named: dict[int, int] = field(default_factory=dict)  # snapshot id -> an entry naming it
    # The headers of snapshots pruned when the key was adopted (pruned before schema 5, their
    # upgrade entry recorded none): fixed from then on.
    adopted_headers: dict[int, Mapping[str, Any]] = field(default_factory=dict)


def verify(headers: Sequence[Mapping[str, Any]], rows: RowChecker,
           entries: Sequence[Mapping[str, Any]], heads: Mapping[str, str],
           key: bytes | None, only: int | None = None) -> VerifyReport:
    """The report on both chains. ``headers``: snapshot rows in chain order; ``rows``: each
    snapshot's ``RowCheck``, asked only for the snapshots whose rows are checked; ``entries``:
    audit rows in chain order (unchained ones anywhere); ``heads``: the ``meta`` table;
    ``only``: the id of the one snapshot whose rows are read and hashed again (None: every
    one)."""
    report = VerifyReport()
    audit = _verify_audit(entries, heads, key, report)
    previous, expected = chain.GENESIS, 0
    ids: set[int] = set()
    for index, row in enumerate(headers):
        expected += 1
        report.checked += 1
        ids.add(row["id"])

        def problem(message: str, row: Mapping[str, Any] = row) -> None:
            report.problems.append(ChainProblem(row["id"], row["sequence"], message))

        if row["sequence"] != expected:
            problem(f"chain position {_shown(row['sequence'])} where {expected} was expected (a "
                    "snapshot was deleted or inserted)")
            expected = row["sequence"] if isinstance(row["sequence"], int) else expected
        if row["previous_hash"] != previous:
            problem("does not link to the snapshot before it (deleted, inserted or reordered "
                    "snapshots, or a changed predecessor)")
        if only is not None and row["id"] != only:
            if row["pruned"]:
                report.pruned += 1
        else:
            _check_rows(row, rows, index == len(headers) - 1, audit, report, problem)
        if key is not None:
            if row["signature"]:
                if chain.signature_ok(key, row["hash"], row["signature"]):
                    report.signed += 1
                else:
                    problem("signature wrong for this key")
            elif not (audit.adopted_snapshots and isinstance(row["sequence"], int)
                      and row["sequence"] <= audit.adopted_snapshots[0]):
                problem(f"unsigned: {UNSIGNED_HINT}")
            if audit.adopted_snapshots and row["sequence"] == audit.adopted_snapshots[0] \
                    and row["hash"] != audit.adopted_snapshots[1]:
                problem("the key adoption named another digest at this position (changed since)")
        previous = row["hash"] if isinstance(row["hash"], str) else ""
    report.head = previous
    newest = headers[-1] if headers else None
    _check_head(heads, "chain_head", "snapshots", f"{expected}:{previous}",
                signed=bool(newest and newest["signature"] and _format(newest) >= 3),
                key=key, report=report, what="snapshot")
    report.state = state_digest(heads, [_header(h) for h in headers if h["pruned"]])
    for snapshot_id, entry_id in sorted(audit.named.items()):
        if snapshot_id not in ids:
            report.problems.append(ChainProblem(
                None, None, f"names snapshot #{snapshot_id}, which is not in the store (the "
                "newest snapshots were removed?)", entry=entry_id))
    return report


def _check_rows(row: Mapping[str, Any], rows: RowChecker, newest: bool, audit: _Audit,
                report: VerifyReport, problem: Callable[[str], None]) -> None:
    """One snapshot's stored rows against its digest (or its pruning)."""
    checked = rows(row)
    if row["pruned"]:
        report.pruned += 1
        _check_pruned(row, newest, checked.holds_rows, audit, report, problem)
        return
    report.rehashed += 1
    if checked.digest is None or checked.digest != row["hash"]:
        problem("content does not match its recorded digest (a stored observation, verdict, "
                "summary column, outside view, time, id or header was changed)")
    if checked.fleet_fields_in_format1:
        # Format 1 never wrote these, and its digest does not cover them.
        problem("a format 1 snapshot carries whole-fleet fields (observed_in, scopes, "
                "observed or fresh counts) that format 1 never wrote")
    if checked.summary_mismatch is not None:
        position, host = checked.summary_mismatch
        problem(f"row {_shown(position)} ({_shown(host)}): its summary columns differ from "
                "its stored observation and verdict (written before format 4, they are "
                "derived from them, not signed)")


def summary_matches(row: Sequence[Any]) -> bool:
    """Whether a stored row's summary columns (``ROW_KEYS`` order, from the 8th) are what
    ``compliance.summary.summarise`` derives from its JSON; False for JSON that cannot be
    read."""
    try:
        # Its investigation record (issue 21), the last column of a full row: None before.
        found = investigation_loads(row[-1]) if len(row) == chain.ROW_WIDTH else None
        summary = summarise(stored_assessment(json.loads(row[3]), json.loads(row[4]),
                                              observed_in=row[5]), found).to_columns()
    except Exception:  # damaged or foreign JSON: not what a writer of this tool made
        return False
    stored = dict(zip(chain.SUMMARY_FIELDS, row[7:], strict=False))
    return (row[1] == summary["host"] and row[2] == summary["status"]
            and all(stored.get(name) == summary[name] for name in chain.SUMMARY_FIELDS))


def _check_pruned(row: Mapping[str, Any], newest: bool, holds_rows: bool, audit: _Audit,
                  report: VerifyReport, problem: Callable[[str], None]) -> None:
    if newest:
        problem("the newest snapshot is marked pruned, which pruning never does: it holds the "
                "fleet")
    accounted = audit.accounted.get(row["id"])
    if holds_rows:
        problem("marked pruned but still holds its hosts (the flag was set by hand)")
    elif accounted is None:
        problem("its hosts are gone, but no pruning in the audit chain names it: they were "
                "deleted outside the tool")
    elif (accounted.position, accounted.digest) != (row["sequence"], row["hash"]):
        problem("the pruning that names it recorded another chain position or digest (the "
                "snapshot was changed or renumbered)")
    elif _header(row) != (accounted.header if accounted.header is not None
                          else audit.adopted_headers.get(row["id"], _header(row))):
        problem("its header (time, counts, label, ...) differs from the one its pruning "
                "recorded: changed since")
    else:
        report.prunings.append(Pruning(row["id"], accounted.at, accounted.who))


def state_digest(heads: Mapping[str, str], pruned: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of both chain heads and the pruned headers: one value covering everything an
    adoption accepts (every row is behind one head's digest, or a pruned header)."""
    body = json.dumps({"snapshots": heads.get("chain_head"), "audit": heads.get("audit_head"),
                       "pruned": list(pruned)}, sort_keys=True, default=str)
    return hashlib.sha256(b"proxylogon-state/1:" + body.encode()).hexdigest()


def header_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a pruning records of a snapshot's header: every hashed field and the id."""
    return _header(row)


def _header(row: Mapping[str, Any]) -> dict[str, Any]:
    fields = chain.HEADER_FIELDS + chain.FLEET_FIELDS + ("id", "signature")
    return {name: row.get(name) for name in fields}


def _verify_audit(entries: Sequence[Mapping[str, Any]], heads: Mapping[str, str],
                  key: bytes | None, report: VerifyReport) -> _Audit:
    audit = _Audit()
    chained: list[Mapping[str, Any]] = []
    sound: dict[int, bool] = {}  # entry id -> its position, link and digest hold
    previous, expected = chain.GENESIS, 0
    for entry in entries:
        report.audit_entries += 1
        if entry["sequence"] is None:
            report.problems.append(ChainProblem(None, None, "not part of the audit chain (an "
                                                "entry inserted by hand)", entry=entry["id"]))
            continue
        expected += 1
        ok = True
        if entry["sequence"] != expected:
            _entry_problem(report, entry, f"audit position {_shown(entry['sequence'])} where "
                           f"{expected} was expected (an entry was deleted or inserted)")
            expected = entry["sequence"] if isinstance(entry["sequence"], int) else expected
            ok = False
        if entry["previous_hash"] != previous:
            _entry_problem(report, entry, "does not link to the entry before it")
            ok = False
        try:
            recomputed = chain.entry_digest(entry)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            recomputed = ""
        if recomputed != entry["hash"]:
            _entry_problem(report, entry, "content does not match its recorded digest (who, "
                           "when, what or detail was changed)")
            ok = False
        sound[entry["id"]] = ok
        chained.append(entry)
        previous = entry["hash"] if isinstance(entry["hash"], str) else ""
    adopted_audit = 0
    if key is not None:
        for entry in reversed(chained):  # the newest valid adoption counts
            if entry["action"] == ADOPT and sound[entry["id"]] and chain.signature_ok(
                    key, entry["hash"], entry["signature"]):
                adoption = _adoption(entry["detail"])
                if adoption is not None:
                    audit.adopted_snapshots, audit_head, audit.adopted_headers = adoption
                    adopted_audit = audit_head[0]
                    report.adopted = f"{entry['at']} by {entry['who']}"
                    _check_adopted_audit(chained, audit_head, report)
                break
    for entry in chained:
        valid = sound[entry["id"]]
        if key is not None:
            if entry["signature"]:
                if not chain.signature_ok(key, entry["hash"], entry["signature"]):
                    _entry_problem(report, entry, "signature wrong for this key")
                    valid = False
            elif not (isinstance(entry["sequence"], int) and entry["sequence"] <= adopted_audit):
                _entry_problem(report, entry, f"unsigned: {UNSIGNED_HINT}")
                valid = False
        if valid and entry["action"] in ("prune", "upgrade"):
            for snapshot_id, item in _named_prunings(entry["detail"]).items():
                audit.accounted[snapshot_id] = _Accounted(item[0], item[1], item[2],
                                                          entry["at"], entry["who"])
        if isinstance(entry["snapshot_id"], int):
            audit.named.setdefault(entry["snapshot_id"], entry["id"])
    newest = chained[-1] if chained else None
    _check_head(heads, "audit_head", "audit", f"{expected}:{previous}",
                signed=bool(newest and newest["signature"]), key=key, report=report,
                what="audit entry")
    return audit


def _check_adopted_audit(chained: Sequence[Mapping[str, Any]], head: tuple[int, str],
                         report: VerifyReport) -> None:
    position, digest = head
    if position == 0:
        return
    match = next((e for e in chained if e["sequence"] == position), None)
    if match is None or match["hash"] != digest:
        report.problems.append(ChainProblem(None, position, "the key adoption named another "
                                            "audit entry at this position (changed since)"))


def _check_head(heads: Mapping[str, str], name: str, kind: str, expected: str, *,
                signed: bool, key: bytes | None, report: VerifyReport, what: str) -> None:
    head = heads.get(name)
    if head is None:
        report.problems.append(ChainProblem(None, None, f"the {kind} chain head is missing "
                                            "(removed outside the tool)"))
        return
    if head != expected:
        report.problems.append(ChainProblem(None, None, f"{kind} chain head {head} does not "
                                            f"match the last {what} (the newest were "
                                            "removed?)"))
    pair = f"{heads.get('chain_head')}|{heads.get('audit_head')}"
    if key is not None and signed and head != GENESIS_HEAD and not chain.head_signature_ok(
            key, "heads", pair, heads.get(f"{name}_signature")):
        report.problems.append(ChainProblem(None, None, f"the {kind} chain head is not signed "
                                            f"with this key (the newest {_plural(what)} removed and "
                                            "the head moved back?)"))


def adoption_detail(snapshots_head: str, audit_head: str,
                    pruned: Mapping[str, Mapping[str, Any]]) -> str:
    """The detail of an ``adopt-key`` entry: the heads it accepts as they stand, and the
    header of each snapshot pruned by then (id -> header_record)."""
    return json.dumps({"snapshots": snapshots_head, "audit": audit_head,
                       "pruned_headers": pruned}, sort_keys=True)


def _adoption(detail: str) -> tuple[tuple[int, str], tuple[int, str],
                                   dict[int, Mapping[str, Any]]] | None:
    try:
        data = json.loads(detail)
        parts = [str(data[name]).split(":") for name in ("snapshots", "audit")]
        headers: dict[int, Mapping[str, Any]] = {
            int(k): v for k, v in (data.get("pruned_headers") or {}).items()
            if isinstance(v, dict)}
        return (int(parts[0][0]), parts[0][1]), (int(parts[1][0]), parts[1][1]), headers
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError,
            RecursionError):
        return None


def _named_prunings(detail: str) -> dict[int, tuple[int, str, Mapping[str, Any] | None]]:
    """id -> (position, digest, header) of each snapshot a prune or upgrade entry names; none
    for an entry of schema 4 and before, whose detail was free text."""
    try:
        named = json.loads(detail)["pruned"]
        return {int(item["id"]): (int(item["sequence"]), str(item["hash"]),
                                  item.get("header") if isinstance(item.get("header"), dict)
                                  else None)
                for item in named}
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, RecursionError):
        return {}


def _entry_problem(report: VerifyReport, entry: Mapping[str, Any], message: str) -> None:
    sequence = entry["sequence"] if isinstance(entry["sequence"], int) else None
    report.problems.append(ChainProblem(None, sequence, message, entry=entry["id"]))


def _format(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get("format") or 1)
    except (TypeError, ValueError):
        return 0


def _shown(value: Any) -> str:
    return str(value)[:40]


def _plural(what: str) -> str:
    return what[:-1] + "ies" if what.endswith("y") else what + "s"

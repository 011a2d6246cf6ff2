"""Tamper evidence: a canonical digest of each snapshot, chained to the one before it.

``digest()`` covers every stored byte that carries meaning: the header (time, run, catalogue,
scope, counts), each host's status, observation and verdict exactly as stored, and the
discovered inventory. Format 2 (whole-fleet snapshots) also covers the header's ``format``,
``observed_count`` and ``fresh_count``, and each row's ``observed_in`` and ``scopes``. Each
digest includes the previous snapshot's digest and the chain position, so deleting,
inserting or reordering a snapshot breaks every link after it. Format 3 also covers the
snapshot's ``id``, so renumbering one (which other rows point at) is caught. Format 4 also
covers each row's summary columns (compliance/summary.py: what the pages read instead of the
JSON), so a page's figures are as signed as the verdicts they come from. Format 5 also
covers the snapshot's outside view (the ``outside`` table's document, or its absence:
compliance/outside_record.py); a document beside a snapshot of an earlier format matches no
digest. Format 6 also covers each row's ``advisories`` column (the other advisories'
verdicts in brief; the full verdicts are in the verdict JSON, hashed in every format); a
value in that column of an earlier format's row matches no digest. Format 7 also covers each
row's investigation after the fix (issue 21): its summary columns and its record
(``investigation_detail``); a value in any of them in an earlier format's row matches no
digest. Format 8 hashes the same fields, but each row's observation, verdict and
investigation record enter as their own SHA-256 (32 bytes, or nothing for a NULL record)
instead of their text, and the record is framed on its own rather than inside the summary
array: so PostgreSQL can hash the JSON where it lies and send 32 bytes instead of ~8 KB per
row to ``verify`` (``digest(..., hashed_json=True)``). An optional HMAC
of each digest, keyed from secrets, stops a database administrator from rewriting the whole
chain unnoticed; the chain head is signed too, so removing the newest snapshots and rewriting
the head is caught.

The audit log is a second chain of the same kind (``entry_digest``): who collected, imported,
exported, retired or pruned what, each entry linked to the one before it and signed. Pruning
is such an entry, naming each pruned snapshot's id, position and digest: a snapshot whose
hosts are gone is accounted for only by a valid prune entry (a snapshot's own digest cannot
cover a state it reaches later).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

from compliance.summary import COLUMNS as SUMMARY_COLUMNS
from compliance.summary import INVESTIGATION_COLUMNS

GENESIS = "0" * 64
FORMAT = b"proxylogon-snapshot/1"
FORMATS = {1: FORMAT, 2: b"proxylogon-snapshot/2", 3: b"proxylogon-snapshot/3",
           4: b"proxylogon-snapshot/4", 5: b"proxylogon-snapshot/5",
           6: b"proxylogon-snapshot/6", 7: b"proxylogon-snapshot/7",
           8: b"proxylogon-snapshot/8"}
CURRENT_FORMAT = 8
HEADER_FIELDS = ("sequence", "previous_hash", "taken_at", "source", "label", "tool_version",
                 "catalog_version", "advisory_id", "advisory_version", "scope", "host_count",
                 "counts", "discovered_count")
FLEET_FIELDS = ("format", "observed_count", "fresh_count")
IDENTITY_FIELDS = ("id",)  # format 3
# A result row as hashed: position, host, status, observation, verdict; in format 2 also
# observed_in (None for this snapshot's run) and scopes (JSON text); in format 4 also the
# summary columns (SUMMARY_FIELDS, in that order; ``advisories`` from format 6, the
# investigation's columns, the last ones, from format 7), then the row's
# ``investigation_detail`` (format 7).
Row = tuple[Any, ...]
SUMMARY_FIELDS = tuple(name for name in SUMMARY_COLUMNS if name not in ("host", "status"))
ROW_WIDTH = 7 + len(SUMMARY_FIELDS) + 1
ADVISORIES_FORMAT = 6  # the first format whose rows hash the ``advisories`` column
INVESTIGATION_FORMAT = 7  # the first whose rows hash the investigation (INVESTIGATION_FIELDS)
INVESTIGATION_FIELDS = (*INVESTIGATION_COLUMNS, "investigation_detail")
HASHED_JSON_FORMAT = 8  # the first whose rows hash their JSON columns' SHA-256 (json_digest)
_BEFORE_7 = len(SUMMARY_FIELDS) - len(INVESTIGATION_COLUMNS)  # summary fields of format 4-6
assert SUMMARY_FIELDS[_BEFORE_7 - 1] == "advisories"
assert SUMMARY_FIELDS[_BEFORE_7:] == INVESTIGATION_COLUMNS


_SUMMARY_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _summary(values: tuple[Any, ...]) -> bytes:
    """A row's summary columns as hashed: one JSON array, so each value keeps its type (the
    text "1", the number 1 and true differ, and a NULL is not ""), in one C-speed call per
    row rather than one field per column (verify hashes 520,000 rows of them). One encoder
    for every row: ``json.dumps`` with options builds a new one per call."""
    return _SUMMARY_JSON.encode(values).encode()


def _run(observed_in: object) -> bytes:
    """A row's ``observed_in`` (a snapshot id; None: this snapshot's run) as hashed. Only an
    integer: ``int()`` would read 3.9, "3", "+3" or an Arabic-Indic three as 3, so a row
    changed to one of them in SQLite (which keeps what it is given) would verify as the signed
    one (review 2026-12-02)."""
    if observed_in is None:
        return b""
    if type(observed_in) is not int:  # a bool is not a snapshot id either
        raise ValueError(f"observed_in {observed_in!r} is not a snapshot id")
    return str(observed_in).encode()


def json_digest(text: str) -> bytes:
    """A JSON column's value as a format 8 row hashes it: SHA-256 of its UTF-8 bytes, which is
    what PostgreSQL's ``sha256(convert_to(value, 'UTF8'))`` returns for the same text (a
    UTF-8 database). ``AttributeError`` for anything that is not text (a SQLite BLOB posing as
    a digest), ``UnicodeEncodeError`` for a lone surrogate."""
    if type(text) is not str:
        raise AttributeError(f"a JSON column holds {type(text).__name__}, not text")
    return hashlib.sha256(text.encode()).digest()


def _hashed(value: object) -> bytes:
    """A JSON column's SHA-256 as the database computed it (``hashed_json``): 32 bytes exactly."""
    if type(value) is not bytes or len(value) != 32:
        raise ValueError("a hashed JSON column is 32 bytes")
    return value


def _field(hasher: Any, data: bytes) -> None:
    # Length-prefixed, so no two different sequences of fields hash alike.
    hasher.update(str(len(data)).encode() + b":" + data)


def digest(header: Mapping[str, Any], results: Iterable[Row],
           discovered: Iterable[tuple[int, str, str]], outside: str | None = None,
           hashed_json: bool = False) -> str:
    """SHA-256 of one snapshot: header, then (position, host, status, observation, verdict
    [, observed_in, scopes [, *SUMMARY_FIELDS]]) rows in order, then (position, host, record)
    inventory rows in order, then (format 5) the outside document or its absence. The header's
    ``format`` (1 when absent) picks the fields (format 3 adds ``id``, format 4 the summary
    columns); an unknown one raises ``ValueError``, as does an outside document before format
    5; a missing field ``KeyError``, a summary column JSON cannot hold ``TypeError`` or
    ``ValueError``. ``hashed_json`` (format 8 only, else ``ValueError``): each row's
    observation, verdict and investigation record are already their ``json_digest`` (bytes
    the database computed from the stored text; None for a NULL record), not text."""
    version = int(header.get("format") or 1)
    if version not in FORMATS:
        raise ValueError(f"unknown snapshot format {version}")
    if outside is not None and version < 5:
        raise ValueError(f"format {version} holds no outside view")
    fields = (HEADER_FIELDS + (FLEET_FIELDS if version >= 2 else ())
              + (IDENTITY_FIELDS if version >= 3 else ()))
    hasher = hashlib.sha256(FORMATS[version])
    _field(hasher, json.dumps({k: header[k] for k in fields}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False).encode())
    # Each row's fields framed as _field frames them, in one update: the same bytes, hashed
    # without a Python call per field (verify hashes 530,000 rows at 10,000 x 52).
    update = hasher.update
    rows = iter(results)
    if hashed_json and version < HASHED_JSON_FORMAT:
        raise ValueError(f"format {version} hashes its rows' JSON as text")
    if version >= HASHED_JSON_FORMAT:
        # The JSON columns by their SHA-256, the record framed on its own (NULL: empty).
        hash_of = _hashed if hashed_json else json_digest
        for row in rows:
            if len(row) != ROW_WIDTH:
                raise ValueError("a format 4 row carries every summary column")
            position, host, status, observation, verdict, observed_in, scopes = row[:7]
            mark, name, state = f"R{position}".encode(), host.encode(), status.encode()
            seen, judged = hash_of(observation), hash_of(verdict)
            run, scoped, columns = _run(observed_in), (scopes or "").encode(), _summary(row[7:-1])
            detail = b"" if row[-1] is None else hash_of(row[-1])
            update(b"%d:%b%d:%b%d:%b32:%b32:%b%d:%b%d:%b%d:%b%d:%b" % (
                len(mark), mark, len(name), name, len(state), state, seen, judged,
                len(run), run, len(scoped), scoped, len(columns), columns, len(detail), detail))
    elif version >= INVESTIGATION_FORMAT:
        # Every field of a row in one update (the general loop below makes three).
        for row in rows:
            if len(row) != ROW_WIDTH:
                raise ValueError("a format 4 row carries every summary column")
            position, host, status, observation, verdict, observed_in, scopes = row[:7]
            mark, name, state = f"R{position}".encode(), host.encode(), status.encode()
            seen, judged = observation.encode(), verdict.encode()
            run, scoped, columns = _run(observed_in), (scopes or "").encode(), _summary(row[7:])
            update(b"%d:%b%d:%b%d:%b%d:%b%d:%b%d:%b%d:%b%d:%b" % (
                len(mark), mark, len(name), name, len(state), state, len(seen), seen,
                len(judged), judged, len(run), run, len(scoped), scoped, len(columns), columns))
    for row in rows:  # formats 1-6 (formats 7 and 8 took the loops above)
        position, host, status, observation, verdict = row[:5]
        mark, name, state = f"R{position}".encode(), host.encode(), status.encode()
        seen, judged = observation.encode(), verdict.encode()
        update(b"%d:%b%d:%b%d:%b%d:%b%d:%b" % (len(mark), mark, len(name), name, len(state),
                                               state, len(seen), seen, len(judged), judged))
        if version >= 2:
            observed_in, scopes = row[5:7]
            run, scoped = _run(observed_in), (scopes or "").encode()
            update(b"%d:%b%d:%b" % (len(run), run, len(scoped), scoped))
        if version < 4 and len(row) == ROW_WIDTH and row[-1] is not None:
            # Its summary columns are checked against its JSON by verify; this one has none.
            raise ValueError(f"a format {version} row holds no investigation")
        if version >= 4:  # formats 4-6
            if len(row) != ROW_WIDTH:
                raise ValueError("a format 4 row carries every summary column")
            if any(value is not None for value in row[7 + _BEFORE_7:]):
                # Unhashed before format 7: a value there would be shown without being signed.
                raise ValueError(f"a format {version} row holds no investigation")
            if version >= ADVISORIES_FORMAT:
                _field(hasher, _summary(row[7:7 + _BEFORE_7]))
            elif row[7 + _BEFORE_7 - 1] is not None:
                # Unhashed before format 6: a value there would be shown without being signed.
                raise ValueError(f"a format {version} row holds no per-advisory verdicts")
            else:
                _field(hasher, _summary(row[7:7 + _BEFORE_7 - 1]))
    for position, host, record in discovered:  # framed as _field frames each, in one update
        mark, name, text = f"D{position}".encode(), host.encode(), record.encode()
        update(b"%d:%b%d:%b%d:%b" % (len(mark), mark, len(name), name, len(text), text))
    if version >= 5:
        # "O0": not fingerprinted; "O1" and the document. An inventory row starts "D<n>".
        _field(hasher, b"O0" if outside is None else b"O1")
        if outside is not None:
            _field(hasher, outside.encode())
    return hasher.hexdigest()


def stored_digest(header: Mapping[str, Any], results: Iterable[Row],
                  discovered: Iterable[tuple[int, str, str]],
                  outside: str | None = None, hashed_json: bool = False) -> str | None:
    """``digest`` of rows read back from a database someone else may have written: None when
    they are not what any writer of this tool makes (an unknown format, a binary or infinite
    value, nesting past the interpreter's limit), which matches no recorded digest."""
    try:
        return digest(header, results, discovered, outside, hashed_json)
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RecursionError):
        return None


def sign(key: bytes, snapshot_hash: str) -> str:
    return hmac.new(key, snapshot_hash.encode(), hashlib.sha256).hexdigest()


def signature_ok(key: bytes, snapshot_hash: object, signature: object) -> bool:
    """Whether ``signature`` is the HMAC of ``snapshot_hash``; False for anything that is not
    text (the values come from a database or a bundle an attacker may have written)."""
    if not isinstance(snapshot_hash, str) or not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign(key, snapshot_hash).encode(),
                               signature.encode("utf-8", "replace"))


AUDIT_FORMAT = b"proxylogon-audit/1"
AUDIT_FIELDS = ("sequence", "previous_hash", "at", "who", "action", "snapshot_id", "detail")


def entry_digest(entry: Mapping[str, Any]) -> str:
    """SHA-256 of one audit entry: its chain position, the previous entry's digest, and
    (at, who, action, snapshot_id, detail). Missing fields raise ``KeyError``."""
    hasher = hashlib.sha256(AUDIT_FORMAT)
    for name in AUDIT_FIELDS:
        value = entry[name]
        _field(hasher, b"" if value is None else str(value).encode())
    return hasher.hexdigest()


def sign_head(key: bytes, kind: str, head: str) -> str:
    """HMAC of a chain head ("sequence:digest"); ``kind`` ("snapshots" or "audit") keeps the
    two heads' signatures apart, and the prefix keeps them apart from digest signatures."""
    return hmac.new(key, f"proxylogon-head/1:{kind}:{head}".encode(), hashlib.sha256).hexdigest()


def head_signature_ok(key: bytes, kind: str, head: object, signature: object) -> bool:
    if not isinstance(head, str) or not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign_head(key, kind, head).encode(),
                               signature.encode("utf-8", "replace"))

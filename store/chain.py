"""Tamper evidence: a canonical digest of each snapshot, chained to the one before it.

``digest()`` covers every stored byte that carries meaning: the header (time, run, catalogue,
scope, counts), each host's status, observation and verdict exactly as stored, and the
discovered inventory. Format 2 (whole-fleet snapshots) also covers the header's ``format``,
``observed_count`` and ``fresh_count``, and each row's ``observed_in`` and ``scopes``. Each
digest includes the previous snapshot's digest and the chain position, so deleting,
inserting or reordering a snapshot breaks every link after it. An optional HMAC of each
digest, keyed from secrets, stops a database administrator from rewriting the whole chain
unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

GENESIS = "0" * 64
FORMAT = b"proxylogon-snapshot/1"
FORMATS = {1: FORMAT, 2: b"proxylogon-snapshot/2"}
HEADER_FIELDS = ("sequence", "previous_hash", "taken_at", "source", "label", "tool_version",
                 "catalog_version", "advisory_id", "advisory_version", "scope", "host_count",
                 "counts", "discovered_count")
FLEET_FIELDS = ("format", "observed_count", "fresh_count")
# A result row as hashed: position, host, status, observation, verdict; in format 2 also
# observed_in (None for this snapshot's run) and scopes (JSON text).
Row = tuple[Any, ...]


def _field(hasher: Any, data: bytes) -> None:
    # Length-prefixed, so no two different sequences of fields hash alike.
    hasher.update(str(len(data)).encode() + b":" + data)


def digest(header: Mapping[str, Any], results: Iterable[Row],
           discovered: Iterable[tuple[int, str, str]]) -> str:
    """SHA-256 of one snapshot: header, then (position, host, status, observation, verdict
    [, observed_in, scopes]) rows in order, then (position, host, record) inventory rows in
    order. The header's ``format`` (1 when absent) picks the fields; an unknown one raises
    ``ValueError``."""
    version = int(header.get("format") or 1)
    if version not in FORMATS:
        raise ValueError(f"unknown snapshot format {version}")
    fields = HEADER_FIELDS + (FLEET_FIELDS if version >= 2 else ())
    hasher = hashlib.sha256(FORMATS[version])
    _field(hasher, json.dumps({k: header[k] for k in fields}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False).encode())
    for row in results:
        position, host, status, observation, verdict = row[:5]
        _field(hasher, f"R{position}".encode())
        for value in (host, status, observation, verdict):
            _field(hasher, value.encode())
        if version >= 2:
            observed_in, scopes = row[5:7]
            _field(hasher, b"" if observed_in is None else str(int(observed_in)).encode())
            _field(hasher, (scopes or "").encode())
    for position, host, record in discovered:
        _field(hasher, f"D{position}".encode())
        _field(hasher, host.encode())
        _field(hasher, record.encode())
    return hasher.hexdigest()


def sign(key: bytes, snapshot_hash: str) -> str:
    return hmac.new(key, snapshot_hash.encode(), hashlib.sha256).hexdigest()


def signature_ok(key: bytes, snapshot_hash: str, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(key, snapshot_hash), signature)

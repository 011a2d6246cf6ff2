"""Tamper evidence: a canonical digest of each snapshot, chained to the one before it.

``digest()`` covers every stored byte that carries meaning: the header (time, run, catalogue,
scope, counts), each host's status, observation and verdict exactly as stored, and the
discovered inventory. Each digest includes the previous snapshot's digest and the chain
position, so deleting, inserting or reordering a snapshot breaks every link after it. An
optional HMAC of each digest, keyed from secrets, stops a database administrator from
rewriting the whole chain unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

GENESIS = "0" * 64
FORMAT = b"proxylogon-snapshot/1"
HEADER_FIELDS = ("sequence", "previous_hash", "taken_at", "source", "label", "tool_version",
                 "catalog_version", "advisory_id", "advisory_version", "scope", "host_count",
                 "counts", "discovered_count")


def _field(hasher: Any, data: bytes) -> None:
    # Length-prefixed, so no two different sequences of fields hash alike.
    hasher.update(str(len(data)).encode() + b":" + data)


def digest(header: Mapping[str, Any], results: Iterable[tuple[int, str, str, str, str]],
           discovered: Iterable[tuple[int, str, str]]) -> str:
    """SHA-256 of one snapshot: header, then (position, host, status, observation, verdict)
    rows in order, then (position, host, record) inventory rows in order."""
    hasher = hashlib.sha256(FORMAT)
    _field(hasher, json.dumps({k: header[k] for k in HEADER_FIELDS}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False).encode())
    for position, host, status, observation, verdict in results:
        _field(hasher, f"R{position}".encode())
        for value in (host, status, observation, verdict):
            _field(hasher, value.encode())
    for position, host, record in discovered:
        _field(hasher, f"D{position}".encode())
        _field(hasher, host.encode())
        _field(hasher, record.encode())
    return hasher.hexdigest()


def sign(key: bytes, snapshot_hash: str) -> str:
    return hmac.new(key, snapshot_hash.encode(), hashlib.sha256).hexdigest()


def signature_ok(key: bytes, snapshot_hash: str, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(key, snapshot_hash), signature)

"""Exports for people and auditors: snapshot CSV and JSON, and self-checking evidence bundles.

A bundle is a zip holding ``snapshot.json`` (every stored row exactly as hashed, and the
chain fields), ``hosts.csv``, ``summary.txt`` and ``manifest.json`` (SHA-256 of each file and
the snapshot's digest and chain position). ``verify_bundle`` checks it without the database:
the files match the manifest and the snapshot's content matches its recorded digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance.codec import observation_from_dict, verdict_from_dict
from compliance.models import Assessment
from store import chain
from store.export import SNAPSHOT_COLUMNS, host_row, to_csv
from store.snapshots import SnapshotInfo, SnapshotStore

BUNDLE_FILES = ("snapshot.json", "hosts.csv", "summary.txt")
MAX_BUNDLE_MEMBER_BYTES = 512 * 1024 * 1024


class BundleError(ValueError):
    """The bundle is not a readable evidence bundle."""


def snapshot_document(store: SnapshotStore, info: SnapshotInfo) -> dict[str, Any]:
    """The whole snapshot; header, observations and verdicts as the exact stored text."""
    results, inventory = store.raw_rows(info.id)
    header = store.raw_header(info.id)
    header["pruned"] = bool(header["pruned"])
    return {
        "format": chain.FORMATS.get(int(header.get("format") or 1), chain.FORMAT).decode(),
        "header": header,
        "results": [{"position": p, "host": h, "status": s, "observation": o, "verdict": v,
                     "observed_in": i, "scopes": sc}
                    for p, h, s, o, v, i, sc in results],
        "discovered": [{"position": p, "host": h, "record": r} for p, h, r in inventory],
    }


def document_digest(document: dict[str, Any]) -> str:
    header = document["header"]
    results = [(r["position"], r["host"], r["status"], r["observation"], r["verdict"],
                r.get("observed_in"), r.get("scopes")) for r in document["results"]]
    inventory = [(d["position"], d["host"], d["record"]) for d in document["discovered"]]
    return chain.digest(header, results, inventory)


def document_assessments(document: dict[str, Any]) -> list[Assessment]:
    return [Assessment(observation_from_dict(json.loads(r["observation"])),
                       verdict_from_dict(json.loads(r["verdict"])),
                       observed_in=r.get("observed_in"),
                       scopes=tuple(json.loads(r["scopes"])) if r.get("scopes") else ())
            for r in document["results"]]


def snapshot_csv(assessments: list[Assessment], snapshot_id: int | None = None) -> str:
    return to_csv([host_row(a, snapshot_id) for a in assessments], SNAPSHOT_COLUMNS)


def summary_text(document: dict[str, Any], verified_chain: bool | None) -> str:
    header = document["header"]
    counts = Counter(r["status"] for r in document["results"])
    lines = [
        "ProxyLogon compliance: evidence bundle",
        "",
        f"Snapshot #{header['id']} taken {header['taken_at']} ({header['source']}: "
        f"{header['label']})",
        f"Scope: {header['scope'] or '(not recorded)'}",
        f"Tool {header['tool_version']}; catalogue {header['catalog_version']}; advisory "
        f"{header['advisory_id']} v{header['advisory_version']}",
        f"Hosts: {header['host_count']} ("
        + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) + ")",
        *_fleet_lines(header),
        "",
        f"Snapshot digest (SHA-256): {header['hash']}",
        f"Chain position {header['sequence']}; previous digest {header['previous_hash']}",
        f"HMAC signature: {header['signature'] or 'none (no signing key configured)'}",
    ]
    if verified_chain is not None:
        lines.append(f"Whole chain verified at export: {'yes' if verified_chain else 'NO'}")
    lines += [
        "",
        "Check this bundle on its own: python -m store verify --bundle <this file>",
        "It proves the files are unchanged since export and that snapshot.json matches the",
        "digest above. Compare that digest with the live chain (python -m store verify) or",
        "check the HMAC with the signing key to prove the snapshot is the one recorded then.",
    ]
    return "\n".join(lines) + "\n"


def _fleet_lines(header: dict[str, Any]) -> list[str]:
    if int(header.get("format") or 1) < 2:
        return [f"Inventory: {header['discovered_count']} servers discovered",
                "Format 1: this snapshot holds only the hosts its own run assessed."]
    carried = header["host_count"] - header["observed_count"]
    return [f"Fleet: every known host; {header['observed_count']} observed by this run "
            f"({header['scope'] or 'scope not recorded'}), {carried} carried forward from "
            "earlier snapshots with their own observation time (hosts.csv: observed_in)",
            f"Coverage: {header['fresh_count']} of {header['host_count']} hosts have a fresh "
            "observation",
            f"Run inventory: {header['discovered_count']} servers"]


def build_bundle(store: SnapshotStore, info: SnapshotInfo, now: datetime) -> bytes:
    document = snapshot_document(store, info)
    verified = store.verify().ok
    files = {
        "snapshot.json": json.dumps(document, indent=1, ensure_ascii=False).encode(),
        "hosts.csv": snapshot_csv(document_assessments(document), info.id).encode(),
        "summary.txt": summary_text(document, verified).encode(),
    }
    manifest = {
        "format": "proxylogon-evidence-bundle/1",
        "created_at": now.astimezone(UTC).isoformat(),
        "snapshot_id": info.id, "snapshot_hash": info.hash, "sequence": info.sequence,
        "previous_hash": info.previous_hash, "signature": info.signature,
        "chain_verified_at_export": verified,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
    return buffer.getvalue()


def verify_bundle(path: Path, key: bytes | None = None) -> list[str]:
    """Problems found in a bundle, on its own (no database); empty when it checks out."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "manifest.json" not in names:
                return ["manifest.json is missing"]
            contents = {}
            for name in names:
                if archive.getinfo(name).file_size > MAX_BUNDLE_MEMBER_BYTES:
                    return [f"{name} is too large"]
                contents[name] = archive.read(name)
    except (OSError, zipfile.BadZipFile) as error:
        raise BundleError(f"{path} is not a readable zip: {error}") from None
    problems = []
    try:
        manifest = json.loads(contents["manifest.json"])
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return ["manifest.json is not a bundle manifest"]
    for name in sorted(set(listed) | (names - {"manifest.json"})):
        if name not in listed:
            problems.append(f"{name} is not in the manifest")
        elif name not in contents:
            problems.append(f"{name} is listed in the manifest but missing")
        elif hashlib.sha256(contents[name]).hexdigest() != listed[name]:
            problems.append(f"{name} was changed (its SHA-256 differs from the manifest)")
    if "snapshot.json" in contents:
        try:
            document = json.loads(contents["snapshot.json"])
            recomputed = document_digest(document)
        except (ValueError, KeyError, TypeError) as error:
            return [*problems, f"snapshot.json is not a snapshot document: {error}"]
        recorded = document["header"].get("hash")
        if recomputed != recorded:
            problems.append("snapshot.json does not match its recorded digest")
        if manifest.get("snapshot_hash") != recorded:
            problems.append("the manifest names another snapshot digest")
        if key is not None and not chain.signature_ok(key, recorded, document["header"].get(
                "signature")):
            problems.append("HMAC signature missing or wrong for this key")
    return problems

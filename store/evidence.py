"""Exports for people and auditors: snapshot CSV and JSON, and self-checking evidence bundles.

A bundle is a zip holding ``snapshot.json`` (every stored row exactly as hashed, the outside
view's document, and the chain fields), ``hosts.csv``, ``summary.txt``, ``acceptances.json``, ``deadlines.json``,
``investigations.json`` (each host's investigation after the fix and its directive's steps,
issue 21) and ``manifest.json`` (SHA-256 of each file and
the snapshot's digest and chain position; with a signing key, an HMAC over the manifest).
``verify_bundle`` checks it without the database: the files match the manifest, the snapshot's
content matches its recorded digest, and ``hosts.csv``, ``summary.txt`` and
``investigations.json`` are exactly what
``snapshot.json`` derives to, so neither can say anything the signed rows do not. With the
key, the manifest's HMAC and the snapshot's signature are checked too.

A bundle may come from anyone: it is read bounded (file, member count, names, compression
methods, sizes before inflating, JSON nesting before parsing) and every fault is a problem
in the list, never an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance.acceptance import Standing, standing
from compliance.catalog import load_catalog
from compliance.codec import stored_assessment
from compliance.deadline import Basis, DeadlinePolicy, Directive, deadline, published_at
from compliance.investigation import Investigation, InvestigationState
from compliance.investigation_record import BEFORE, first_scan
from compliance.investigation_record import columns as investigation_columns
from compliance.investigation_record import loads as investigation_loads
from compliance.investigation_record import to_dict as investigation_dict
from compliance.models import Assessment, Status
from compliance.summary import shown_action, summarise
from compliance.worklist import priority
from files import FileRefused, read_bounded
from gcpause import gc_paused
from store import chain
from store.acceptances import FORMAT as ACCEPTANCE_FORMAT
from store.acceptances import acceptances, parse_fields, standing_in
from store.deadlines import host_deadlines
from store.export import (
    HOST_COLUMNS,
    SNAPSHOT_COLUMNS,
    host_row,
    investigation_cells,
    investigation_cells_of,
    to_csv,
)
from store.snapshots import ROW_KEYS, SnapshotInfo, SnapshotStore

BUNDLE_FILES = ("snapshot.json", "hosts.csv", "summary.txt", "acceptances.json",
                "deadlines.json", "investigations.json")
MANIFEST = "manifest.json"
# 2: manifest HMAC, derived files re-derived; 3: the risk acceptances as of the snapshot;
# 4: each open host's deadline under the exporter's policy; 5: each host's investigation;
# 6: hosts.csv and summary.txt say the investigation too (``INVESTIGATION_COLUMNS``, a
# summary.txt line), so a format 5 bundle's files derive again to the same bytes as before;
# 7: hosts.csv's ``action`` is the next action as the pages and worklist show it (a compromise
# first where the investigation found indicators: ``compliance.summary.shown_action``), and
# ``verdict_action`` after the investigation's columns keeps the verdict's own (the stored,
# hashed one). Each format's hosts.csv is derived its own way, so older bundles verify as before.
BUNDLE_FORMAT = "proxylogon-evidence-bundle/7"
FILES_BY_FORMAT = {"proxylogon-evidence-bundle/2": BUNDLE_FILES[:3],
                   "proxylogon-evidence-bundle/3": BUNDLE_FILES[:4],
                   "proxylogon-evidence-bundle/4": BUNDLE_FILES[:5],
                   "proxylogon-evidence-bundle/5": BUNDLE_FILES,
                   "proxylogon-evidence-bundle/6": BUNDLE_FILES, BUNDLE_FORMAT: BUNDLE_FILES}
# The bundle formats whose hosts.csv and summary.txt carry the investigation.
STATES_SHOWN = frozenset({"proxylogon-evidence-bundle/6", BUNDLE_FORMAT})
# The bundle formats whose hosts.csv shows the next action as the pages do (``VERDICT_ACTION``).
ACTIONS_SHOWN = frozenset({BUNDLE_FORMAT})
# hosts.csv's columns after SNAPSHOT_COLUMNS in those formats (and ``store export --format
# csv``'s): each host's investigation state and next action.
INVESTIGATION_COLUMNS = ("investigation", "investigation_action")
# The last column of hosts.csv from format 7 (and of ``store export --format csv``): the
# verdict's own next action as stored, where ``action`` is the one shown (``shown_action``).
VERDICT_ACTION = "verdict_action"
# Uncompressed size limits per member, checked against the zip's directory before inflating
# (and again while inflating, whatever the directory says). snapshot.json of 10,000 hosts is
# about 40 MB; hosts.csv about a tenth of it.
MEMBER_LIMITS = {"snapshot.json": 256 * 2**20, "hosts.csv": 64 * 2**20,
                 "summary.txt": 64 * 2**10, "acceptances.json": 16 * 2**20,
                 "deadlines.json": 64 * 2**20, "investigations.json": 128 * 2**20,
                 MANIFEST: 64 * 2**10}
MAX_BUNDLE_BYTES = 256 * 2**20  # the zip file itself
MAX_JSON_DEPTH = 32  # snapshot.json nests 3 deep, its rows' JSON texts about 6
MAX_JSON_VALUES = 2_000_000  # snapshot.json of 10,000 hosts holds about 120,000
# A row's observation or verdict text: a few KB with a few hundred values (indicator lists are
# capped at 50 findings each by the probe).
MAX_ROW_TEXT = 1_000_000
MAX_ROW_VALUES = 20_000
MAX_MEMBERS = len(BUNDLE_FILES) + 1  # and the manifest


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
        # Each row under its stored column names; the summary columns too (hashed from
        # format 4 on, and checked against the row's JSON by verify_bundle).
        "results": [dict(zip(ROW_KEYS, row, strict=True)) for row in results],
        "discovered": [{"position": p, "host": h, "record": r} for p, h, r in inventory],
        # Format 5: the outside view's stored document (None: not fingerprinted), as hashed.
        "outside": store.raw_outside(info.id),
    }


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def document_json(document: dict[str, Any]) -> str:
    """snapshot.json: the header indented, then its row lists one row per line, each by the C
    encoder (an indented dump of 10,000 rows takes the pure-Python encoder, several times
    slower)."""
    compact = _COMPACT.encode  # one encoder: json.dumps with options builds one per call
    lists = ("discovered", "results")
    head = {key: value for key, value in document.items() if key not in lists}
    parts = [json.dumps(head, indent=1, ensure_ascii=False)[:-2]]
    for key in lists:
        rows = ",\n".join(compact(row) for row in document[key])
        parts.append(f',\n {compact(key)}: [\n{rows}\n]')
    return "".join(parts) + "\n}\n"


def document_rows(document: dict[str, Any]) -> tuple[list[tuple[Any, ...]],
                                                     list[tuple[Any, ...]]]:
    """The document's result rows (``ROW_KEYS`` order; a column an older document lacks reads
    None) and inventory rows (position, host, record), as ``chain.digest`` hashes them."""
    results = [(r["position"], r["host"], r["status"], r["observation"], r["verdict"],
                r.get("observed_in"), r.get("scopes"),
                *(r.get(name) for name in chain.SUMMARY_FIELDS), r.get("investigation_detail"))
               for r in document["results"]]
    inventory = [(d["position"], d["host"], d["record"]) for d in document["discovered"]]
    return results, inventory


def document_digest(document: dict[str, Any]) -> str:
    return chain.digest(document["header"], *document_rows(document), document.get("outside"))


def document_assessments(document: dict[str, Any]) -> list[Assessment]:
    return [stored_assessment(json.loads(r["observation"]), json.loads(r["verdict"]),
                              r.get("observed_in"),
                              tuple(json.loads(r["scopes"])) if r.get("scopes") else ())
            for r in document["results"]]


def document_investigations(document: dict[str, Any]) -> list[Investigation | None]:
    """Each row's stored investigation (None: none, a row from before issue 21);
    ``ValueError`` for a record no writer of this tool makes."""
    return [investigation_loads(r.get("investigation_detail")) for r in document["results"]]


def investigations_json(document: dict[str, Any]) -> str:
    """investigations.json: per host of the snapshot, in fleet order, its investigation after
    the fix as judged at the snapshot's time (state, next action, exposure window and where
    its end was read, the first full scan after the fix, the directive's steps with their due
    time and whether and by which scan each was met, and the evidence lines). A host without
    one (saved before issue 21) is listed as not investigated, with no record. Derived from
    snapshot.json's rows alone, so verify_bundle derives it again."""
    items = []
    for row, found in zip(document["results"], document_investigations(document), strict=True):
        item: dict[str, Any] = {"host": row["host"], "status": row["status"]}
        if found is None:
            item.update(state="not_investigated", recorded=False,
                        next_action="no traces recorded (collected before issue 21)")
        else:
            brief = investigation_columns(found)
            scan = first_scan(found)
            directive = found.directive
            item.update(recorded=True, **investigation_dict(found),
                        fixed_at=brief.fixed_at or None,
                        first_full_scan=scan.isoformat() if scan else None,
                        next_scan_due=brief.next_scan_due or None,
                        steps_missed=brief.steps_missed,
                        directive_met=directive.met if directive else None)
        items.append(item)
    head = json.dumps({"snapshot_id": document["header"]["id"],
                       "as_of": document["header"]["taken_at"],
                       "advisory": document["header"]["advisory_id"]}, indent=1,
                      sort_keys=True, ensure_ascii=False)[:-2]
    lines = ",\n".join(map(_SORTED.encode, items))
    return f'{head},\n "hosts": [\n{lines}\n]\n}}'


def snapshot_csv(assessments: list[Assessment], snapshot_id: int | None = None,
                 investigations: Sequence[Investigation | None] | None = None,
                 actions: bool = True) -> str:
    """The hosts as CSV (``SNAPSHOT_COLUMNS``); with ``investigations`` (each row's stored one,
    None for a row from before issue 21), ``INVESTIGATION_COLUMNS`` after them, and with
    ``actions`` too (``ACTIONS_SHOWN``; False: bundle format 6's hosts.csv) ``action`` as
    shown (``shown_action``) and ``VERDICT_ACTION`` last."""
    if investigations is None:
        return to_csv([host_row(summarise(a), snapshot_id) for a in assessments],
                      SNAPSHOT_COLUMNS)
    rows = []
    for assessment, found in zip(assessments, investigations, strict=True):
        summary = summarise(assessment, found)
        row = {**host_row(summary, snapshot_id), **investigation_cells(summary)}
        rows.append(_shown(row) if actions else row)
    return to_csv(rows, _columns(True, actions))


def _columns(states: bool, actions: bool) -> tuple[str, ...]:
    """hosts.csv's columns: with the investigation's (``states``), then the verdict's action
    (``actions``, which needs ``states``)."""
    if not states:
        return SNAPSHOT_COLUMNS
    return (*SNAPSHOT_COLUMNS, *INVESTIGATION_COLUMNS, *((VERDICT_ACTION,) if actions else ()))


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A hosts.csv row with its next action as the pages show it, after the investigation cell
    the same row shows (a compromise first where it says indicators_found), and the verdict's
    own in ``VERDICT_ACTION``."""
    action = str(row["action"])
    return {**row, "action": shown_action(action, row["investigation"]), VERDICT_ACTION: action}


def summary_csv(document: dict[str, Any], snapshot_id: int, states: bool = False,
                actions: bool = False) -> str:
    """hosts.csv from the document's summary columns: the same bytes ``snapshot_csv`` derives
    from the JSON, for rows whose columns agree with it (a row whose columns are missing is
    derived from its JSON). ``states``: with ``INVESTIGATION_COLUMNS`` (``STATES_SHOWN``);
    ``actions`` (with ``states``): the action as shown and ``VERDICT_ACTION``
    (``ACTIONS_SHOWN``)."""
    names = HOST_COLUMNS[:-2]  # the summary's; then observed_in and carried
    rows = []
    for row in document["results"]:
        values = dict(zip(names, map(row.get, names), strict=True))
        if None in values.values():  # the migration could not fill it
            summary = summarise(document_assessments({"results": [row]})[0],
                                investigation_loads(row.get("investigation_detail")))
            rows.append({**host_row(summary, snapshot_id), **investigation_cells(summary)})
            continue
        carried = row.get("observed_in") is not None
        rows.append({**values,
                     "observed_in": row["observed_in"] if carried else snapshot_id,
                     "carried": carried, **_stored_cells(row)})
    shown = states and actions
    return to_csv([_shown(row) for row in rows] if shown else rows, _columns(states, shown))


def _stored_cells(row: dict[str, Any]) -> dict[str, str]:
    """``investigation_cells`` of a stored row's columns (as ``HostSummary.from_columns``
    reads them); a value no writer makes reads as not investigated, as the pages read it."""
    try:
        state = InvestigationState(row["investigation"]) if row.get("investigation") else None
        return investigation_cells_of(state, str(row.get("investigation_action") or ""),
                                      Status(row["status"]))
    except (ValueError, KeyError):
        return {"investigation": InvestigationState.NOT_INVESTIGATED.value,
                "investigation_action": BEFORE}


def _state_line(document: dict[str, Any]) -> str:
    """summary.txt's investigation line (bundle format 6 on): hosts per state, as stored."""
    counted = Counter(_stored_cells(row)["investigation"] for row in document["results"])
    return ("Investigation after the fix (issue 21; investigations.json, hosts.csv): "
            + ", ".join(f"{state.value} {counted.get(state.value, 0)}"
                        for state in InvestigationState))


def summary_text(document: dict[str, Any], verified_chain: bool | None,
                 states: bool = False) -> str:
    """summary.txt; ``states``: with the investigation line (``STATES_SHOWN``)."""
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
        *([_state_line(document)] if states else []),
        "",
        f"Snapshot digest (SHA-256): {header['hash']}",
        f"Chain position {header['sequence']}; previous digest {header['previous_hash']}",
        f"HMAC signature: {header['signature'] or 'none (no signing key configured)'}",
    ]
    if verified_chain is not None:
        lines.append("Chains verified at export (every link, head and signature, and this "
                     f"snapshot's rows): {'yes' if verified_chain else 'NO'}")
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


@gc_paused()  # ~10^6 objects built and dropped, none in a cycle (gcpause.py)
def build_bundle(store: SnapshotStore, info: SnapshotInfo, now: datetime,
                 verified: bool | None = None,
                 deadlines: DeadlinePolicy | None = None) -> bytes:
    """The evidence bundle of one snapshot with its hosts (zip bytes); with the store's signing
    key, the manifest carries an HMAC over everything else in it. ``verified``: whether the
    store's chains verify now (the bundle's own rows, links, heads and signatures are checked
    here either way, and must hold too); recorded in the manifest.
    ``deadlines``: the policy its deadlines.json applies (default: the shipped one)."""
    document = snapshot_document(store, info)
    # Every link, head, audit entry and signature, and this snapshot's own rows as read for the
    # bundle (not read a second time): what the manifest says was verified is the rows it
    # holds, even when the caller verified the whole store before this read (``verified``).
    # The other snapshots' rows are not in the bundle and are not hashed again for it.
    rows, inventory = document_rows(document)
    own = store.verify(store.signing_key, only=info.id,
                       only_rows=(rows, inventory, document["outside"])).ok
    verified = own if verified is None else verified and own
    buffer = io.BytesIO()
    digests: dict[str, str] = {}
    # Level 1: a 40 MB snapshot.json deflates in a fraction of the default's time, and nearly
    # as small (it is repetitive JSON). Each file is deflated and hashed by one writer thread
    # while the next is built here: zlib and hashlib let go of the GIL on large buffers, so
    # the two overlap on two cores (a quarter of a bundle's time at 10,000 hosts).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            ThreadPoolExecutor(1, thread_name_prefix="bundle-zip") as writer:
        written: list[Future[tuple[str, str]]] = []

        def add(name: str, data: bytes) -> None:
            written.append(writer.submit(_write, archive, name, data))

        add("snapshot.json", document_json(document).encode())
        # From the rows' summary columns, which the check at export just proved (hashed, or
        # for rows saved before format 4 derived again from their JSON): nothing is decoded.
        # verify_bundle derives it from the JSON and requires the same bytes.
        add("hosts.csv", summary_csv(document, info.id, BUNDLE_FORMAT in STATES_SHOWN,
                                     BUNDLE_FORMAT in ACTIONS_SHOWN).encode())
        add("summary.txt", summary_text(document, verified,
                                        BUNDLE_FORMAT in STATES_SHOWN).encode())
        add("acceptances.json", acceptances_json(store, info).encode())
        add("deadlines.json", deadlines_json(store, info, deadlines or DeadlinePolicy()).encode())
        add("investigations.json", investigations_json(document).encode())
        digests.update(future.result() for future in written)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "created_at": now.astimezone(UTC).isoformat(),
            "snapshot_id": info.id, "snapshot_hash": info.hash, "sequence": info.sequence,
            "previous_hash": info.previous_hash, "signature": info.signature,
            "chain_verified_at_export": verified,
            "files": digests,
        }
        if store.signing_key:
            if not info.signature and verified:
                # Saved before the key was set; the store verified with the key, so an
                # adoption covers it: say so under the manifest's HMAC.
                manifest["snapshot_unsigned_adopted"] = True
            manifest["hmac"] = manifest_hmac(store.signing_key, manifest)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
    return buffer.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> tuple[str, str]:
    """One bundle file deflated into ``archive`` (called by build_bundle's one writer thread,
    in order); its name and SHA-256 for the manifest."""
    archive.writestr(name, data)
    return name, hashlib.sha256(data).hexdigest()


def acceptances_json(store: SnapshotStore, info: SnapshotInfo) -> str:
    """The risk acceptances recorded by the snapshot's time, each with its standing then
    against the snapshot's hosts (compliance/acceptance.py): what an auditor reads beside the
    snapshot. Each is an audit-chain entry (``id``) that ``python -m store verify`` checks in
    the store; in the bundle, the manifest's digest and HMAC cover this file."""
    moment = info.taken_at
    recorded = acceptances(store, moment)
    catalog = load_catalog()
    hosts = {s.host.casefold(): s for s in store.summaries(
        info.id, catalog, hosts={r.acceptance.host for r in recorded})} if recorded else {}
    rows = []
    for r in recorded:
        made = r.acceptance
        state = standing_in(store, r, hosts.get(made.host.casefold()), moment)
        rows.append({
            "id": r.id, "snapshot_id": r.snapshot_id, "host": made.host,
            "status": made.status.value, "mitigations": list(made.mitigations),
            "reason": made.reason, "approver": made.approver, "ticket": made.ticket,
            "accepted_at": made.accepted_at.isoformat(), "expires_at": made.expires_at.isoformat(),
            "accepted_by": made.accepted_by,
            "revoked_at": made.revoked_at.isoformat() if made.revoked_at else None,
            "revoked_by": made.revoked_by or None,
            "in_force": state.in_force, "ended": state.detail or None})
    return json.dumps({"as_of": moment.isoformat(), "acceptances": rows}, indent=1,
                      sort_keys=True, ensure_ascii=False)


def deadlines_json(store: SnapshotStore, info: SnapshotInfo, policy: DeadlinePolicy) -> str:
    """Each host of the snapshot that needs work with its deadline under ``policy`` (written
    out in the file), when its clock started, and whether it was overdue at the snapshot's
    time (compliance/deadline.py): what an auditor reads to see what was late when."""
    catalog = load_catalog()
    found = host_deadlines(store, info.id, catalog, policy)
    items = [{"host": d.host, "status": d.status.value,
              "flags": [f.value for f in d.flags],
              "open_since": d.open_since.isoformat() if d.open_since else None,
              "pruned_before": d.pruned_before, "due": d.deadline.due_at.isoformat(),
              "rule": d.deadline.rule, "overdue": d.deadline.overdue(info.taken_at)}
             for d in sorted(found.values(), key=lambda d: (d.deadline.due_at, d.host))]
    # The head indented, the items one per line by the C encoder (an indented dump of 3,000
    # items takes the pure-Python one: 0.2 s of a bundle at 10,000 hosts).
    head = json.dumps({"as_of": info.taken_at.isoformat(), "policy": policy_fields(policy),
                       "published": catalog.advisory.published}, indent=1, sort_keys=True,
                      ensure_ascii=False)[:-2]
    lines = ",\n".join(map(_SORTED.encode, items))
    return f'{head},\n "items": [\n{lines}\n]\n}}'


def policy_fields(policy: DeadlinePolicy) -> dict[str, Any]:
    return {"basis": policy.basis.value, "days": dict(sorted(policy.days.items())),
            "directives": [{"name": d.name, "due": d.due.isoformat(),
                            "statuses": sorted(s.value for s in d.statuses)}
                           for d in policy.directives],
            "described": policy.describe()}


def _policy_of(fields: Any) -> DeadlinePolicy:
    """``policy_fields`` read back; ``ValueError``/``TypeError``/``KeyError`` for anything else."""
    days = fields["days"]
    if not isinstance(days, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            and 0 <= v <= 3650 for k, v in days.items()):
        raise ValueError("days")
    directives = []
    for item in fields["directives"]:
        due = _aware_time(item["due"])
        if due is None or not isinstance(item["name"], str):
            raise ValueError("directive")
        directives.append(Directive(item["name"], due,
                                    frozenset(Status(s) for s in item["statuses"])))
    return DeadlinePolicy(Basis(fields["basis"]), {k: float(v) for k, v in days.items()},
                          tuple(directives))


def _deadline_problems(data: bytes, document: dict[str, Any]) -> list[str]:
    """deadlines.json must list exactly the snapshot's hosts that need work, each due as its
    stated policy gives from its stated start, no start after the snapshot, and overdue as
    the snapshot's time says."""
    try:
        listed = _json(data, "deadlines.json")
        items = listed["items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TypeError
        policy = _policy_of(listed["policy"])
        published = published_at(str(listed["published"]))
        as_of_text = listed["as_of"]
    except BundleError as error:
        return [str(error)]
    except (KeyError, TypeError, ValueError, AttributeError):
        return ["deadlines.json is not a list of deadlines under a policy"]
    if as_of_text != document["header"].get("taken_at"):
        return ["deadlines.json is not as of the snapshot's time"]
    as_of = datetime.fromisoformat(str(as_of_text))
    try:
        investigations = document_investigations(document)
    except ValueError:
        return ["deadlines.json cannot be checked: a row's investigation record is unreadable"]
    # Each with its stored investigation (issue 21): one that found indicators starts a clock.
    open_hosts = {s.host: s for s in map(summarise, document_assessments(document),
                                         investigations)
                  if priority(s.status, s.flags, s.investigation) is not None}
    problems = []
    seen = set()
    for number, item in enumerate(items):
        host = item.get("host")
        summary = open_hosts.get(host) if isinstance(host, str) else None
        shown = str(host)[:80]
        if summary is None or host in seen:
            problems.append(f"deadlines.json entry {number} ({shown!r}) is not a host of the "
                            "snapshot that needs work, or is listed twice")
            continue
        seen.add(host)
        since = _aware_time(item.get("open_since"))
        if (item.get("open_since") is not None and since is None) or (
                since is not None and since > as_of):
            problems.append(f"deadlines.json entry {number} ({shown!r}): its clock does not "
                            "start by the snapshot's time")
            continue
        due = deadline(summary.status, summary.flags, policy, open_since=since,
                       published=published, investigation=summary.investigation)
        if (due is None or item.get("due") != due.due_at.isoformat()
                or item.get("rule") != due.rule or item.get("overdue") is not due.overdue(as_of)):
            problems.append(f"deadlines.json entry {number} ({shown!r}): its due time or "
                            "overdue flag is not what its policy gives")
    for host in sorted(set(open_hosts) - seen)[:20]:
        problems.append(f"deadlines.json leaves out {host[:80]!r}, which needs work")
    return problems


def manifest_hmac(key: bytes, manifest: dict[str, Any]) -> str:
    """HMAC-SHA256 of the manifest's canonical JSON, every field but ``hmac`` itself."""
    body = json.dumps({k: v for k, v in manifest.items() if k != "hmac"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, b"proxylogon-bundle-manifest/1:" + body, hashlib.sha256).hexdigest()


def bundle_holds(path: Path, name: str) -> bool:
    """Whether a bundle (one ``verify_bundle`` passed) holds the member ``name``: what its OK
    line names. False for anything unreadable."""
    try:
        return name in _members(read_bounded(path, MAX_BUNDLE_BYTES))
    except Exception:  # checked already; a failure here only shortens the line
        return False


def verify_bundle(path: Path, key: bytes | None = None) -> list[str]:
    """Problems found in a bundle, on its own (no database); empty when it checks out.

    Never raises for a bad bundle: an unreadable file, a hostile zip or a forged member is a
    problem in the list. With ``key``, the manifest must carry a matching HMAC and the
    snapshot a matching signature. A bundle exported from a store whose chains did not verify
    then is a problem too: it is evidence of a store that was already changed."""
    try:
        return _verify_bundle(path, key)
    except Exception as error:  # a shape no check above foresaw: still a failure, one line
        return [f"the bundle could not be checked ({type(error).__name__}); it is not one this "
                "tool wrote"]


def _verify_bundle(path: Path, key: bytes | None) -> list[str]:
    try:
        contents = _members(read_bounded(path, MAX_BUNDLE_BYTES))
    except (FileRefused, BundleError) as error:
        return [str(error)]
    try:
        manifest = _json(contents[MANIFEST], MANIFEST)
        listed = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError
    except BundleError as error:
        return [str(error)]
    except (KeyError, TypeError):
        return [f"{MANIFEST} is not a bundle manifest"]
    problems = []
    if manifest.get("chain_verified_at_export") is not True:
        problems.append("the store's chains did not verify when this bundle was exported (see "
                        "summary.txt): it may hold what someone changed in the store")
    if key is not None:
        recorded_hmac = manifest.get("hmac")
        if not isinstance(recorded_hmac, str):
            problems.append(f"{MANIFEST} carries no HMAC: the bundle was exported without a "
                            "signing key, so nothing proves who made it")
        elif not hmac.compare_digest(manifest_hmac(key, manifest), recorded_hmac):
            problems.append(f"{MANIFEST} HMAC is wrong for this key (the manifest was changed, "
                            "or made with another key)")
    required = FILES_BY_FORMAT.get(str(manifest.get("format")))
    if required is None:
        return [*problems, f"{MANIFEST} names format {str(manifest.get('format'))[:60]!r}, "
                           "which this tool does not read"]
    for name in sorted(set(contents) - set(required) - {MANIFEST}):
        problems.append(f"{name} is in the bundle, but not among its format's files")
    for name in sorted(set(listed) | set(required)):
        if name not in required:
            problems.append(f"the manifest lists {name!r}, which is not a bundle file")
        elif name not in listed:
            problems.append(f"{name} is not in the manifest")
        elif name not in contents:
            problems.append(f"{name} is missing")
        elif hashlib.sha256(contents[name]).hexdigest() != listed[name]:
            problems.append(f"{name} was changed (its SHA-256 differs from the manifest)")
    if problems:  # snapshot.json is not parsed once the manifest or a file failed its check
        return problems
    try:
        document = _json(contents["snapshot.json"], "snapshot.json")
        recomputed = document_digest(document)
        header = document["header"]
        recorded = header["hash"]
    except BundleError as error:
        return [*problems, str(error)]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return [*problems, f"snapshot.json is not a snapshot document ({type(error).__name__})"]
    if recomputed != recorded:
        problems.append("snapshot.json does not match its recorded digest")
    for field, column in (("snapshot_hash", "hash"), ("snapshot_id", "id"),
                          ("sequence", "sequence"), ("previous_hash", "previous_hash"),
                          ("signature", "signature")):
        if manifest.get(field) != header.get(column):
            problems.append(f"the manifest's {field} differs from snapshot.json's")
    # A snapshot saved before the key was set has no signature: the exporter, holding the key,
    # vouched for it in the manifest (whose HMAC was checked above).
    adopted = not header.get("signature") and manifest.get("snapshot_unsigned_adopted") is True
    if key is not None and not adopted and not chain.signature_ok(key, str(recorded),
                                                                  header.get("signature")):
        problems.append("the snapshot's HMAC signature is missing or wrong for this key")
    if "investigations.json" not in required and _holds_investigations(document):
        problems.append("the snapshot's rows hold investigations after the fix (snapshot "
                        "format 7), but this bundle's format has no investigations.json: it "
                        "was repacked in an older bundle format, which hides them")
    if problems:  # nothing more is parsed from a bundle already shown to be changed
        return problems
    problems = _derived_problems(document, manifest, contents)
    if not problems and "acceptances.json" in required:  # the rows are known sound by now
        problems = _acceptance_problems(contents["acceptances.json"], document)
    if not problems and "deadlines.json" in required:
        problems = _deadline_problems(contents["deadlines.json"], document)
    return problems


def _holds_investigations(document: dict[str, Any]) -> bool:
    """Whether a (digest-checked) snapshot document holds investigations: a snapshot of
    format 7 on, or any row with an investigation record."""
    try:
        version = int(document["header"].get("format") or 1)
    except (TypeError, ValueError, AttributeError):
        version = chain.INVESTIGATION_FORMAT  # not a number: as the newest (fail closed)
    rows = document.get("results")
    return version >= chain.INVESTIGATION_FORMAT or (isinstance(rows, list) and any(
        isinstance(r, dict) and r.get("investigation_detail") is not None for r in rows))


def _acceptance_problems(data: bytes, document: dict[str, Any]) -> list[str]:
    """acceptances.json must list acceptances this tool records, recorded by the snapshot's
    own time, each standing as the snapshot's hosts say it stood then."""
    try:
        listed = _json(data, "acceptances.json")
        rows = listed["acceptances"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError
        as_of_text = listed["as_of"]
    except BundleError as error:
        return [str(error)]
    except (KeyError, TypeError):
        return ["acceptances.json is not a list of acceptances"]
    if as_of_text != document["header"].get("taken_at"):
        return ["acceptances.json is not as of the snapshot's time"]
    as_of = datetime.fromisoformat(str(as_of_text))
    hosts = {s.host: s for s in map(summarise, document_assessments(document))}
    problems = []
    for number, row in enumerate(rows):
        made = parse_fields({**row, "format": ACCEPTANCE_FORMAT})
        revoked = _aware_time(row.get("revoked_at"))
        if made is None or (row.get("revoked_at") is not None and revoked is None):
            problems.append(f"acceptances.json entry {number} is not an acceptance this tool "
                            "records")
            continue
        if revoked is not None:
            made = replace(made, revoked_at=revoked, revoked_by=str(row.get("revoked_by")))
        state = standing(made, hosts.get(made.host), as_of)
        if made.accepted_at > as_of or (revoked is not None and revoked > as_of):
            problems.append(f"acceptances.json entry {number} ({made.host[:80]!r}) was recorded "
                            "after the snapshot")
        elif not _standing_claimed(row, state):
            problems.append(f"acceptances.json entry {number} ({made.host[:80]!r}): its standing "
                            "is not what the snapshot's hosts say")
    return problems


def _standing_claimed(row: dict[str, Any], state: Standing) -> bool:
    """Whether a row's standing is what the bundled snapshot allows: in force only where the
    snapshot says so. An ended one is always allowed: it may have ended by an earlier
    snapshot's evidence, or by a pruning, which the bundle does not hold
    (``store.acceptances.standing_in``), and the claim fails closed."""
    in_force = row.get("in_force")
    if not isinstance(in_force, bool):
        return False
    return not in_force or (state.in_force and not row.get("ended"))


def _aware_time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _derived_problems(document: dict[str, Any], manifest: dict[str, Any],
                      contents: dict[str, bytes]) -> list[str]:
    """hosts.csv and summary.txt must be exactly what snapshot.json derives to. The rows' own
    JSON texts (observation, verdict, scopes) are bounded like a member before any is parsed:
    they sit inside strings, where the member's bounds do not see them."""
    try:
        for number, row in enumerate(document["results"]):
            for field in ("observation", "verdict", "scopes", "investigation_detail"):
                text = row.get(field) if field == "investigation_detail" else row[field]
                if text is None and field in ("scopes", "investigation_detail"):
                    continue
                if not isinstance(text, str) or len(text) > MAX_ROW_TEXT:
                    raise BundleError(f"snapshot.json row {number}: {field} is not a JSON text "
                                      f"of at most {MAX_ROW_TEXT} characters")
                _check_shape(text.encode(), f"snapshot.json row {number} {field}",
                             MAX_ROW_VALUES)
    except BundleError as error:
        return [str(error)]
    except (KeyError, TypeError, AttributeError) as error:
        return [f"snapshot.json holds rows that are not observations and verdicts "
                f"({type(error).__name__})"]
    try:
        assessments = document_assessments(document)
        investigations = document_investigations(document)
        states = str(manifest.get("format")) in STATES_SHOWN
        derived = {
            "hosts.csv": snapshot_csv(assessments, document["header"]["id"],
                                      investigations if states else None,
                                      str(manifest.get("format")) in ACTIONS_SHOWN).encode(),
            "summary.txt": summary_text(document, manifest.get("chain_verified_at_export"),
                                        states).encode(),
        }
        if "investigations.json" in contents:  # format 5 on (the manifest's files decide)
            derived["investigations.json"] = investigations_json(document).encode()
    except Exception as error:  # rows chosen by whoever made the bundle: any decoding fault
        return [f"snapshot.json holds rows that are not observations and verdicts "
                f"({type(error).__name__})"]
    problems = [f"{name} says something snapshot.json does not (it differs from what the "
                "snapshot's rows derive to)" for name, data in derived.items()
                if contents[name] != data]
    # The summary columns are what the pages showed: they must be what the JSON derives to,
    # and so must each row's host and status columns and the header's counts.
    for row, assessment, found in zip(document["results"], assessments, investigations,
                                      strict=True):
        derived_columns = summarise(assessment, found).to_columns()
        if any(row.get(name) != derived_columns[name]
               for name in ("host", "status", *chain.SUMMARY_FIELDS)):
            problems.append(f"snapshot.json row {row.get('position')}: its host, status or "
                            "summary columns differ from its observation and verdict")
            break
    try:
        recorded_counts = {k: v for k, v in json.loads(document["header"]["counts"]).items() if v}
    except (TypeError, ValueError, AttributeError):
        recorded_counts = None
    if recorded_counts != dict(Counter(a.verdict.status.value for a in assessments)):
        problems.append("snapshot.json's header counts differ from its rows' verdicts")
    return problems


def _members(data: bytes) -> dict[str, bytes]:
    """The four members of a bundle zip, checked before any is inflated: exactly the expected
    names, once each, stored or deflated, not encrypted, within their size limits."""
    _check_directory(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise BundleError(f"not a readable zip ({error})") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        expected = {*BUNDLE_FILES, MANIFEST}
        for info in infos:
            if info.orig_filename != info.filename:  # a NUL or a DOS path in the stored name
                raise BundleError(f"unexpected member {info.orig_filename[:80]!r}: a bundle "
                                  f"holds only {', '.join(sorted(expected))}")
        for name in names:
            if name not in expected:
                raise BundleError(f"unexpected member {name[:80]!r}: a bundle holds only "
                                  f"{', '.join(sorted(expected))}")
            if names.count(name) > 1:
                raise BundleError(f"member {name!r} appears more than once")
        for info in infos:
            if info.flag_bits & 0x1:
                raise BundleError(f"{info.filename} is encrypted: a bundle never is")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise BundleError(f"{info.filename} uses compression method "
                                  f"{info.compress_type}: only stored and deflated are read")
            if info.file_size > MEMBER_LIMITS[info.filename]:
                raise BundleError(f"{info.filename} would inflate to {info.file_size} bytes, "
                                  f"over its {MEMBER_LIMITS[info.filename]} byte limit")
        # acceptances.json, deadlines.json and investigations.json are not in every format:
        # the manifest's decides.
        for name in sorted(expected - set(names) - {"acceptances.json", "deadlines.json",
                                                     "investigations.json"}):
            raise BundleError(f"{name} is missing")
        contents = {}
        for info in infos:
            limit = MEMBER_LIMITS[info.filename]
            try:
                with archive.open(info) as member:
                    # Never more than the limit, whatever the directory said.
                    contents[info.filename] = member.read(limit + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                    NotImplementedError, RuntimeError) as error:
                raise BundleError(f"{info.filename} cannot be inflated ({error})") from None
            if len(contents[info.filename]) > limit:
                raise BundleError(f"{info.filename} inflates past its {limit} byte limit")
    return contents


def _check_directory(data: bytes) -> None:
    """The zip's end-of-directory record, read before ``zipfile`` parses the directory (which
    it would do whole, however many entries it claims): at most the four members."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if at < 0 or at + 22 > len(data):
        raise BundleError("not a readable zip (no end-of-directory record)")
    if data.rfind(b"PK\x06\x07", max(0, at - 20), at) >= 0:
        # A ZIP64 locator: zipfile would take the directory's size from the ZIP64 record,
        # past the check below. Four small members never need one.
        raise BundleError("the zip has a ZIP64 directory record: a bundle never needs one")
    on_disk, total, size = struct.unpack_from("<HHI", data, at + 8)
    if max(on_disk, total) > MAX_MEMBERS or size > 64 * 1024:
        raise BundleError(f"the zip's directory lists {max(on_disk, total)} entries in "
                          f"{size} bytes: a bundle holds {MAX_MEMBERS} members")


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes and all
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _json(data: bytes, name: str, max_values: int = 0) -> Any:
    """Strict JSON of a member (or of a JSON text inside one): nesting and the number of values
    bounded before parsing, duplicate keys, NaN and Infinity refused."""
    _check_shape(data, name, max_values or MAX_JSON_VALUES)
    try:
        return json.loads(data, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise BundleError(f"{name} is not valid JSON ({str(error)[:120]})") from None


def _check_shape(data: bytes, name: str, max_values: int) -> None:
    # Outside strings, only the brackets count; a balanced text of depth d empties after d
    # passes that remove innermost pairs (each pass in C, so a hostile text costs little).
    outside = _STRINGS.sub(b"", data)
    brackets = outside.translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            break
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    if brackets:
        raise BundleError(f"{name} nests deeper than {MAX_JSON_DEPTH} levels (or is not "
                          "JSON)")
    # Each value costs memory once parsed: a small file of many tiny objects must not cost
    # gigabytes. Commas and brackets outside strings bound the number of values.
    values = sum(outside.count(char) for char in (b",", b"[", b"{")) + 1
    if values > max_values:
        raise BundleError(f"{name} holds more than {max_values} values")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        found[key] = value
    return found

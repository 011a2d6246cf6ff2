"""What a snapshot keeps of the outside view (issue 18): each endpoint's fingerprint in brief, the
namespaces' findings, and the stored JSON document they make.

An ``EndpointRecord`` is what collectors/fingerprint.py ``endpoint_record`` makes of one
fingerprint: the endpoint, when it was read (and, once carried, by which snapshot's run), each
disclosure with its source and certainty, TLS, the OWA and ECP answers (status, seconds), and
the failure. ``view_of`` derives from it alone the ``OutsideView`` that compliance/outside.py
reconciles, so the stored record is enough to follow, and redo, every flag it led to.

A snapshot holds the outside view as known at its time, as it holds the fleet: ``carry`` keeps
the endpoints its run read, and those of the previous snapshot its run did not read again while
they are fresh (``Policy.max_age``) and, for a server, while it is in the fleet. ``apply_view``
reconciles the composed fleet with them (``compliance.outside.reconcile``). A run without
fingerprinting therefore keeps the last outside view until it turns stale, rather than dropping
a flag that made a patched host need action.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from compliance.builds import parse_dotted
from compliance.catalog import Catalog
from compliance.evaluate import Policy
from compliance.models import Assessment, Build, Evidence, Failure
from compliance.outside import (
    FindingKind,
    NamespaceFinding,
    OutsideView,
    ViewKind,
    reconcile,
)

FORMAT = "proxylogon-outside/1"
FULL_BUILD, CU_LEVEL = "full_build", "cu_level"  # collectors/fingerprint.py ``Certainty``


@dataclass(frozen=True)
class Seen:
    """One disclosure: ``source`` (x_owa_version, logon_path, exporttool_manifest), the value as
    sent (``raw``, bounded), the request path ``where``; ``build`` with its ``certainty``, or
    None with the ``problem``."""

    source: str
    raw: str
    where: str
    build: Build | None = None
    certainty: str = ""
    problem: str = ""


@dataclass(frozen=True)
class AnswerRecord:
    """The last answer of the OWA chain, or the manifest's: path, HTTP status, seconds."""

    path: str
    status: int
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class TlsRecord:
    version: str
    verified: bool
    problem: str = ""
    certificate_sha256: str = ""


@dataclass(frozen=True)
class EndpointRecord:
    """One endpoint's fingerprint as a snapshot keeps it. ``observed_in``: the snapshot whose
    run read it (None: this snapshot's run)."""

    name: str
    kind: ViewKind
    url: str
    observed_at: datetime
    disclosures: tuple[Seen, ...] = ()
    tls: TlsRecord | None = None
    owa: AnswerRecord | None = None
    ecp: AnswerRecord | None = None
    failure: Failure | None = None
    observed_in: int | None = None

    @property
    def trusted(self) -> bool:
        return self.tls is not None and self.tls.verified


@dataclass(frozen=True)
class OutsideRecord:
    """A snapshot's outside view: every endpoint (read by its run, or carried), and what the
    namespaces showed against the fleet."""

    endpoints: tuple[EndpointRecord, ...]
    namespaces: tuple[NamespaceFinding, ...] = ()


def view_of(record: EndpointRecord) -> OutsideView:
    """The reconciliation's view of ``record``: its distinct builds (none when the certificate
    did not validate: an unauthenticated answer proves nothing), where each was disclosed, and
    why the view is incomplete or untrusted (the failure, else the certificate's problem)."""
    problem = ""
    if record.failure is not None:
        problem = f"{record.failure.reason}: {record.failure.detail}"
    elif not record.trusted:
        problem = "certificate not trusted" + (
            f": {record.tls.problem}" if record.tls and record.tls.problem else "")
    builds = {s.build for s in record.disclosures if s.build is not None} if record.trusted \
        else set()
    return OutsideView(
        name=record.name, kind=record.kind, observed_at=record.observed_at,
        full_builds=tuple(sorted(b for b in builds if b.revision is not None)),
        cu_builds=tuple(sorted(b for b in builds if b.revision is None)),
        trusted=record.trusted, problem=problem,
        where=tuple(f"{s.build} from {s.source} at {s.where}" for s in record.disclosures
                    if s.build is not None))


def carry(run: Sequence[EndpointRecord], previous: OutsideRecord | None, previous_id: int | None,
          members: Iterable[Assessment], as_of: datetime,
          policy: Policy | None = None) -> tuple[EndpointRecord, ...]:
    """The endpoints a snapshot keeps: the run's, then the previous snapshot's (its id
    ``previous_id``) that the run did not read again (same kind and name, case-insensitive),
    read within ``max_age`` of ``as_of``, and for a server still naming one of ``members``."""
    chosen = policy or Policy()
    read = {(r.kind, r.name.casefold()) for r in run}
    names = {n.casefold() for a in members
             for n in (a.observation.host.name, a.observation.host.fqdn or "") if n}
    kept = [replace(r, observed_in=r.observed_in if r.observed_in is not None else previous_id)
            for r in (previous.endpoints if previous else ())
            if (r.kind, r.name.casefold()) not in read and as_of - r.observed_at <= chosen.max_age
            and (r.kind is ViewKind.NAMESPACE or r.name.casefold() in names)]
    return (*run, *kept)


def apply_view(assessments: Sequence[Assessment], endpoints: Sequence[EndpointRecord],
               catalog: Catalog, as_of: datetime,
               policy: Policy | None = None) -> tuple[tuple[Assessment, ...], OutsideRecord | None]:
    """The fleet reconciled with ``endpoints`` (compliance/outside.py: flags, evidence, actions;
    never a status), and the record to store; unchanged and None without endpoints."""
    if not endpoints:
        return tuple(assessments), None
    done = reconcile(assessments, [view_of(r) for r in endpoints], catalog, as_of, policy)
    return done.assessments, OutsideRecord(tuple(endpoints), done.namespaces)


# --- the stored document ----------------------------------------------------------------------

def _build(text: str | None) -> Build | None:
    """A stored build: four parts, or three (the CU level, revision None)."""
    if not text:
        return None
    if text.count(".") == 2:
        return replace(parse_dotted(text + ".0"), revision=None)
    return parse_dotted(text)


def _time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("a stored time carries its offset")
    return moment


def _evidence(e: Evidence) -> dict[str, Any]:
    return {"kind": e.kind, "value": e.value, "source": e.source,
            "observed_at": e.observed_at.isoformat() if e.observed_at else None}


def _answer(a: AnswerRecord | None) -> dict[str, Any] | None:
    return None if a is None else {"path": a.path, "status": a.status, "seconds": a.seconds,
                                   "note": a.note}


def _answer_from(data: Any) -> AnswerRecord | None:
    return None if data is None else AnswerRecord(str(data["path"]), int(data["status"]),
                                                  float(data["seconds"]), str(data["note"]))


def endpoint_to_dict(r: EndpointRecord) -> dict[str, Any]:
    return {
        "name": r.name, "kind": r.kind.value, "url": r.url, "observed_at": r.observed_at.isoformat(),
        "observed_in": r.observed_in,
        "disclosures": [{"source": s.source, "raw": s.raw, "where": s.where,
                         "build": str(s.build) if s.build else None, "certainty": s.certainty,
                         "problem": s.problem} for s in r.disclosures],
        "tls": None if r.tls is None else {
            "version": r.tls.version, "verified": r.tls.verified, "problem": r.tls.problem,
            "certificate_sha256": r.tls.certificate_sha256},
        "owa": _answer(r.owa), "ecp": _answer(r.ecp),
        "failure": None if r.failure is None else {
            "reason": r.failure.reason, "detail": r.failure.detail, "hint": r.failure.hint},
    }


def endpoint_from_dict(data: Mapping[str, Any]) -> EndpointRecord:
    tls, failure = data["tls"], data["failure"]
    return EndpointRecord(
        name=str(data["name"]), kind=ViewKind(data["kind"]), url=str(data["url"]),
        observed_at=_time(data["observed_at"]),
        observed_in=None if data.get("observed_in") is None else int(data["observed_in"]),
        disclosures=tuple(Seen(str(s["source"]), str(s["raw"]), str(s["where"]),
                               _build(s["build"]), str(s["certainty"]), str(s["problem"]))
                          for s in data["disclosures"]),
        tls=None if tls is None else TlsRecord(str(tls["version"]), tls["verified"] is True,
                                               str(tls["problem"]),
                                               str(tls["certificate_sha256"])),
        owa=_answer_from(data["owa"]), ecp=_answer_from(data["ecp"]),
        failure=None if failure is None else Failure(str(failure["reason"]),
                                                     str(failure["detail"]), str(failure["hint"])))


def finding_to_dict(f: NamespaceFinding) -> dict[str, Any]:
    return {"namespace": f.namespace, "kind": f.kind.value,
            "builds": [str(b) for b in f.builds], "seen": [str(b) for b in f.seen],
            "hosts": list(f.hosts), "evidence": [_evidence(e) for e in f.evidence],
            "action": f.action}


def finding_from_dict(data: Mapping[str, Any]) -> NamespaceFinding:
    def builds(values: Any) -> tuple[Build, ...]:
        return tuple(b for b in map(_build, values) if b is not None)

    return NamespaceFinding(
        namespace=str(data["namespace"]), kind=FindingKind(data["kind"]),
        builds=builds(data["builds"]), hosts=tuple(str(h) for h in data["hosts"]),
        evidence=tuple(Evidence(str(e["kind"]), str(e["value"]), str(e["source"]),
                                _time(e["observed_at"]) if e.get("observed_at") else None)
                       for e in data["evidence"]),
        action=str(data["action"]), seen=builds(data["seen"]))


def dumps(record: OutsideRecord) -> str:
    """The stored text: canonical JSON (sorted keys, no spaces), so the digest covers one form."""
    return json.dumps({"format": FORMAT,
                       "endpoints": [endpoint_to_dict(r) for r in record.endpoints],
                       "namespaces": [finding_to_dict(f) for f in record.namespaces]},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> OutsideRecord:
    """``dumps`` reversed; ``ValueError`` for a text no writer of this tool makes."""
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not an outside record ({str(data.get('format'))[:40]!r})")
        return OutsideRecord(tuple(endpoint_from_dict(r) for r in data["endpoints"]),
                             tuple(finding_from_dict(f) for f in data["namespaces"]))
    except (KeyError, TypeError, AttributeError, ArithmeticError, RecursionError) as error:
        raise ValueError(f"not an outside record ({type(error).__name__})") from None

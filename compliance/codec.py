"""Observations and verdicts to and from plain JSON-ready dicts (the stored form)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from compliance.models import (
    AppPoolState,
    Assessment,
    BuildSource,
    Evidence,
    Failure,
    Flag,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    Reason,
    RewriteCondition,
    RewriteRule,
    ServiceState,
    Status,
    Verdict,
    WebConfigFile,
    WebConfigState,
    server_roles,
)
from compliance.traces import Candidate, CandidateFolder, Detection, LogReach, Scan, Traces


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def host_to_dict(host: Host) -> dict[str, Any]:
    """A host's stored form. The published names are written only when there are some, so a
    host without them encodes to the very text stored before they existed (stored digests
    cover that text, and a carried observation may be encoded again)."""
    data: dict[str, Any] = {
        "name": host.name, "fqdn": host.fqdn, "site": host.site, "dag": host.dag,
        "roles": sorted(host.roles) if host.roles is not None else None,
        "ad_build": host.ad_build, "dn": host.dn, "problems": list(host.problems),
    }
    if host.internal_names:
        data["internal_names"] = list(host.internal_names)
    if host.external_names:
        data["external_names"] = list(host.external_names)
    return data


def host_from_dict(data: Mapping[str, Any]) -> Host:
    """``host_to_dict`` reversed; a host stored without published names has none."""
    roles = data.get("roles")
    return Host(
        name=data["name"], fqdn=data.get("fqdn"), site=data.get("site"), dag=data.get("dag"),
        roles=server_roles(roles) if roles is not None else None, ad_build=data.get("ad_build"),
        dn=data.get("dn"), problems=tuple(data.get("problems", [])),
        internal_names=_names(data.get("internal_names")),
        external_names=_names(data.get("external_names")),
    )


def _names(value: Any) -> tuple[str, ...]:
    # A list of texts, as host_to_dict writes it; anything else (a forged row) is no name.
    return tuple(str(n) for n in value) if isinstance(value, list) else ()


def observation_to_dict(obs: Observation) -> dict[str, Any]:
    """An observation's stored form. ``web_configs``, ``rewrite_rule_details`` (under
    ``mitigations``), ``dotnet_release``, ``traces`` and ``install_path`` are written only when
    read, so an observation without them encodes to the very text stored before they existed
    (stored digests cover that text)."""
    mitigations = obs.mitigations
    data: dict[str, Any] = {
        "host": host_to_dict(obs.host),
        "observed_at": _time(obs.observed_at),
        "source": obs.source,
        "exsetup_version": obs.exsetup_version,
        "admin_display_version": obs.admin_display_version,
        "installed_updates": [
            {"kb": u.kb, "name": u.name, "installed_on": u.installed_on}
            for u in obs.installed_updates
        ],
        "mitigations": None if mitigations is None else {
            "rewrite_rules": list(mitigations.rewrite_rules),
            "services": {
                name: {"status": s.status, "start_mode": s.start_mode}
                for name, s in sorted(mitigations.services.items())
            },
            "app_pools": {
                name: {"state": p.state, "auto_start": p.auto_start}
                for name, p in sorted(mitigations.app_pools.items())
            },
            "url_rewrite_module": mitigations.url_rewrite_module,
            "eomt": None if mitigations.eomt is None else dict(sorted(mitigations.eomt.items())),
            "defender_signature_version": mitigations.defender_signature_version,
        },
        "indicators": list(obs.indicators),
        "suspicious_files": list(obs.suspicious_files),
        "probe_errors": list(obs.probe_errors),
        "log_window_days": obs.log_window_days,
        "indicators_truncated": obs.indicators_truncated,
        "failure": None if obs.failure is None else {
            "reason": obs.failure.reason, "detail": obs.failure.detail, "hint": obs.failure.hint,
        },
    }
    if obs.web_configs is not None:
        data["web_configs"] = [{"path": f.path, "state": f.state.value} for f in obs.web_configs]
    if mitigations is not None and mitigations.rewrite_rule_details is not None:
        data["mitigations"]["rewrite_rule_details"] = [
            _rule_to_dict(rule) for rule in mitigations.rewrite_rule_details]
    if obs.dotnet_release is not None:
        data["dotnet_release"] = obs.dotnet_release
    if obs.traces is not None:
        data["traces"] = _traces_to_dict(obs.traces)
    if obs.install_path is not None:
        data["install_path"] = obs.install_path
    return data


def _traces_to_dict(traces: Traces) -> dict[str, Any]:
    """The investigation's traces (compliance/traces.py) as stored: every member, None where
    not read. A scan's ``outcome`` only when not ``unknown``, ``reach_truncated`` only when
    true, a log reach's ``folder`` only when kept, ``candidate_folders`` only when read and
    ``candidate_folders_truncated`` only when true (each added later): traces stored before them
    keep their exact text."""
    data = {
        "scans": None if traces.scans is None else [_scan_to_dict(s) for s in traces.scans],
        "detections": None if traces.detections is None else [
            {"threat": d.threat, "detected_at": _time(d.detected_at), "resources": list(d.resources),
             "remediated": d.remediated, "raw": d.raw}
            for d in traces.detections],
        "defender_available": traces.defender_available,
        "log_reach": None if traces.log_reach is None else [
            _reach_to_dict(r) for r in traces.log_reach],
        "candidates": None if traces.candidates is None else [
            {"path": c.path, "size": c.size, "created": _time(c.created),
             "modified": _time(c.modified)}
            for c in traces.candidates],
        "candidates_truncated": traces.candidates_truncated,
        "fixed_at": _time(traces.fixed_at),
        "scans_truncated": traces.scans_truncated,
        "detections_truncated": traces.detections_truncated,
    }
    if traces.reach_truncated:
        data["reach_truncated"] = True
    if traces.candidate_folders is not None:
        data["candidate_folders"] = [
            {"path": f.path, "present": f.present, "iis_root": f.iis_root}
            for f in traces.candidate_folders]
    if traces.candidate_folders_truncated:
        data["candidate_folders_truncated"] = True
    return data


def _reach_to_dict(reach: LogReach) -> dict[str, Any]:
    data: dict[str, Any] = {"log": reach.log, "oldest": _time(reach.oldest)}
    if reach.folder is not None:
        data["folder"] = reach.folder
    return data


def _scan_to_dict(scan: Scan) -> dict[str, Any]:
    data = {"started_at": _time(scan.started_at), "kind": scan.kind, "version": scan.version,
            "finished": scan.finished, "detections": list(scan.detections), "raw": list(scan.raw)}
    if scan.outcome != "unknown":
        data["outcome"] = scan.outcome
    return data


def _stored_time(value: Any) -> datetime | None:
    # A time as _time writes it (ISO 8601 with its offset); anything else (a forged row) None.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _texts(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return tuple(value)


def _optional(value: Any, kind: type) -> tuple[bool, Any]:
    """(well-formed, value): None, or a value of ``kind`` (a bool is no int)."""
    if value is None:
        return True, None
    if kind is int and isinstance(value, bool):
        return False, None
    return isinstance(value, kind), value


def _entries(value: Any, read: Any) -> tuple[Any, ...] | None:
    """A stored list of traces records: absent or not a list is None (not read); an entry
    ``read`` refuses (a forged row) is left out."""
    if not isinstance(value, list):
        return None
    return tuple(item for item in (read(entry) for entry in value) if item is not None)


SCAN_OUTCOMES = ("found", "clean", "unknown")


def _scan_from_dict(entry: Any) -> Scan | None:
    if not isinstance(entry, Mapping):
        return None
    detections, raw = _texts(entry.get("detections")), _texts(entry.get("raw"))
    version_ok, version = _optional(entry.get("version"), str)
    kind, finished = entry.get("kind"), entry.get("finished")
    if detections is None or raw is None or not version_ok or not isinstance(kind, str) \
            or not isinstance(finished, bool):
        return None
    # Absent (stored before it) or forged: unknown, never clean.
    stored = entry.get("outcome")
    outcome = stored if isinstance(stored, str) and stored in SCAN_OUTCOMES else "unknown"
    return Scan(started_at=_stored_time(entry.get("started_at")), kind=kind, version=version,
                finished=finished, detections=detections, raw=raw, outcome=outcome)


def _detection_from_dict(entry: Any) -> Detection | None:
    if not isinstance(entry, Mapping):
        return None
    resources = _texts(entry.get("resources"))
    remediated_ok, remediated = _optional(entry.get("remediated"), bool)
    threat, raw = entry.get("threat"), entry.get("raw")
    if resources is None or not remediated_ok or not isinstance(threat, str) \
            or not isinstance(raw, str):
        return None
    return Detection(threat=threat, detected_at=_stored_time(entry.get("detected_at")),
                     resources=resources, remediated=remediated, raw=raw)


def _reach_from_dict(entry: Any) -> LogReach | None:
    # A folder that is not a text (a forged row) is none: the entry then names no folder, so
    # it covers no folder the advisory requires.
    if not isinstance(entry, Mapping) or not isinstance(entry.get("log"), str):
        return None
    folder = entry.get("folder")
    return LogReach(entry["log"], _stored_time(entry.get("oldest")),
                    folder if isinstance(folder, str) else None)


def _candidate_from_dict(entry: Any) -> Candidate | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        return None
    size_ok, size = _optional(entry.get("size"), int)
    if not size_ok:
        return None
    return Candidate(path=entry["path"], size=size, created=_stored_time(entry.get("created")),
                     modified=_stored_time(entry.get("modified")))


def _candidate_folder_from_dict(entry: Any) -> CandidateFolder | None:
    # A path that is not a text (a forged row) leaves the entry out; a flag that is not true is
    # false: a folder is there, or the IIS root, only when stored so.
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        return None
    return CandidateFolder(entry["path"], entry.get("present") is True, entry.get("iis_root") is True)


def _traces(value: Any) -> Traces | None:
    """``traces`` as stored: absent (an observation stored before they were read) or not an
    object is None; a member that is not as ``_traces_to_dict`` writes it is not read (None), an
    entry that is not is left out, a flag that is not true is false."""
    if not isinstance(value, Mapping):
        return None
    available_ok, available = _optional(value.get("defender_available"), bool)
    return Traces(
        scans=_entries(value.get("scans"), _scan_from_dict),
        detections=_entries(value.get("detections"), _detection_from_dict),
        defender_available=available if available_ok else None,
        log_reach=_entries(value.get("log_reach"), _reach_from_dict),
        candidates=_entries(value.get("candidates"), _candidate_from_dict),
        candidates_truncated=value.get("candidates_truncated") is True,
        fixed_at=_stored_time(value.get("fixed_at")),
        scans_truncated=value.get("scans_truncated") is True,
        detections_truncated=value.get("detections_truncated") is True,
        reach_truncated=value.get("reach_truncated") is True,
        candidate_folders=_entries(value.get("candidate_folders"), _candidate_folder_from_dict),
        candidate_folders_truncated=value.get("candidate_folders_truncated") is True,
    )


def _rule_to_dict(rule: RewriteRule) -> dict[str, Any]:
    # The fields read since (match_negate, pattern_syntax, stop_processing, truncated, a
    # condition's ignore_case) only when read: a rule stored before keeps its exact text.
    data: dict[str, Any] = {
        "name": rule.name, "site": rule.site, "match_url": rule.match_url, "action": rule.action,
        "conditions": [_condition_to_dict(c) for c in rule.conditions],
        "logical_grouping": rule.logical_grouping, "enabled": rule.enabled,
    }
    for key in _RULE_OPTIONAL:
        if (value := getattr(rule, key)) is not None:
            data[key] = value
    return data


def _condition_to_dict(condition: RewriteCondition) -> dict[str, Any]:
    data: dict[str, Any] = {"input": condition.input, "pattern": condition.pattern,
                            "negate": condition.negate}
    if condition.ignore_case is not None:
        data["ignore_case"] = condition.ignore_case
    return data


def _rule_details(value: Any) -> tuple[RewriteRule, ...] | None:
    """``rewrite_rule_details`` as stored: absent (not read) is None; an entry that is not one
    as ``_rule_to_dict`` writes it (a forged row) is left out."""
    if not isinstance(value, list):
        return None
    return tuple(rule for rule in (_rule_from_dict(item) for item in value) if rule is not None)


_RULE_TEXTS = ("name", "site", "match_url", "action", "logical_grouping")
# Optional (absent: not read, None), with the type each holds when present.
_RULE_OPTIONAL: dict[str, type] = {"match_negate": bool, "pattern_syntax": str,
                                   "stop_processing": bool, "truncated": bool}


def _rule_from_dict(item: Any) -> RewriteRule | None:
    if not isinstance(item, Mapping):
        return None
    texts = {key: item.get(key) for key in _RULE_TEXTS}
    conditions = item.get("conditions")
    enabled = item.get("enabled")
    if not all(isinstance(text, str) for text in texts.values()) \
            or not isinstance(conditions, list) or not isinstance(enabled, bool):
        return None
    optional = {key: item.get(key) for key in _RULE_OPTIONAL}
    if not all(value is None or isinstance(value, _RULE_OPTIONAL[key])
               for key, value in optional.items()):
        return None
    read = []
    for condition in conditions:
        if not isinstance(condition, Mapping):
            return None
        input_, pattern, negate, ignore_case = (
            condition.get(key) for key in ("input", "pattern", "negate", "ignore_case"))
        if not (isinstance(input_, str) and isinstance(pattern, str) and isinstance(negate, bool)
                and (ignore_case is None or isinstance(ignore_case, bool))):
            return None
        read.append(RewriteCondition(input_, pattern, negate, ignore_case))
    return RewriteRule(
        name=str(texts["name"]), site=str(texts["site"]), match_url=str(texts["match_url"]),
        action=str(texts["action"]), conditions=tuple(read),
        logical_grouping=str(texts["logical_grouping"]), enabled=enabled,
        match_negate=optional["match_negate"], pattern_syntax=optional["pattern_syntax"],
        stop_processing=optional["stop_processing"], truncated=optional["truncated"])


def _dotnet_release(value: Any) -> int | None:
    # A whole number as observation_to_dict writes it; anything else (a forged row) is not read.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _web_configs(value: Any) -> tuple[WebConfigFile, ...] | None:
    """``web_configs`` as stored: absent (not checked) is None; a state no writer of this
    tool makes reads as unreadable (not known to be fine), an entry that is not one is left out."""
    if not isinstance(value, list):
        return None
    found = []
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("path"), str):
            try:
                state = WebConfigState(str(item.get("state")))
            except ValueError:
                state = WebConfigState.UNREADABLE
            found.append(WebConfigFile(item["path"], state))
    return tuple(found)


SUSPICIOUS_PREFIX = "suspicious file: "


def observation_from_dict(data: Mapping[str, Any]) -> Observation:
    mit = data.get("mitigations")
    failure = data.get("failure")
    return Observation(
        host=host_from_dict(data["host"]),
        observed_at=_parse_time(data.get("observed_at")),
        source=data.get("source", ""),
        exsetup_version=data.get("exsetup_version"),
        admin_display_version=data.get("admin_display_version"),
        installed_updates=tuple(
            InstalledUpdate(u["kb"], u.get("name", ""), u.get("installed_on"))
            for u in data.get("installed_updates", [])
        ),
        mitigations=None if mit is None else MitigationState(
            rewrite_rules=tuple(mit.get("rewrite_rules", [])),
            services={n: ServiceState(s.get("status"), s.get("start_mode"))
                      for n, s in mit.get("services", {}).items()},
            app_pools={n: AppPoolState(p.get("state"), p.get("auto_start"))
                       for n, p in mit.get("app_pools", {}).items()},
            url_rewrite_module=mit.get("url_rewrite_module"),
            eomt=None if mit.get("eomt") is None else dict(mit["eomt"]),
            defender_signature_version=mit.get("defender_signature_version"),
            rewrite_rule_details=_rule_details(mit.get("rewrite_rule_details")),
        ),
        # Observations stored before suspicious files had their own field kept them among
        # the indicators, marked by this prefix: they are read back apart, and judged anew.
        indicators=tuple(i for i in data.get("indicators", [])
                         if not str(i).startswith(SUSPICIOUS_PREFIX)),
        suspicious_files=tuple(data.get("suspicious_files", [])) + tuple(
            str(i)[len(SUSPICIOUS_PREFIX):] for i in data.get("indicators", [])
            if str(i).startswith(SUSPICIOUS_PREFIX)),
        failure=None if failure is None else Failure(
            failure["reason"], failure["detail"], failure.get("hint", "")
        ),
        probe_errors=tuple(data.get("probe_errors", [])),
        log_window_days=data.get("log_window_days"),
        indicators_truncated=bool(data.get("indicators_truncated", False)),
        web_configs=_web_configs(data.get("web_configs")),
        dotnet_release=_dotnet_release(data.get("dotnet_release")),
        traces=_traces(data.get("traces")),
        # A text as written; anything else (a forged row) is not read.
        install_path=install if isinstance(install := data.get("install_path"), str) else None,
    )


def verdict_to_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "host": verdict.host,
        "status": verdict.status.value,
        "reason": verdict.reason,
        "action": verdict.action,
        "as_of": _time(verdict.as_of),
        "product": verdict.product,
        "cu": verdict.cu,
        "build": verdict.build,
        "build_source": verdict.build_source.value if verdict.build_source else None,
        "release_name": verdict.release_name,
        "known": verdict.known,
        "cves_open": list(verdict.cves_open),
        "mitigations": list(verdict.mitigations),
        "flags": [flag.value for flag in verdict.flags],
        "evidence": [
            {"kind": e.kind, "value": e.value, "source": e.source,
             "observed_at": _time(e.observed_at)}
            for e in verdict.evidence
        ],
        "unknown_reason": verdict.unknown_reason.value if verdict.unknown_reason else None,
        "advisory": verdict.advisory,
    }


def verdict_from_dict(data: Mapping[str, Any]) -> Verdict:
    as_of = _parse_time(data["as_of"])
    assert as_of is not None
    return Verdict(
        host=data["host"], status=Status(data["status"]), reason=data["reason"],
        action=data["action"], as_of=as_of, product=data.get("product"), cu=data.get("cu"),
        build=data.get("build"),
        build_source=BuildSource(data["build_source"]) if data.get("build_source") else None,
        release_name=data.get("release_name"), known=bool(data.get("known")),
        cves_open=tuple(data.get("cves_open", [])), mitigations=tuple(data.get("mitigations", [])),
        flags=tuple(Flag(f) for f in data.get("flags", [])),
        evidence=tuple(
            Evidence(e["kind"], e["value"], e["source"], _parse_time(e.get("observed_at")))
            for e in data.get("evidence", [])
        ),
        unknown_reason=Reason(data["unknown_reason"]) if data.get("unknown_reason") else None,
        advisory=data.get("advisory", ""),
    )


def stored_verdict_to_dict(assessment: Assessment) -> dict[str, Any]:
    """A result row's verdict JSON: the snapshot's own advisory's verdict, and under
    ``others`` the other advisories' (format 6; the key only when there are some, so a row
    judged by one advisory encodes exactly as before). An other verdict's evidence line that
    is the own verdict's line at index ``i`` is stored as ``i``: most lines (the build, the
    catalogue, the installed updates, the probe's errors) are the same for every advisory."""
    data = verdict_to_dict(assessment.verdict)
    if assessment.others:
        shared: dict[tuple[Any, ...], int] = {}
        for index, line in enumerate(data["evidence"]):
            shared.setdefault(tuple(line.values()), index)
        others = []
        for other in assessment.others:
            encoded = verdict_to_dict(other)
            encoded["evidence"] = [shared.get(tuple(line.values()), line)
                                   for line in encoded["evidence"]]
            others.append(encoded)
        data["others"] = others
    return data


def others_from_dict(data: Mapping[str, Any]) -> tuple[Verdict, ...]:
    """The other advisories' verdicts of a row's verdict JSON (() before format 6), their
    shared evidence lines read from the own verdict's; ``ValueError`` for an index no writer
    of this tool makes."""
    own = data.get("evidence") or []
    verdicts = []
    for other in data.get("others") or ():
        lines = []
        for line in other.get("evidence", []):
            if isinstance(line, int) and not isinstance(line, bool):
                if not 0 <= line < len(own):
                    raise ValueError(f"evidence index {line} out of range")
                line = own[line]
            lines.append(line)
        verdicts.append(verdict_from_dict({**other, "evidence": lines}))
    return tuple(verdicts)


def stored_assessment(observation: Mapping[str, Any], verdict: Mapping[str, Any],
                      observed_in: int | None = None,
                      scopes: tuple[str, ...] = ()) -> Assessment:
    """An assessment from a result row's decoded observation and verdict JSON (with the
    other advisories' verdicts, when the row holds them)."""
    return Assessment(observation_from_dict(observation), verdict_from_dict(verdict),
                      observed_in=observed_in, scopes=scopes, others=others_from_dict(verdict))

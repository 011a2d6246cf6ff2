"""Patched is not clean (issue 21): whether anyone looked for a compromise. ``judge``.

A fix does not remove a back door planted before it, so beside its patch status a server gets
one ``InvestigationState`` from what the probe read (compliance/traces.py), judged by the
advisory's triage data (compliance/triage.py). Pure: the clock is ``now``.

**The window.** From the advisory's ``exposure.start`` (the earliest exploitation publicly
reported) to the fix. The fix time is the earliest of ``Traces.fixed_at`` (ExSetup.exe's last
write) and the caller's ``fixed_at`` (a time the server was observed with the fix installed,
e.g. the first snapshot that graded it patched from its own build). Both can only be at or
after the moment the fix arrived (a later update rewrites ExSetup.exe, moving its time later),
so the earliest is the tightest bound that still covers the whole vulnerable period, and a scan
after it is after the fix. A fix time before the window's start or after ``now`` is not
credible and counts as unknown. A server not fixed has an open window (it is still exposed).

**Rules, in order** (fail closed: only a fully evidenced server is ``clean``):

1. ``indicators_found``, whatever the patch status, when any of these is found:
   - a hit of the CVE checks (``Observation.indicators``, passed as ``indicators``);
   - a Defender or MSERT detection of a threat family the advisory names, whenever dated;
   - a detection of any other name dated at or after the window's start, or undated. The
     named list cannot be complete (Microsoft's names vary by prefix and variant, and what
     attackers ran after getting in, e.g. miners and ransomware, carries other names), and on
     an Exchange server anything detected since exploitation began is a reason to isolate and
     look. Before the window's start it is evidence only. Remediated or not: removing one file
     does not show nothing else was left;
   - a web-shell candidate (an .aspx/.ashx file the probe lists) created or modified inside the
     window, both ends included, or with a time not read (a copied file keeps its old modified
     time, so neither time bounds the other). One outside the window is evidence only, and so
     is a file of the standard install (``triage.standard_files``, e.g. OWA's logon.aspx):
     the update itself rewrites those inside the window, so their times cannot tell an update
     from a change, and their content is what the full scan required for ``clean`` reads. On
     a server the advisory does not affect there is no window: candidates are evidence only
     there (hits and detections still count).
2. A server the advisory does not affect (status ``not_applicable``): ``not_applicable``.
3. A server not fixed (``vulnerable``, ``mitigated``, ``unknown``) has no "after the fix":
   ``not_investigated``, next action "patch first" (an unknown status: establish it first).
4. A fixed server (``patched``) is ``not_investigated`` when nothing was read (no traces: an
   older probe or a failed collection, which the evidence names), when the advisory defines no
   triage, when the fix time is unknown, or when no scan started after the fix time (strictly:
   a scan in the same second as the fix may have run before the update finished).
5. It is ``incomplete`` when a scan after the fix exists but none is a finished full scan, a
   scan's start could not be read, msert.log or Defender's history could not be read (Defender
   present or unknown), a log the advisory's checks read (``triage.logs``, only those of the
   CVEs affecting the server's product) was not found or begins after the window's start
   (beginning exactly at the start covers it), the log reach or the web-shell folders were not
   read, or the probe cut the list of candidates.
6. Otherwise ``clean``: a finished full scan after the fix with no detection, every log
   reaching back to the window's start, no candidate in the window.

**The directive** (``triage``): the full scan after the fix, then ``followup_scans`` more,
follow-up k met by a finished full scan in the k-th interval after the first one (its end
included), its ``due`` the interval's end: ``met``, ``pending`` (not yet due), ``missed`` (its
interval passed with none), ``due`` (the first scan, outstanding since the fix). It never
changes the state: a server can be clean with a weekly scan missed, which its next action says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from compliance.advisory import Advisory
from compliance.models import Failure, Observation, Status, Verdict
from compliance.traces import Candidate, LogReach, Scan, Traces

FULL = "full"  # Scan.kind of a full scan


class InvestigationState(StrEnum):
    NOT_INVESTIGATED = "not_investigated"
    INCOMPLETE = "incomplete"
    CLEAN = "clean"
    INDICATORS_FOUND = "indicators_found"
    NOT_APPLICABLE = "not_applicable"  # the advisory does not affect the server


class StepState(StrEnum):
    MET = "met"
    DUE = "due"  # outstanding: its time has come and no scan meets it yet
    PENDING = "pending"  # not due yet, or waiting for the fix or the first scan
    MISSED = "missed"  # its interval passed without a scan


@dataclass(frozen=True)
class Window:
    """The exposure window: ``end`` is the fix time (None: not fixed, or not known), and
    ``end_source`` says where it was read."""

    start: datetime
    end: datetime | None
    end_source: str = ""


@dataclass(frozen=True)
class DirectiveStep:
    name: str
    due: datetime | None
    state: StepState
    met_by: datetime | None = None  # the start of the scan that met it


@dataclass(frozen=True)
class Directive:
    name: str
    source: str
    steps: tuple[DirectiveStep, ...]

    @property
    def met(self) -> bool:
        return all(step.state is StepState.MET for step in self.steps)


@dataclass(frozen=True)
class Investigation:
    state: InvestigationState
    window: Window | None
    evidence: tuple[str, ...]
    next_action: str
    directive: Directive | None = None


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (the traces' times are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _at(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else f"{_utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def fix_time(traces: Traces | None, fixed_at: datetime | None) -> tuple[datetime | None, str]:
    """The fix time (the earliest of the two readings, module docstring) and where it is read."""
    readings = [(_utc(moment), source) for moment, source in (
        (traces.fixed_at if traces else None, "ExSetup.exe's last write"),
        (fixed_at, "the observed fix time")) if moment is not None]
    if not readings:
        return None, ""
    end = min(moment for moment, _ in readings)
    return end, " and ".join(source for moment, source in readings if moment == end)


class _Judge:
    def __init__(self, traces: Traces | None, advisory: Advisory, now: datetime,
                 status: Status, fixed_at: datetime | None, product: str | None):
        self.traces = traces
        self.advisory = advisory
        self.as_of = _utc(now)
        self.status = status
        self.product = product
        self.evidence: list[str] = []
        self.found: list[str] = []  # next actions of what was found, in order
        self.gaps: list[str] = []  # next actions of what keeps the picture incomplete
        self.start = advisory.exposure.start if advisory.exposure else None
        self.fixed = status is Status.PATCHED
        end, self.end_source = fix_time(traces, fixed_at) if self.fixed else (None, "")
        if end is not None and ((self.start and end < self.start) or end > self.as_of):
            self.evidence.append(f"The fix time {_at(end)} ({self.end_source}) is before the "
                                 "exposure's start or after the collection: not credible")
            end = None
        self.end = end
        directive = advisory.triage.directive if advisory.triage else "the directive"
        self.isolate = f"isolate and investigate ({directive})"

    # -- what was found --------------------------------------------------------------------

    def in_window(self, moment: datetime) -> bool:
        moment = _utc(moment)
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment <= self.end)

    def threat(self, threat: str, when: datetime | None, reader: str) -> None:
        family = self.advisory.family_of(threat)
        said = f"{reader}: {threat} on {_at(when)}"
        if family is not None:
            self.evidence.append(f"{said}, a threat named for these attacks ({family.name}; "
                                 f"{family.source})")
        elif when is None or self.start is None or _utc(when) >= self.start:
            self.evidence.append(f"{said}, from the exposure's start on: found (not a family "
                                 "named for these attacks, but something was on the server)")
        else:
            self.evidence.append(f"{said}, before the exposure window: evidence only")
            return
        self.found.append(f"A detection of {threat} ({reader}) on {_at(when)}: {self.isolate}")

    def candidate(self, candidate: Candidate, window: bool) -> None:
        times = [moment for moment in (candidate.created, candidate.modified) if moment]
        said = (f"Possible web shell {candidate.path} (created {_at(candidate.created)}, "
                f"modified {_at(candidate.modified)}, {candidate.size} bytes)")
        inside = [moment for moment in times if self.in_window(moment)]
        standard = self.advisory.triage.standard(candidate.path) if self.advisory.triage else None
        if not window:
            self.evidence.append(f"{said}: evidence only ({self.advisory.short} does not "
                                 "affect the server)")
        elif standard is not None:
            self.evidence.append(f"{said}: a file of the standard install ({standard.source}): "
                                 "evidence only, as updates rewrite it; the full scan reads "
                                 "its content")
        elif inside or len(times) < 2:
            # A time not read may be inside: a copied file keeps its old modified time, so
            # neither time bounds the other.
            when = f"written {_at(inside[0])}" if inside else "a time of it was not read"
            self.evidence.append(f"{said}: inside the exposure window")
            self.found.append(f"A possible web shell {candidate.path}, {when}, inside the "
                              f"exposure window: {self.isolate}")
        else:
            self.evidence.append(f"{said}: outside the exposure window, evidence only")

    def look(self, indicators: Sequence[str], failure: Failure | None) -> None:
        for hit in indicators:
            self.evidence.append(f"CVE check hit: {hit}")
            self.found.append(f"The CVE checks found {hit}: {self.isolate}")
        traces = self.traces
        if traces is None:
            self.evidence.append(
                f"No investigation traces: the collection failed ({failure.reason}: "
                f"{failure.detail})" if failure else
                "No investigation traces: the probe did not read them (a probe before "
                "contract 1.3, or an observation stored before it)")
            return
        for detection in traces.detections or ():
            self.threat(detection.threat, detection.detected_at, "Defender")
            if detection.resources or detection.remediated is not None:
                remediated = {None: "not known", True: "yes", False: "no"}[detection.remediated]
                self.evidence.append(f"Defender: {detection.threat}: resources "
                                     f"{', '.join(detection.resources) or 'none listed'}, "
                                     f"remediated: {remediated}")
        for scan in traces.scans or ():
            for name in scan.detections:
                self.threat(name, scan.started_at, "MSERT")
        window = self.status is not Status.NOT_APPLICABLE
        for candidate in traces.candidates or ():
            self.candidate(candidate, window)

    # -- a fixed server ----------------------------------------------------------------------

    def after_fix(self, scan: Scan) -> bool:
        started = scan.started_at
        return (started is not None and self.end is not None
                and self.end < _utc(started) <= self.as_of)

    def where(self, scan: Scan) -> str:
        if scan.started_at is None:
            return "start not read"
        started = _utc(scan.started_at)
        if started > self.as_of:
            return "after the collection: not credible"
        if not self.fixed:
            return "the server is not fixed"
        if self.end is None:
            return "the fix time is not known"
        return "after the fix" if started > self.end else "before the fix"

    def scans(self, command: str) -> bool:
        """Notes the scans; True when one started after the fix (or one's start is unknown)."""
        assert self.traces is not None
        scans = self.traces.scans
        if scans is None:
            self.gaps.append(f"msert.log could not be read: run {command} if it never ran, "
                             "and re-collect")
            return True
        for scan in scans:
            self.evidence.append(
                f"MSERT scan started {_at(scan.started_at)} ({self.where(scan)}): {scan.kind}, "
                f"{'finished' if scan.finished else 'not finished'}, version "
                f"{scan.version or 'unknown'}, {len(scan.detections)} detection(s)")
        after = [scan for scan in scans if self.after_fix(scan)]
        if not after:
            if any(scan.started_at is None for scan in scans):
                self.gaps.append(f"A scan's start could not be read, so none is known to follow "
                                 f"the fix: run {command} and re-collect")
                return True
            return False
        if not any(scan.kind == FULL and scan.finished for scan in after):
            last = max(after, key=lambda scan: _utc(scan.started_at or self.as_of))
            self.gaps.append(
                f"The scan after the fix on {_at(last.started_at)} was {last.kind}"
                f"{'' if last.finished else ' and did not finish'}: run {command} and "
                "re-collect")
        return True

    def logs(self) -> None:
        assert self.traces is not None and self.advisory.triage and self.start
        reach = self.traces.log_reach
        if reach is None:
            self.gaps.append("How far back the logs reach was not read: re-collect")
            return
        rule = self.advisory.rule(self.product)
        for need in self.advisory.triage.logs:
            if rule is not None and need.cve not in rule.cves:
                continue
            entries = [entry for entry in reach if entry.log == need.log]
            oldest = _latest(entries)
            if oldest is None:
                self.evidence.append(f"Log {need.log} (for {need.cve}): not found")
                self.gaps.append(f"The {need.log} log was not found: the window from "
                                 f"{_at(self.start)} cannot be checked here; look at the IIS "
                                 "logs and backups")
            elif oldest > self.start:
                self.evidence.append(f"Log {need.log} (for {need.cve}) reaches back to "
                                     f"{_at(oldest)}: after the window's start")
                self.gaps.append(f"The {need.log} log reaches back only to {_at(oldest)}: the "
                                 f"window from {_at(self.start)} cannot be checked here; look "
                                 "at the IIS logs and backups")
            else:
                self.evidence.append(f"Log {need.log} (for {need.cve}) reaches back to "
                                     f"{_at(oldest)}: covers the window")

    def parts(self) -> None:
        traces = self.traces
        assert traces is not None
        if traces.candidates is None:
            self.gaps.append("The web-shell folders (OWA/ECP front end, IIS root) were not "
                             "read: re-collect")
        elif traces.candidates_truncated:
            self.gaps.append("The probe cut the list of .aspx/.ashx files at its cap: check the "
                             "OWA/ECP front-end folders and the IIS root by hand")
        if traces.defender_available is False:
            self.evidence.append("Defender is not available on the server (its cmdlets are "
                                 "absent or disabled): the Safety Scanner's scans stand alone")
        elif traces.detections is None:
            self.gaps.append("Defender's detection history could not be read: re-collect, or "
                             "read it on the server (Get-MpThreatDetection)")

    # -- the directive -------------------------------------------------------------------------

    def directive(self) -> Directive | None:
        triage = self.advisory.triage
        if triage is None:
            return None
        first_name = f"full scan after the fix ({triage.scan_command})"
        count = triage.followup_scans
        every = ("weekly" if triage.followup_interval_days == 7 else
                 f"every {triage.followup_interval_days} days,")
        names = [f"{every} scan {k} of {count}" for k in range(1, count + 1)]
        good = sorted(_utc(scan.started_at) for scan in
                      (self.traces.scans or () if self.traces else ())
                      if scan.started_at is not None and scan.kind == FULL and scan.finished
                      and self.after_fix(scan))
        if not self.fixed or self.end is None or not good:
            first = DirectiveStep(first_name, self.end,
                                  StepState.DUE if self.fixed else StepState.PENDING)
            rest = [DirectiveStep(name, None, StepState.PENDING) for name in names]
            return Directive(triage.directive, triage.source, (first, *rest))
        steps = [DirectiveStep(first_name, self.end, StepState.MET, good[0])]
        interval = timedelta(days=triage.followup_interval_days)
        for k, name in enumerate(names, start=1):
            begins, due = good[0] + (k - 1) * interval, good[0] + k * interval
            met_by = next((moment for moment in good if begins < moment <= due), None)
            state = (StepState.MET if met_by else
                     StepState.PENDING if self.as_of <= due else StepState.MISSED)
            steps.append(DirectiveStep(name, due, state, met_by))
        return Directive(triage.directive, triage.source, tuple(steps))


def _latest(entries: Sequence[LogReach]) -> datetime | None:
    """How far back a log reaches; of several readings of one log, the one that reaches back
    least (any unread one: not found)."""
    if not entries or any(entry.oldest is None for entry in entries):
        return None
    return max(_utc(entry.oldest) for entry in entries if entry.oldest is not None)


def _clean_action(directive: Directive | None, command: str) -> str:
    if directive is None:
        return "None"
    missed = [step for step in directive.steps if step.state is StepState.MISSED]
    pending = [step for step in directive.steps if step.state is StepState.PENDING]
    parts = [f"{step.name} (due {_at(step.due)}) was missed" for step in missed]
    if pending:
        parts.append(f"the next scan ({command}) is due by {_at(pending[0].due)}")
    if not parts:
        return f"None: every scan {directive.name} asks for is recorded"
    return f"None for a compromise so far; {'; '.join(parts)} ({directive.name})"


def judge(traces: Traces | None, advisory: Advisory, now: datetime, *, status: Status,
          fixed_at: datetime | None = None, indicators: Sequence[str] = (),
          failure: Failure | None = None, product: str | None = None) -> Investigation:
    """The investigation state of one server (rules: module docstring). ``status``: its verdict
    for ``advisory``; ``fixed_at``: when it was observed fixed (None: not known);
    ``indicators``: its CVE checks' hits; ``failure``: why its collection failed, if it did;
    ``product``: its product line (which CVEs, hence which logs, concern it; None: all)."""
    judge_ = _Judge(traces, advisory, now, status, fixed_at, product)
    judge_.look(indicators, failure)
    exposure, triage = advisory.exposure, advisory.triage
    command = triage.scan_command if triage else "a full malware scan"
    window = None
    if exposure is not None:
        window = Window(exposure.start, judge_.end, judge_.end_source)
        end = (f"{_at(window.end)} (the fix: {window.end_source})" if window.end else
               "the fix, whose time is not known" if status is Status.PATCHED else
               "now (not fixed)")
        judge_.evidence.insert(0, f"Exposure window: from {_at(window.start)} to {end}; its "
                               f"start: {exposure.source}")
    scanned = False
    if traces is not None and triage is not None and exposure is not None:
        # What was read is evidence whatever the state; the gaps decide only a fixed server's.
        scanned = judge_.scans(command)
        judge_.logs()
        judge_.parts()
        judge_.evidence.extend(f"Not shown: {gap}" for gap in judge_.gaps)
    directive = judge_.directive()

    def result(state: InvestigationState, action: str) -> Investigation:
        return Investigation(state, window, tuple(judge_.evidence), action, directive)

    if judge_.found:
        return result(InvestigationState.INDICATORS_FOUND, judge_.found[0])
    if status is Status.NOT_APPLICABLE:
        return result(InvestigationState.NOT_APPLICABLE,
                      f"None: {advisory.short} does not affect this server")
    if status is not Status.PATCHED:
        first = ("Establish the patch status first (it is unknown)" if status is Status.UNKNOWN
                 else "Patch first (interim mitigations are not a fix)"
                 if status is Status.MITIGATED else "Patch first")
        return result(InvestigationState.NOT_INVESTIGATED,
                      f"{first}; then run {command} and re-collect")
    if traces is None:
        return result(InvestigationState.NOT_INVESTIGATED,
                      f"Fix the collection and re-collect ({failure.hint or failure.reason})"
                      if failure else "Update the probe (contract 1.3 or later) and re-collect")
    if triage is None or exposure is None:
        return result(InvestigationState.NOT_INVESTIGATED,
                      f"None possible here: the {advisory.short} data define no exposure window "
                      "or triage policy")
    if all(part is None for part in (traces.scans, traces.detections, traces.log_reach,
                                     traces.candidates)):
        return result(InvestigationState.NOT_INVESTIGATED,
                      "The probe read none of the investigation traces (see its errors): "
                      "re-collect")
    if judge_.end is None:
        return result(InvestigationState.NOT_INVESTIGATED,
                      "The time of the fix is not known (ExSetup.exe's last write was not "
                      "read, or is not credible): re-collect, so a scan can be shown to follow "
                      f"it; run {command}")
    if not scanned:
        return result(InvestigationState.NOT_INVESTIGATED,
                      f"Run {command} (a full Safety Scanner scan) and re-collect: no scan "
                      f"after the fix on {_at(judge_.end)} is recorded")
    if judge_.gaps:
        return result(InvestigationState.INCOMPLETE, judge_.gaps[0])
    return result(InvestigationState.CLEAN, _clean_action(directive, command))


def judge_observation(observation: Observation, verdict: Verdict, advisory: Advisory,
                      now: datetime, fixed_at: datetime | None = None) -> Investigation:
    """``judge`` for one host of a snapshot: its observation's traces, CVE check hits and
    failure, and its verdict's status and product for ``advisory`` (``ValueError`` when the
    verdict names another advisory)."""
    if verdict.advisory and verdict.advisory_id != advisory.id:
        raise ValueError(f"the verdict is for {verdict.advisory_id}, not {advisory.id}")
    return judge(observation.traces, advisory, now, status=verdict.status, fixed_at=fixed_at,
                 indicators=observation.indicators, failure=observation.failure,
                 product=verdict.product)

"""Patched is not clean (issue 21): whether anyone looked for a compromise. ``judge``.

A fix does not remove a back door planted before it, so beside its patch status a server gets
one ``InvestigationState`` from what the probe read (compliance/traces.py), judged by the
advisory's triage data (compliance/triage.py). Pure: the clock is ``now``.

**The window.** From the advisory's ``exposure.start`` (the earliest exploitation publicly
reported) to the fix. The fix time is an UPPER bound of the moment the fix was installed, the
earliest of: the end, in the latest time zone (UTC-12: the next day 12:00 UTC), of the
``installed_on`` day of each installed-update record of the fix (``fix_updates``: the KB the
verdict's evidence names as the fix, or one the advisory's fix rows list, except a record whose
name states another product or CU than the verdict's), and the caller's ``fixed_at`` (a time
the server was observed with the fix, e.g. the first snapshot that graded it patched). A file
time never ends the window: ExSetup.exe's last write (``Traces.fixed_at``) may be its package's
time, weeks before the install, so it is shown as evidence only. A reading before the window's
start, before the advisory's publication or before the fixing update's install day (each from
its first instant in any time zone, UTC+14), or after ``now``, is not credible and is left out;
none left: the fix time is unknown. A
server not fixed has an open window (it is still exposed).

**Rules, in order** (fail closed: only a fully evidenced server is ``clean``):

1. ``indicators_found``, whatever the patch status, when any of these is found:
   - a hit of the CVE checks (``Observation.indicators``, passed as ``indicators``);
   - a Defender or MSERT detection of a threat family the advisory names, whenever dated. A
     name is normalised first (NFKC, Unicode format characters removed, trimmed:
     ``triage.normalise_threat``); one still not printable ASCII after that (a look-alike or a
     control character: an attack on the matcher) and a record without a name
     (``triage.nameless``) count as named families;
   - a detection of any other name dated at or after the window's start, or undated. The
     named list cannot be complete (Microsoft's names vary by prefix and variant, and what
     attackers ran after getting in, e.g. miners and ransomware, carries other names), and on
     an Exchange server anything detected since exploitation began is a reason to isolate and
     look. Before the window's start it is evidence only. Remediated or not: removing one file
     does not show nothing else was left;
   - a finished MSERT scan whose summary reports a detection (``Scan.outcome == "found"``)
     that no line named in a form the reader knows, dated as above by the scan's start;
   - a web-shell candidate (an .aspx/.ashx file the probe lists) created or modified at or
     after the window's start, up to now (a shell written after the fix is one too), or with
     a time not read (a copied file keeps its old modified time, so neither time bounds the
     other). One with both times before the window's start is evidence only, and so is a file
     of the standard install (``triage.standard_files``, e.g. OWA's logon.aspx) directly in
     its folder under Exchange's install path (``install_path``: the probe's reading, checked
     against the web.config paths; not known: a plain absolute path outside aspnet_client and
     the front-end folders, ``StandardFiles.holds``; not trusted, i.e. not a plain absolute
     Windows path or contradicted by the web.config paths: no file is): the update itself
     rewrites those inside the window, so their times cannot tell an update from a change,
     and their content is what the full scan required for ``clean`` reads. On
     a server the advisory does not affect there is no window: candidates are evidence only
     there (hits and detections still count).
2. A server the advisory does not affect (status ``not_applicable``): ``not_applicable``.
3. A server not fixed (``vulnerable``, ``mitigated``, ``unknown``) has no "after the fix":
   ``not_investigated``, next action "patch first" (an unknown status: establish it first).
4. A fixed server (``patched``) is ``not_investigated`` when nothing was read (no traces: an
   older probe or a failed collection, which the evidence names), when the advisory defines no
   triage, when the fix time is unknown, or when no scan started after the fix: more than
   ``DST_MARGIN`` (60 minutes) after the fix time, as the MSERT log's local times are
   converted with one offset, an hour off across a daylight-saving change, and not after the
   observation's own time (``observed_at``; None: ``now``), which is not credible.
5. It is ``incomplete`` when a scan after the fix exists but none is a finished full scan
   whose summary says it found nothing (``Scan.outcome == "clean"``), a scan's start could not
   be read, a finished scan from the window's start on has a summary not read (``outcome``
   "unknown"), msert.log or Defender's history could not be read (Defender present or
   unknown), msert.log or Defender's history or the log reach list was cut
   (``scans_truncated``, ``detections_truncated``, ``reach_truncated``), a log the advisory's
   checks read (``triage.logs``, only those of the CVEs affecting the server's product) was
   not found or begins after the window's start (beginning exactly at the start covers it;
   a log read per folder, HttpProxy's protocol folders, covers what its least covering folder
   covers), one of its folders holds no file (an emptied folder hides what was logged there),
   a folder the advisory names for the check is not listed (``LogRequirement.folders``),
   the log reach or the web-shell folders were not read, the list of candidates is not
   whole (``candidates_truncated``), the web-shell search was made by a probe before contract
   1.5 (``candidate_folders`` None: hidden files and the IIS root not looked at), the list of
   its folders was not whole (``candidate_folders_truncated``), names no IIS root or has the
   IIS root not there, or the CVE checks did not cover the window (``checks``): one had a probe error
   (or the verdict flags ``indicators_unreadable``), a cap or the deadline cut them, they read
   no log file (``log_window_days`` None, or outside 0 to ``MAX_LOG_WINDOW_DAYS``: not
   credible), or ``observed_at - log_window_days`` (plus its rounding, ``WINDOW_ROUNDING``)
   is after the window's start.
6. Otherwise ``clean``: a finished full scan after the fix that found nothing, every log
   reaching back to the window's start, the CVE checks covering it, no candidate since it.

**The directive** (``triage``): the full scan after the fix, then ``followup_scans`` more.
A scan counts when it is a finished full scan (its summary read: clean or found) after the
fix (rule 4's margin). The first step is due at the later of ``triage.first_scan_by`` (the
directive's date) and the fix time plus ``triage.first_scan_within_days`` (a server fixed after
the directive: as many days as it gave); met by the first such scan up to its due time (its
end included); ``pending`` (not yet due) until then and ``missed`` after, also when the first
scan came later (a late one is kept as ``met_by``: the follow-ups count from it). Follow-up k
is met by such a scan in the k-th interval after the first scan (its end included), its
``due`` the interval's end: ``met``, ``pending`` (not yet due, or no first scan yet), ``missed``
(its interval passed with none). A server not fixed has nothing due (``pending``, no time); a
fixed one whose fix time is not known owes the first scan at a time that cannot be said
(``due``, no time). It never changes the state: a server can be clean with a scan late or
missed, which its next action says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from compliance.advisory import Advisory
from compliance.evaluate import _named_cu
from compliance.models import (
    MAX_LOG_WINDOW_DAYS,
    EvidenceKind,
    Failure,
    Flag,
    InstalledUpdate,
    Observation,
    ServerRole,
    Status,
    Verdict,
    probe_error_part,
)
from compliance.traces import Candidate, CandidateFolder, Scan, Traces
from compliance.triage import EVENT_LOGS, looks_alike, nameless, plain_install_path, same_path

FULL = "full"  # Scan.kind of a full scan
CLEAN_OUTCOME, FOUND_OUTCOME = "clean", "found"  # Scan.outcome
# How far after the fix time a scan must start to count as after it: the MSERT log's local
# times are converted with one UTC offset, which is an hour off across a daylight-saving change.
DST_MARGIN = timedelta(minutes=60)
# log_window_days is rounded to a tenth of a day: its start may be up to half of that later.
WINDOW_ROUNDING = timedelta(days=0.05)
# The folders under Exchange's install path (2013 and later) where the March 2021 web shells
# were put: a 1.5 folder list must name both (``_Judge.auth_folders``).
AUTH_FOLDERS = ("FrontEnd\\HttpProxy\\owa\\auth", "FrontEnd\\HttpProxy\\ecp\\auth")
# A calendar date means, somewhere on Earth, from its 00:00 at UTC+14 to its 24:00 at UTC-12.
_EARLIEST_ZONE, _LATEST_ZONE = timedelta(hours=14), timedelta(hours=12)


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
    if moment is None:
        return "an unknown time"
    moment = _utc(moment)
    # The year by hand: strftime's %Y does not pad a year before 1000 on every platform.
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S} UTC"


def install_day(update: InstalledUpdate) -> date | None:
    """The ``installed_on`` date of an installed-update record (``yyyy-MM-dd``), None when
    absent or in another form."""
    text = (update.installed_on or "").strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The first and the last instant ``day`` can mean in any time zone (UTC+14, UTC-12), held
    to the calendar (a day at its start or end, e.g. an install date of 9999-12-31 a server
    printed, gives its first or last instant): such a reading is then not credible, as any
    before the advisory's publication or after the collection is (``_Judge.fix_window_end``)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        first = midnight - _EARLIEST_ZONE
    except OverflowError:
        first = datetime.min.replace(tzinfo=UTC)
    try:
        last = midnight + timedelta(days=1) + _LATEST_ZONE
    except OverflowError:
        last = datetime.max.replace(tzinfo=UTC)
    return first, last


def fix_readings(fixed_at: datetime | None, updates: Sequence[InstalledUpdate] = ()
                 ) -> list[tuple[datetime, datetime, str]]:
    """Upper bounds of the moment the fix was installed: (the bound, the earliest moment the
    reading can mean, where it is read). The end of each fixing update's install day in the
    latest time zone, and ``fixed_at`` (a time the server was observed with the fix). Records
    without a readable date give none."""
    readings = []
    for update in updates:
        day = install_day(update)
        if day is not None:
            first, last = day_bounds(day)
            readings.append((last, first, f"{update.kb.strip()} installed on {day} (the end "
                             "of that day in any time zone)"))
    if fixed_at is not None:
        readings.append((_utc(fixed_at), _utc(fixed_at), "the observed fix time"))
    return readings


def fix_time(fixed_at: datetime | None, updates: Sequence[InstalledUpdate] = ()
             ) -> tuple[datetime | None, str]:
    """The fix time: the earliest upper bound (``fix_readings``; module docstring) and where it
    is read. A file time is never one (ExSetup.exe's may be its package's)."""
    readings = [(moment, source) for moment, _, source in fix_readings(fixed_at, updates)]
    if not readings:
        return None, ""
    end = min(moment for moment, _ in readings)
    return end, " and ".join(source for moment, source in readings if moment == end)


@dataclass(frozen=True)
class Checks:
    """What the observation says of its CVE checks' reach (``Observation``): ``unread`` the
    probe errors of the checks (or the verdict's ``indicators_unreadable`` flag), ``truncated``
    a cap or the deadline cut them, ``window_days`` how far back their logs reached from
    ``observed_at`` (None: no log file read)."""

    unread: tuple[str, ...] = ()
    truncated: bool = False
    window_days: float | None = None


class _Judge:
    def __init__(self, traces: Traces | None, advisory: Advisory, now: datetime,
                 status: Status, fixed_at: datetime | None, product: str | None,
                 fix_updates: Sequence[InstalledUpdate], observed_at: datetime | None,
                 install_path: str | None, install_doubt: str | None, front_end: bool = True):
        self.traces = traces
        self.advisory = advisory
        self.as_of = _utc(now)
        # The observation's own time: no scan after it is credible (None: judged at ``now``).
        self.seen = self.as_of if observed_at is None else min(_utc(observed_at), self.as_of)
        self.status = status
        self.product = product
        self.install_path = install_path
        self.install_doubt = install_doubt
        self.front_end = front_end  # whether the auth folders must be there (judge)
        self.evidence: list[str] = []
        self.found: list[str] = []  # next actions of what was found, in order
        self.gaps: list[str] = []  # next actions of what keeps the picture incomplete
        self.start = advisory.exposure.start if advisory.exposure else None
        self.fixed = status is Status.PATCHED
        self.end, self.end_source = (self.fix_window_end(fixed_at, fix_updates) if self.fixed
                                     else (None, ""))
        if traces is not None and traces.fixed_at is not None:
            self.evidence.append(f"ExSetup.exe last written {_at(traces.fixed_at)}: evidence "
                                 "only (a file time, possibly its package's, never the fix "
                                 "time)")
        directive = advisory.triage.directive if advisory.triage else "the directive"
        self.isolate = f"isolate and investigate ({directive})"

    def fix_window_end(self, fixed_at: datetime | None, updates: Sequence[InstalledUpdate]
                       ) -> tuple[datetime | None, str]:
        """The earliest credible upper bound of the install (module docstring)."""
        days = [day for day in map(install_day, updates) if day is not None]
        for update in updates:
            if install_day(update) is None:
                self.evidence.append(f"Fixing update {update.kb}: its install date "
                                     f"{update.installed_on!r} was not read")
        first = min(day_bounds(day)[0] for day in days) if days else None
        # No fix exists before the advisory's publication (its first instant anywhere): an
        # install date or an observed time before it is a wrong clock or a forgery, and would
        # make a scan while the server was still exposed count as "after the fix".
        try:
            released: datetime | None = day_bounds(date.fromisoformat(
                self.advisory.published))[0]
        except ValueError:
            released = None
        credible = []
        for moment, earliest, source in fix_readings(fixed_at, updates):
            if released is not None and earliest < released:
                self.evidence.append(f"The fix time {_at(moment)} ({source}) is before the "
                                     f"advisory's publication ({self.advisory.published}): "
                                     "not credible")
            elif (self.start and moment < self.start) or (first and moment < first):
                self.evidence.append(f"The fix time {_at(moment)} ({source}) is before the "
                                     "exposure's start or the fixing update's install date: "
                                     "not credible")
            elif earliest > self.as_of:
                self.evidence.append(f"The fix time {_at(moment)} ({source}) is after the "
                                     "collection: not credible")
            else:
                credible.append((moment, source))
        if not credible:
            return None, ""
        end = min(moment for moment, _ in credible)
        return end, " and ".join(source for moment, source in credible if moment == end)

    # -- what was found --------------------------------------------------------------------

    def threat(self, threat: str, when: datetime | None, reader: str) -> None:
        family = self.advisory.family_of(threat)
        # Escaped unless printable ASCII: a line break or a look-alike is shown for what it is.
        shown = threat if threat.isascii() and threat.isprintable() else ascii(threat)
        said = f"{reader}: {shown} on {_at(when)}"
        if family is not None:
            self.evidence.append(f"{said}, a threat named for these attacks ({family.name}; "
                                 f"{family.source})")
        elif nameless(threat):
            self.evidence.append(f"{said}, a detection whose name was not read: counted as "
                                 "one named for these attacks, whenever dated")
        elif looks_alike(threat):
            self.evidence.append(f"{said}, a name outside printable ASCII (a look-alike of a "
                                 "name?): counted as one named for these attacks, whenever dated")
        elif when is None or self.start is None or _utc(when) >= self.start:
            self.evidence.append(f"{said}, from the exposure's start on: found (not a family "
                                 "named for these attacks, but something was on the server)")
        else:
            self.evidence.append(f"{said}, before the exposure window: evidence only")
            return
        self.found.append(f"A detection of {shown} ({reader}) on {_at(when)}: {self.isolate}")

    def unread_detection(self, scan: Scan) -> None:
        """A finished scan whose summary reports a detection (or a return code not 0) that no
        line named in a form the reader knows."""
        said = (f"MSERT: the scan started {_at(scan.started_at)} reports a detection the log "
                "names in a form not read")
        if scan.started_at is not None and self.start and _utc(scan.started_at) < self.start:
            self.evidence.append(f"{said}, before the exposure window: evidence only")
            return
        self.evidence.append(said)
        self.found.append(f"{said}: read msert.log on the server; {self.isolate}")

    def candidate(self, candidate: Candidate, window: bool) -> None:
        times = [moment for moment in (candidate.created, candidate.modified) if moment]
        said = (f"Possible web shell {candidate.path} (created {_at(candidate.created)}, "
                f"modified {_at(candidate.modified)}, {candidate.size} bytes)")
        # From the window's start on, up to now: a shell written after the fix is one too.
        inside = [moment for moment in times if self.start is None or _utc(moment) >= self.start]
        triage = self.advisory.triage
        # An install path not trusted excuses no file: not even by the structural guess.
        standard = (triage.standard(candidate.path, self.install_path)
                    if triage and self.install_doubt is None else None)
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
            self.evidence.append(f"{said}: written since the exposure's start")
            self.found.append(f"A possible web shell {candidate.path}, {when}, since the "
                              f"exposure's start: {self.isolate}")
        else:
            self.evidence.append(f"{said}: before the exposure window, evidence only")

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
            if scan.finished and scan.outcome == FOUND_OUTCOME and not scan.detections:
                self.unread_detection(scan)
        window = self.status is not Status.NOT_APPLICABLE
        if self.install_doubt is not None and traces.candidates:
            self.evidence.append(f"Exchange's install path is not trusted ({self.install_doubt}): "
                                 "no file is taken as one of the standard install")
        for candidate in traces.candidates or ():
            self.candidate(candidate, window)

    # -- a fixed server ----------------------------------------------------------------------

    def after_fix(self, scan: Scan) -> bool:
        """The scan started more than ``DST_MARGIN`` after the fix time, and not after the
        observation (a later date is not credible)."""
        started = scan.started_at
        return (started is not None and self.end is not None
                and self.end + DST_MARGIN < _utc(started) <= self.seen)

    def clean_scan(self, scan: Scan) -> bool:
        """A finished full scan after the fix whose summary says it found nothing."""
        return (self.after_fix(scan) and scan.kind == FULL and scan.finished
                and scan.outcome == CLEAN_OUTCOME and not scan.detections)

    def where(self, scan: Scan) -> str:
        if scan.started_at is None:
            return "start not read"
        started = _utc(scan.started_at)
        if started > self.seen:
            return "after the collection: not credible"
        if not self.fixed:
            return "the server is not fixed"
        if self.end is None:
            return "the fix time is not known"
        if started <= self.end:
            return "before the fix"
        return ("after the fix" if started > self.end + DST_MARGIN else
                "within an hour after the fix: a daylight-saving change may put it before")

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
                f"{scan.version or 'unknown'}, {len(scan.detections)} detection(s), summary: "
                f"{scan.outcome}")
        if self.traces.scans_truncated:
            self.gaps.append("msert.log was cut (or held more runs than are kept): an earlier "
                             "run, and what it found, may be missing; read it on the server")
        for scan in scans:
            if (scan.finished and scan.outcome not in (CLEAN_OUTCOME, FOUND_OUTCOME)
                    and (scan.started_at is None or self.start is None
                         or _utc(scan.started_at) >= self.start)):
                self.gaps.append(f"The summary of the scan started {_at(scan.started_at)} "
                                 "could not be read (neither \"No infection found.\" nor a "
                                 "return code): read msert.log on the server")
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
        elif not any(self.clean_scan(scan) for scan in after):
            self.gaps.append(f"No full scan after the fix is recorded as finding nothing: run "
                             f"{command} and re-collect")
        return True

    def logs(self) -> None:
        assert self.traces is not None and self.advisory.triage and self.start
        reach = self.traces.log_reach
        if reach is None:
            self.gaps.append("How far back the logs reach was not read: re-collect")
            return
        if self.traces.reach_truncated:
            self.gaps.append("The list of how far back the logs reach was cut: a reading that "
                             "matters may be missing; re-collect")
        rule = self.advisory.rule(self.product)
        window = f"the window from {_at(self.start)} cannot be checked here"
        gaps: list[str] = []
        for need in self.advisory.triage.logs:
            if rule is not None and need.cve not in rule.cves:
                continue
            said = f"Log {need.log} (for {need.cve})"
            entries = [entry for entry in reach if entry.log == need.log]
            # A reading with neither a time nor a folder: the log is not there, or empty.
            if not entries or any(entry.oldest is None and entry.folder is None
                                  for entry in entries):
                self.evidence.append(f"{said}: not found")
                gaps.append(f"The {need.log} log was not found: {window}; look at the IIS logs "
                            "and backups")
                continue
            # A protocol folder holding no file (cleared?), or not listed at all (removed, or
            # a probe before contract 1.4 that left out an emptied one): what was logged
            # there cannot be checked, whatever the other folders hold.
            empty = [entry.folder for entry in entries if entry.oldest is None and entry.folder]
            if empty:
                held = "holds" if len(empty) == 1 else "hold"
                self.evidence.append(f"{said}: {_folders(empty)} {held} no file")
                gaps.append(f"The {need.log} {_folders(empty)} {held} no file: {window} (an "
                            "emptied folder hides what was logged there); look at the IIS logs "
                            "and backups")
            unlisted = need.unlisted(entry.folder for entry in entries)
            if unlisted:
                was = "was" if len(unlisted) == 1 else "were"
                self.evidence.append(f"{said}: {_folders(unlisted)} not listed")
                gaps.append(f"The {need.log} {_folders(unlisted)} {was} not listed (not there, "
                            "or read by a probe before contract 1.4, which lists no emptied "
                            f"folder): {window}; re-collect with the current probe, or look at "
                            "the IIS logs and backups")
            dated = [(_utc(entry.oldest), entry.folder) for entry in entries if entry.oldest]
            if not dated:
                continue
            # A log covers only what its least covering folder covers.
            oldest = max(moment for moment, _ in dated)
            least = [folder for moment, folder in dated if moment == oldest]
            named = [folder for folder in least if folder]
            where = f" ({_folders(named)})" if named and len(named) == len(least) else ""
            if oldest > self.start:
                self.evidence.append(f"{said} reaches back to {_at(oldest)}{where}: after the "
                                     "window's start")
                gaps.append(f"The {need.log} log reaches back only to {_at(oldest)}{where}: "
                            f"{window}; look at the IIS logs and backups")
            elif empty or unlisted:
                self.evidence.append(f"{said}: its folders holding files reach back to "
                                     f"{_at(oldest)}")
            else:
                self.evidence.append(f"{said} reaches back to {_at(oldest)}: covers the window")
        # Two CVEs' checks read one log: a gap of it is said once.
        self.gaps.extend([gap for gap in dict.fromkeys(gaps) if gap not in self.gaps])

    def parts(self) -> None:
        traces = self.traces
        assert traces is not None
        if traces.candidates is None:
            self.gaps.append("The web-shell folders (OWA/ECP front end, IIS root) were not "
                             "read: re-collect")
        elif traces.candidates_truncated:
            self.gaps.append("The list of .aspx/.ashx files is not whole (cut at its cap, a "
                             "folder or IIS's configuration could not be read, or an entry could "
                             "not be read; see the probe errors): check the OWA/ECP front-end "
                             "folders and the IIS root by hand")
        # Contract 1.5: the folders the candidate search looked in. One not there hid nothing,
        # but an IIS root not there means the Default Web Site's folder was never looked in.
        # Before 1.5 (none listed) the search skipped hidden files and never looked in the IIS
        # root itself, nor where the Default Web Site lives when inetpub moved: nothing in such
        # a document can show that did not matter.
        folders = traces.candidate_folders
        if folders is None and traces.candidates is not None:
            self.gaps.append("The web-shell search was made by a probe before contract 1.5: "
                             "hidden files and the IIS root were not looked at; re-collect with "
                             "the current probe")
        if folders is not None:
            shown = ", ".join(f"{folder.path} (the IIS root, directly)" if folder.iis_root
                              else folder.path for folder in folders)
            self.evidence.append(f"Web-shell folders looked in: {shown or 'none'}")
            for folder in folders:
                if folder.present:
                    continue
                self.evidence.append(f"Web-shell folder {folder.path}"
                                     f"{' (the IIS root)' if folder.iis_root else ''}: not there, "
                                     "nothing in it was looked at")
                if folder.iis_root:
                    self.gaps.append(f"The IIS root folder {folder.path} was not found: web shells "
                                     "there were not looked for; check where the Default Web Site "
                                     "lives")
            if not any(folder.iis_root for folder in folders):
                self.gaps.append("The web-shell search names no IIS root folder: web shells there "
                                 "may not have been looked for; re-collect with the current probe")
            self.auth_folders(folders)
            if traces.candidate_folders_truncated:
                self.gaps.append("The list of web-shell folders was longer than is read, or held "
                                 "an entry that could not be read (see the probe errors): a "
                                 "folder not there, the IIS root among them, may be missing from "
                                 "it; re-collect with the current probe")
        if traces.defender_available is False:
            self.evidence.append("Defender is not available on the server (its cmdlets are "
                                 "absent): the Safety Scanner's scans stand alone")
        elif traces.detections is None:
            self.gaps.append("Defender's detection history could not be read: re-collect, or "
                             "read it on the server (Get-MpThreatDetection)")
        if traces.detections_truncated:
            self.gaps.append("Defender holds more detections than were read: an older one may "
                             "be missing; read them on the server (Get-MpThreatDetection)")

    def auth_folders(self, folders: Sequence[CandidateFolder]) -> None:
        """On Exchange 2013 and later (any product but 2010, whose layout differs and whose
        rules stay as they were; a product not known counts as later), the folders must name
        ``<install_path>FrontEnd\\HttpProxy\\owa\\auth`` and ``...\\ecp\\auth``, where the March
        2021 web shells were put: a list without one says that folder was never looked in. As
        for the files of the standard install (``StandardFiles.holds``): against the install
        path when known; not known, the part before the folder must be a plain absolute path
        (``triage.plain_install_path``); not trusted (``install_doubt``), no folder counts."""
        if self.product == "2010":
            return
        if self.install_doubt is not None:
            self.gaps.append("Whether the web-shell search looked in OWA's and ECP's auth "
                             "folders cannot be shown: Exchange's install path is not trusted "
                             f"({self.install_doubt}); re-collect with the current probe")
            return
        for name in AUTH_FOLDERS:
            listed = [folder for folder in folders if self.names(folder.path, name)]
            wanted = self.under_install(name) or f"<install path>\\{name}"
            there = [folder.present for folder in listed]
            if not listed:
                self.gaps.append(f"The web-shell search names no folder {wanted} (where the "
                                 "March 2021 web shells were put): web shells there may not have "
                                 "been looked for; re-collect with the current probe")
            elif any(there) and not all(there):
                self.gaps.append(f"The web-shell folder {wanted} is listed both as there and as "
                                 "not there: what was looked in cannot be told; re-collect")
            elif not any(there) and self.front_end:
                # Every Exchange 2016/2019 server, and a 2013 one with Client Access, holds it.
                self.gaps.append(f"The web-shell folder {wanted} was not found (every server "
                                 "with the Client Access front end holds it): web shells there "
                                 "were not looked for; check the folder on the server and "
                                 "re-collect")

    def under_install(self, folder: str) -> str | None:
        """``folder`` under the install path (None: the install path is not known)."""
        if self.install_path is None:
            return None
        return f"{self.install_path.rstrip(chr(92) + '/')}\\{folder}"

    def names(self, path: str, folder: str) -> bool:
        """``path`` is ``folder`` under the install path (``auth_folders``)."""
        full = self.under_install(folder)
        if full is not None:
            return same_path(path, full)
        tail = "\\" + folder.casefold()
        folded = path.replace("/", "\\").rstrip("\\")
        return (folded.casefold().endswith(tail)
                and plain_install_path(folded[: len(folded) - len(tail)]))

    def checks(self, checks: Checks) -> None:
        """Whether the CVE checks covered the window (rule 5)."""
        assert self.start is not None
        for error in checks.unread:
            self.evidence.append(f"CVE check not read: {error}")
        if checks.unread:
            self.gaps.append("A CVE check could not read its logs, so no hit is not \"none\": "
                             "fix the probe's access and re-collect")
        if checks.truncated:
            self.gaps.append("The CVE checks were cut short by a cap or the deadline: run "
                             "Test-ProxyLogon on the server, or re-collect with more time")
        triage = self.advisory.triage
        rule = self.advisory.rule(self.product)
        searched = {need.cve for need in (triage.logs if triage else ())
                    if need.log not in EVENT_LOGS and (rule is None or need.cve in rule.cves)}
        if triage is not None and triage.logs and not searched:
            # E.g. Exchange 2010: only CVE-2021-26857 concerns it, whose check reads the
            # Application event log (its reach is judged with the logs): no file to search.
            self.evidence.append(f"The CVE checks for {self.product or 'this product'} search "
                                 "no log file (the event log's reach is judged with the logs)")
            return
        if checks.window_days is None:
            self.gaps.append("The CVE checks read no log file, so they cover no part of the "
                             f"window from {_at(self.start)}: re-collect")
            return
        try:
            # The probe reader keeps it in bounds; an observation built or stored otherwise may
            # not be, and a day count past the calendar must not stop the fleet's save.
            if not 0 <= checks.window_days <= MAX_LOG_WINDOW_DAYS:  # NaN too
                raise OverflowError
            covered = self.seen - timedelta(days=checks.window_days) + WINDOW_ROUNDING
        except OverflowError:
            said = (f"The CVE checks' logs reach back {checks.window_days} days: not credible "
                    f"(from 0 to {MAX_LOG_WINDOW_DAYS} days)")
            self.evidence.append(said)
            self.gaps.append(f"{said}, so they cover no part of the window from "
                             f"{_at(self.start)}: re-collect")
            return
        said = (f"The CVE checks' logs reach back {checks.window_days} days from "
                f"{_at(self.seen)}, to about {_at(covered)}")
        if covered > self.start:
            self.evidence.append(f"{said}: after the window's start")
            self.gaps.append(f"{said}: the window from {_at(self.start)} is not covered; look "
                             "at the IIS logs and backups (Test-ProxyLogon on older logs)")
        else:
            self.evidence.append(f"{said}: covers the exposure window")

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
                      and scan.outcome in (CLEAN_OUTCOME, FOUND_OUTCOME)
                      and self.after_fix(scan))
        rest = [DirectiveStep(name, None, StepState.PENDING) for name in names]
        if not self.fixed or self.end is None:
            # Not fixed: nothing is due before the fix. Fixed at a time not known: the scan is
            # owed, but by when cannot be said.
            first = DirectiveStep(first_name, None,
                                  StepState.DUE if self.fixed else StepState.PENDING)
            return Directive(triage.directive, triage.source, (first, *rest))
        # The directive's date bound the servers fixed by then; one fixed later gets as many
        # days from its fix as the directive gave (compliance/data/advisories: our reading).
        first_due = max(triage.first_scan_by,
                        self.end + timedelta(days=triage.first_scan_within_days))
        if not good:
            first = DirectiveStep(first_name, first_due, StepState.PENDING
                                  if self.as_of <= first_due else StepState.MISSED)
            return Directive(triage.directive, triage.source, (first, *rest))
        # A first scan after its due time is late (missed), and still the one the weekly scans
        # count from: the directive counts them "after the first scan".
        steps = [DirectiveStep(first_name, first_due, StepState.MET if good[0] <= first_due
                               else StepState.MISSED, good[0])]
        interval = timedelta(days=triage.followup_interval_days)
        for k, name in enumerate(names, start=1):
            begins, due = good[0] + (k - 1) * interval, good[0] + k * interval
            met_by = next((moment for moment in good if begins < moment <= due), None)
            state = (StepState.MET if met_by else
                     StepState.PENDING if self.as_of <= due else StepState.MISSED)
            steps.append(DirectiveStep(name, due, state, met_by))
        return Directive(triage.directive, triage.source, tuple(steps))


def _folders(names: Sequence[str]) -> str:
    """``folder Ecp``, ``folders Ecp, Owa``, ``folders Autodiscover, Eas, Ecp and 7 more``."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"folder {shown}" if len(names) == 1 else f"folders {shown}"


def _clean_action(directive: Directive | None, command: str) -> str:
    if directive is None:
        return "None"
    missed = [step for step in directive.steps if step.state is StepState.MISSED]
    pending = [step for step in directive.steps if step.state is StepState.PENDING]
    # A missed step with a scan is a first scan that came after its due time.
    parts = [f"{step.name} (due {_at(step.due)}) "
             + (f"ran late, on {_at(step.met_by)}" if step.met_by else "was missed")
             for step in missed]
    if pending:
        parts.append(f"the next scan ({command}) is due by {_at(pending[0].due)}")
    if not parts:
        return f"None: every scan {directive.name} asks for is recorded"
    return f"None for a compromise so far; {'; '.join(parts)} ({directive.name})"


def judge(traces: Traces | None, advisory: Advisory, now: datetime, *, status: Status,
          fixed_at: datetime | None = None, indicators: Sequence[str] = (),
          failure: Failure | None = None, product: str | None = None,
          fix_updates: Sequence[InstalledUpdate] = (), observed_at: datetime | None = None,
          checks: Checks | None = None, install_path: str | None = None,
          install_doubt: str | None = None, front_end: bool = True) -> Investigation:
    """The investigation state of one server (rules: module docstring). ``status``: its verdict
    for ``advisory``; ``fixed_at``: when it was observed fixed (None: not known);
    ``indicators``: its CVE checks' hits; ``failure``: why its collection failed, if it did;
    ``product``: its product line (which CVEs, hence which logs, concern it; None: all);
    ``fix_updates``: its installed-update records of the fix (their install dates bound the
    fix time); ``observed_at``: when the observation was made (None: ``now``); ``checks``: how
    far its CVE checks reached (None: not known, never clean); ``install_path``: Exchange's
    install path, for the files of the standard install (None: not known); ``install_doubt``:
    why what the observation shows of that path is not trusted (``install_path``), so that no
    file is taken as one of the standard install (None: no doubt); ``front_end``: whether the
    server holds the Client Access front end (False only for an Exchange 2013 server whose
    known roles hold no Cafe or FrontendTransport: a Mailbox server, whose AD roles carry the
    ClientAccess bit of its back end), whose OWA and ECP auth folders must then be there."""
    judge_ = _Judge(traces, advisory, now, status, fixed_at, product, fix_updates, observed_at,
                    install_path, install_doubt, front_end)
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
        judge_.checks(checks or Checks())
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
                      "The time of the fix is not known (no install date of the fixing update "
                      "and no observed fix time, or none credible): re-collect, so a scan can "
                      f"be shown to follow it; run {command}")
    if not scanned:
        return result(InvestigationState.NOT_INVESTIGATED,
                      f"Run {command} (a full Safety Scanner scan) and re-collect: no scan "
                      f"after the fix on {_at(judge_.end)} is recorded")
    if judge_.gaps:
        return result(InvestigationState.INCOMPLETE, judge_.gaps[0])
    return result(InvestigationState.CLEAN, _clean_action(directive, command))


def fix_updates(observation: Observation, verdict: Verdict,
                advisory: Advisory) -> tuple[InstalledUpdate, ...]:
    """The observation's installed-update records of the fix: the KB the verdict's evidence
    names as the fix, or any KB the advisory's fix rows list, except a record whose name
    states another product or CU than the verdict's (one left from before a CU upgrade
    bounds nothing of this CU's fix)."""
    kbs = {fix.kb.strip().upper() for rule in advisory.products for fix in rule.fixes}
    kbs |= {item.value.split(maxsplit=1)[0].upper() for item in verdict.evidence
            if item.kind == EvidenceKind.INSTALLED_UPDATE_PROOF and item.value.split()}
    found = []
    for update in observation.installed_updates:
        product, cu = _named_cu(update.name)
        if update.kb.strip().upper() in kbs and (product or verdict.product) == verdict.product \
                and (cu or verdict.cu) == verdict.cu:
            found.append(update)
    return tuple(found)


class InstallPath(NamedTuple):
    """Exchange's install path as an observation shows it: ``path`` (None: not known) and, when
    what it shows is not trusted, why (``doubt``: then no file is one of the standard
    install's, not even by ``StandardFiles.holds``'s structural guess)."""

    path: str | None
    doubt: str | None = None


def install_path(observation: Observation) -> InstallPath:
    """The probe's reading (``Observation.install_path``: the Setup key's MsiInstallPath),
    checked against the web.config paths the same probe read (``<path>ClientAccess\\...`` or
    ``<path>FrontEnd\\...``); without it, the one path all web.config paths show. Not trusted
    (a forged or odd value must excuse nothing): a path that is not a plain absolute Windows
    path (``triage.plain_install_path``), the probe's reading left out by the reader (an
    ``install_path`` probe error, e.g. too long), or web.config paths that show another path or
    none. Nothing read (an observation from before either was kept): not known, no doubt."""
    errors = [error for error in observation.probe_errors
              if probe_error_part(error) == "install_path"]
    if errors:
        return InstallPath(None, f"the probe's reading was left out: {errors[0]}")
    shown = [_INSTALL_PART.match(item.path) for item in observation.web_configs or ()]
    read = observation.install_path
    if read is not None:
        if not plain_install_path(read):
            return InstallPath(None, f"the probe's reading {read!r} is not a plain absolute "
                                     "Windows path")
        if any(match is None or not same_path(match.group(1), read) for match in shown):
            return InstallPath(None, f"the probe's reading {read!r} and the web.config files' "
                                     "paths disagree")
        return InstallPath(read)
    if not shown:
        return InstallPath(None)
    paths = [match.group(1) for match in shown if match is not None]
    if len(paths) < len(shown) or any(not same_path(path, paths[0]) for path in paths):
        return InstallPath(None, "the web.config files' paths show no one install path")
    if not plain_install_path(paths[0]):
        return InstallPath(None, f"the web.config files' path {paths[0]!r} is not a plain "
                                 "absolute Windows path")
    return InstallPath(paths[0])


def judge_observation(observation: Observation, verdict: Verdict, advisory: Advisory,
                      now: datetime, fixed_at: datetime | None = None) -> Investigation:
    """``judge`` for one host of a snapshot: its observation's traces, CVE check hits, their
    reach and failure, its fixing updates' records, install path and time, and its verdict's
    status and product for ``advisory`` (``ValueError`` when the verdict names another
    advisory)."""
    if verdict.advisory and verdict.advisory_id != advisory.id:
        raise ValueError(f"the verdict is for {verdict.advisory_id}, not {advisory.id}")
    cves = {cve.casefold() for cve in advisory.cve_ids}
    unread = tuple(error for error in observation.probe_errors
                   if probe_error_part(error).casefold() in cves)
    if not unread and Flag.INDICATORS_UNREADABLE in verdict.flags:
        unread = ("the verdict flags indicators_unreadable",)
    checks = Checks(unread, observation.indicators_truncated, observation.log_window_days)
    path, doubt = install_path(observation)
    return judge(observation.traces, advisory, now, status=verdict.status, fixed_at=fixed_at,
                 indicators=observation.indicators, failure=observation.failure,
                 product=verdict.product, fix_updates=fix_updates(observation, verdict, advisory),
                 observed_at=observation.observed_at, checks=checks,
                 install_path=path, install_doubt=doubt,
                 front_end=not (verdict.product == "2013" and observation.host.roles
                                and not observation.host.roles & _FRONT_END))


# The roles that mean an Exchange 2013 server holds the Client Access front end (its
# FrontEnd\HttpProxy folders): a 2013 Client Access server is Cafe and FrontendTransport in AD
# (16385); a Mailbox server carries the ClientAccess bit too (54: its back end), so that one
# says nothing of the front end.
_FRONT_END = frozenset({ServerRole.CAFE, ServerRole.FRONTEND_TRANSPORT, ServerRole.CAFE_ARRAY})
_INSTALL_PART = re.compile(r"^(.*?\\)(?:ClientAccess|FrontEnd)\\", re.IGNORECASE)

"""The probe's ``investigation`` object (contract 1.3 and later, docs/probe.md) as ``compliance.traces``
records: what MSERT and Defender saw, how far back the logs reach, web-shell candidates.

The probe prints raw, bounded material (the tail of ``%SystemRoot%\\debug\\msert.log``, Defender's
detection records, file names and times); this module reads it. Nothing here judges: that is
``compliance/investigation.py``. Nothing here trusts the input either: a server can send anything,
so every reader takes any JSON value, never raises, bounds what it keeps, and keeps what it cannot
parse as raw text.

The Microsoft Safety Scanner's log, as public copies of it show (the lines the parser relies on;
the full samples are in tests/collectors/test_traces.py, each with its source)::

    Microsoft Safety Scanner v1.405, (build 1.405.445.0)
    Started On Thu Feb 22 13:33:34 2024
    Engine: 1.1.24010.10
    Signatures: 1.405.445.0
    Quick Scan Results:                      (or Full, Customized)
    Threat Detected: Virus:DOS/EICAR_Test_File, not removed.
    Results Summary:
    Found Virus:DOS/EICAR_Test_File, not removed.      (or: No infection found.)
    Microsoft Safety Scanner Finished On Thu Feb 22 13:35:58 2024
    Return code: 7 (0x7)

Its times are the server's local time, without a zone: they are read with the UTC offset the
probe reports (the offset at the log file's last write, else the server's offset when the probe
ran), so a run from another daylight-saving period may be read an hour off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from compliance.models import probe_error_part
from compliance.traces import Candidate, CandidateFolder, Detection, LogReach, Scan, Traces
from compliance.triage import FOLDER_LOGS, plain_names

# Bounds of what the reader keeps (the probe keeps within the first ones; a server can send more).
MAX_LOG_LINES = 2000  # lines read of each log tail (the last ones)
MAX_LINE = 1024  # characters of a line that are parsed and kept
MAX_SCANS = 50  # runs kept, the newest
MAX_RUN_RAW = 60  # raw lines kept per run
MAX_RUN_HEAD = 20  # of which, whatever they say, the run's first lines
MAX_NAME = 200  # characters of a threat name
MAX_DETECTIONS = 50
MAX_RESOURCES = 5
MAX_RESOURCE = 260
MAX_DETECTION_RAW = 2000  # characters of a Defender record as printed
MAX_LOG_REACH = 200  # entries: a log's folders each give one (HttpProxy has some 20); past it, truncated
MAX_FOLDER = 255  # characters of a folder's name (NTFS's limit of one name)
MAX_MATCHES = 200  # lines of the whole file the probe matched (Select-String), kept the first
MAX_CANDIDATES = 200
MAX_CANDIDATE_FOLDERS = 10  # the probe lists 4 (contract 1.5)
MAX_PATH = 1024
MAX_OFFSET_MINUTES = 14 * 60  # UTC-12 .. UTC+14 fit in it

KINDS = {"full": "full", "quick": "quick", "customized": "customized", "custom": "customized"}
LOGS = {"httpproxy": "httpproxy", "ecp\\server": "ecp_server", "oabgeneratorlog": "oab_generator",
        "application": "application_event_log"}

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_HEADER = re.compile(r"\s*Microsoft Safety Scanner v(?P<version>[0-9][0-9.]*)"
                     r"(?:\s*,\s*\(build (?P<build>[0-9][0-9.]*)\))?", re.IGNORECASE)
_STARTED = re.compile(r"\s*Started On\b\s*(?P<when>.*)", re.IGNORECASE)
_FINISHED = re.compile(r"\s*(?:Microsoft Safety Scanner\s+)?Finished On\b", re.IGNORECASE)
_KIND = re.compile(r"\s*(?P<kind>[A-Za-z]+) Scan Results\s*:", re.IGNORECASE)
_THREAT = re.compile(r"\s*Threat Detected\s*:\s*(?P<rest>.*)", re.IGNORECASE)
_FOUND = re.compile(r"\s*Found\s+(?P<rest>.*)", re.IGNORECASE)
_FOUND_ANY = re.compile(r"\s*Found\b", re.IGNORECASE)  # any summary "Found" line, named or not
_NO_INFECTION = re.compile(r"\s*No infection found\b", re.IGNORECASE)
_RETURN = re.compile(r"\s*Return code\s*:\s*(?P<code>[0-9]+)(?:\s*\(0x(?P<hex>[0-9A-Fa-f]+)\))?",
                     re.IGNORECASE)
# Type:Platform/Family.Variant!suffix, e.g. Backdoor:ASP/SecChecker.A, Trojan:JS/Chopper!dha.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*:[^\s,/:]+/[^\s,]+")
_CTIME = re.compile(r"(?:[A-Za-z]{3},?\s+)?(?P<month>[A-Za-z]{3})\s+(?P<day>[0-9]{1,2})\s+"
                    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})\s+"
                    r"(?P<year>[0-9]{4})\s*")
# Lines that say what a run did: kept in its raw lines before any other.
_TELLING = re.compile(r"\s*(?:Microsoft Safety Scanner|Started On|Engine\s*:|Signatures\s*:|"
                      r"[A-Za-z]+ Scan Results|Threat Detected|Results Summary|Found\s|"
                      r"No infection found|Finished On|Return code)", re.IGNORECASE)
_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


_BYTE_ORDER_MARKS = ("\ufeff", "\u00ff\u00fe", "\u00fe\u00ff", "\u00ef\u00bb\u00bf")


def clean(text: str, limit: int) -> str:
    """``text`` as it can be stored: no NUL (a UTF-16 file read as 8-bit text leaves one between
    every two characters, so they are dropped, not replaced), no byte-order mark at its start
    (the file's first line, read as 8-bit text, starts with one), no lone surrogate, at most
    ``limit`` characters."""
    text = text.replace("\x00", "")
    for mark in _BYTE_ORDER_MARKS:
        text = text.removeprefix(mark)
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def utc(value: Any) -> datetime | None:
    """A probe time (``yyyy-MM-ddTHH:mm:ssZ``) as an aware UTC datetime; anything else None."""
    if not isinstance(value, str) or not _UTC.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def offset_minutes(value: Any) -> int | None:
    """A UTC offset in minutes within +-14 hours; anything else (a fraction, a text) None."""
    if isinstance(value, int) and not isinstance(value, bool) \
            and -MAX_OFFSET_MINUTES <= value <= MAX_OFFSET_MINUTES:
        return value
    return None


def local_time(text: str, utc_offset: int | None) -> datetime | None:
    """MSERT's ``Thu Feb 22 13:33:34 2024`` (C's ctime; the day may be space-padded), local
    time, as UTC with ``utc_offset`` minutes; None when unreadable, the offset is unknown, or
    the time in UTC falls outside the calendar (years 1 to 9999)."""
    found = _CTIME.fullmatch(text)
    if found is None or utc_offset is None:
        return None
    month = _MONTHS.get(found["month"].lower())
    if month is None:
        return None
    try:
        local = datetime(int(found["year"]), month, int(found["day"]), int(found["hour"]),
                         int(found["minute"]), int(found["second"]), tzinfo=UTC)
    except ValueError:  # Feb 30, 25:00
        return None
    try:
        return local - timedelta(minutes=utc_offset)
    except OverflowError:  # the offset takes it past the calendar's end (9999) or start (year 1)
        return None


def _threat_name(text: str) -> str:
    """The threat name at the start of a detection line's rest (``Virus:DOS/EICAR_Test_File, not
    removed.``); the text up to its first comma when it is not shaped like a name."""
    found = _NAME.match(text.strip())
    name = found.group(0).rstrip(".") if found else text.split(",", 1)[0].strip()
    return name[:MAX_NAME] or "(no name)"


@dataclass
class _Run:
    """One run being read."""

    lines: list[str] = field(default_factory=list)
    header: bool = False  # opened by "Microsoft Safety Scanner v..."
    started: bool = False  # its "Started On" line was seen
    started_at: datetime | None = None
    kind: str | None = None
    version: str | None = None
    finished: bool = False
    detections: list[str] = field(default_factory=list)
    found: bool = False  # a summary "Found ..." line, or a return code that is not 0
    clean: bool = False  # "No infection found.", or "Return code: 0 (0x0)"

    @property
    def outcome(self) -> str:
        """``found`` over ``clean`` over ``unknown``: a contradiction is never clean."""
        return "found" if self.found or self.detections else "clean" if self.clean else "unknown"

    @property
    def under_way(self) -> bool:
        """Something past its header and start was read: a later "Started On" is another run."""
        return bool(self.kind or self.detections or self.finished)

    def detect(self, name: str) -> None:
        if name not in self.detections:
            self.detections.append(name)

    def scan(self) -> Scan:
        return Scan(started_at=self.started_at, kind=self.kind or "unknown", version=self.version,
                    finished=self.finished, detections=tuple(self.detections), raw=self.raw(),
                    outcome=self.outcome)

    def raw(self) -> tuple[str, ...]:
        """At most MAX_RUN_RAW lines, in order: its first MAX_RUN_HEAD lines and, after them,
        the lines that say what it did (a detection, the summary, its end) before any other;
        a last line counts those left out."""
        telling = [i for i, line in enumerate(self.lines)
                   if i >= MAX_RUN_HEAD and _TELLING.match(line)]
        room = MAX_RUN_RAW - min(len(self.lines), MAX_RUN_HEAD)
        kept = set(range(min(len(self.lines), MAX_RUN_HEAD))) | set(telling[:room])
        rest = (i for i in range(MAX_RUN_HEAD, len(self.lines)) if i not in kept)
        for i in rest:
            if len(kept) >= MAX_RUN_RAW:
                break
            kept.add(i)
        raw = [self.lines[i] for i in sorted(kept)]
        if len(self.lines) > len(kept):
            raw.append(f"[{len(self.lines) - len(kept)} more lines left out]")
        return tuple(raw)


def parse_msert_log(lines: Any, utc_offset_minutes: Any) -> tuple[Scan, ...]:
    """The Microsoft Safety Scanner runs in the last lines of its log, oldest first.

    A run starts at a ``Microsoft Safety Scanner v...`` header, or at a ``Started On`` line that
    does not follow its own header; its kind comes from the ``<Kind> Scan Results:`` heading
    (``unknown`` when there is none or it names another kind), its detections from the
    ``Threat Detected:`` lines and the summary's ``Found <name>`` lines (each name once), and it
    finished when a ``Finished On`` line was read. Lines before the first header (a log cut in
    the middle of a run) make a run whose start is unknown (``started_at`` None), kept only when
    one of them says something about a run. Unparseable lines stay in the run's raw lines; a
    value that is not a list, an entry that is not a text, a time that cannot be read: never an
    exception.
    """
    if not isinstance(lines, list):
        return ()
    offset = offset_minutes(utc_offset_minutes)
    runs: list[_Run] = []
    current = _Run()
    for entry in lines[-MAX_LOG_LINES:]:
        if not isinstance(entry, str):
            continue
        text = clean(entry, MAX_LINE)
        header = _HEADER.match(text)
        started = _STARTED.match(text)
        if header or (started and (current.started or current.under_way or
                                   (current.lines and not current.header))):
            runs.append(current)
            current = _Run(header=bool(header))
        current.lines.append(text)
        if header:
            current.version = header["build"] or header["version"]
        elif started:
            current.started = True
            current.started_at = local_time(started["when"].strip(), offset)
        elif (kind := _KIND.match(text)) is not None:
            current.kind = KINDS.get(kind["kind"].lower(), current.kind or "unknown")
        elif (threat := _THREAT.match(text)) is not None:
            current.detect(_threat_name(threat["rest"]))
        elif _FOUND_ANY.match(text):
            current.found = True
            found = _FOUND.match(text)
            if found is not None and (name := _NAME.match(found["rest"].strip())) is not None:
                current.detect(name.group(0).rstrip(".")[:MAX_NAME])
        elif _FINISHED.match(text):
            current.finished = True
        elif _NO_INFECTION.match(text):
            current.clean = True
        elif (code := _RETURN.match(text)) is not None:
            codes = {int(code["code"])} | ({int(code["hex"], 16)} if code["hex"] else set())
            if codes == {0}:
                current.clean = True
            else:
                current.found = True
    runs.append(current)
    return tuple(run.scan() for run in runs
                 if run.header or run.started or any(_TELLING.match(line) for line in run.lines))


def parse_defender(records: Any) -> tuple[tuple[Detection, ...], tuple[str, ...]]:
    """Defender's detection records as the probe prints them (``investigation.defender.
    detections``), and a probe error line for each record that is not an object. A record
    without a readable name is named by its ThreatID (``ThreatID 2147776854``)."""
    if not isinstance(records, list):
        return (), ()
    found = []
    dropped = 0
    for record in records[:MAX_DETECTIONS]:
        if not isinstance(record, Mapping):
            dropped += 1
            continue
        name = record.get("threat")
        threat_id = record.get("threat_id")
        if isinstance(name, str) and name.strip():
            threat = clean(name.strip(), MAX_NAME)
        elif isinstance(threat_id, str | int) and not isinstance(threat_id, bool) and str(threat_id):
            threat = clean(f"ThreatID {threat_id}", MAX_NAME)
        else:
            threat = "(no name)"
        resources = record.get("resources")
        action = record.get("action_success")
        found.append(Detection(
            threat=threat, detected_at=utc(record.get("detected_at")),
            resources=tuple(clean(r, MAX_RESOURCE) for r in (
                resources[:MAX_RESOURCES] if isinstance(resources, list) else ())
                if isinstance(r, str) and r.strip()),
            remediated=action if isinstance(action, bool) else None,
            raw=_printed(record)))
    errors = []
    if dropped:
        errors.append(f"investigation: {dropped} Defender detection records dropped (not objects)")
    if len(records) > MAX_DETECTIONS:
        errors.append(f"investigation: {len(records) - MAX_DETECTIONS} Defender detection records "
                      f"past the first {MAX_DETECTIONS} left out")
    return tuple(found), tuple(errors)


def _printed(record: Mapping[str, Any]) -> str:
    # The record as evidence, bounded; a record nested too deep to print is not printed.
    try:
        text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError):
        return "(record not printable)"
    return clean(text, MAX_DETECTION_RAW)


def parse_log_reach(entries: Any) -> tuple[LogReach, ...]:
    """``investigation.log_reach``: each log under the name ``LogReach`` gives it (``httpproxy``,
    ``ecp_server``, ``oab_generator``, ``application_event_log``; another name lower-case as
    printed), with its oldest time (None: not there, a folder holding no file, or a time that
    cannot be read).

    From contract 1.4 the probe prints one entry per HttpProxy protocol folder, an emptied one
    too (oldest null), and one per other log (a 1.3 probe: one per folder holding files, or one
    per log). HttpProxy's folders roll over on their own, so each is kept apart under its name
    (``folder``, the last part of the path printed, at most MAX_FOLDER characters; none when
    there is no such text); the other logs' folders are the log, kept as one entry. Several
    entries of one log and folder keep the one reaching back least: the LATEST oldest time, and
    one entry without a time makes it None. The first MAX_LOG_REACH entries are read
    (``traces_from_investigation`` flags more).
    """
    if not isinstance(entries, list):
        return ()
    merged: dict[tuple[str, str | None], list[datetime | None]] = {}
    for entry in entries[:MAX_LOG_REACH]:
        if isinstance(entry, Mapping) and isinstance(entry.get("log"), str) and entry["log"]:
            name = clean(entry["log"], 100).lower()
            log = LOGS.get(name, name)
            folder = _folder_name(entry.get("folder")) if log in FOLDER_LOGS else None
            merged.setdefault((log, folder), []).append(utc(entry.get("oldest")))
    return tuple(LogReach(log, None if None in times else max(t for t in times if t is not None),
                          folder)
                 for (log, folder), times in merged.items())


def _folder_name(path: Any) -> str | None:
    """The last part of a folder's path as the probe prints it (``...\\HttpProxy\\Ecp``: ``Ecp``),
    either slash, a trailing one ignored; None when there is none."""
    if not isinstance(path, str):
        return None
    name = path.replace("/", "\\").rstrip("\\").rpartition("\\")[2]
    return clean(name, MAX_FOLDER) or None


def parse_candidates(entries: Any) -> tuple[tuple[Candidate, ...], tuple[str, ...]]:
    """``investigation.candidates``, and a probe error line for what was left out: an entry
    that is not an object with a path (a file listed that nobody can name is a file nobody
    looked at), and entries past MAX_CANDIDATES. Any such line means the list is not whole
    (``traces_from_investigation`` marks it truncated). A size that is not a whole number of
    bytes is None."""
    if not isinstance(entries, list):
        return (), ()
    found = []
    dropped = 0
    for entry in entries[:MAX_CANDIDATES]:
        if isinstance(entry, Mapping) and isinstance(entry.get("path"), str) and entry["path"]:
            size = entry.get("size")
            found.append(Candidate(
                path=clean(entry["path"], MAX_PATH),
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0
                else None,
                created=utc(entry.get("created")), modified=utc(entry.get("modified"))))
        else:
            dropped += 1
    return tuple(found), _left_out("candidate", dropped, len(entries), MAX_CANDIDATES,
                                   "(not objects with a path): the list of candidates is not whole")


def parse_candidate_folders(entries: Any) -> tuple[CandidateFolder, ...] | None:
    """``investigation.candidate_folders`` (contract 1.5): None when not a list (absent: a probe
    before 1.5). The first MAX_CANDIDATE_FOLDERS entries are read; one without a plain absolute
    Windows path once cleaned (``plain_folder``: blank, NUL-only, relative) is left out
    (``candidate_folders_left_out`` names what was not read, and marks the list not whole).
    An entry whose ``present`` or ``iis_root`` is no boolean is left out the same way."""
    if not isinstance(entries, list):
        return None
    return tuple(
        CandidateFolder(path=clean(entry["path"], MAX_PATH), present=entry["present"],
                        iis_root=entry["iis_root"])
        for entry in entries[:MAX_CANDIDATE_FOLDERS]
        if _folder_entry(entry))


def _folder_entry(entry: Any) -> bool:
    # ``present`` and ``iis_root`` are booleans the probe always writes: anything else is no
    # entry it made, so it is not read, and the list is not whole.
    return (isinstance(entry, Mapping) and isinstance(entry.get("path"), str)
            and isinstance(entry.get("present"), bool)
            and isinstance(entry.get("iis_root"), bool)
            and plain_folder(clean(entry["path"], MAX_PATH)))


_DRIVE_ROOT = re.compile(r"[A-Za-z]:\\", re.ASCII)


def plain_folder(path: str) -> bool:
    """``path`` is a plain absolute Windows folder path (either slash): a drive letter and a
    backslash, then names (one trailing backslash or none), no empty, ``.`` or ``..`` part, no
    stream, no character a Windows name cannot hold. A folder listed as anything else (blank,
    relative: ``wwwroot``, ``..\\..\\x``) is no folder the probe could have listed."""
    folded = path.replace("/", "\\")
    if not _DRIVE_ROOT.match(folded):
        return False
    rest = folded[3:].removesuffix("\\")
    return not rest or plain_names(rest.split("\\"))


def candidate_folders_left_out(entries: Any) -> tuple[str, ...]:
    """A probe error line for each kind of ``candidate_folders`` entry ``parse_candidate_folders``
    does not read: past MAX_CANDIDATE_FOLDERS, or not an object with a plain absolute path
    (``plain_folder``). Either may be the
    IIS root "not there", so a line means the list is not whole (``candidate_folders_truncated``)."""
    if not isinstance(entries, list):
        return ()
    dropped = sum(not _folder_entry(entry) for entry in entries[:MAX_CANDIDATE_FOLDERS])
    return _left_out("candidate_folders", dropped, len(entries), MAX_CANDIDATE_FOLDERS,
                     "(not objects with a plain absolute path and boolean present and iis_root)")


def _left_out(field: str, dropped: int, listed: int, cap: int, why: str) -> tuple[str, ...]:
    """The probe error lines of a list the reader did not read whole: ``dropped`` entries it
    could not read (``why``), and those past its ``cap`` of ``listed``."""
    errors = []
    if dropped:
        errors.append(f"investigation: {dropped} {field} entries dropped {why}")
    if listed > cap:
        errors.append(f"investigation: {listed - cap} {field} entries past the first {cap} "
                      "left out")
    return tuple(errors)


def _tail_scans(tail: Mapping[str, Any], fallback: int | None) -> tuple[list[Scan], bool]:
    """One tail's runs, with the detections its ``matches`` (lines of the whole file the probe
    matched) show outside them; and whether runs may be missing (the tail cut)."""
    offset = offset_minutes(tail.get("utc_offset_minutes"))
    offset = fallback if offset is None else offset
    lines = tail["lines"]
    scans = list(parse_msert_log(lines, offset))
    matches = tail.get("matches")
    if isinstance(matches, list) and matches:
        scans = _place(scans, parse_msert_log(matches[:MAX_MATCHES], offset), matches[:MAX_MATCHES])
    return scans, tail.get("cut") is not False or len(lines) > MAX_LOG_LINES


def _place(scans: list[Scan], skeleton: tuple[Scan, ...], matches: list[Any]) -> list[Scan]:
    """The tail's runs with what the whole file's matching lines add: a detection not in the
    tail goes to the tail's run with the same start; any other (its run fell out of the tail, or
    its start is unknown) to one run with an unknown start put first, which also stands for a
    run out of the tail whose summary says something was found without naming it. That run is
    finished when such a summary is among them (a run prints its summary as it ends), so the
    judge counts the unnamed detection; with only names, it is not (the names count)."""
    known = {name for scan in scans for name in scan.detections}
    starts = {scan.started_at: i for i, scan in enumerate(scans) if scan.started_at is not None}
    lost: list[str] = []
    found = unnamed = False
    for run in skeleton:
        new = [name for name in run.detections if name not in known]
        known.update(new)
        placed = starts.get(run.started_at) if run.started_at is not None else None
        if placed is not None:
            if new:
                scan = scans[placed]
                scans[placed] = replace(scan, detections=scan.detections + tuple(new), outcome="found")
            continue
        lost.extend(new)
        found = found or run.outcome == "found"
        unnamed = unnamed or (run.outcome == "found" and not run.detections)
    if not (lost or found):
        return scans
    raw = ["[lines of the whole file matching a run's start, kind, detection or result, "
           "outside the tail]"]
    raw += [clean(line, MAX_LINE) for line in matches if isinstance(line, str)][:MAX_RUN_RAW]
    return [Scan(started_at=None, kind="unknown", version=None, finished=unnamed,
                 detections=tuple(lost[:MAX_DETECTIONS]), raw=tuple(raw), outcome="found"), *scans]


def _scans(investigation: Mapping[str, Any]) -> tuple[tuple[Scan, ...] | None, bool, tuple[str, ...]]:
    """The runs of msert.old.log, then msert.log (the older runs first), the newest MAX_SCANS;
    whether some may be missing (a log cut, more runs than kept, a tail left out); and a probe
    error line for each tail left out. Each tail is read on its own: one that is not an object
    with a list of lines is left out, and the other still counts. None when not read: the keys
    are absent (not a 1.3 document), or no tail there could be read."""
    if "msert_log" not in investigation:
        return None, False, ()
    fallback = offset_minutes(investigation.get("utc_offset_minutes"))
    scans: list[Scan] = []
    cut = False
    read = 0
    errors: list[str] = []
    for key in ("msert_old_log", "msert_log"):
        tail = investigation.get(key)
        if tail is None:
            continue  # no such file
        if not isinstance(tail, Mapping) or not isinstance(tail.get("lines"), list):
            errors.append(f"investigation: {key} left out, not an object with a list of lines")
            cut = True
            continue
        read += 1
        runs, tail_cut = _tail_scans(tail, fallback)
        scans.extend(runs)
        cut = cut or tail_cut
    if errors and not read:
        return None, False, tuple(errors)
    return tuple(scans[-MAX_SCANS:]), cut or len(scans) > MAX_SCANS, tuple(errors)


def traces_from_investigation(value: Any, probe_errors: Iterable[str] = ()
                              ) -> tuple[Traces | None, tuple[str, ...]]:
    """The document's ``investigation`` as ``Traces``, and the lines to add to the
    observation's probe errors for what was left out.

    Absent or null: None (a probe before 1.3). A part whose probe error says it failed
    (``msert_log``, ``defender_detections``) is None (not read), except detections Defender
    printed before its error, which are read as a list cut short (``detections_truncated``:
    they count, and never stand for the whole history); with a ``defender_detections`` error
    Defender's availability is unknown (None: its cmdlets are there but failed, e.g. the
    service stopped), ``False`` only when ``available`` is a literal false (its cmdlets absent)
    and no detection is listed (a list beside ``available: false`` is read, availability None);
    an ``available`` that is neither true nor false (missing, null, a text) is unknown (None),
    never "absent", and a list beside it is read as cut short. A Defender record that is not
    an object is dropped with a probe error line and marks the detections truncated (a
    detection nobody could read is no "none"). A ``candidates`` error (a folder could not be
    listed, applicationHost.config not read) or a candidate entry the reader could not read
    marks the candidates truncated, as does a ``candidates_truncated`` that is not a literal
    false (true, missing, null, a text, a number: the latter with a probe error line); a
    ``log_reach`` list the probe cut (``log_reach_truncated`` true), longer than MAX_LOG_REACH,
    or whose ``log_reach_truncated`` is present but no boolean (with a probe error line) marks
    the reach truncated.
    """
    if value is None:
        return None, ()
    if not isinstance(value, Mapping):
        return None, ("investigation: left out, not an object",)
    failed = {probe_error_part(str(error)) for error in probe_errors}
    scans, scans_cut, tail_errors = (None, False, ()) if "msert_log" in failed else _scans(value)
    defender = value.get("defender")
    available: bool | None = None
    detections: tuple[Detection, ...] | None = None
    errors: tuple[str, ...] = ()
    more = False
    if "defender_detections" in failed:
        # The cmdlets are there but failed (Defender stopped, what intruders commonly do, or
        # another product active): its history is unknown, never "not available". What it
        # printed before failing still counts (a detection is an indicator), as a list cut
        # short: never the whole history.
        available = None
        listed = defender.get("detections") if isinstance(defender, Mapping) else None
        if isinstance(listed, list) and listed:
            detections, errors = parse_defender(listed)
            more = True
    elif isinstance(defender, Mapping):
        # Only a literal false says its cmdlets are absent (which excuses its history); anything
        # that is neither true nor false (missing, null, a text) says nothing: unknown.
        said = defender.get("available")
        available = said if isinstance(said, bool) else None
        listed = defender.get("detections")
        if available is None:
            errors = ("investigation: Defender's availability left out, neither true nor "
                      "false: not known",)
        if isinstance(listed, list) and (available or listed):
            read, dropped = parse_defender(listed)
            detections, errors = read, errors + dropped
            # A record that is not an object (dropped) is a detection nobody could read.
            more = (defender.get("truncated") is not False or len(listed) > MAX_DETECTIONS
                    or bool(dropped) or available is not True)
            if available is False:
                # Detections printed beside "not available": what the server printed counts
                # whatever the flag, and that the flag is wrong makes Defender's presence unknown.
                available = None
                errors += ("investigation: Defender said it is not available, yet listed "
                           "detections: they are read, and whether it is available is not known",)
        elif available:
            available = None  # said available, but no list: not read
    reach = value.get("log_reach")
    # Documented "absent means false": missing or a boolean is read; anything else says
    # nothing, so the list may have been cut.
    reach_said = value.get("log_reach_truncated", False)
    reach_cut = reach_said is not False or (isinstance(reach, list) and len(reach) > MAX_LOG_REACH)
    if not isinstance(reach_said, bool):
        errors += ("investigation: log_reach_truncated left out, neither true nor false: the "
                   "log reach is read as cut short",)
    candidates, left_out = parse_candidates(value.get("candidates"))
    listed = isinstance(value.get("candidates"), list)
    # Only a literal false says the list is whole: "true", 1, null or a missing key say nothing.
    candidates_said = value.get("candidates_truncated")
    if listed and not isinstance(candidates_said, bool):
        left_out += ("investigation: candidates_truncated left out, neither true nor false: "
                     "the list of candidates is read as not whole",)
    return Traces(
        scans=scans,
        detections=detections,
        defender_available=available,
        log_reach=parse_log_reach(reach) if isinstance(reach, list) else None,
        candidates=candidates if listed else None,
        candidates_truncated=listed and (bool(left_out) or candidates_said is not False
                                         or "candidates" in failed),
        fixed_at=utc(value.get("exsetup_written_at")),
        scans_truncated=scans_cut,
        detections_truncated=more,
        reach_truncated=reach_cut,
    ), tail_errors + errors + left_out


def investigation_traces(value: Any, probe_errors: Iterable[str] = ()
                         ) -> tuple[Traces | None, tuple[str, ...]]:
    """``traces_from_investigation`` with what contract 1.5 added: the folders the web-shell
    candidate search looked in (``Traces.candidate_folders``, ``parse_candidate_folders``; None
    when the document has none), marked truncated with a probe error line when entries were
    left out (``candidate_folders_left_out``). What ``collectors/probe.py`` reads a document's
    ``investigation`` with."""
    traces, errors = traces_from_investigation(value, probe_errors)
    if traces is not None and isinstance(value, Mapping):
        entries = value.get("candidate_folders")
        left_out = candidate_folders_left_out(entries)
        traces = replace(traces, candidate_folders=parse_candidate_folders(entries),
                         candidate_folders_truncated=bool(left_out))
        errors += left_out
    return traces, errors

"""An advisory's compromise-triage data (issue 21): when exploitation began, the threat names
Microsoft gave its attacks, and what a directive asks of a server after the fix.

Read from the advisory's file (``[exposure]``, ``[[threat_families]]``, ``[triage]``), each
part optional: an advisory without them has no triage (``compliance/investigation.py`` then
says so and never calls a server clean). Every row carries its source. A malformed row is a
``TriageDataError`` naming it (``compliance/advisory.py`` reports it as an ``AdvisoryError``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The logs the probe reports the reach of (compliance/traces.py ``LogReach.log``): a name
# outside them could never be found, so a misspelt one would keep every server incomplete.
TRACE_LOGS = ("httpproxy", "ecp_server", "oab_generator", "application_event_log")
# The logs the probe reports per folder by name (LogReach.folder, contract 1.4): HttpProxy's
# protocol folders each roll over on their own. Only their folders can be required.
FOLDER_LOGS = ("httpproxy",)
# The one log that is not a file the CVE checks search (``Observation.log_window_days`` is how
# far back their file search reached): CVE-2021-26857's check reads the Application event log.
EVENT_LOGS = ("application_event_log",)


class TriageDataError(ValueError):
    """A triage section of an advisory file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Exposure:
    """When exploitation began, as publicly reported: ``start`` is aware, in UTC."""

    start: datetime
    source: str


@dataclass(frozen=True)
class ThreatFamily:
    """A threat name Microsoft gave these attacks. ``pattern`` matches a detection's name as
    Defender or the Safety Scanner print it, normalised (``normalise_threat``): ``*`` stands
    for any run of characters, the rest is literal and compared whatever its ASCII case."""

    name: str
    pattern: str
    source: str

    def matches(self, threat: str) -> bool:
        return _glob(self.pattern).fullmatch(normalise_threat(threat)) is not None


def normalise_threat(threat: str) -> str:
    """A threat name as matched: NFKC (full-width and other compatibility forms to their
    plain letters), Unicode format characters (zero-width spaces and joiners, direction
    marks) removed, trimmed. A name that is still not printable ASCII after this is a
    look-alike (``looks_alike``): Defender's and MSERT's names are printable ASCII."""
    folded = unicodedata.normalize("NFKC", threat)
    return "".join(char for char in folded if unicodedata.category(char) != "Cf").strip()


def looks_alike(threat: str) -> bool:
    """The normalised name holds a character outside printable ASCII: an attack on the matcher
    (a Cyrillic "о" in "Chоpper", a line break in "Chop\nper"; no name Defender or MSERT print
    holds either), so it counts as a family named for the attacks (fail closed)."""
    name = normalise_threat(threat)
    return not (name.isascii() and name.isprintable())


# How a detection record without a name reads (collectors/traces.py): nothing, "(no name)",
# or Defender's numeric id alone ("ThreatID 2147776320").
_NAMELESS = re.compile(r"(?:\(no name\)|ThreatID\s+\S*)?", re.IGNORECASE | re.ASCII)


def nameless(threat: str) -> bool:
    """The record names no threat: what it detected is unknown, so it counts as a family
    named for the attacks (fail closed), whenever dated."""
    return _NAMELESS.fullmatch(normalise_threat(threat)) is not None


@dataclass(frozen=True)
class LogRequirement:
    """A log the indicator check of ``cve`` reads: it must reach back to the exposure's
    start for that check to cover the window. ``folders``: the folders of it (names of
    HttpProxy's protocol folders) that must be listed, each reaching back that far: one
    cleared together with its files, or from a probe that did not list folders, is not
    known to cover anything."""

    log: str
    cve: str
    source: str
    folders: tuple[str, ...] = ()

    def unlisted(self, listed: Iterable[str | None]) -> tuple[str, ...]:
        """The required ``folders`` none of ``listed`` names, compared as Windows compares
        names (ASCII case ignored, nothing else: a look-alike letter is another name)."""
        names = {_folded(name) for name in listed if name is not None}
        return tuple(folder for folder in self.folders if _folded(folder) not in names)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _folded(path: str) -> str:
    """A Windows path compared as Windows does: either slash, ASCII case ignored."""
    return path.replace("/", "\\").translate(_ASCII_LOWER)


@dataclass(frozen=True)
class StandardFiles:
    """Files a standard install puts directly in a folder (``folder``: its path under the
    Exchange install path, e.g. ``FrontEnd\\HttpProxy\\ecp\\auth``). An update rewrites them,
    so their times cannot tell an update from a change; their content is what a full scan
    reads."""

    folder: str
    names: tuple[str, ...]
    source: str

    def holds(self, path: str, install_path: str | None = None) -> bool:
        """``path`` is one of the files, directly in ``<install_path>\\<folder>``, as the probe
        reports paths. Without ``install_path`` (not known here), the part before the folder
        is taken as the install path only when it is a plain absolute path outside the other
        folders the probe lists (the IIS ``aspnet_client`` folder, the front-end folders
        themselves): a copy of the folder's layout there is not the install's."""
        parent, _, name = _folded(path).rpartition("\\")
        if name not in {_folded(known) for known in self.names}:
            return False
        folder = "\\" + _folded(self.folder).strip("\\")
        if install_path is not None:
            return parent == _folded(install_path).rstrip("\\") + folder
        if not parent.endswith(folder):
            return False
        return _install_like(parent[: -len(folder)])


_DRIVE = re.compile(r"[a-z]:", re.ASCII)


# Characters no Windows file name holds (besides the separators), control characters included.
_NOT_IN_NAMES = frozenset('<>:"|?*' + "".join(map(chr, range(32))))


def _install_like(prefix: str) -> bool:
    """A folded path that can be an Exchange install path the probe listed from: rooted at a
    drive letter, no empty, relative (``.``, ``..``) or stream (``:``) part, no character a
    Windows name cannot hold, and not inside ``aspnet_client`` or a front-end folder (which
    the probe lists recursively)."""
    drive, *parts = prefix.split("\\")
    return (_DRIVE.fullmatch(drive) is not None and bool(parts) and plain_names(parts)
            and "aspnet_client" not in parts and "frontend" not in parts)


def plain_names(parts: Iterable[str]) -> bool:
    """Each of a path's ``parts`` is a plain Windows name: not empty, not ``.`` or ``..``, no
    stream (``:``) or other character a Windows name cannot hold, no leading or trailing
    space or dot."""
    return all(part and part not in {".", ".."} and not _NOT_IN_NAMES & set(part)
               and part.strip(" .") == part for part in parts)


def plain_install_path(path: str) -> bool:
    """``path`` (one trailing backslash or none) is a plain absolute Windows path that can be
    Exchange's install path (``_install_like``): a drive letter and names, nothing relative,
    no network share, no stream, no control or reserved character."""
    folded = _folded(path)
    return _install_like(folded[:-1] if folded.endswith("\\") else folded)


def same_path(one: str, other: str) -> bool:
    """Two Windows paths name the same folder: either slash, ASCII case and one trailing
    backslash ignored."""
    return _folded(one).removesuffix("\\") == _folded(other).removesuffix("\\")


@dataclass(frozen=True)
class TriagePolicy:
    """What a directive asks after the fix: one full scan (``scan_command``), due at the later
    of ``first_scan_by`` (the directive's date, aware UTC) and ``first_scan_within_days`` days
    after the fix, then ``followup_scans`` more, one per ``followup_interval_days``.
    ``directive`` is its short name for the texts ("CISA ED 21-02"). ``standard_files``: the
    legitimate files of the folders the probe lists candidates from."""

    directive: str
    scan_command: str
    followup_scans: int
    followup_interval_days: int
    logs: tuple[LogRequirement, ...]
    source: str
    first_scan_by: datetime
    first_scan_within_days: int
    standard_files: tuple[StandardFiles, ...] = ()

    def standard(self, path: str, install_path: str | None = None) -> StandardFiles | None:
        """The entry that names ``path`` as a file of the standard install, if any
        (``StandardFiles.holds``)."""
        return next((entry for entry in self.standard_files
                     if entry.holds(path, install_path)), None)


def _glob(pattern: str) -> re.Pattern[str]:
    # DOTALL: a "*" spans any character, a line break too; without it a name with one inside
    # (evidence as printed) would escape its family and, dated before the window, not count.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")),
                      re.IGNORECASE | re.ASCII | re.DOTALL)


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TriageDataError(f"{where}: {key!r} must be a non-empty string")
    return value


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TriageDataError(f"{key!r} must be a table")
    return value


def _count(entry: Mapping[str, Any], key: str, least: int) -> int:
    value = entry.get(key)
    # bool is an int in Python; TOML's true must not read as 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise TriageDataError(f"triage: {key!r} must be a whole number of at least {least}")
    return value


def _instant(entry: Mapping[str, Any], key: str, where: str) -> datetime:
    """A TOML date-time with its offset, as aware UTC: a date alone or a local time leaves the
    instant open by up to a day."""
    value = entry.get(key)
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TriageDataError(f"{where}: {key!r} must be a date-time with its offset, "
                              "e.g. 2021-04-05T12:00:00-04:00")
    return value.astimezone(UTC)


def parse_exposure(data: Mapping[str, Any]) -> Exposure | None:
    """``[exposure]``: ``start`` must be a TOML date-time with its offset (a date alone or a
    local time leaves the instant open, which would move the window by up to a day)."""
    entry = _table(data, "exposure")
    if entry is None:
        return None
    start = entry.get("start")
    if not isinstance(start, datetime) or start.tzinfo is None or start.utcoffset() is None:
        raise TriageDataError("exposure: 'start' must be a date-time with its offset, "
                              "e.g. 2021-01-06T00:00:00+14:00")
    return Exposure(start.astimezone(UTC), _text(entry, "source", "exposure"))


def _tables(entries: object, not_a_list: str, label: str
            ) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(number from 1, table) of a TOML array of tables; ``TriageDataError`` with
    ``not_a_list`` when it is not a list, "<label> <number> must be a table" for an entry."""
    if not isinstance(entries, list):
        raise TriageDataError(not_a_list)
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise TriageDataError(f"{label} {number} must be a table")
        yield number, entry


def parse_threat_families(data: Mapping[str, Any]) -> tuple[ThreatFamily, ...]:
    """``[[threat_families]]``: name, pattern and source, each required; names unique; a
    pattern must name something beyond its wildcards."""
    families = []
    for number, entry in _tables(data.get("threat_families", []),
                                 "'threat_families' must be a list of tables", "threat family"):
        where = f"threat family {number} ({entry.get('name')!r})"
        family = ThreatFamily(_text(entry, "name", where), _text(entry, "pattern", where),
                              _text(entry, "source", where))
        if not family.pattern.replace("*", "").strip():
            raise TriageDataError(f"{where}: the pattern matches every threat name")
        if family.pattern != family.pattern.strip():
            raise TriageDataError(f"{where}: the pattern starts or ends with whitespace")
        families.append(family)
    names = [family.name.casefold() for family in families]
    if len(names) != len(set(names)):
        raise TriageDataError("threat families: a name is listed twice")
    return tuple(families)


def parse_triage(data: Mapping[str, Any], cve_ids: Collection[str]) -> TriagePolicy | None:
    """``[triage]`` with its ``[[triage.logs]]``; each log is one the probe reports
    (``TRACE_LOGS``) for a CVE of the advisory (``cve_ids``). ``first_scan_by`` must be a
    date-time with its offset and ``first_scan_within_days`` a whole number of at least 1
    (when the first full scan after the fix is due: ``TriagePolicy``)."""
    entry = _table(data, "triage")
    if entry is None:
        return None
    entries = entry.get("logs")
    if not entries:  # a list is checked by _tables, with the same message
        raise TriageDataError("triage: 'logs' must list at least one log")
    logs = []
    for number, log in _tables(entries, "triage: 'logs' must list at least one log",
                               "triage log"):
        where = f"triage log {number} ({log.get('log')!r})"
        requirement = LogRequirement(_text(log, "log", where), _text(log, "cve", where),
                                     _text(log, "source", where), _folders(log, where))
        if requirement.log not in TRACE_LOGS:
            raise TriageDataError(f"{where}: unknown log (the probe reports {TRACE_LOGS})")
        if requirement.cve not in cve_ids:
            raise TriageDataError(f"{where}: names the undefined CVE {requirement.cve!r}")
        if requirement.folders and requirement.log not in FOLDER_LOGS:
            raise TriageDataError(f"{where}: 'folders' of a log the probe does not report per "
                                  f"folder (only {FOLDER_LOGS})")
        logs.append(requirement)
    return TriagePolicy(
        directive=_text(entry, "directive", "triage"),
        scan_command=_text(entry, "scan_command", "triage"),
        followup_scans=_count(entry, "followup_scans", 0),
        followup_interval_days=_count(entry, "followup_interval_days", 1),
        logs=tuple(logs), source=_text(entry, "source", "triage"),
        first_scan_by=_instant(entry, "first_scan_by", "triage"),
        first_scan_within_days=_count(entry, "first_scan_within_days", 1),
        standard_files=_standard_files(entry),
    )


def _folders(log: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """A log's ``folders`` (optional): names of folders directly in it (no path, no wildcard,
    not blank), each once whatever its ASCII case (as Windows names them)."""
    folders = log.get("folders", [])
    if not isinstance(folders, list) or ("folders" in log and not folders) or not all(
            isinstance(name, str) and name.strip() == name and name
            and not set("\\/*?") & set(name) for name in folders):
        raise TriageDataError(f"{where}: 'folders' must list folder names (no path, no "
                              "wildcard, not blank)")
    if len({_folded(name) for name in folders}) != len(folders):
        raise TriageDataError(f"{where}: a folder is listed twice")
    return tuple(folders)


def _standard_files(triage: Mapping[str, Any]) -> tuple[StandardFiles, ...]:
    """``[[triage.standard_files]]`` (optional): folder, names (file names, no folder part)
    and source, each required."""
    found = []
    for number, entry in _tables(triage.get("standard_files", []),
                                 "triage: 'standard_files' must be a list of tables",
                                 "standard files"):
        where = f"standard files {number} ({entry.get('folder')!r})"
        folder = _text(entry, "folder", where)
        names = entry.get("names")
        if not isinstance(names, list) or not names or not all(
                isinstance(name, str) and name.strip() and not set("\\/*") & set(name)
                for name in names):
            raise TriageDataError(f"{where}: 'names' must list file names (no folder, no "
                                  "wildcard)")
        found.append(StandardFiles(folder, tuple(names), _text(entry, "source", where)))
    return tuple(found)

"""What a server shows of the investigation after the fix (issue 21): the traces' shapes.

A patch or mitigation does not remove a back door planted before it (exploitation began in
January 2021, two months before the updates). So beside the patch status, a server is judged
on whether anyone looked (a Microsoft Safety Scanner (MSERT) scan, Microsoft Defender's
detection history), and whether its logs could even show an intrusion (how far back each log
the Test-ProxyLogon checks read reaches), plus the web-shell candidates its front-end folders
hold. The probe (contract 1.3 and later, docs/probe.md) reads them, read-only and bounded, and
``collectors/probe.py`` builds these records; ``compliance/investigation.py`` judges them.

Every record keeps the raw text it was read from (``raw``): where a format is uncertain, the
line is evidence as it stood.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Scan:
    """One Microsoft Safety Scanner run, from ``%SystemRoot%\\debug\\msert.log``.

    ``started_at``: UTC (the log's local "Started On" time, read as the server's local time
    and converted with the offset the probe reports; ``None`` when unreadable). ``kind``:
    ``full``, ``quick``, ``customized`` or ``unknown``. ``finished``: the log recorded its end.
    ``detections``: threat names as the log gives them (``Exploit:Script/ExchgProxyRequest.A``).
    """

    started_at: datetime | None
    kind: str
    version: str | None
    finished: bool
    detections: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()  # the lines it was read from (bounded)
    # What the run's summary says: "clean" only for an explicit "No infection found." or
    # "Return code: 0"; "found" for a detection or a return code that is not 0; "unknown"
    # otherwise (a summary the parser cannot read is never taken as clean).
    outcome: str = "unknown"


@dataclass(frozen=True)
class Detection:
    """One Microsoft Defender detection (``Get-MpThreatDetection`` with ``Get-MpThreat``'s
    name): ``threat`` as Defender names it, ``detected_at`` UTC, ``resources`` (paths, at most
    a few), ``remediated`` (its action succeeded), ``raw`` the record as the probe printed it."""

    threat: str
    detected_at: datetime | None
    resources: tuple[str, ...] = ()
    remediated: bool | None = None
    raw: str = ""


@dataclass(frozen=True)
class LogReach:
    """How far back one log the indicator checks read reaches: ``log`` (``httpproxy``,
    ``ecp_server``, ``oab_generator``, ``application_event_log``), ``oldest`` (UTC: the oldest
    file's creation time, or the oldest event), ``None`` when the log was not found or, with a
    ``folder``, that folder holds no file. ``folder``: the name of one of HttpProxy's protocol
    folders (``Ecp``, ``Owa``, ...), each of which rolls over on its own and is read apart
    (contract 1.4); ``None`` for a log read as a whole, or one read before folders were kept."""

    log: str
    oldest: datetime | None
    folder: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A possible web shell: an ``.aspx``/``.ashx`` file in the OWA/ECP front-end folders or
    the IIS root (``path``, ``size`` in bytes, ``created``/``modified`` UTC). Names and times
    only: the probe never reads a file's content."""

    path: str
    size: int | None
    created: datetime | None
    modified: datetime | None


@dataclass(frozen=True)
class CandidateFolder:
    """A folder the web-shell candidate search looked in (contract 1.5): ``path`` as the probe
    listed it, ``present`` (False: it is not there, so nothing in it was looked at; also when the
    reader could not tell), ``iis_root`` (the IIS root: the Default Web Site's folder, listed
    directly; the others, its aspnet_client and OWA's and ECP's auth folders, recursively). An
    IIS root not there means the search looked in the wrong place (inetpub moved)."""

    path: str
    present: bool
    iis_root: bool = False


@dataclass(frozen=True)
class Traces:
    """Everything the probe read for the investigation. ``None`` members were not read (an
    older probe, or the part failed: its ``errors`` line says why); an empty tuple was read and
    holds nothing. ``fixed_at``: ExSetup.exe's last write time (UTC), as the file system
    records it: possibly the time the update package gave the file (an MSI installs a file
    with its CAB's time), so weeks before the install. Evidence only, never the fix time
    (compliance/investigation.py bounds that by the install date and the observed time).
    ``defender_available``: ``False`` when Defender's cmdlets are absent; ``None`` when not known
    (its part failed: a Defender stopped by an intruder is not "absent").
    ``scans_truncated``: the MSERT log's tail was cut (or held more runs than are kept), so
    earlier runs may be missing; ``detections_truncated``: Defender holds more detections than
    the newest ones read (an older one may be missing); ``candidates_truncated``: more files than
    listed, a folder could not be listed, or an entry could not be read; ``candidate_folders``:
    the folders the candidate search looked in, each there or not (None: not read, e.g. a probe
    before contract 1.5); ``candidate_folders_truncated``: that list was longer than the reader
    keeps, or held an entry it could not read (a folder not there may be missing from it)."""

    scans: tuple[Scan, ...] | None = None
    detections: tuple[Detection, ...] | None = None
    defender_available: bool | None = None
    log_reach: tuple[LogReach, ...] | None = None
    candidates: tuple[Candidate, ...] | None = None
    candidates_truncated: bool = False
    fixed_at: datetime | None = None
    scans_truncated: bool = False
    detections_truncated: bool = False
    # A list the probe or the reader cut at its cap (log reach entries, one unreadable tail):
    # what is missing may be what matters, so it is never read as complete.
    reach_truncated: bool = False
    candidate_folders: tuple[CandidateFolder, ...] | None = None
    candidate_folders_truncated: bool = False

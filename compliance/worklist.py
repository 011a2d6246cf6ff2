"""The admins' worklist: which non-compliant hosts come first, and in which maintenance wave.

Pure and typed: ranking and wave planning are rules of this product, not of a file format
(``store/export.py`` only writes the rows out). They read host summaries
(compliance/summary.py), so a worklist of the whole fleet decodes no observation.

- **Who is on it.** Every host not compliant, and every host with compromise indicators
  (patched or not: the update does not remove a web shell): the probe's CVE checks hit
  (``Flag.INDICATORS_FOUND``), or the investigation after the fix found indicators (a
  Defender/MSERT detection or a web-shell candidate too: ``InvestigationState.INDICATORS_FOUND``,
  compliance/investigation.py). Both are the same "compromise indicators" everywhere: this
  list, its exports, the Overview, the deadline clock and the notifications.
- **Priority.** 0 compromise indicators, 1 vulnerable, 2 unknown, 3 mitigated (a stop-gap).
  A host flagged ``outside_older_than_inside`` (OWA/ECP disclose, without credentials, an older
  build than the server reports: compliance/outside.py) ranks at least 1, as vulnerable,
  patched included: the files attackers reach are older than the inside view says (typically
  a Security Update installed without elevation), so the server's own reading cannot be
  relied on until OWA/ECP are checked. Not when it is not affected (``not_applicable``: the
  advisory spares it whatever its files hold). The outside view only ever raises a host's
  urgency; it never lowers it and never makes a host compliant.
  A host flagged ``web_config_broken`` (an OWA/ECP web.config holds an unresolved
  %ExchangeInstallDir%, compliance/evaluate.py) ranks at least 2, as unknown, patched
  included: OWA/ECP are down, which is availability rather than the CVE fix, but the update
  that left the file so (typically run without elevation) may also have left files unpatched,
  so what the server reads needs a person to confirm it. Not when it is not affected, as above.
- **Waves.** Internet-facing servers first (OWA, ECP, EWS and SMTP from outside are where
  ProxyLogon was exploited), then priority. A wave takes at most one member of any DAG, so no
  DAG has all its copies down in one window.
- **Internet-facing** (``internet_facing``): Exchange's own configuration decides when AD told
  us anything: a host is internet-facing when one of its OWA/ECP virtual directories has an
  ExternalUrl (an external name published), and not when they have internal names only. When
  AD told us nothing (no name read, e.g. an Edge server, a snapshot from before names were
  read), its roles decide as before: Client Access / Cafe, Front End Transport, Edge. An
  ExternalUrl left empty behind a reverse proxy that publishes the internal name hides the
  exposure from this rule: set the ExternalUrl. ``rank`` builds items from the stored summary
  columns, which hold no names: the names come beside them (``names``, read from each open
  host's stored observation by ``SnapshotStore.published_names``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from compliance.investigation import InvestigationState
from compliance.models import Flag, ServerRole, Status
from compliance.summary import SEPARATOR, HostSummary

URGENCY = {Status.VULNERABLE: 1, Status.UNKNOWN: 2, Status.MITIGATED: 3}
INDICATORS_FIRST = 0
OUTSIDE_OLDER = URGENCY[Status.VULNERABLE]  # see "Priority" above
WEB_CONFIG_BROKEN = URGENCY[Status.UNKNOWN]  # see "Priority" above
# Flags that make an affected host (any status but not_applicable) need action at least at
# their urgency.
RAISED_BY = {Flag.OUTSIDE_OLDER_THAN_INSIDE: OUTSIDE_OLDER,
             Flag.WEB_CONFIG_BROKEN: WEB_CONFIG_BROKEN}
INTERNET_FACING = frozenset({ServerRole.CAFE, ServerRole.CLIENT_ACCESS,
                             ServerRole.FRONTEND_TRANSPORT, ServerRole.EDGE})
PRIORITY_NAMES = {0: "compromise indicators", 1: "vulnerable", 2: "unknown", 3: "mitigated only"}


def internet_facing(roles: Iterable[ServerRole], internal_names: Collection[str] = (),
                    external_names: Collection[str] = ()) -> bool:
    """The rule of the module docstring: an external name published -> True; internal names
    only -> False; no name known -> a role in ``INTERNET_FACING``."""
    if external_names:
        return True
    if internal_names:
        return False
    return bool(INTERNET_FACING.intersection(roles))


def stored_priority(status: str, flags: str, investigation: str | None = None) -> int | None:
    """``priority`` of a stored row's status, flags and investigation texts
    (compliance/summary.py; investigation None or "": none stored); a value no writer of this
    tool makes counts as unknown (2), never as nothing to do."""
    try:
        return priority(Status(status), [Flag(f) for f in flags.split(SEPARATOR) if f],
                        InvestigationState(investigation) if investigation else None)
    except ValueError:
        return URGENCY[Status.UNKNOWN]


def compromised(flags: Iterable[Flag], investigation: InvestigationState | None = None) -> bool:
    """Whether a host shows compromise indicators: a CVE check hit (``Flag.INDICATORS_FOUND``)
    or an investigation that found some (a detection or a web-shell candidate too)."""
    return (Flag.INDICATORS_FOUND in tuple(flags)
            or investigation is InvestigationState.INDICATORS_FOUND)


def priority(status: Status, flags: Iterable[Flag],
             investigation: InvestigationState | None = None) -> int | None:
    """The worklist priority of a host (0 most urgent), or None when it needs nothing: the one
    definition of "needs action" that the worklist, its exports, the Overview's headline and
    the deadline clock share. ``investigation``: its state after the fix (None: not judged);
    only ``indicators_found`` counts here (``compromised``)."""
    seen = tuple(flags)  # read twice below; a caller may hand in a one-shot iterable
    if compromised(seen, investigation):
        return INDICATORS_FIRST
    found = URGENCY.get(status)
    if status is not Status.NOT_APPLICABLE:
        for flag, urgency in RAISED_BY.items():
            if flag in seen:
                found = urgency if found is None else min(found, urgency)
    return found


# The triage order (issue 21) extends ``priority`` without changing it (``priority`` is the one
# definition of "needs action" the worklist, its exports, the Overview and the deadline clock
# share): compromise first, then the patch work as ranked today, then patched servers nobody
# has investigated, then those whose investigation is incomplete.
NOT_INVESTIGATED = 4
INVESTIGATION_INCOMPLETE = 5
TRIAGE_NAMES = {**PRIORITY_NAMES, NOT_INVESTIGATED: "not investigated",
                INVESTIGATION_INCOMPLETE: "investigation incomplete"}


def triage_priority(status: Status, flags: Iterable[Flag],
                    investigation: InvestigationState | None) -> int | None:
    """A host's place in the triage order (0 first; ``TRIAGE_NAMES``), or None when neither its
    patch nor its investigation needs anything. ``investigation``: its state
    (compliance/investigation.py); None (not judged, e.g. a snapshot from before) counts as not
    investigated for an affected host, never as clean."""
    found = priority(status, flags, investigation)
    if found is not None or status is Status.NOT_APPLICABLE:
        return found
    if investigation is None or investigation is InvestigationState.NOT_INVESTIGATED:
        return NOT_INVESTIGATED
    if investigation is InvestigationState.INCOMPLETE:
        return INVESTIGATION_INCOMPLETE
    return None


@dataclass(frozen=True)
class Item:
    """One host on the worklist; ``wave`` is 0 until ``plan_waves`` assigns it (from 1).
    ``internal_names``/``external_names``: the namespaces AD says the host publishes
    (``Host``'s), empty when not known."""

    summary: HostSummary
    priority: int
    wave: int = 0
    internal_names: tuple[str, ...] = ()
    external_names: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return self.summary.host

    @property
    def dag(self) -> str:
        return self.summary.dag.lower()

    @property
    def internet_facing(self) -> bool:
        return internet_facing(self.summary.roles, self.internal_names, self.external_names)


Names = Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]


def rank(summaries: Iterable[HostSummary], names: Names | None = None, *,
         triage: bool = False) -> list[Item]:
    """The hosts that need work, most urgent first (then product, CU, name). ``names``: per
    host name as stored, its (internal, external) published names (``Item``'s); a host not in
    it has none known, and its roles decide whether it is internet-facing. ``triage``: rank by
    ``triage_priority`` (the investigation after the fix too: issue 21) instead of
    ``priority``."""
    items = []
    for summary in summaries:
        rank_ = (triage_priority(summary.status, summary.flags, summary.investigation)
                 if triage else priority(summary.status, summary.flags, summary.investigation))
        if rank_ is not None:
            internal, external = (names or {}).get(summary.host, ((), ()))
            items.append(Item(summary, rank_, internal_names=internal, external_names=external))
    return sorted(items, key=lambda i: (i.priority, i.summary.product, i.summary.cu, i.host))


def plan_waves(items: Sequence[Item], per_wave: int = 10) -> list[Item]:
    """``items`` in maintenance waves of at most ``per_wave`` hosts, sorted by wave (then
    internet-facing first, priority, name). ``per_wave`` below 1 is a ``ValueError``.

    Each host goes to the first wave that has room and no member of its DAG. O(n log n): the
    waves before a DAG's latest one are full or hold that DAG (so its next wave is after it),
    and "the first wave from here with room" is a find over full waves with path halving.
    """
    if per_wave < 1:
        raise ValueError("a wave holds at least one host")
    ordered = sorted(items, key=lambda i: (not i.internet_facing, i.priority, i.host.lower()))
    sizes: list[int] = []
    # next_open[w]: a wave at or after w that may have room (w itself when it has).
    next_open: list[int] = []
    after_dag: dict[str, int] = {}  # DAG -> the first wave after the latest that holds it

    def open_from(wave: int) -> int:
        while wave < len(sizes) and sizes[wave] >= per_wave:
            following = next_open[wave]
            if following < len(sizes):
                next_open[wave] = next_open[following]  # path halving
            wave = following
        return wave

    planned = []
    for item in ordered:
        wave = open_from(after_dag.get(item.dag, 0) if item.dag else 0)
        if wave == len(sizes):
            sizes.append(0)
            next_open.append(wave)
        sizes[wave] += 1
        if sizes[wave] >= per_wave:
            next_open[wave] = wave + 1
        if item.dag:
            after_dag[item.dag] = wave + 1
        planned.append(replace(item, wave=wave + 1))
    return sorted(planned, key=lambda i: (i.wave, not i.internet_facing, i.priority,
                                          i.host.lower()))


def plan_with_acceptances(items: Sequence[Item], accepted: Collection[str],
                          per_wave: int = 10) -> list[Item]:
    """``plan_waves`` for the hosts not under a risk acceptance in force, then, in the waves
    after theirs, for those under one (``accepted``: lower-case names): an accepted gap is
    still a gap, so the host stays on the worklist, after every other host (issue 17)."""
    open_items = [i for i in items if i.host.casefold() not in accepted]
    later = [i for i in items if i.host.casefold() in accepted]
    first = plan_waves(open_items, per_wave)
    after = max((i.wave for i in first), default=0)
    return first + [replace(i, wave=i.wave + after) for i in plan_waves(later, per_wave)]



def plan_triage(items: Sequence[Item], accepted: Collection[str],
                per_wave: int = 10) -> list[Item]:
    """The triage order (issue 21; items ranked by ``rank(..., triage=True)``; ``accepted``:
    lower-case names under a risk acceptance in force):

    1. every host with compromise indicators, whatever its wave: isolating it and running
       MSERT needs no maintenance window (it keeps the wave of its patch work, if any; an
       acceptance does not defer a compromise);
    2. the patch work in its waves, as ``plan_with_acceptances`` plans it;
    3. the hosts that need only their investigation, not investigated before incomplete,
       without a wave (0: a scan needs no window);

    the hosts under an acceptance after all of them (their patch work in the waves after the
    others', then their investigations), as ``plan_with_acceptances`` has it."""
    patch_work = plan_with_acceptances(
        [i for i in items if i.priority < NOT_INVESTIGATED], accepted, per_wave)
    scans = sorted((replace(i, wave=0) for i in items if i.priority >= NOT_INVESTIGATED),
                   key=lambda i: (i.priority, not i.internet_facing, i.host.lower()))

    def deferred(item: Item) -> bool:
        return item.host.casefold() in accepted

    rest = [i for i in patch_work if i.priority != INDICATORS_FIRST]
    return ([i for i in patch_work if i.priority == INDICATORS_FIRST]
            + [i for i in rest if not deferred(i)] + [i for i in scans if not deferred(i)]
            + [i for i in rest if deferred(i)] + [i for i in scans if deferred(i)])

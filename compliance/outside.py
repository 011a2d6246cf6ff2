"""The outside view reconciled with the inside one (issue 18, part 3): what OWA/ECP disclose
without credentials against what the server and AD report.

Inputs are plain data: ``OutsideView`` (collectors/fingerprint.py ``outside_view`` makes one
from a ``Fingerprint``), the run's assessments, the catalogue and the time ``as_of``.

**Per host** (a server view, matched by inventory name or FQDN, case-insensitive). Inside:
ExSetup's four-part build, else AD's CU level (serialNumber, AdminDisplayVersion or
versionNumber: three parts that count). Outside: full builds (four parts: X-OWA-Version, the
exporttool manifest, a 2010 logon path) and CU-level builds (three parts: a 2013+ logon path).

    outside              inside known        outcome
    full build           ExSetup             older: flag; newer: evidence (inside stale?);
                                             same: evidence
    full build           AD CU level only    CU older: flag; CU newer: evidence; same CU:
                                             evidence (it shows an SU level AD never knows)
    CU-level build       ExSetup or AD CU    CU older: flag; CU newer: evidence; same CU:
                                             evidence only (a three-part path never shows the
                                             Security Update level)
    any                  nothing readable    evidence only
    untrusted, stale, from the future, or no build: evidence of why, nothing compared

The flag is ``outside_older_than_inside``. Comparing CU levels, the inside CU is ExSetup's when
it was read (the server itself), else AD's. Builds of two product lines compare by number
(15.1 < 15.2), so another server answering for this one's name is flagged, not missed.

**Per namespace** (a namespace view). The servers behind it are those whose OWA/ECP virtual
directories name it (``Host.internal_names``/``external_names``, case-insensitive).

- ``namespace_serves_unpatched``: a build it answered with is unpatched as ``evaluate`` judges
  it: a full build graded as an ExSetup version (vulnerable, or below the fix with the roles
  unknown), a CU-level build graded as AD's CU level (a CU no update fixes: every build on it
  is unpatched).
- ``not_in_inventory``: a build it answered with that no known server runs (ExSetup equal; or,
  for a server whose ExSetup was not read, the same CU; a CU-level build: the same CU).

A namespace that answered with several builds (a load balancer alternating between nodes)
lists them all in ``seen`` and its evidence.

**The rule.** The outside view alone never makes a host patched: reconciling adds flags,
evidence and actions and never changes a status or removes a flag; it can make a patched host
need action (compliance/worklist.py ranks the flag as vulnerable).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from compliance.builds import BuildParseError, encode_version_number, parse_ad_build, parse_build
from compliance.catalog import Catalog
from compliance.evaluate import Policy, evaluate
from compliance.models import (
    Assessment,
    Build,
    BuildSource,
    Evidence,
    EvidenceKind,
    Flag,
    Host,
    Observation,
    Reason,
    Status,
    Verdict,
)

SOURCE = "outside view (unauthenticated HTTPS)"


class ViewKind(StrEnum):
    """What was looked at; the same values as collectors/fingerprint.py ``EndpointKind``."""

    SERVER = "server"
    NAMESPACE = "namespace"


@dataclass(frozen=True)
class OutsideView:
    """What one endpoint disclosed without credentials.

    ``name``: a server's inventory name, or the namespace's host name. ``observed_at``: aware.
    ``full_builds``: four-part builds (the Security Update level), ``cu_builds``: three-part
    ones (revision None: the CU level only), each distinct, lowest first. ``trusted``: the
    certificate validated; an untrusted view carries no builds (``ValueError`` otherwise): an
    answer from an unauthenticated peer proves nothing. ``where``: one line per disclosure,
    e.g. "15.1.2176.9 from x_owa_version at /owa/"; ``problem``: why the view is incomplete or
    untrusted ("" when nothing went wrong).
    """

    name: str
    kind: ViewKind
    observed_at: datetime
    full_builds: tuple[Build, ...] = ()
    cu_builds: tuple[Build, ...] = ()
    trusted: bool = False
    where: tuple[str, ...] = ()
    problem: str = ""

    def __post_init__(self) -> None:
        if not self.trusted and (self.full_builds or self.cu_builds):
            raise ValueError("an untrusted outside view carries no builds")
        if any(b.revision is None for b in self.full_builds) or any(
                b.revision is not None for b in self.cu_builds):
            raise ValueError("full builds have four parts, CU-level builds three")

    @property
    def builds(self) -> tuple[Build, ...]:
        """Every build disclosed: full ones, then CU-level ones."""
        return self.full_builds + self.cu_builds


@dataclass(frozen=True)
class Inside:
    """What the server and AD report: ExSetup's four-part build, AD's CU-level build (either
    None when not read or unparseable; ``evaluate`` records why)."""

    exsetup: Build | None
    cu_level: Build | None

    @property
    def cu(self) -> Build | None:
        """The inside CU level (three parts): ExSetup's when read (the server itself), else AD's."""
        known = self.exsetup or self.cu_level
        return replace(known, revision=None) if known else None


def inside(observation: Observation) -> Inside:
    """The inside builds of ``observation``, parsed as ``evaluate`` parses them."""
    exsetup = _parsed(observation.exsetup_version, BuildSource.EXSETUP)
    cu_level = (_parsed(observation.host.ad_build, None)
                or _parsed(observation.admin_display_version, BuildSource.ADMIN_DISPLAY_VERSION))
    return Inside(exsetup, cu_level)


def _parsed(text: str | None, source: BuildSource | None) -> Build | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_build(text, source) if source else parse_ad_build(text)[0]
    except BuildParseError:
        return None


@dataclass(frozen=True)
class HostComparison:
    """One host's inside and outside views compared: the flags to add (``()`` or
    ``(Flag.OUTSIDE_OLDER_THAN_INSIDE,)``), evidence lines, and with a flag the words to add to
    the verdict's reason and its action ("" without)."""

    host: str
    flags: tuple[Flag, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    reason: str = ""
    action: str = ""


def _unusable(view: OutsideView, as_of: datetime, policy: Policy) -> str:
    """Why ``view`` cannot be compared ("" when it can)."""
    if not view.trusted:
        return (f"not compared: {view.problem or 'the certificate did not validate'}; an "
                "unauthenticated answer proves nothing")
    if as_of - view.observed_at > policy.max_age:
        return f"not compared: observed {view.observed_at.isoformat()}, older than the limit"
    if view.observed_at - as_of > policy.clock_skew:
        return f"not compared: dated {view.observed_at.isoformat()}, after {as_of.isoformat()}"
    if not view.builds:
        return "disclosed no build" + (f" ({view.problem})" if view.problem else "")
    return ""


def _note(view: OutsideView, value: str) -> Evidence:
    where = "; ".join(view.where)
    return Evidence(EvidenceKind.OUTSIDE_VIEW, f"{view.name}: {value}",
                    f"{SOURCE}{': ' + where if where else ''}", view.observed_at)


def _order(outside: Build, reference: Build, cu_only: bool) -> int:
    """-1, 0 or 1 as ``outside`` is older than, the same as or newer than ``reference``;
    ``cu_only`` compares major, minor and build alone."""
    width = 3 if cu_only else 4
    left, right = outside.key[:width], reference.key[:width]
    return (left > right) - (left < right)


def compare_host(observation: Observation, view: OutsideView | None, as_of: datetime,
                 policy: Policy | None = None) -> HostComparison:
    """The case table of the module docstring for one host and its server view (None: none)."""
    name = observation.host.name
    if view is None:
        return HostComparison(name)
    why = _unusable(view, as_of, policy or Policy())
    if why:
        return HostComparison(name, evidence=(_note(view, why),))
    known = inside(observation)
    evidence: list[Evidence] = []
    older: list[Build] = []
    reference: Build | None = None  # what the first older build was compared with
    for build in view.builds:
        what = "CU level only" if build.revision is None else "full build"
        compared = _against(build, known)
        if compared is None:
            evidence.append(_note(view, f"{build} ({what}); nothing inside to compare with"))
            continue
        against, label = compared
        cu_only = build.revision is None or against.revision is None
        order = _order(build, against, cu_only)
        if order < 0:
            older.append(build)
            reference = reference or against
            text = f"older than {label}"
        elif order > 0:
            text = f"newer than {label}: the inside reading may be stale"
        elif not cu_only:
            text = f"the same as {label}"
        elif build.revision is None:
            text = (f"the same CU as {label}; a three-part build never shows the Security "
                    "Update level")
        else:
            text = f"the same CU as {label}, which never shows the Security Update level"
        evidence.append(_note(view, f"{build} ({what}): {text}"))
    if reference is None:  # nothing older
        return HostComparison(name, evidence=tuple(evidence))
    shown = ", ".join(str(b) for b in older)
    return HostComparison(
        name, (Flag.OUTSIDE_OLDER_THAN_INSIDE,), tuple(evidence),
        f"but OWA/ECP disclose {shown}, older than {reference} (outside view)",
        older_action(view.name, tuple(older), reference))


def _against(build: Build, known: Inside) -> tuple[Build, str] | None:
    """What ``build`` is compared with, and its words: ExSetup's build for a full build; the
    inside CU level (three parts) for a CU-level build or when only AD's CU is known."""
    if build.revision is not None and known.exsetup is not None:
        return known.exsetup, f"ExSetup's {known.exsetup}"
    if known.cu is None:
        return None
    label = (f"ExSetup's {known.exsetup}" if known.exsetup is not None
             else f"AD's CU level {known.cu_level}")
    return known.cu, label


def older_action(name: str, older: tuple[Build, ...], reference: Build) -> str:
    """The action of ``outside_older_than_inside``: ``name`` discloses ``older`` builds, below
    ``reference`` (ExSetup's build, or the inside CU level: three parts)."""
    shown = ", ".join(str(b) for b in older)
    if reference.revision is not None and all(_order(b, reference, True) == 0 for b in older):
        # Same CU, older Security Update: the known failure of an update run non-elevated
        # (shared/reference/outside_view.md F6).
        return (f"OWA/ECP on {name} serve {shown}, older than ExSetup's {reference}: the "
                "Security Update was probably installed without elevation; rerun it from an "
                "elevated command prompt, then check that OWA and ECP answer and disclose "
                f"{reference}")
    return (f"OWA/ECP on {name} serve {shown}, below the server's {reference}: the update "
            f"did not complete on the web tier, or {name} reaches another server; check where "
            f"{name} resolves, rerun the update from an elevated command prompt, then check OWA "
            "and ECP")


def apply(verdict: Verdict, found: HostComparison) -> Verdict:
    """``verdict`` with ``found``'s flags, evidence, reason and action added; the status is
    never changed and no flag removed. Applying the same comparison twice changes nothing more.

    Action: on a patched verdict the outside action replaces the sentence saying nothing is
    needed ("None: ..."), after an investigation when compromise indicators were found; on a
    vulnerable, mitigated or unknown one it follows the verdict's own action; a not-affected
    one keeps its action (the advisory spares it, compliance/worklist.py)."""
    new_flags = tuple(f for f in found.flags if f not in verdict.flags)
    evidence = verdict.evidence + tuple(e for e in found.evidence if e not in verdict.evidence)
    if not new_flags:
        return replace(verdict, evidence=evidence)
    action = verdict.action
    if verdict.status is Status.PATCHED and Flag.INDICATORS_FOUND in verdict.flags:
        action = f"{action}; then {found.action}"  # it starts with "OWA": kept as written
    elif verdict.status is Status.PATCHED:
        # evaluate's sentences are joined by ". "; only the one saying "None" is now untrue.
        rest = [s for s in action.split(". ") if s and not s.startswith("None")]
        action = ". ".join([found.action, *rest])
    elif verdict.status is not Status.NOT_APPLICABLE:
        action = f"{action}. {found.action}"
    return replace(verdict, flags=verdict.flags + new_flags, evidence=evidence,
                   reason=f"{verdict.reason}; {found.reason}", action=action)


class FindingKind(StrEnum):
    NAMESPACE_SERVES_UNPATCHED = "namespace_serves_unpatched"
    NOT_IN_INVENTORY = "not_in_inventory"


@dataclass(frozen=True)
class NamespaceFinding:
    """One disagreement of a namespace with the inventory. ``builds``: those the finding is
    about, ``seen``: every build the namespace answered with (full, then CU-level), each lowest
    first; ``hosts``: the servers behind it (inventory names, sorted), empty when AD names
    none."""

    namespace: str
    kind: FindingKind
    builds: tuple[Build, ...]
    hosts: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    action: str
    seen: tuple[Build, ...] = ()


def behind(namespace: str, hosts: Iterable[Host]) -> tuple[str, ...]:
    """The names of the servers whose OWA/ECP virtual directories name ``namespace``, sorted."""
    wanted = namespace.casefold()
    return tuple(sorted({h.name for h in hosts
                         if wanted in {n.casefold() for n in h.internal_names + h.external_names}}))


def judge(build: Build, catalog: Catalog, as_of: datetime) -> Verdict:
    """``build`` graded by ``evaluate`` as it would grade a server reporting it: a full build as
    ExSetup's version, a CU-level one as AD's CU level; roles, mitigations unknown."""
    host = Host(name=str(build))
    if build.revision is None:
        try:
            number = encode_version_number(build)
        except BuildParseError:  # no Exchange CU level: judged as a server with no build read
            return evaluate(Observation(host, as_of, SOURCE), catalog, as_of)
        observation = Observation(replace(host, ad_build=str(number)), as_of, SOURCE)
    else:
        observation = Observation(host, as_of, SOURCE, exsetup_version=str(build))
    return evaluate(observation, catalog, as_of)


def unpatched(verdict: Verdict) -> bool:
    """Whether ``judge``'s verdict says the build lacks the fix: vulnerable; below the fix with
    the roles unknown; or on a CU that no update fixes (``cu_update_required``)."""
    return verdict.status is Status.VULNERABLE or (verdict.status is Status.UNKNOWN and (
        verdict.unknown_reason is Reason.ROLES_UNKNOWN or Flag.CU_UPDATE_REQUIRED in verdict.flags))


def _runs(build: Build, known: Inside) -> bool:
    """Whether a server with ``known`` inside builds may be the one answering with ``build``."""
    if build.revision is not None and known.exsetup is not None:
        return build == known.exsetup
    return known.cu is not None and _order(build, known.cu, True) == 0


def compare_namespace(view: OutsideView, observations: Sequence[Observation],
                      catalog: Catalog, as_of: datetime,
                      policy: Policy | None = None) -> tuple[NamespaceFinding, ...]:
    """The findings of one namespace view against the fleet's ``observations`` (none when the
    view is unusable: untrusted, stale, from the future, or without a build)."""
    if _unusable(view, as_of, policy or Policy()):
        return ()
    seen = view.builds
    hosts = behind(view.name, (o.host for o in observations))
    insides = [inside(o) for o in observations]
    answered = _note(view, f"answered with {', '.join(map(str, seen))}" + (
        " (more than one build: requests reach different nodes)" if len(seen) > 1 else ""))
    listed = _note(view, f"servers behind it (OWA/ECP virtual directories in AD): "
                         f"{', '.join(hosts) or 'none'}")
    findings = []
    verdicts = {b: judge(b, catalog, as_of) for b in seen}
    bad = tuple(b for b in seen if unpatched(verdicts[b]))
    if bad:
        lines = tuple(Evidence(EvidenceKind.OUTSIDE_VIEW, f"{view.name}: {b} = Exchange "
                               f"{verdicts[b].product} {verdicts[b].cu or '(CU unknown)'}: "
                               + ("no update for this CU contains the fixes" if b.revision is None
                                  else "below the fix"),
                               f"catalogue {catalog.version}", view.observed_at) for b in bad)
        findings.append(NamespaceFinding(
            view.name, FindingKind.NAMESPACE_SERVES_UNPATCHED, bad, hosts,
            (answered, *lines, listed),
            f"A node behind {view.name} is unpatched ({', '.join(map(str, bad))}): find it (the "
            "load balancer's pool; the X-FEServer header names the front end) and install the "
            "update, or take it out of the pool", seen))
    unknown = tuple(b for b in seen if not any(_runs(b, known) for known in insides))
    if unknown:
        line = _note(view, f"{', '.join(map(str, unknown))}: no known server runs "
                           f"{'this build' if len(unknown) == 1 else 'these builds'} (ExSetup, "
                           "else the CU level from AD)")
        findings.append(NamespaceFinding(
            view.name, FindingKind.NOT_IN_INVENTORY, unknown, hosts, (answered, line, listed),
            f"{view.name} answered with {', '.join(map(str, unknown))}, which no known server "
            "runs: find the server behind it (load balancer pool, DNS) and bring it into the "
            "inventory, or retire it", seen))
    return tuple(findings)


@dataclass(frozen=True)
class Reconciliation:
    """The run's assessments with the outside view applied (same order), and the namespaces'
    findings (in the order of their views' names)."""

    assessments: tuple[Assessment, ...]
    namespaces: tuple[NamespaceFinding, ...]


def _newest(views: Iterable[OutsideView], kind: ViewKind) -> dict[str, OutsideView]:
    """The newest view of each name (case-folded): the server may have changed since an
    older one."""
    newest: dict[str, OutsideView] = {}
    for view in views:
        key = view.name.casefold()
        if view.kind is kind and (key not in newest or view.observed_at > newest[key].observed_at):
            newest[key] = view
    return newest


def reconcile(assessments: Sequence[Assessment], views: Iterable[OutsideView],
              catalog: Catalog, as_of: datetime, policy: Policy | None = None) -> Reconciliation:
    """Every host compared with its server view (by inventory name, else FQDN; a server view
    naming no host is ignored) and ``apply``-ed, and every namespace view compared with the
    fleet."""
    chosen = policy or Policy()
    views = tuple(views)
    servers = _newest(views, ViewKind.SERVER)
    updated = []
    for assessment in assessments:
        host = assessment.observation.host
        view = servers.get(host.name.casefold()) or servers.get((host.fqdn or "").casefold())
        found = compare_host(assessment.observation, view, as_of, chosen)
        updated.append(replace(assessment, verdict=apply(assessment.verdict, found)))
    observations = [a.observation for a in assessments]
    namespaces = _newest(views, ViewKind.NAMESPACE)
    findings = tuple(finding for key in sorted(namespaces)
                     for finding in compare_namespace(namespaces[key], observations, catalog,
                                                      as_of, chosen))
    return Reconciliation(tuple(updated), findings)

"""An upgrade plan per host: the ordered minimal steps from its build to compliance with every
given advisory and to the newest Security Update, with the prerequisites of a CU upgrade.

Rules (``plan_build``):

1. No full build (none read, CU level only from AD, on no CU the catalogue knows, newer than
   every release the catalogue knows): no plan, a reason ("read the build first").
2. The host moves to the newest CU of its product line when an advisory has no fix for its CU,
   when an advisory's update for its CU is a special one for an out-of-support CU
   (``Fix.supported_cu`` false), or when its CU gets no updates any more (its newest update is
   older than the line's newest). Before moving, an advisory's fix for the current CU that the
   host lacks is installed first (quick risk reduction); then the .NET Framework and Active
   Directory prerequisites of the target CU (``data/prerequisites.toml``), the CU, and the
   target CU's newest update.
3. Otherwise the newest update of the current CU, or "nothing to install".
4. After an update that needs AD prepared again (the July 2021 SU of 2013 CU23, the May 2022
   SUs), the Setup switch to run from the installation's Bin folder.
5. A product line out of support (``Catalog.out_of_support``) ends with "plan the move".

``Step.closes`` names the advisories a step brings into compliance; a CU upgrade can also open
one again (2013 CU23 as released has no ProxyLogon fix: the update after it closes it).

Exchange 2010 needs no rule of its own: SP3 is its only servicing level in the catalogue, so
the plan is Update Rollup 32 (the ProxyLogon fix for servers with Unified Messaging) and the
move off an unsupported product. Advisories are arguments (``Advisory`` or ``Catalog``); the
catalogue given supplies the releases and the support lifecycle.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from compliance.advisory import Advisory, Fix, ProductRule
from compliance.builds import BuildParseError, parse_ad_build, parse_build, parse_dotted
from compliance.catalog import Catalog, CuGroup, Placement
from compliance.models import Build, BuildSource, Observation, Release, ServerRole
from compliance.sulevel import newest_release, newest_update, su_level
from compliance.summary import HostSummary, full_build

# Microsoft's URL form for a KB article: support.microsoft.com serves KB5014261 at
# /en-us/help/5014261; the form without a locale is the one Microsoft Learn pages and the
# Microsoft Graph Windows Updates API (knowledgeBaseArticle.url) give, e.g.
# https://support.microsoft.com/help/5034848.
KB_URL = "https://support.microsoft.com/help/{number}"
_KB = re.compile(r"^\s*KB(\d{6,8})\s*$", re.IGNORECASE)
# The facts of a prerequisites row that its `unconfirmed` list may name.
FACTS = ("dotnet", "ad")


# The way to Exchange SE where the successor cannot be installed beside the old line.
MIGRATION_PATHS = {
    "2010": ("through Exchange 2016 CU23 (Exchange 2019 and SE cannot be installed in an "
             "organisation that still has Exchange 2010 servers)",
             "Microsoft, Exchange Server supportability matrix (coexistence: Exchange 2019 with "
             "2013 and 2016 only)"),
    "2013": ("through Exchange 2019 CU14 (or 2016 CU23), then an in-place upgrade to SE once "
             "the 2013 servers are removed: SE, like 2019 CU15, cannot be installed in an "
             "organisation with Exchange 2013",
             "jaapwesselius.com, 'Exchange Server Subscription Edition (SE) publicly "
             "available', 2025-07-01"),
}


class PrerequisiteError(ValueError):
    """The prerequisites data file is malformed; the message names the entry."""


class StepKind(StrEnum):
    INSTALL_SU = "install_su"  # an update of the CU the host is on (SU, RU or HU)
    UPGRADE_CU = "upgrade_cu"
    PREREQUISITE = "prerequisite"  # .NET Framework, Active Directory preparation, checks
    MIGRATE = "migrate"  # the product line is out of support
    NONE = "none"  # nothing to install, or nothing known closes an advisory


@dataclass(frozen=True)
class Step:
    """One step of a plan. ``closes`` names the advisories (ids) the step brings into
    compliance; ``target`` is the build an install or upgrade step leaves the host on."""

    kind: StepKind
    text: str
    target: Build | None = None
    kb: str | None = None
    link: str | None = None
    closes: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Plan:
    """The steps for one host, or none and the reason (``steps`` empty)."""

    build: Build | None
    product: str | None
    cu: str | None
    steps: tuple[Step, ...]
    reason: str
    current: bool = False
    target_cu: str | None = None
    unresolved: tuple[str, ...] = ()  # advisory ids no known update closes

    @property
    def planned(self) -> bool:
        return bool(self.steps)

    @property
    def next_step(self) -> Step | None:
        """The first thing to do on the server (an install, upgrade or prerequisite); None when
        there is no plan or nothing to install."""
        return next((s for s in self.steps if s.kind in (
            StepKind.INSTALL_SU, StepKind.UPGRADE_CU, StepKind.PREREQUISITE)), None)

    @property
    def final_build(self) -> Build | None:
        """The build the plan leaves the host on (its own when current; None: no plan)."""
        moves = [s.target for s in self.steps
                 if s.kind in (StepKind.INSTALL_SU, StepKind.UPGRADE_CU) and s.target]
        if moves:
            return moves[-1]
        return self.build if self.current else None


# -- prerequisites data -------------------------------------------------------------------

@dataclass(frozen=True)
class DotNet:
    """A .NET Framework 4.x version and the minimum ``Release`` DWORD that shows it."""

    version: str
    release: int
    source: str

    def __str__(self) -> str:
        return f".NET Framework {self.version} (Release {self.release})"


@dataclass(frozen=True)
class AdLevel:
    """What a CU's setup writes to AD: the schema's rangeUpper, the objectVersion of
    "Microsoft Exchange System Objects" (default partition) and of the organization
    (Configuration partition)."""

    range_upper: int
    default: int
    config: int


@dataclass(frozen=True)
class CuPrerequisites:
    product: str
    cu: str
    dotnet: tuple[str, ...]
    ad: AdLevel | None
    source: str
    notes: str = ""
    unconfirmed: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdAfterUpdate:
    """An update after which Setup must prepare AD again (``command``: a Setup switch)."""

    product: str
    cu: str
    build: Build
    kb: str
    command: str
    why: str
    source: str
    notes: str = ""


@dataclass(frozen=True)
class Prerequisites:
    dotnet: tuple[DotNet, ...]  # ascending
    cus: tuple[CuPrerequisites, ...]
    updates: tuple[AdAfterUpdate, ...]

    def for_cu(self, product: str | None, cu: str | None) -> CuPrerequisites | None:
        return next((row for row in self.cus if row.product == product and row.cu == cu), None)

    def version(self, name: str) -> DotNet:
        for known in self.dotnet:
            if known.version == name:
                return known
        raise KeyError(name)

    def installed(self, release: int) -> DotNet | None:
        """The version a ``Release`` value shows (the highest minimum at or below it)."""
        below = [known for known in self.dotnet if known.release <= release]
        return below[-1] if below else None

    def dotnet_range(self, product: str | None, cu: str | None) -> tuple[DotNet, DotNet] | None:
        """The oldest and newest .NET Framework versions supported with ``product`` ``cu``."""
        row = self.for_cu(product, cu)
        if row is None or not row.dotnet:
            return None
        versions = sorted((self.version(name) for name in row.dotnet), key=lambda v: v.release)
        return versions[0], versions[-1]

    def ad_changes(self, product: str, cu: str) -> tuple[str, ...]:
        """The Setup switches ``cu`` needs relative to the CU before it in the data (its
        product's previous row); () for the first row or a row without AD values."""
        rows = [row for row in self.cus if row.product == product]
        at = next((i for i, row in enumerate(rows) if row.cu == cu), None)
        if not at:
            return ()
        before, after = rows[at - 1].ad, rows[at].ad
        return ad_commands(before, after) if before and after else ()

    def after(self, product: str, cu: str, since: Build | None, until: Build
              ) -> tuple[AdAfterUpdate, ...]:
        """The AD preparations due for a move of ``product`` ``cu`` from ``since`` (None: from
        another CU) to ``until``."""
        return tuple(row for row in self.updates
                     if row.product == product and row.cu == cu and row.build <= until
                     and (since is None or since < row.build))


def ad_commands(before: AdLevel, after: AdLevel) -> tuple[str, ...]:
    """The Setup switches that bring AD from ``before`` to ``after``: /PrepareSchema for a
    higher rangeUpper, /PrepareAD for a higher organization or default objectVersion (it
    prepares its own domain), /PrepareAllDomains for the other domains when the default
    objectVersion rises."""
    commands = []
    if after.range_upper > before.range_upper:
        commands.append("PrepareSchema")
    if after.config > before.config or after.default > before.default:
        commands.append("PrepareAD")
    if after.default > before.default:
        commands.append("PrepareAllDomains")
    return tuple(commands)


def _text(entry: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise PrerequisiteError(f"{where}: {key!r} must be a non-empty string")
    return value


def _names(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PrerequisiteError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def parse_prerequisites(text: str) -> Prerequisites:
    """``Prerequisites`` from the TOML text of ``data/prerequisites.toml`` (pure), checked:
    every row sourced, every .NET version known, AD values complete, no row twice."""
    data = tomllib.loads(text)
    dotnet = []
    for entry in data.get("dotnet", []):
        where = f"dotnet {entry.get('version')!r}"
        release = entry.get("release")
        if not isinstance(release, int) or isinstance(release, bool):
            raise PrerequisiteError(f"{where}: release must be an integer")
        dotnet.append(DotNet(_text(entry, "version", where), release, _text(entry, "source", where)))
    if [d.release for d in dotnet] != sorted({d.release for d in dotnet}):
        raise PrerequisiteError("dotnet: releases must be unique and ascending")
    names = {d.version for d in dotnet}
    cus: list[CuPrerequisites] = []
    for entry in data.get("cus", []):
        where = f"cus {entry.get('product')!r} {entry.get('cu')!r}"
        versions = _names(entry, "dotnet", where)
        if set(versions) - names:
            raise PrerequisiteError(f"{where}: unknown .NET versions {sorted(set(versions) - names)}")
        unconfirmed = _names(entry, "unconfirmed", where)
        if set(unconfirmed) - set(FACTS):
            raise PrerequisiteError(f"{where}: unconfirmed may name only {FACTS}")
        values = [entry.get(key) for key in ("range_upper", "default", "config")]
        if all(value is None for value in values):
            ad = None
        elif all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            ad = AdLevel(*values)
        else:
            raise PrerequisiteError(f"{where}: range_upper, default and config go together")
        row = CuPrerequisites(_text(entry, "product", where), _text(entry, "cu", where), versions,
                              ad, _text(entry, "source", where),
                              _text(entry, "notes", where, required=False), unconfirmed)
        if any((r.product, r.cu) == (row.product, row.cu) for r in cus):
            raise PrerequisiteError(f"{where}: listed twice")
        cus.append(row)
    updates = []
    for entry in data.get("updates", []):
        where = f"updates {entry.get('kb')!r} for {entry.get('product')!r} {entry.get('cu')!r}"
        try:
            build = parse_dotted(_text(entry, "build", where))
        except BuildParseError as error:
            raise PrerequisiteError(f"{where}: {error}") from None
        command = _text(entry, "command", where)
        if command not in ("PrepareSchema", "PrepareAD", "PrepareAllDomains"):
            raise PrerequisiteError(f"{where}: unknown Setup switch {command!r}")
        updates.append(AdAfterUpdate(
            _text(entry, "product", where), _text(entry, "cu", where), build,
            _text(entry, "kb", where), command, _text(entry, "why", where),
            _text(entry, "source", where), _text(entry, "notes", where, required=False)))
    return Prerequisites(tuple(dotnet), tuple(cus), tuple(updates))


@cache
def load_prerequisites() -> Prerequisites:
    """The prerequisites shipped in ``compliance/data``."""
    path = resources.files("compliance") / "data" / "prerequisites.toml"
    return parse_prerequisites(path.read_text(encoding="utf-8"))


# -- helpers ------------------------------------------------------------------------------

def kb_link(kb: str | None) -> str | None:
    """The support.microsoft.com address of a KB article (``KB5000871``), None for no KB."""
    found = _KB.match(kb or "")
    return KB_URL.format(number=found.group(1)) if found else None


def advisory_label(advisory: Advisory) -> str:
    """The advisory's short name ("ProxyLogon"), else its id."""
    return advisory.short.strip() or advisory.id


def advisories_of(items: Iterable[Advisory | Catalog]) -> tuple[Advisory, ...]:
    """The advisories given as ``Advisory`` or ``Catalog`` (its advisory), each id once."""
    seen: dict[str, Advisory] = {}
    for item in items:
        advisory = item.advisory if isinstance(item, Catalog) else item
        seen.setdefault(advisory.id, advisory)
    return tuple(seen.values())


def _labels(advisories: Iterable[Advisory]) -> str:
    return ", ".join(advisory_label(a) for a in advisories)


def _product(product: str) -> str:
    return f"Exchange Server {product}"


def _month(released: str) -> str:
    return released[:7]


@dataclass(frozen=True)
class _Standing:
    """One advisory against one (CU, build): whether it applies and is met, and its fix."""

    advisory: Advisory
    rule: ProductRule | None
    applies: bool
    met: bool
    fix: Fix | None


# -- the plan -----------------------------------------------------------------------------

class _Planner:
    def __init__(self, build: Build, placement: Placement, catalog: Catalog,
                 advisories: tuple[Advisory, ...], on: date, dotnet_release: int | None,
                 roles: frozenset[ServerRole] | None, prerequisites: Prerequisites):
        assert placement.product is not None and placement.cu is not None
        self.build = build
        self.product: str = placement.product
        self.cu: str = placement.cu
        self.placement = placement
        self.catalog = catalog
        self.advisories = advisories
        self.on = on
        self.dotnet_release = dotnet_release
        self.roles = roles
        self.prereq = prerequisites

    # -- facts --------------------------------------------------------------------------

    def standing(self, advisory: Advisory, cu: str, build: Build) -> _Standing:
        rule = advisory.rule(self.product)
        if rule is None or not rule.cves or (
                rule.requires_role is not None and self.roles is not None
                and rule.requires_role not in self.roles):
            return _Standing(advisory, rule, False, True, None)
        fix = rule.fix_for(cu)
        first = self.catalog.cu_base(self.product, rule.fixed_from) if rule.fixed_from else None
        met = bool(fix and build >= fix.build) or bool(first and build >= first)
        return _Standing(advisory, rule, True, met, fix)

    def open_at(self, cu: str, build: Build) -> list[Advisory]:
        return [s.advisory for s in (self.standing(a, cu, build) for a in self.advisories)
                if s.applies and not s.met]

    def newest_cu(self) -> CuGroup | None:
        """The newest CU of the product line (Previews are not a target)."""
        line = [g for g in self.catalog.groups if g.product == self.product
                and (release := self.catalog.release(g.base)) is not None
                and release.kind != "Preview"]
        return max(line, key=lambda g: g.base) if line else None

    def line_newest_update(self) -> Release | None:
        updates = [u for g in self.catalog.groups if g.product == self.product
                   if (u := newest_update(self.catalog, self.product, g.cu)) is not None]
        return max(updates, key=lambda u: (u.released, u.build)) if updates else None

    def move_reasons(self, target: CuGroup) -> list[str]:
        reasons = []
        for standing in (self.standing(a, self.cu, self.build) for a in self.advisories):
            if not standing.applies:
                continue
            label = advisory_label(standing.advisory)
            if standing.fix is None and not standing.met:
                reasons.append(f"{label} has no update for {self.cu}")
            elif standing.fix is not None and not standing.fix.supported_cu:
                reasons.append(f"{label}'s update for {self.cu} ({standing.fix.kb}) is a special "
                               "one for an out-of-support CU")
        if self.cu != target.cu:
            line = self.line_newest_update()
            last = newest_update(self.catalog, self.product, self.cu)
            if line is not None and (last is None or _month(last.released) != _month(line.released)):
                since = (f"its last, {last.name}, came out {last.released}" if last
                         else "it never got one")
                reasons.append(f"{self.cu} gets no updates any more ({since}; the newest update of "
                               f"{_product(self.product)}, {line.name}, is for {line.cu})")
        return reasons

    # -- steps --------------------------------------------------------------------------

    def update_to(self, cu: str, since: Build) -> tuple[Build, Release | None, Fix | None] | None:
        """The update that brings ``cu`` from ``since`` to its newest known level and every
        applicable fix for it: the newest catalogued update, or a fix beyond it."""
        newest = newest_update(self.catalog, self.product, cu)
        fixes = [s.fix for s in (self.standing(a, cu, since) for a in self.advisories)
                 if s.applies and s.fix is not None]
        best_fix = max(fixes, key=lambda f: f.build, default=None)
        if newest is not None and (best_fix is None or newest.build >= best_fix.build):
            chosen: tuple[Build, Release | None, Fix | None] = (newest.build, newest, None)
        elif best_fix is not None:
            release = self.catalog.release(best_fix.build)
            chosen = (best_fix.build, release if release and not release.disputed else None,
                      best_fix)
        else:
            return None
        return chosen if chosen[0] > since else None

    def install_step(self, cu: str, since: Build,
                     update: tuple[Build, Release | None, Fix | None], *, quick: bool) -> Step:
        """Installing ``update`` on ``cu`` (from ``since``): first, before a CU upgrade, when
        ``quick``; else the newest update of the CU."""
        build, release, fix = update
        after = {a.id for a in self.open_at(cu, build)}
        closes = [a for a in self.open_at(cu, since) if a.id not in after]
        kb = release.kb if release else (fix.kb if fix else None)
        name = release.name if release else f"the update for {_product(self.product)} {cu}"
        what = f"{name} ({kb + ', ' if kb else ''}build {build})"
        if quick:
            text = (f"Install {what} now on {cu}: quick risk reduction before the CU upgrade; "
                    f"closes {_labels(closes)}")
            still = [a for a in self.advisories if a.id in after]
            if still:
                verb = "needs" if len(still) == 1 else "need"
                text += f" only; {_labels(still)} {verb} the CU upgrade"
        else:
            text = f"Install the newest update for {cu}: {what}"
            if closes:
                text += f"; closes {_labels(closes)}"
        sources = [release.source if release else "", fix.source if fix else ""]
        sources += [s.fix.source for s in (self.standing(a, cu, since) for a in closes)
                    if s.fix is not None]
        return Step(StepKind.INSTALL_SU, text, target=build, kb=kb, link=kb_link(kb),
                    closes=tuple(a.id for a in closes), source=_sources(sources))

    def dotnet_steps(self, target: CuGroup) -> tuple[list[Step], str]:
        """The .NET Framework step before the upgrade, and what the upgrade step says of it."""
        where = f"{_product(self.product)} {target.cu}"
        row = self.prereq.for_cu(self.product, target.cu)
        needed = self.prereq.dotnet_range(self.product, target.cu)
        if row is None or needed is None:
            return [Step(StepKind.PREREQUISITE,
                         f"Check which .NET Framework versions {where} supports (Exchange Server "
                         "supportability matrix) before upgrading: the prerequisites data has "
                         "none for it", source="data/prerequisites.toml")], ""
        low, high = needed
        if "dotnet" in row.unconfirmed:
            return [Step(StepKind.PREREQUISITE,
                         f"Check the .NET Framework {where} needs before upgrading (expected "
                         f"{low} or later, not confirmed: {row.notes})", source=row.source)], ""
        if self.dotnet_release is None:
            return [Step(StepKind.PREREQUISITE,
                         f"Check the installed .NET Framework version before upgrading: {where} "
                         f"needs {low} or later (the probe did not read it)",
                         source=row.source)], f"needs {low} or later"
        installed = self.prereq.installed(self.dotnet_release)
        shown = (f".NET Framework {installed.version} (Release {self.dotnet_release})"
                 if installed else f"Release {self.dotnet_release}")
        if self.dotnet_release < low.release:
            return [Step(StepKind.PREREQUISITE,
                         f"Install {low} or later before the CU upgrade: {where} does not "
                         f"support the installed {shown}; then upgrade the CU right away "
                         "(Microsoft's path from an unsupported CU: supportability matrix)",
                         source=row.source)], f"needs {low}"
        newer = [v for v in self.prereq.dotnet if v.release > high.release]
        if newer and self.dotnet_release >= newer[0].release:
            return [Step(StepKind.PREREQUISITE,
                         f"Check the .NET Framework before upgrading: the installed {shown} is "
                         f"newer than {where} supports (up to {high.version})",
                         source=row.source)], ""
        return [], f"the installed {shown} is supported"

    def ad_steps(self, target: CuGroup) -> tuple[list[Step], str]:
        """The Active Directory preparation before the upgrade, and what the upgrade says."""
        where = f"{_product(self.product)} {target.cu}"
        before = self.prereq.for_cu(self.product, self.cu)
        after = self.prereq.for_cu(self.product, target.cu)
        if before is None or after is None or before.ad is None or after.ad is None \
                or "ad" in after.unconfirmed:
            source = after.source if after else "data/prerequisites.toml"
            return [Step(StepKind.PREREQUISITE,
                         f"Check whether Active Directory needs preparing for {where} "
                         "(Setup /PrepareSchema, /PrepareAD) before upgrading: the AD versions "
                         f"of {self.cu} or {target.cu} are not confirmed", source=source)], ""
        commands = ad_commands(before.ad, after.ad)
        if not commands:
            return [], f"no AD preparation from {self.cu}"
        changes = []
        if "PrepareSchema" in commands:
            changes.append(f"/PrepareSchema (schema rangeUpper {before.ad.range_upper} -> "
                           f"{after.ad.range_upper})")
        if "PrepareAD" in commands:
            changes.append(f"/PrepareAD (organization objectVersion {before.ad.config} -> "
                           f"{after.ad.config})")
        if "PrepareAllDomains" in commands:
            changes.append(f"/PrepareAllDomains when the forest has more than one domain "
                           f"(objectVersion (Default) {before.ad.default} -> {after.ad.default})")
        text = (f"Prepare Active Directory with the {target.cu} setup before upgrading: run Setup "
                + ", then ".join(changes) + "; skip what AD already shows (another server's "
                "upgrade may have done it)")
        short = "run " + " and ".join("/" + c for c in commands) + " first"
        return [Step(StepKind.PREREQUISITE, text, source=_sources([before.source, after.source]))], short

    def after_steps(self, cu: str, since: Build | None, until: Build) -> list[Step]:
        rows = self.prereq.after(self.product, cu, since, until)
        if not rows:
            return []
        commands = list(dict.fromkeys(row.command for row in rows))
        why = "; ".join(f"{row.kb}: {row.why}" for row in rows)
        notes = "; ".join(row.notes for row in rows if row.notes)
        text = ("After installing it, run Setup " + ", then ".join("/" + c for c in commands)
                + " once from the Exchange installation's Bin folder (" + why + "); skip it where "
                "it was run after an earlier such update" + (f". Note: {notes}" if notes else ""))
        return [Step(StepKind.PREREQUISITE, text,
                     source=_sources(row.source for row in rows))]

    def upgrade_reason_target(self, target: CuGroup) -> str:
        named: dict[str, list[Advisory]] = {}
        for advisory in self.advisories:
            rule = advisory.rule(self.product)
            if rule is not None and rule.upgrade_to:
                named.setdefault(rule.upgrade_to, []).append(advisory)
        text = (f"{target.cu} is the newest CU of {_product(self.product)} the catalogue knows")
        for cu, advisories in named.items():
            if cu == target.cu:
                text += f", the one the advisories name ({_labels(advisories)})"
            else:
                text += (f"; {_labels(advisories)} {'names' if len(advisories) == 1 else 'name'} "
                         f"{cu}, and {target.cu} contains the fixes")
        return text

    def plan(self) -> Plan:
        target = self.newest_cu()
        start_open = self.open_at(self.cu, self.build)
        reasons = self.move_reasons(target) if target is not None else []
        base = self.placement.cu_base
        move = bool(reasons) and target is not None and target.cu != self.cu and (
            base is None or target.base > base)
        steps: list[Step] = []
        cu, build = self.cu, self.build
        label = f"{_product(self.product)} {self.cu}"
        if move:
            assert target is not None
            lacking = [s for s in (self.standing(a, cu, build) for a in self.advisories)
                       if s.applies and not s.met and s.fix is not None]
            quick = self.update_to(cu, build) if lacking else None
            if quick is not None:
                step = self.install_step(cu, build, quick, quick=True)
                steps.append(step)
                build = quick[0]
            dotnet, dotnet_note = self.dotnet_steps(target)
            ad, ad_note = self.ad_steps(target)
            steps += dotnet + ad
            release = self.catalog.release(target.base)
            kb = release.kb if release else None
            before = self.open_at(cu, build)
            after = self.open_at(target.cu, target.base)
            closes = [a for a in before if a not in after]
            reopened = [a for a in after if a not in before]
            notes = "; ".join(n for n in (dotnet_note, ad_note) if n)
            text = (f"Upgrade to {_product(self.product)} {target.cu} (build {target.base}"
                    + (f", {kb}" if kb else "") + ")" + (f" ({notes})" if notes else "")
                    + f": {'; '.join(reasons)}. Target: {self.upgrade_reason_target(target)}")
            if closes:
                text += f". Closes {_labels(closes)}"
            if reopened:
                text += (f". {_labels(reopened)} {'is' if len(reopened) == 1 else 'are'} open "
                         f"again on the bare {target.cu} until its update (next step) is installed")
            steps.append(Step(StepKind.UPGRADE_CU, text, target=target.base, kb=kb,
                              link=kb_link(kb), closes=tuple(a.id for a in closes),
                              source=release.source if release else ""))
            cu, build = target.cu, target.base
            update = self.update_to(cu, build)
            if update is not None:
                steps.append(self.install_step(cu, build, update, quick=False))
                steps += self.after_steps(cu, None, update[0])
                build = update[0]
        else:
            update = self.update_to(cu, build)
            if update is not None:
                steps.append(self.install_step(cu, build, update, quick=False))
                steps += self.after_steps(cu, build, update[0])
                build = update[0]
        unresolved = self.open_at(cu, build)
        for advisory in unresolved:
            rule = advisory.rule(self.product)
            interim = [advisory.mitigation(m).title for m in rule.mitigated_when] if rule else []
            steps.append(Step(StepKind.NONE,
                              f"No update the catalogue knows closes {advisory_label(advisory)} "
                              f"on {_product(self.product)} {cu}: "
                              + ("apply the interim mitigation (" + "; ".join(interim) + ")"
                                 if interim else "isolate the server from the internet"),
                              source=rule.source if rule else advisory.url))
        current = not steps
        if current:
            applying = [a for a in self.advisories if self.standing(a, cu, build).applies]
            newest = newest_release(self.catalog, self.product, cu)
            steps.append(Step(StepKind.NONE,
                              f"Nothing to install: {label} runs "
                              + (f"{newest.name} ({newest.build}), the newest release the catalogue "
                                 "knows for its CU" if newest else f"build {build}")
                              + (f", and meets {_labels(applying)}" if applying else ""),
                              target=build, source=newest.source if newest else ""))
        ended = self.catalog.out_of_support(self.product, self.on)
        if ended is not None and ended.end_of_support is not None:
            path, why = MIGRATION_PATHS.get(self.product, ("", ""))
            steps.append(Step(StepKind.MIGRATE,
                              f"{_product(self.product)} is out of support since "
                              f"{ended.end_of_support.isoformat()}: plan the move to Exchange "
                              f"{ended.successor or 'Server SE'}" + (f" {path}" if path else ""),
                              source=_sources((ended.source, why))))
        level = su_level(self.build, self.catalog)
        summary = f"{label} ({self.build}): {level.reason}"
        if move and target is not None:
            summary += f"; moves to {target.cu}: {'; '.join(reasons)}"
        if start_open:
            summary += f"; open: {_labels(start_open)}"
        return Plan(self.build, self.product, self.cu, tuple(steps), summary, current=current,
                    target_cu=cu, unresolved=tuple(a.id for a in unresolved))


def _sources(parts: Iterable[str]) -> str:
    """Sources joined once each (``a; b`` and ``b; c`` give ``a; b; c``)."""
    keys = (key.strip() for part in parts for key in part.split(";"))
    return "; ".join(dict.fromkeys(key for key in keys if key))


def _no_plan(build: Build | None, placement: Placement | None, reason: str) -> Plan:
    return Plan(build, placement.product if placement else None,
                placement.cu if placement else None, (), reason)


def plan_build(build: Build | None, catalog: Catalog, advisories: Sequence[Advisory | Catalog],
               *, on: date, dotnet_release: int | None = None,
               roles: frozenset[ServerRole] | None = None,
               prerequisites: Prerequisites | None = None) -> Plan:
    """The plan for a host on ``build`` (ExSetup.exe's version), judged on ``on`` against
    ``advisories``; ``catalog`` gives the releases and the support lifecycle. ``roles`` None:
    unknown, so a rule that needs a role applies. ``dotnet_release`` is the installed .NET
    Framework's Release value (None: not read)."""
    if build is None:
        return _no_plan(None, None, "read the build first: ExSetup.exe's version was not read "
                        "(run the probe)")
    placement = catalog.place(build)
    if build.revision is None:
        return _no_plan(build, placement, "read the build first: only the CU level is known "
                        f"({build}); the plan needs ExSetup.exe's version")
    if placement.product is None or placement.cu is None:
        return _no_plan(build, placement, f"read the build first: build {build} is on no CU the "
                        f"catalogue knows (catalogue of {catalog.newest_release}); check "
                        "ExSetup.exe's version, or update the catalogue")
    newest = newest_release(catalog, placement.product, placement.cu)
    if newest is None:
        return _no_plan(build, placement, "read the build first: the catalogue has no undisputed "
                        f"release of {_product(placement.product)} {placement.cu}")
    if placement.release is None and build > newest.build:
        return _no_plan(build, placement, f"read the build first: build {build} is newer than "
                        "every release the catalogue knows for "
                        f"{_product(placement.product)} {placement.cu}; update the catalogue")
    planner = _Planner(build, placement, catalog, advisories_of(advisories), on, dotnet_release,
                       roles, prerequisites or load_prerequisites())
    plan = planner.plan()
    if placement.release is not None and placement.release.disputed:
        plan = Plan(plan.build, plan.product, plan.cu, plan.steps,
                    plan.reason + f"; build {build} is disputed between sources, so the plan "
                    f"takes it as {placement.cu} below its updates", plan.current,
                    plan.target_cu, plan.unresolved)
    return plan


def plan_host(observation: Observation, catalog: Catalog,
              advisories: Sequence[Advisory | Catalog], *, on: date,
              prerequisites: Prerequisites | None = None) -> Plan:
    """``plan_build`` for what one observation saw: ExSetup.exe's version, the .NET Framework
    release and the roles. A host known only by AD's CU level gets no plan."""
    text = observation.exsetup_version
    if text is None or not text.strip():
        cu_level = None
        for raw, source in ((observation.host.ad_build, None),
                            (observation.admin_display_version, BuildSource.ADMIN_DISPLAY_VERSION)):
            if raw and raw.strip() and cu_level is None:
                try:
                    cu_level = parse_ad_build(raw)[0] if source is None else parse_build(raw, source)
                except BuildParseError:
                    continue
        if cu_level is not None:
            placement = catalog.place(cu_level)
            where = (f"{_product(placement.product)} {placement.cu}"
                     if placement.product and placement.cu else str(cu_level))
            return _no_plan(None, placement, f"read the build first: only the CU level is known "
                            f"from AD ({where}); the plan needs ExSetup.exe's version")
        return _no_plan(None, None, "read the build first: ExSetup.exe's version was not read "
                        "(run the probe)")
    try:
        build = parse_build(text, BuildSource.EXSETUP)
    except BuildParseError as error:
        return _no_plan(None, None, f"read the build first: ExSetup.exe's version {text!r} is "
                        f"unreadable ({error})")
    return plan_build(build, catalog, advisories, on=on,
                      dotnet_release=observation.dotnet_release, roles=observation.host.roles,
                      prerequisites=prerequisites)


def next_steps(summaries: Iterable[HostSummary], catalog: Catalog,
               advisories: Sequence[Advisory | Catalog], *, on: date
               ) -> dict[str, tuple[Step | None, str]]:
    """Per host name: the first step of its plan (``Plan.next_step``; None when there is
    nothing to install or no plan) and, without one, why (``Plan.reason`` or the last step's
    text). From the summary's build and roles (the .NET release is not in a summary: the step
    says to check it); hosts sharing a build and roles are planned once."""
    memo: dict[tuple[str, str, tuple[ServerRole, ...]], tuple[Step | None, str]] = {}
    steps = {}
    for summary in summaries:
        key = (summary.build, summary.build_source, summary.roles)
        if key not in memo:
            plan = plan_build(full_build(summary.build, summary.build_source), catalog,
                              advisories, on=on,
                              roles=frozenset(summary.roles) or None)
            step = plan.next_step
            memo[key] = (step, "" if step else
                         (plan.steps[-1].text if plan.steps else plan.reason))
        steps[summary.host] = memo[key]
    return steps

"""Grade one observation against the catalogue and its advisory: ``evaluate()``.

Fail closed: only a build read from the server itself (ExSetup.exe's file version, or an
installed-update record for the CU the server is on) or a CU that already contains the fix
can make a host ``patched``. Anything unreachable, stale, unparseable or unplaceable is
``unknown``, with the reason and the next action.

Advisory-neutral: what it says of an advisory ("ProxyLogon", "the March 2021 fixes") comes from
the advisory's file (``Advisory.short``, ``fixes_name``, ...). The compromise-indicator checks
are Test-ProxyLogon's, of the March 2021 CVEs: a hit flags ``indicators_found`` whatever the
advisory (a back door matters whatever let it in), but an unread check flags
``indicators_unreadable`` only for the advisory whose CVE it checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from compliance.advisory import Fix, ProductRule
from compliance.builds import BuildParseError, parse_ad_build, parse_build, parse_dotted
from compliance.catalog import CU_KINDS, Catalog, Placement
from compliance.failures import verdict_reason
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
    Snapshot,
    Status,
    Verdict,
    WebConfigState,
    probe_error_part,
)

RECOLLECT = "collect again"


@dataclass(frozen=True)
class Policy:
    """Judgement settings that are the operator's choice, not facts."""

    max_age: timedelta = timedelta(days=7)
    clock_skew: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class _Context:
    """What is known about the host's product and CU before grading."""

    build: Build | None
    source: BuildSource | None
    placement: Placement | None
    rule: ProductRule | None
    fix: Fix | None


class _Grader:
    def __init__(self, obs: Observation, catalog: Catalog, as_of: datetime, policy: Policy):
        self.obs = obs
        self.catalog = catalog
        self.advisory = catalog.advisory
        self.as_of = as_of
        self.policy = policy
        self.evidence: list[Evidence] = []
        self.flags: list[Flag] = []
        self.parse_errors: list[str] = []
        self.unread_checks: list[str] = []

    # -- facts --------------------------------------------------------------------------

    def note(self, kind: EvidenceKind, value: str, source: str) -> None:
        self.evidence.append(Evidence(kind, value, source, self.obs.observed_at))

    def flag(self, flag: Flag) -> None:
        if flag not in self.flags:
            self.flags.append(flag)

    def _parse(self, text: str | None, source: BuildSource | None) -> tuple[Build, BuildSource] | None:
        if text is None or not text.strip():
            return None
        try:
            return (parse_build(text, source), source) if source else parse_ad_build(text)
        except BuildParseError as error:
            label = source.value if source else "ad_build"
            self.parse_errors.append(f"{label}: {error}")
            self.note(EvidenceKind.UNPARSEABLE_BUILD, text, label)
            return None

    def context(self) -> tuple[_Context, _Context | None]:
        """The ExSetup build (if any) and the CU-level build from AD (if any)."""
        exsetup = self._parse(self.obs.exsetup_version, BuildSource.EXSETUP)
        cu_level = self._parse(self.obs.host.ad_build, None) or self._parse(
            self.obs.admin_display_version, BuildSource.ADMIN_DISPLAY_VERSION
        )
        if exsetup:
            self.note(EvidenceKind.EXSETUP_BUILD, str(exsetup[0]), "ExSetup.exe file version")
        if cu_level:
            self.note(EvidenceKind.AD_BUILD, f"{cu_level[0]} (CU level only)", cu_level[1].value)
        ad_ctx = self._ctx(cu_level) if cu_level else None
        ex_ctx = self._ctx(exsetup) if exsetup else None
        if ex_ctx and ad_ctx and ad_ctx.placement and ex_ctx.placement and (
            ad_ctx.placement.cu != ex_ctx.placement.cu
        ):
            self.note(EvidenceKind.DRIFT, f"AD says {ad_ctx.placement.cu}, ExSetup says "
                      f"{ex_ctx.placement.cu}", "comparison")
        best = ex_ctx or ad_ctx or _Context(None, None, None, None, None)
        return best, ad_ctx

    def _ctx(self, parsed: tuple[Build, BuildSource]) -> _Context:
        build, source = parsed
        placement = self.catalog.place(build)
        if source.cu_level_only and placement.release is not None and \
                placement.release.kind not in CU_KINDS:
            # A CU-level value names the CU, never an update: label it with the CU's release.
            placement = replace(placement, release=self.catalog.release(placement.cu_base)
                                if placement.cu_base else None)
        rule = self.advisory.rule(placement.product)
        fix = rule.fix_for(placement.cu) if rule else None
        return _Context(build, source, placement, rule, fix)

    # -- grading ------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        obs = self.obs
        ctx, ad_ctx = self.context()
        if ctx.placement and ctx.placement.release:
            release = ctx.placement.release
            self.note(EvidenceKind.CATALOGUE, f"{release.build} = {release.name}", release.source)
        for finding in obs.host.problems:  # what the inventory (AD) found wrong with its record
            self.note(EvidenceKind.INVENTORY, finding, "inventory (AD)")
        for update in obs.installed_updates:
            self.note(EvidenceKind.INSTALLED_UPDATE, f"{update.kb} {update.name}".strip(),
                      f"installed-update record{' ' + update.installed_on if update.installed_on else ''}")
        if obs.indicators:  # hits of the four CVE checks only; a compromise under any advisory
            self.flag(Flag.INDICATORS_FOUND)
            for indicator in obs.indicators:
                self.note(EvidenceKind.INDICATOR, indicator, "probe")
        if obs.suspicious_files:
            # Listed for review, not judged: Test-ProxyLogon stopped reporting them on their own
            # because archives under ProgramData (an antivirus agent's own) were false positives.
            self.flag(Flag.SUSPICIOUS_FILES)
            for found in obs.suspicious_files:
                self.note(EvidenceKind.SUSPICIOUS_FILE, found, "probe (for review, not a CVE check hit)")
        self._mitigation_facts()
        self._web_config_facts()
        self.unread_checks = [error for error in obs.probe_errors
                              if probe_error_part(error) in self.advisory.cve_ids]
        if self.unread_checks:
            # An empty list beside the error that emptied it is not "no indicators".
            self.flag(Flag.INDICATORS_UNREADABLE)
        if obs.log_window_days is not None:
            self.note(EvidenceKind.LOG_WINDOW, f"indicator search reached {obs.log_window_days:.0f} days back"
                      + (" (cut short by a cap or the deadline)" if obs.indicators_truncated else ""),
                      "probe")
        for error in obs.probe_errors:
            self.note(EvidenceKind.PROBE_ERROR, error, "probe")
        self._cu_flags(ctx)

        if obs.failure is not None:
            self.note(EvidenceKind.FAILURE, f"{obs.failure.reason}: {obs.failure.detail}", obs.source)
            hint = obs.failure.hint or f"fix access to {obs.host.name}"
            return self.unknown(ctx, verdict_reason(obs.failure.reason),
                                f"collection failed ({obs.failure.reason}): {obs.failure.detail}",
                                f"{_cap(hint)}, then {RECOLLECT}")
        if obs.observed_at is None:
            return self.unknown(ctx, Reason.NO_OBSERVATION,
                                "never probed: the host is in the fleet, but no run has "
                                "observed it yet",
                                f"Run the probe on {obs.host.name} ({RECOLLECT})")
        age = self.as_of - obs.observed_at
        if age > self.policy.max_age:
            return self.unknown(ctx, Reason.STALE,
                                f"last observation is {_days(age)} old (limit {_days(self.policy.max_age)})",
                                f"Collect again: the data for {obs.host.name} is stale")
        if -age > self.policy.clock_skew:
            return self.unknown(ctx, Reason.FUTURE,
                                f"observation is dated {obs.observed_at.isoformat()}, after {self.as_of.isoformat()}",
                                "Check the collector's clock, then collect again")
        if self.parse_errors and ctx.build is None:
            return self.unknown(ctx, Reason.UNPARSEABLE_BUILD, "; ".join(self.parse_errors),
                                f"Check the build reported by {obs.host.name} and collect again")
        if ctx.rule is None:
            if ctx.build is None:
                return self.unknown(ctx, Reason.NO_BUILD, "no build was reported",
                                    f"Run the probe on {obs.host.name} to read ExSetup.exe's version")
            return self.unknown(ctx, Reason.UNPLACEABLE_BUILD,
                                f"build {ctx.build} belongs to no product this advisory covers",
                                "Update the build catalogue, or check the reported build")
        if not ctx.rule.affected:
            # Named by the advisory as not affected (its source says why): whatever the build.
            why = f"{_product(ctx.rule)} is not affected by {self.advisory.short}"
            self.note(EvidenceKind.CATALOGUE, why, ctx.rule.source)
            return self.finish(ctx, Status.NOT_APPLICABLE, f"{why} ({ctx.rule.source})",
                               "None: this server is not affected", ())
        roles = obs.host.roles
        if ctx.rule.requires_role and roles is not None and ctx.rule.requires_role not in roles:
            self.note(EvidenceKind.ROLES, ", ".join(sorted(roles)) or "(none)", "inventory")
            return self.finish(ctx, Status.NOT_APPLICABLE,
                               f"Exchange {ctx.rule.product} without the {ctx.rule.requires_role} "
                               "role is not affected", "None: this server is not affected", ())
        if ctx.source is BuildSource.EXSETUP:
            return self.grade_exsetup(ctx)
        return self.grade_cu_level(ctx, ad_ctx)

    def grade_exsetup(self, ctx: _Context) -> Verdict:
        assert ctx.build is not None and ctx.placement is not None and ctx.rule is not None
        build, rule, fix, placement = ctx.build, ctx.rule, ctx.fix, ctx.placement
        if placement.release is None:
            self.flag(Flag.NOT_IN_CATALOG)
        if placement.cu is None:
            # Not on any CU the catalogue knows (Security Updates keep their CU's build number):
            # a CU released after the catalogue, or a build no release has. Either way it cannot
            # be placed, so it is not patched, however high it is.
            return self.unknown(ctx, Reason.UNPLACEABLE_BUILD,
                                f"build {build} is not in the catalogue and is on no CU it knows "
                                f"(catalogue of {self.catalog.newest_release})",
                                "Update the build catalogue, or check the reported build")
        ended = self.catalog.lifecycle.get(rule.product)
        if placement.release is None and ended and ended.final_update and \
                build > ended.final_update:
            return self.unknown(ctx, Reason.UNPLACEABLE_BUILD,
                                f"build {build} is above {ended.final_update}, the last update "
                                f"Microsoft shipped for Exchange {rule.product}: no such "
                                "release exists",
                                "Check the reported build (ExSetup.exe's file version)")
        if fix and build >= fix.build:
            return self.patched(ctx, f"ExSetup {build} is at or above the fix for "
                                f"{_product(rule)} {fix.cu} ({fix.build})")
        first = self._first_fixed_base(rule)
        if first and build >= first:
            return self.patched(ctx, f"ExSetup {build} is at or after {_product(rule)} "
                                f"{rule.fixed_from} ({first}), which contains the fixes")
        if placement.release and placement.release.disputed:
            self.flag(Flag.DISPUTED_BUILD)
            return self.unknown(ctx, Reason.DISPUTED,
                                f"build {build} is disputed between sources ({placement.release.notes})",
                                f"Check the installed updates on {self.obs.host.name} "
                                f"(expect {fix.kb if fix else 'a CU update'}) and collect again")
        return self.exposed(ctx, f"ExSetup {build} is below the fix for {_product(rule)} "
                            f"{placement.cu}" + (f" ({fix.build})" if fix else
                                                 f": no {self.advisory.update_name} exists "
                                                 "for this CU"))

    def grade_cu_level(self, ctx: _Context, ad_ctx: _Context | None) -> Verdict:
        assert ctx.rule is not None
        rule, placement, fix = ctx.rule, ctx.placement, ctx.fix
        if placement is None or placement.cu is None:
            return self.unknown(ctx, Reason.UNPLACEABLE_BUILD,
                                f"AD build {ctx.build} cannot be placed in a CU",
                                f"Run the probe on {self.obs.host.name} to read ExSetup.exe's version")
        first = self._first_fixed_base(rule)
        if first and placement.cu_base is not None and placement.cu_base >= first:
            return self.patched(ctx, f"AD shows {_product(rule)} {placement.cu}, a CU that "
                                f"contains {self.advisory.fixes_name}")
        kbs = self._kbs_for(rule.product, placement.cu)
        if fix and fix.kb.upper() in kbs:
            self.note(EvidenceKind.INSTALLED_UPDATE_PROOF, f"{fix.kb} recorded on {rule.product} {fix.cu}",
                      "installed-update record")
            proven = _Context(fix.build, BuildSource.INSTALLED_UPDATE,
                              self.catalog.place(fix.build), rule, fix)
            return self.patched(proven, f"{fix.kb}, the fix for {_product(rule)} {fix.cu}, is "
                                "recorded as installed (ExSetup version not read)")
        later = (self.catalog.later_update(rule.product, placement.cu, fix.build, kbs)
                 if fix else None)
        if fix and later:
            self.note(EvidenceKind.INSTALLED_UPDATE_PROOF,
                      f"{later.kb} ({later.name}, {later.build}) recorded on {rule.product} "
                      f"{placement.cu}; Security Updates are cumulative for their CU, so it "
                      f"supersedes {fix.kb} ({self.advisory.fix_name}, {fix.build})",
                      f"installed-update record; catalogue ({later.source})")
            proven = _Context(later.build, BuildSource.INSTALLED_UPDATE,
                              self.catalog.place(later.build), rule, fix)
            return self.patched(proven, f"{later.kb}, a later Security Update for "
                                f"{_product(rule)} {placement.cu} that supersedes {fix.kb}, is "
                                "recorded as installed (ExSetup version not read)")
        return self.unknown(ctx, Reason.AD_ONLY,
                            f"only the CU level is known ({_product(rule)} {placement.cu}); AD never "
                            "shows the Security Update level",
                            f"Run the probe on {self.obs.host.name} to read ExSetup.exe's version"
                            + ("" if fix else "; this CU got no fix, plan a CU update"))

    def _kbs_for(self, product: str, cu: str) -> set[str]:
        """The KBs recorded as installed that may prove something for ``product`` ``cu``.

        Microsoft reuses one KB number across CUs and product lines (KB5000871 is the March
        fix for every CU), so a record whose own name states another CU or product proves
        nothing here: a record left from before a CU upgrade, for instance."""
        kbs = set()
        for update in self.obs.installed_updates:
            named_product, named_cu = _named_cu(update.name)
            if (named_product or product) != product or (named_cu or cu) != cu:
                where = " ".join(p for p in (named_product or product, named_cu) if p)
                self.note(EvidenceKind.INSTALLED_UPDATE_IGNORED, f"{update.kb} is recorded for Exchange "
                          f"{where}, not Exchange {product} {cu} as AD shows",
                          "installed-update record")
                continue
            kbs.add(update.kb.strip().upper())
        return kbs

    # -- outcomes -----------------------------------------------------------------------

    def _first_fixed_base(self, rule: ProductRule) -> Build | None:
        return self.catalog.cu_base(rule.product, rule.fixed_from) if rule.fixed_from else None

    def _cu_flags(self, ctx: _Context) -> None:
        if ctx.rule is None or not ctx.rule.affected or ctx.placement is None or \
                ctx.placement.cu is None:
            return
        if ctx.fix is not None:
            if not ctx.fix.supported_cu and ctx.rule.product != "2010":
                self.flag(Flag.UNSUPPORTED_CU)
            return
        first = self._first_fixed_base(ctx.rule)
        base = ctx.placement.cu_base
        if not (first and base is not None and base >= first):
            self.flag(Flag.CU_UPDATE_REQUIRED)

    def patched(self, ctx: _Context, reason: str) -> Verdict:
        rule = ctx.rule
        assert rule is not None
        advisory = self.advisory
        if Flag.UNSUPPORTED_CU in self.flags and rule.upgrade_to:
            action = (f"None for {advisory.short}. The special update for an out-of-support CU "
                      f"fixes only {advisory.cves_name}: move to {_product(rule)} "
                      f"{rule.upgrade_to} and its latest Security Update")
        else:
            action = f"None: {advisory.fixes_name} are installed"
        return self.finish(ctx, Status.PATCHED, reason, action, ())

    def exposed(self, ctx: _Context, reason: str) -> Verdict:
        rule = ctx.rule
        assert rule is not None
        if rule.requires_role and self.obs.host.roles is None:
            return self.unknown(ctx, Reason.ROLES_UNKNOWN,
                                f"{reason}; {_product(rule)} is affected only with the "
                                f"{rule.requires_role} role, and the roles are unknown",
                                f"Check whether {self.obs.host.name} has the {rule.requires_role} "
                                f"role; if it has, {self._fix_action(ctx)[:1].lower()}"
                                f"{self._fix_action(ctx)[1:]}")
        present: list[str] = []
        unread: dict[str, str] = {}  # mitigation id -> the probe error that left it unread
        if self.obs.mitigations is not None:
            for mitigation in self.advisory.mitigations:
                if rule.product not in mitigation.products:
                    continue
                error = mitigation.unreadable(self.obs.probe_errors, self.obs.mitigations)
                if mitigation.present(self.obs.mitigations, self.obs.probe_errors):
                    present.append(mitigation.id)
                    seen = mitigation.describe(self.obs.mitigations)
                elif error is not None:
                    # An empty list beside the error that emptied it is unknown, not missing.
                    unread[mitigation.id] = error
                    seen = f"could not be read: {error}"
                else:
                    seen = mitigation.describe(self.obs.mitigations)
                self.note(EvidenceKind.MITIGATION, f"{mitigation.id}: {seen}", "probe")
        mitigated = bool(rule.mitigated_when) and all(m in present for m in rule.mitigated_when)
        # Still vulnerable: the build is below the fix, and nothing shows a mitigation. But
        # flagged, and never told "nothing applied": the mitigation may be in place unseen.
        unknown_needed = [m for m in rule.mitigated_when if m in unread]
        if not mitigated and unknown_needed:
            self.flag(Flag.MITIGATION_UNREADABLE)
        status = Status.MITIGATED if mitigated else Status.VULNERABLE
        fix_action = self._fix_action(ctx)
        if mitigated:
            action = f"{fix_action}; the interim mitigation only holds until then"
        elif unknown_needed:
            needed = [self.advisory.mitigation(m) for m in unknown_needed]
            action = (f"{fix_action}; until then check by hand whether the interim mitigation "
                      f"is in place ({'; '.join(m.title for m in needed)}), and "
                      f"{needed[0].grant(unread[unknown_needed[0]])} so the next collection can "
                      "read it")
        elif ctx.fix is not None:
            action = f"{fix_action}; until then {self._interim(rule)}"
        else:
            action = fix_action
        if mitigated:
            reason += "; interim mitigation in place: " + ", ".join(present)
        elif unknown_needed:
            reason += ("; whether the interim mitigation is in place is unknown (could not be "
                       f"read: {unread[unknown_needed[0]]})")
        elif present:
            reason += "; partial mitigations only: " + ", ".join(present)
        return self.finish(ctx, status, reason, action, tuple(present))

    def _mitigation_facts(self) -> None:
        """What the probe read beside the rules, kept as evidence: the URL Rewrite module,
        EOMT's record, Defender's security intelligence (its automatic mitigation)."""
        seen = self.obs.mitigations
        if seen is None:
            return
        if seen.url_rewrite_module:
            self.note(EvidenceKind.URL_REWRITE_MODULE, seen.url_rewrite_module, "probe (uninstall entry)")
        if seen.eomt is not None:
            stages = ", ".join(f"{name} {'ok' if text.startswith('1') else 'failed'}"
                               for name, text in sorted(seen.eomt.items())
                               if name.casefold() != "timestamp")
            self.note(EvidenceKind.EOMT, f"EOMT ran (PatchState Timestamp {seen.eomt.get('Timestamp', '?')}"
                      + (f"; {stages}" if stages else "") + ")",
                      "probe (HKLM\\SOFTWARE\\MSERTBootstrap\\PatchState)")
        rule = self.advisory.defender
        if rule and seen.defender_signature_version is not None:
            try:
                version = parse_dotted(seen.defender_signature_version)
                if version.major != rule.min_signature_version.major:
                    raise BuildParseError("not a security intelligence version")
            except BuildParseError:
                self.note(EvidenceKind.DEFENDER, f"security intelligence {seen.defender_signature_version} "
                          "(unreadable version)", "probe")
                return
            covers = ", ".join(rule.covers)
            if version >= rule.min_signature_version:
                text = (f"security intelligence {version}: at or above "
                        f"{rule.min_signature_version}, so Defender's automatic mitigation of "
                        f"{covers} was in place if Defender is the active antivirus (evidence "
                        "only, not proof)")
            else:
                text = (f"security intelligence {version}: below {rule.min_signature_version}, "
                        f"so Defender's automatic mitigation of {covers} was not in place")
            self.note(EvidenceKind.DEFENDER, text, f"probe; {rule.source}")

    def _web_config_facts(self) -> None:
        """The OWA/ECP web.config files as evidence, flagged ``web_config_broken`` when one
        holds the literal %ExchangeInstallDir%. A file that could not be read is said to be
        unknown, never fine; a missing one is counted (2010 has no FrontEnd folder)."""
        files = self.obs.web_configs
        if files is None:  # not checked
            return
        source = "probe (web.config)"
        for file in files:
            if file.state is WebConfigState.UNRESOLVED:
                self.flag(Flag.WEB_CONFIG_BROKEN)
                self.note(EvidenceKind.WEB_CONFIG, f"{file.path}: %ExchangeInstallDir% left "
                          "unresolved (OWA/ECP cannot load it)", source)
            elif file.state is WebConfigState.UNREADABLE:
                self.note(EvidenceKind.WEB_CONFIG, f"{file.path}: could not be read, so whether "
                          "%ExchangeInstallDir% is left in it is unknown", source)
        fine = sum(f.state is WebConfigState.FINE for f in files)
        missing = sum(f.state is WebConfigState.MISSING for f in files)
        if fine or missing:
            self.note(EvidenceKind.WEB_CONFIG, f"{fine} OWA/ECP web.config file(s) read without "
                      "%ExchangeInstallDir%" + (f", {missing} not present" if missing else ""),
                      source)

    def _web_config_action(self) -> str:
        """The fix for ``web_config_broken`` (Microsoft: "Repair failed installations of
        Exchange Cumulative and Security updates", shared/reference/outside_view.md F6)."""
        broken = [f.path for f in self.obs.web_configs or ()
                  if f.state is WebConfigState.UNRESOLVED]
        roots = {root for root, _ in map(_install_split, broken) if root}
        named = ", ".join(rest for _, rest in map(_install_split, broken))
        root = f" ({roots.pop()})" if len(roots) == 1 else ""
        return (f"Repair OWA/ECP: %ExchangeInstallDir% is left unresolved in {named}; rerun the "
                "Security Update from an elevated command prompt, or replace "
                f"%ExchangeInstallDir% in each file with the Exchange install path{root}, then "
                "run iisreset and check that OWA and ECP sign in")

    def _fix_action(self, ctx: _Context) -> str:
        rule, fix = ctx.rule, ctx.fix
        assert rule is not None
        if fix is not None:
            name = self.catalog.name_of(fix.build) or f"{_product(rule)} {fix.cu} update"
            action = f"Install {fix.kb} ({name}, {fix.build})"
            if not fix.supported_cu and rule.upgrade_to:
                action += f", then move to {_product(rule)} {rule.upgrade_to}"
            return action
        target = rule.upgrade_to
        interim = self._interim(rule)
        if not target:
            return f"Replace or upgrade this {_product(rule)} server; {interim}"
        target_fix = rule.fix_for(target)
        if target_fix is not None:
            return (f"Update to {_product(rule)} {target}, then install {target_fix.kb} "
                    f"({target_fix.build}); {interim}")
        return (f"Update to {_product(rule)} {target} or later (it contains "
                f"{self.advisory.fixes_name}) and install its latest Security Update; {interim}")

    def _interim(self, rule: ProductRule) -> str:
        titles = [self.advisory.mitigation(m).title for m in rule.mitigated_when]
        return "apply the interim mitigation now: " + "; ".join(titles) if titles else (
            "isolate the server from the internet")

    def unknown(self, ctx: _Context, why: Reason, reason: str, action: str) -> Verdict:
        return self.finish(ctx, Status.UNKNOWN, reason, action, (), why)

    def finish(self, ctx: _Context, status: Status, reason: str, action: str,
               present: tuple[str, ...], why: Reason | None = None) -> Verdict:
        rule = ctx.rule
        placement = ctx.placement
        if Flag.INDICATORS_FOUND in self.flags:
            # A patch does not remove a web shell planted before it: investigating comes first.
            action = _indicator_action("" if status.compliant else action)
        if Flag.WEB_CONFIG_BROKEN in self.flags:
            # Availability, not the CVE fix: the status stands; but the update that left the
            # file broken may not have completed, so the host needs a person (worklist.py).
            broken = sum(f.state is WebConfigState.UNRESOLVED for f in self.obs.web_configs or ())
            reason += (f"; {broken} OWA/ECP web.config file(s) hold an unresolved "
                       "%ExchangeInstallDir%, so OWA/ECP fail to load (availability, not the CVE "
                       "fix; but the update that left it may not have completed)")
            repair = self._web_config_action()
            if status is Status.PATCHED and Flag.INDICATORS_FOUND in self.flags:
                action = f"{action}; then {repair[:1].lower()}{repair[1:]}"
            elif status is Status.PATCHED:
                # Sentences are joined by ". "; only the one saying "None" is now untrue.
                rest = [part for part in action.split(". ")
                        if part and not part.startswith("None")]
                action = ". ".join([repair, *rest])
            elif status is not Status.NOT_APPLICABLE:
                action = f"{action}. {repair}"
        if Flag.INDICATORS_UNREADABLE in self.flags and Flag.INDICATORS_FOUND not in self.flags:
            action += (f". {len(self.unread_checks)} compromise check(s) could not read their "
                       f"logs ({self.unread_checks[0][:120]}): grant the probe account read "
                       "access to the Exchange Logging folders and the Application event log, "
                       "or run Test-ProxyLogon there as a local administrator")
        if Flag.SUSPICIOUS_FILES in self.flags and Flag.INDICATORS_FOUND not in self.flags:
            action += (f". Review the {len(self.obs.suspicious_files)} file(s) the probe listed "
                       "(archives or memory dumps; no CVE check hit, so no compromise verdict)")
        ended = self.catalog.out_of_support(placement.product if placement else None,
                                            self.as_of.date())
        if ended is not None and ended.end_of_support is not None:
            self.flag(Flag.OUT_OF_SUPPORT)
            self.note(EvidenceKind.SUPPORT, f"Exchange Server {ended.product} left extended support on "
                      f"{ended.end_of_support.isoformat()} (security updates after it only "
                      "through a paid Extended Security Update programme, if any)",
                      ended.source)
            action += (f". Exchange Server {ended.product} is out of support since "
                       f"{ended.end_of_support.isoformat()}: plan the move to Exchange "
                       f"{ended.successor or 'SE'}")
        if status in (Status.PATCHED, Status.NOT_APPLICABLE):
            open_cves: tuple[str, ...] = ()
        else:
            affected = rule.cves if rule else self.advisory.cve_ids
            covered = {cve for m in present for cve in self.advisory.mitigation(m).covers}
            open_cves = tuple(cve for cve in affected if cve not in covered)
        return Verdict(
            host=self.obs.host.name, status=status, reason=reason, action=action,
            as_of=self.as_of, product=placement.product if placement else None,
            cu=placement.cu if placement else None,
            build=str(ctx.build) if ctx.build else None, build_source=ctx.source,
            release_name=placement.release.name if placement and placement.release else None,
            known=bool(placement and placement.release), cves_open=open_cves,
            mitigations=present, flags=tuple(self.flags), evidence=tuple(self.evidence),
            unknown_reason=why, advisory=f"{self.advisory.id}/{self.advisory.version}",
        )


_CU_NAMED = re.compile(r"\bCumulative Update (\d+)\b|\bCU ?(\d+)\b", re.IGNORECASE)
_PRODUCT_NAMED = re.compile(r"\bExchange Server (2010|2013|2016|2019)\b", re.IGNORECASE)


def _named_cu(name: str) -> tuple[str | None, str | None]:
    """(product, CU) as an installed update's name states them ("Security Update for Exchange
    Server 2016 Cumulative Update 18 (KB5000871)"); None for what it does not state."""
    product = _PRODUCT_NAMED.search(name or "")
    cu = _CU_NAMED.search(name or "")
    return (product.group(1) if product else None,
            f"CU{cu.group(1) or cu.group(2)}" if cu else None)


_INSTALL_PART = re.compile(r"^(.*?\\)((?:ClientAccess|FrontEnd)\\.*)$", re.IGNORECASE)


def _install_split(path: str) -> tuple[str | None, str]:
    """(install path, the rest) of a web.config path under Exchange's ClientAccess or
    FrontEnd folder; (None, path) for any other."""
    found = _INSTALL_PART.match(path)
    return (found.group(1), found.group(2)) if found else (None, path)


def _product(rule: ProductRule) -> str:
    return f"Exchange Server {rule.product}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days"


def _indicator_action(then: str) -> str:
    first = ("Investigate for compromise first (compromise indicators found; the update does not "
             "remove web shells: run Test-ProxyLogon and MSERT)")
    return f"{first}; then {then[:1].lower() + then[1:]}" if then else first


def evaluate(observation: Observation, catalog: Catalog, as_of: datetime,
             policy: Policy | None = None) -> Verdict:
    """The verdict for one observation, judged at ``as_of`` (an aware datetime)."""
    return _Grader(observation, catalog, as_of, policy or Policy()).verdict()


def assess(observations: Iterable[Observation], catalog: Catalog, as_of: datetime, *,
           source: str, tool_version: str, policy: Policy | None = None,
           label: str = "", discovered: Iterable[Host] = (), scope: str = "",
           scopes: Callable[[Host], tuple[str, ...]] = lambda _host: (),
           complete_scopes: tuple[str, ...] = ()) -> Snapshot:
    """Grade a run's observations into a snapshot; the one path real and demo data share.

    ``scopes(host)`` says why each host is in the fleet and ``complete_scopes`` which directory
    scopes the run listed completely (compliance/fleet.py); the store composes the whole fleet
    from this when it saves.
    """
    chosen = policy or Policy()
    assessments = tuple(
        Assessment(obs, evaluate(obs, catalog, as_of, chosen), scopes=scopes(obs.host))
        for obs in observations
    )
    return Snapshot(
        taken_at=as_of, source=source, tool_version=tool_version,
        catalog_version=catalog.version, advisory_id=catalog.advisory.id,
        advisory_version=catalog.advisory.version, assessments=assessments, label=label,
        discovered=tuple(discovered), scope=scope, complete_scopes=complete_scopes,
    )

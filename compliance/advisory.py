"""An advisory (which CVEs, which fixing builds, which interim mitigations) read from data.

The shape is generic: a later advisory is a new TOML file under ``data/advisories``, and the
words the evaluator says about it ("ProxyLogon", "the March 2021 fixes", ...) are in it too.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compliance.builds import BuildParseError, parse_dotted
from compliance.models import (
    Build,
    MitigationState,
    RewriteRule,
    ServerRole,
    probe_error_part,
    server_roles,
)
from compliance.triage import (
    Exposure,
    ThreatFamily,
    TriageDataError,
    TriagePolicy,
    parse_exposure,
    parse_threat_families,
    parse_triage,
)

MITIGATION_KINDS = ("rewrite_rules", "services_disabled", "app_pools_stopped",
                    "rewrite_rule_content")
# The words the evaluator needs about an advisory, each a required top-level key of its file.
WORDING_KEYS = ("short", "fix_name", "fixes_name", "update_name", "cves_name")
# The word of the probe reader's error line for an entry of the rules' content it left out
# (collectors/probe.py ``_rewrite_rule_details``).
DROPPED = "dropped"
# How ``Mitigation.unreadable`` starts when the probe read no rule content at all.
CONTENT_NOT_READ = "the probe did not read the URL Rewrite rules' content"


class AdvisoryError(ValueError):
    """The advisory data file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Cve:
    id: str
    title: str
    source: str


# ASCII letters only: Unicode case folding would make 'ſ' (U+017F) an 's' and the Kelvin sign
# a 'k', texts IIS holds for other ones (a pattern that never matches, an unknown variable).
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _same(text: str, other: str) -> bool:
    """Equal whatever the ASCII case, never trimmed: IIS compares site names and enum names
    (``logicalGrouping``, ``patternSyntax``, the action type) case-insensitively, and a
    regular expression under ``ignoreCase`` (which the matcher requires) matches either case;
    but a regular expression's whitespace is literal, so a space or tab more is another
    pattern. Patterns are compared as text, never evaluated."""
    return text.translate(_ASCII_LOWER) == other.translate(_ASCII_LOWER)


def _among(text: str, options: Sequence[str]) -> bool:
    return any(_same(text, option) for option in options)


# IIS's "Regular Expressions" pattern syntax (the default, which Get-WebConfiguration reports).
ECMASCRIPT = "ECMAScript"


@dataclass(frozen=True)
class RuleContent:
    """What a URL Rewrite rule must do to count as a mitigation of kind
    ``rewrite_rule_content``: recognised by its content (site, match, condition, action),
    whatever its name. ``superseded`` are patterns once published and later replaced (they
    were bypassed): a rule using one does not count, and the evidence says so. ``hints`` are
    (name, who writes it) pairs, for the evidence only."""

    site: str
    match_url: str
    inputs: tuple[str, ...]
    patterns: tuple[str, ...]
    superseded: tuple[str, ...]
    actions: tuple[str, ...]
    hints: tuple[tuple[str, str], ...] = ()

    def why_not(self, rule: RewriteRule, before: Sequence[RewriteRule] = ()) -> str | None:
        """None when ``rule`` does what is accepted; otherwise why it does not count.
        ``before``: the rules read before it (all sites, in the probe's order, which is the
        order IIS runs a site's rules in). Every field the probe may not have read (None) is
        treated fail-closed."""
        problems = []
        if not rule.enabled:
            problems.append("is disabled")
        if rule.truncated is None:
            problems.append("cannot be judged: whether the probe cut it was not read")
        elif rule.truncated:
            problems.append("was cut by the probe (a text over 1,024 characters or conditions "
                            "past 20), so what it does is not known")
        if rule.match_negate is None:
            problems.append("cannot be judged: its match negate was not read")
        elif rule.match_negate:
            problems.append("negates its match (so it matches no URL it names)")
        if rule.pattern_syntax is None:
            problems.append("cannot be judged: its patternSyntax was not read")
        elif not _same(rule.pattern_syntax, ECMASCRIPT):
            problems.append(f"uses the pattern syntax {rule.pattern_syntax!r}, not "
                            f"{ECMASCRIPT} (regular expressions)")
        if not _same(rule.site, self.site):
            problems.append(f"is on the site {rule.site!r}, not {self.site!r}")
        if not _same(rule.match_url, self.match_url):
            problems.append(f"matches the URL {rule.match_url!r}, not {self.match_url!r}")
        if not _among(rule.action, self.actions):
            problems.append(f"has the action {rule.action!r}, not {' or '.join(self.actions)}")
        problems.extend(self._condition_problems(rule))
        stopper = next((earlier for earlier in before if earlier.enabled
                        and _same(earlier.site, rule.site)
                        and earlier.stop_processing is not False), None)
        if stopper is not None:
            stops = ("may stop processing (its stopProcessing was not read)"
                     if stopper.stop_processing is None else "stops processing")
            problems.append(f"may never be reached: the earlier rule {stopper.name!r} on the "
                            f"same site {stops}")
        return ", ".join(problems) or None

    def verdicts(self, rules: Sequence[RewriteRule]) -> list[tuple[RewriteRule, str | None]]:
        """Each rule with ``why_not`` it does not count (None: it counts), in order."""
        return [(rule, self.why_not(rule, rules[:number]))
                for number, rule in enumerate(rules)]

    def _condition_problems(self, rule: RewriteRule) -> list[str]:
        accepted = [c for c in rule.conditions if _among(c.pattern, self.patterns)]
        if not accepted:
            old = next((c for c in rule.conditions if _among(c.pattern, self.superseded)), None)
            if old is not None:
                return [f"uses the superseded pattern {old.pattern!r} (an earlier version, "
                        f"replaced by {self.patterns[0]!r})"]
            return [f"has no condition with the pattern {self.patterns[0]!r}"]
        usable = [c for c in accepted if not c.negate and _among(c.input, self.inputs)
                  and c.ignore_case is True]
        if not usable:
            condition = accepted[0]
            if condition.negate:
                return ["negates its condition (so it lets exactly those requests through)"]
            if condition.ignore_case is None:
                return ["cannot be judged: its condition's ignoreCase was not read"]
            if not condition.ignore_case:
                return ["compares case-sensitively (ignoreCase false: other spellings such "
                        "as /Powershell get through)"]
            return [f"reads {condition.input!r}, not {' or '.join(self.inputs)} (encoded "
                    "requests get through)"]
        if len(rule.conditions) > 1 and not _same(rule.logical_grouping, "MatchAny"):
            others = len(rule.conditions) - 1
            return [f"adds {others} other condition(s) under "
                    f"{rule.logical_grouping!r}, which narrow what it blocks"]
        return []

    def concerns(self, rule: RewriteRule) -> bool:
        """Whether ``rule`` looks meant as this mitigation (its pattern, or a known name): such
        a rule that does not count is named in the evidence with the reason."""
        return _among(rule.name, [name for name, _ in self.hints]) or any(
            _among(c.pattern, (*self.patterns, *self.superseded)) for c in rule.conditions)

    def hint(self, name: str) -> str:
        by = next((who for known, who in self.hints if _same(name, known)), None)
        return f" (the name {by} gives it)" if by else ""


@dataclass(frozen=True)
class Mitigation:
    id: str
    title: str
    kind: str
    names: tuple[str, ...]
    covers: tuple[str, ...]
    products: tuple[str, ...]
    source: str
    # Only for kind rewrite_rule_content (names are then the hints' names, evidence only).
    content: RuleContent | None = None

    def present(self, seen: MitigationState, errors: Sequence[str] = ()) -> bool:
        """Whether every part of this mitigation is in place on the server. ``errors``: the
        probe's error lines; for ``rewrite_rule_content`` an entry the probe's reader dropped
        (``rewrite_rule_details: entry N dropped: ...``, collectors/probe.py) may be an earlier
        rule that stops processing, so the rules' order is not known whole and nothing is
        proven. (Rules past the reader's cap come after every rule read: they cannot.)"""
        if self.kind == "rewrite_rules":
            rules = {rule.strip().casefold() for rule in seen.rewrite_rules}
            return all(name.casefold() in rules for name in self.names)
        if self.kind == "rewrite_rule_content":
            # By content only: a rule's name proves nothing, and rules not read are unknown.
            assert self.content is not None
            details = seen.rewrite_rule_details
            if any(probe_error_part(e).casefold() == "rewrite_rule_details"
                   and DROPPED in e for e in errors):
                return False
            return details is not None and any(
                why is None for _, why in self.content.verdicts(details))
        if self.kind == "services_disabled":
            return all(
                (state := seen.services.get(name)) is not None
                and (state.status or "").casefold() == "stopped"
                and (state.start_mode or "").casefold() == "disabled"
                for name in self.names
            )
        return all(
            (pool := seen.app_pools.get(name)) is not None
            and (pool.state or "").casefold() == "stopped"
            for name in self.names
        )

    def unreadable(self, errors: Sequence[str], seen: MitigationState | None = None
                   ) -> str | None:
        """The probe error (``"<part>: <message>"``, docs/probe.md) that left this mitigation's
        state unread, if any: then an empty list means unknown, not missing. The probe reports
        a failed read of the rules only when it knew the URL Rewrite module is installed, which
        it reads in the ``installed_updates`` part: when that part failed, so may the rules.
        A rule's content that the probe did not read at all (``rewrite_rule_details`` None: a
        probe before contract 1.2) is unreadable too, whatever the names say."""
        if self.kind in ("rewrite_rules", "rewrite_rule_content"):
            parts: tuple[str, ...] = (("iis", "rewrite_rules") if self.kind == "rewrite_rules"
                                      else ("iis", "rewrite_rule_details"))
            if seen is not None and seen.url_rewrite_module is None:
                parts += ("installed_updates",)
        elif self.kind == "services_disabled":
            parts = ("services",)
        else:
            parts = ("iis", *(f"app_pool {name}" for name in self.names))
        folded = tuple(part.casefold() for part in parts)
        error = next((error for error in errors
                      if probe_error_part(error).casefold() in folded), None)
        if error is None and self.kind == "rewrite_rule_content" and seen is not None \
                and seen.rewrite_rule_details is None:
            named = ", ".join(seen.rewrite_rules)
            return (f"{CONTENT_NOT_READ} (no rewrite_rule_details: a probe before contract "
                    "1.2, or IIS not read), so the rule cannot be recognised by what it does"
                    + (f"; rules known by name only: {named}" if named else ""))
        return error

    def grant(self, error: str | None = None) -> str:
        """What to fix so the probe can read this mitigation's state (``error``: what
        ``unreadable`` said)."""
        if self.kind == "services_disabled":
            return ("let the probe account query services over WMI (Win32_Service), e.g. by "
                    "adding it to Remote Management Users with WMI read rights")
        if self.kind == "rewrite_rule_content" and error is not None and \
                error.startswith(CONTENT_NOT_READ):
            return ("run the probe of contract 1.2 or later, which reads each URL Rewrite "
                    "rule's content (rewrite_rule_details)")
        return ("let the probe account read IIS's configuration (applicationHost.config under "
                "%windir%\\System32\\inetsrv\\config) and load the WebAdministration module, "
                "or run the probe by hand as a local administrator")

    def describe(self, seen: MitigationState) -> str:
        """What the probe saw for this mitigation, for the evidence trail."""
        if self.kind == "rewrite_rule_content":
            return self._describe_content(seen)
        if self.kind == "rewrite_rules":
            rules = {rule.strip().casefold() for rule in seen.rewrite_rules}
            parts = [f"{name}: {'found' if name.casefold() in rules else 'missing'}"
                     for name in self.names]
        elif self.kind == "services_disabled":
            parts = []
            for name in self.names:
                state = seen.services.get(name)
                parts.append(f"{name}: not reported" if state is None else
                             f"{name}: {state.status or '?'}/{state.start_mode or '?'}")
        else:
            parts = []
            for name in self.names:
                pool = seen.app_pools.get(name)
                parts.append(f"{name}: not reported" if pool is None else
                             f"{name}: {pool.state or '?'}")
        return "; ".join(parts)

    def _describe_content(self, seen: MitigationState) -> str:
        content = self.content
        assert content is not None
        details = seen.rewrite_rule_details
        if details is None:
            return self.unreadable((), seen) or ""
        verdicts = content.verdicts(details)
        counting = [rule for rule, why in verdicts if why is None]
        if counting:
            return "; ".join(
                f"rule {rule.name!r}{content.hint(rule.name)} on {rule.site!r} blocks by "
                f"content ({rule.match_url} with {_conditions(rule)}, {rule.action})"
                for rule in counting)
        near = [(rule, why) for rule, why in verdicts if content.concerns(rule)]
        if near:
            return "; ".join(f"rule {rule.name!r}{content.hint(rule.name)} on {rule.site!r} "
                             f"does not count: it {why}" for rule, why in near)
        return (f"no rule on {content.site!r} blocks {content.patterns[0]!r} in "
                f"{content.inputs[0]} ({len(details)} rule(s) read)")


def _conditions(rule: RewriteRule) -> str:
    return " and ".join(f"{'not ' if c.negate else ''}{c.input} ~ {c.pattern}"
                        for c in rule.conditions) or "no condition"


@dataclass(frozen=True)
class DefenderRule:
    """Microsoft Defender's automatic mitigation: from this security intelligence version on,
    Defender applied a mitigation for ``covers`` on a vulnerable server by itself. Evidence
    beside the rules, never proof on its own (it may be turned off, or another product be
    active)."""

    min_signature_version: Build
    covers: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Fix:
    product: str
    cu: str
    build: Build
    kb: str
    supported_cu: bool
    source: str


@dataclass(frozen=True)
class ProductRule:
    product: str
    cves: tuple[str, ...]
    requires_role: ServerRole | None
    fixed_from: str | None
    upgrade_to: str | None
    mitigated_when: tuple[str, ...]
    fixes: tuple[Fix, ...]
    source: str

    def fix_for(self, cu: str | None) -> Fix | None:
        return next((fix for fix in self.fixes if fix.cu == cu), None)

    @property
    def affected(self) -> bool:
        """False for a product line the advisory names as not affected: a rule with no CVEs,
        whose ``source`` says why (distinct from a product it does not name, which is
        unplaceable)."""
        return bool(self.cves)


@dataclass(frozen=True)
class Advisory:
    id: str
    version: str
    title: str
    published: str
    url: str
    cves: tuple[Cve, ...]
    mitigations: tuple[Mitigation, ...]
    products: tuple[ProductRule, ...]
    # The evaluator's words for it (WORDING_KEYS): e.g. "ProxyLogon", "the March 2021 fix",
    # "the March 2021 fixes", "March 2021 update", "the March 2021 CVEs".
    short: str
    fix_name: str
    fixes_name: str
    update_name: str
    cves_name: str
    defender: DefenderRule | None = None
    # Compromise triage (compliance/triage.py, issue 21); absent from an advisory without it.
    exposure: Exposure | None = None
    threat_families: tuple[ThreatFamily, ...] = ()
    triage: TriagePolicy | None = None

    def rule(self, product: str | None) -> ProductRule | None:
        return next((rule for rule in self.products if rule.product == product), None)

    def family_of(self, threat: str) -> ThreatFamily | None:
        """The first threat family (in the file's order) whose pattern matches ``threat``."""
        return next((family for family in self.threat_families if family.matches(threat)), None)

    def mitigation(self, mitigation_id: str) -> Mitigation:
        for mitigation in self.mitigations:
            if mitigation.id == mitigation_id:
                return mitigation
        raise KeyError(mitigation_id)

    @property
    def cve_ids(self) -> tuple[str, ...]:
        return tuple(cve.id for cve in self.cves)


def _role(product: str, name: object) -> ServerRole | None:
    """The role a product's rule needs; a misspelt one would make the rule look inapplicable
    to every server (a silent "not affected"), so it is refused."""
    if not name:
        return None
    try:
        (role,) = server_roles([name])
    except ValueError as error:
        raise AdvisoryError(f"product {product}: requires_role: {error}") from None
    return role


def _strings(entry: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AdvisoryError(f"{key!r} must be a list of strings in {dict(entry)!r}")
    return tuple(value)


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AdvisoryError(f"{where}: {key!r} must be a non-empty string")
    return value


def _fix(product: str, entry: Mapping[str, Any]) -> Fix:
    where = f"fix for {product} {entry.get('cu')!r}"
    if not isinstance(entry.get("supported_cu"), bool):
        raise AdvisoryError(f"{where}: supported_cu must be true or false")
    try:
        build = parse_dotted(entry["build"])
    except BuildParseError as error:
        raise AdvisoryError(f"{where}: {error}") from None
    return Fix(product, entry["cu"], build, entry["kb"], entry["supported_cu"], entry["source"])


def _content(entry: Mapping[str, Any]) -> RuleContent:
    """The accepted content of a ``rewrite_rule_content`` mitigation; every part required."""
    where = f"mitigation {entry.get('id')!r}"
    hints = entry.get("name_hints", [])
    if not isinstance(hints, list) or not all(
            isinstance(h, Mapping) and isinstance(h.get("name"), str)
            and isinstance(h.get("by"), str) for h in hints):
        raise AdvisoryError(f"{where}: name_hints must be a list of {{name, by}} tables")
    content = RuleContent(
        site=_text(entry, "site", where), match_url=_text(entry, "match_url", where),
        inputs=_strings(entry, "inputs"), patterns=_strings(entry, "patterns"),
        superseded=_strings(entry, "superseded_patterns"), actions=_strings(entry, "actions"),
        hints=tuple((h["name"], h["by"]) for h in hints),
    )
    if not (content.inputs and content.patterns and content.actions):
        raise AdvisoryError(f"{where}: inputs, patterns and actions must each name at least one")
    if any(_among(old, content.patterns) for old in content.superseded):
        raise AdvisoryError(f"{where}: a pattern is both accepted and superseded")
    return content


def _mitigation(entry: Mapping[str, Any]) -> Mitigation:
    content = _content(entry) if entry["kind"] == "rewrite_rule_content" else None
    names = (tuple(name for name, _ in content.hints) if content is not None
             else _strings(entry, "names"))
    return Mitigation(
        id=entry["id"], title=entry["title"], kind=entry["kind"], names=names,
        covers=_strings(entry, "covers"), products=_strings(entry, "products"),
        source=entry["source"], content=content,
    )


def parse_advisory(data: Mapping[str, Any]) -> Advisory:
    """Build an ``Advisory`` from the parsed TOML, checking cross-references."""
    try:
        cves = tuple(Cve(c["id"], c["title"], c["source"]) for c in data["cves"])
        cve_ids = {cve.id for cve in cves}
        for m in data["mitigations"]:
            if m["kind"] not in MITIGATION_KINDS:
                raise AdvisoryError(f"mitigation {m['id']}: unknown kind {m['kind']!r}")
        mitigations = tuple(_mitigation(m) for m in data["mitigations"])
        mitigation_ids = {m.id for m in mitigations}
        products = []
        for p in data["products"]:
            fixes = tuple(_fix(p["product"], f) for f in p["fixes"])
            cus = [fix.cu for fix in fixes]
            if len(cus) != len(set(cus)):
                raise AdvisoryError(f"product {p['product']}: more than one fix for one CU in {cus}")
            rule = ProductRule(
                product=p["product"], cves=_strings(p, "cves"),
                requires_role=_role(p["product"], p["requires_role"]), fixed_from=p["fixed_from"] or None,
                upgrade_to=p["upgrade_to"] or None,
                mitigated_when=_strings(p, "mitigated_when"), fixes=fixes, source=p["source"],
            )
            unknown = (set(rule.cves) - cve_ids) | (set(rule.mitigated_when) - mitigation_ids)
            if unknown:
                raise AdvisoryError(f"product {rule.product} names undefined ids {sorted(unknown)}")
            if not rule.affected and (rule.fixes or rule.mitigated_when or rule.fixed_from
                                      or rule.upgrade_to or not rule.source.strip()):
                # Not affected: nothing to install or apply, and the source says why.
                raise AdvisoryError(f"product {rule.product} lists no CVEs (not affected) but "
                                    "has fixes, mitigations or CUs, or no source")
            products.append(rule)
        for m in mitigations:
            if set(m.covers) - cve_ids:
                raise AdvisoryError(f"mitigation {m.id} covers undefined CVEs")
        defender = None
        if "defender" in data:
            entry = data["defender"]
            try:
                version = parse_dotted(entry["min_signature_version"])
            except BuildParseError as error:
                raise AdvisoryError(f"defender: {error}") from None
            defender = DefenderRule(version, _strings(entry, "covers"), entry["source"])
            if set(defender.covers) - cve_ids:
                raise AdvisoryError("defender covers undefined CVEs")
        wording = {key: _text(data, key, f"advisory {data.get('id')!r}") for key in WORDING_KEYS}
        exposure, families, triage = (parse_exposure(data), parse_threat_families(data),
                                      parse_triage(data, cve_ids))
        return Advisory(
            id=data["id"], version=str(data["version"]), title=data["title"],
            published=str(data["published"]), url=data["url"], cves=cves,
            mitigations=mitigations, products=tuple(products), defender=defender, **wording,
            exposure=exposure, threat_families=families, triage=triage,
        )
    except KeyError as missing:
        raise AdvisoryError(f"advisory field missing: {missing}") from None
    except TriageDataError as error:
        raise AdvisoryError(str(error)) from None

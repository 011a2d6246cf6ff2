"""An advisory (which CVEs, which fixing builds, which interim mitigations) read from data.

The shape is generic: a later advisory is a new TOML file under ``data/advisories``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compliance.builds import BuildParseError, parse_dotted
from compliance.models import Build, MitigationState, ServerRole, probe_error_part, server_roles

MITIGATION_KINDS = ("rewrite_rules", "services_disabled", "app_pools_stopped")


class AdvisoryError(ValueError):
    """The advisory data file is malformed; the message names the entry."""


@dataclass(frozen=True)
class Cve:
    id: str
    title: str
    source: str


@dataclass(frozen=True)
class Mitigation:
    id: str
    title: str
    kind: str
    names: tuple[str, ...]
    covers: tuple[str, ...]
    products: tuple[str, ...]
    source: str

    def present(self, seen: MitigationState) -> bool:
        """Whether every part of this mitigation is in place on the server."""
        if self.kind == "rewrite_rules":
            rules = {rule.strip().casefold() for rule in seen.rewrite_rules}
            return all(name.casefold() in rules for name in self.names)
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
        it reads in the ``installed_updates`` part: when that part failed, so may the rules."""
        if self.kind == "rewrite_rules":
            parts: tuple[str, ...] = ("iis", "rewrite_rules")
            if seen is not None and seen.url_rewrite_module is None:
                parts += ("installed_updates",)
        elif self.kind == "services_disabled":
            parts = ("services",)
        else:
            parts = ("iis", *(f"app_pool {name}" for name in self.names))
        folded = tuple(part.casefold() for part in parts)
        return next((error for error in errors
                     if probe_error_part(error).casefold() in folded), None)

    def grant(self) -> str:
        """What to fix so the probe can read this mitigation's state."""
        if self.kind == "services_disabled":
            return ("let the probe account query services over WMI (Win32_Service), e.g. by "
                    "adding it to Remote Management Users with WMI read rights")
        return ("let the probe account read IIS's configuration (applicationHost.config under "
                "%windir%\\System32\\inetsrv\\config) and load the WebAdministration module, "
                "or run the probe by hand as a local administrator")

    def describe(self, seen: MitigationState) -> str:
        """What the probe saw for this mitigation, for the evidence trail."""
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
    defender: DefenderRule | None = None

    def rule(self, product: str | None) -> ProductRule | None:
        return next((rule for rule in self.products if rule.product == product), None)

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


def _fix(product: str, entry: Mapping[str, Any]) -> Fix:
    where = f"fix for {product} {entry.get('cu')!r}"
    if not isinstance(entry.get("supported_cu"), bool):
        raise AdvisoryError(f"{where}: supported_cu must be true or false")
    try:
        build = parse_dotted(entry["build"])
    except BuildParseError as error:
        raise AdvisoryError(f"{where}: {error}") from None
    return Fix(product, entry["cu"], build, entry["kb"], entry["supported_cu"], entry["source"])


def parse_advisory(data: Mapping[str, Any]) -> Advisory:
    """Build an ``Advisory`` from the parsed TOML, checking cross-references."""
    try:
        cves = tuple(Cve(c["id"], c["title"], c["source"]) for c in data["cves"])
        cve_ids = {cve.id for cve in cves}
        mitigations = tuple(
            Mitigation(
                id=m["id"], title=m["title"], kind=m["kind"], names=_strings(m, "names"),
                covers=_strings(m, "covers"), products=_strings(m, "products"),
                source=m["source"],
            )
            for m in data["mitigations"]
        )
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
            products.append(rule)
        for m in mitigations:
            if m.kind not in MITIGATION_KINDS:
                raise AdvisoryError(f"mitigation {m.id}: unknown kind {m.kind!r}")
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
        return Advisory(
            id=data["id"], version=str(data["version"]), title=data["title"],
            published=str(data["published"]), url=data["url"], cves=cves,
            mitigations=mitigations, products=tuple(products), defender=defender,
        )
    except KeyError as missing:
        raise AdvisoryError(f"advisory field missing: {missing}") from None

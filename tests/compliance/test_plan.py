"""Upgrade plans per host (compliance/plan.py) and the prerequisites data they rest on.

Builds, KBs and the newest release of a CU are read from builds.csv with ``csv`` (conftest's
``csv_rows``); the loop at the end checks every catalogued build's plan with the evaluator.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from compliance.advisory import Advisory, parse_advisory
from compliance.builds import parse_dotted
from compliance.catalog import Catalog, load_catalogs
from compliance.evaluate import evaluate
from compliance.models import Build, Host, Observation, ServerRole, Status
from compliance.plan import (
    Plan,
    PrerequisiteError,
    Prerequisites,
    StepKind,
    ad_commands,
    kb_link,
    load_prerequisites,
    parse_prerequisites,
    plan_build,
    plan_host,
)
from compliance.sulevel import SuState, su_level

ROOT = Path(__file__).resolve().parents[2]
PREREQUISITES_TOML = ROOT / "compliance" / "data" / "prerequisites.toml"
ON = date(2026, 9, 1)
AS_OF = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
PROXYLOGON, PROXYSHELL, PROXYNOTSHELL = (
    "2021-03-proxylogon", "2021-05-proxyshell", "2022-11-proxynotshell")
# Step kinds, short: install (SU/RU/HU), upgrade (CU), prerequisite, migrate, none.
SU, CU, PRE, MOVE, NONE = (StepKind.INSTALL_SU, StepKind.UPGRADE_CU, StepKind.PREREQUISITE,
                           StepKind.MIGRATE, StepKind.NONE)


def key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="module")
def catalogs() -> tuple[Catalog, ...]:
    return load_catalogs()


@pytest.fixture(scope="module")
def newest_row(csv_rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """The newest non-disputed row per (product, CU), from the CSV."""
    newest: dict[tuple[str, str], dict[str, str]] = {}
    for row in csv_rows:
        group = (row["product"], row["cu"])
        if row["kind"] != "other" and (group not in newest
                                       or key(row["build"]) > key(newest[group]["build"])):
            newest[group] = row
    return newest


def plan(text: str, catalogs: tuple[Catalog, ...], **options: object) -> Plan:
    return plan_build(parse_dotted(text), catalogs[0], catalogs, on=ON, **options)  # type: ignore[arg-type]


def kinds(made: Plan) -> list[StepKind]:
    return [step.kind for step in made.steps]


# -- starting points -----------------------------------------------------------------------

def test_an_unsupported_cu_gets_the_quick_fix_then_the_upgrade(
        catalogs: tuple[Catalog, ...], newest_row: dict[tuple[str, str], dict[str, str]]) -> None:
    made = plan("15.1.1847.3", catalogs, dotnet_release=461808)  # 2016 CU14, .NET 4.7.2
    assert kinds(made) == [SU, PRE, PRE, CU, SU, PRE, MOVE]
    quick, dotnet, ad, upgrade, newest, after, move = made.steps
    assert (str(quick.target), quick.kb) == ("15.1.1847.12", "KB5000871")
    assert quick.link == "https://support.microsoft.com/help/5000871"
    assert quick.closes == (PROXYLOGON,)
    assert "ProxyLogon only" in quick.text and "need the CU upgrade" in quick.text
    assert "Install .NET Framework 4.8 (Release 528040)" in dotnet.text
    assert "/PrepareSchema (schema rangeUpper 15332 -> 15334)" in ad.text
    assert "/PrepareAD" in ad.text
    cu23 = newest_row[("2016", "CU23")]
    assert (str(upgrade.target), upgrade.kb) == ("15.1.2507.6", "KB5011155")
    assert upgrade.link == "https://support.microsoft.com/help/5011155"
    assert PROXYSHELL in upgrade.closes  # CU23 is after CU21, which contains the May 2021 fix
    assert ("CU23 is the newest CU of Exchange Server 2016 the catalogue knows, the one the "
            "advisories name (ProxyLogon, ProxyShell, ProxyNotShell)") in upgrade.text
    assert (str(newest.target), newest.kb) == (cu23["build"], cu23["kb"])
    assert newest.closes == (PROXYNOTSHELL,)
    assert "/PrepareAllDomains" in after.text and "Bin" in after.text
    assert "plan the move to Exchange SE" in move.text
    assert made.target_cu == "CU23" and str(made.final_build) == cu23["build"]
    assert not made.current and made.unresolved == ()
    assert made.next_step == quick


def test_dotnet_known_and_supported_needs_no_step(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.1.1847.3", catalogs, dotnet_release=528049)
    assert kinds(made) == [SU, PRE, CU, SU, PRE, MOVE]
    assert "NET" not in made.steps[1].text  # the AD step
    assert "installed .NET Framework 4.8 (Release 528049) is supported" in made.steps[2].text


def test_dotnet_not_read_asks_to_check(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.1.1847.3", catalogs, dotnet_release=None)
    check = made.steps[1]
    assert check.kind is PRE
    assert "Check the installed .NET Framework version" in check.text
    assert ".NET Framework 4.8 (Release 528040) or later" in check.text
    assert check.source


def test_dotnet_newer_than_the_target_supports_asks_to_check(
        catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.1.1847.3", catalogs, dotnet_release=533320)  # 4.8.1: no Exchange 2016
    assert "newer than Exchange Server 2016 CU23 supports (up to 4.8)" in made.steps[1].text


def test_dotnet_for_2013_cu23_is_4_7_2(catalogs: tuple[Catalog, ...]) -> None:
    fine = plan("15.0.1395.4", catalogs, dotnet_release=461814)  # 4.7.2 on older Windows
    assert not any("NET" in s.text for s in fine.steps if s.kind is PRE)
    old = plan("15.0.1395.4", catalogs, dotnet_release=394802)  # 4.6.2
    assert any("Install .NET Framework 4.7.2 (Release 461808)" in s.text for s in old.steps)


def test_2013_on_an_old_cu(catalogs: tuple[Catalog, ...],
                           newest_row: dict[tuple[str, str], dict[str, str]]) -> None:
    made = plan("15.0.1395.4", catalogs)  # 2013 CU21 as released
    assert kinds(made) == [SU, PRE, PRE, CU, SU, PRE, MOVE]
    quick, _, ad, upgrade, newest, after, _ = made.steps
    assert (str(quick.target), quick.closes) == ("15.0.1395.12", (PROXYLOGON,))
    assert "/PrepareAD (organization objectVersion 16130 -> 16133)" in ad.text
    assert "/PrepareSchema" not in ad.text  # CU21 and CU23 share rangeUpper 15312
    # The bare CU23 has no ProxyLogon fix of its own: the CU21 update's protection is gone.
    assert "ProxyLogon is open again" in upgrade.text
    assert str(newest.target) == newest_row[("2013", "CU23")]["build"]
    assert set(newest.closes) == {PROXYLOGON, PROXYSHELL, PROXYNOTSHELL}
    assert "/PrepareSchema" in after.text and "/PrepareAllDomains" in after.text


def test_a_supported_cu_without_its_updates(catalogs: tuple[Catalog, ...],
                                            newest_row: dict[tuple[str, str], dict[str, str]]) -> None:
    made = plan("15.1.2507.6", catalogs)  # 2016 CU23 as released
    assert kinds(made) == [SU, PRE, MOVE]
    assert str(made.steps[0].target) == newest_row[("2016", "CU23")]["build"]
    assert made.steps[0].closes == (PROXYNOTSHELL,)
    assert "/PrepareAllDomains" in made.steps[1].text  # May 2022, never run from this build
    later = plan("15.1.2507.44", catalogs)  # after the May 2022 SU: no AD step again
    assert kinds(later) == [SU, MOVE] and later.steps[0].closes == ()


def test_a_cu_that_still_gets_updates_stays(catalogs: tuple[Catalog, ...],
                                            newest_row: dict[tuple[str, str], dict[str, str]]) -> None:
    made = plan("15.2.1544.4", catalogs)  # 2019 CU14 as released; CU14 gets updates still
    assert kinds(made) == [SU, MOVE]
    assert str(made.steps[0].target) == newest_row[("2019", "CU14")]["build"]
    assert made.target_cu == "CU14"


def test_a_cu_that_no_longer_gets_updates_moves(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.2.1258.39", catalogs, dotnet_release=528040)  # 2019 CU13, its last update
    assert kinds(made) == [PRE, CU, SU, MOVE]
    assert "CU13 gets no updates any more" in made.steps[1].text
    assert made.target_cu == "CU15"
    assert "/PrepareAD (organization objectVersion 16761 -> 16763)" in made.steps[0].text


def test_2019_quick_fix_closes_two_advisories(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.2.792.5", catalogs, dotnet_release=528040)  # 2019 CU8 Feb21SU
    quick = made.steps[0]
    assert (str(quick.target), quick.kb) == ("15.2.792.15", "KB5003435")
    assert quick.closes == (PROXYLOGON, PROXYSHELL)
    assert "ProxyNotShell needs the CU upgrade" in quick.text
    upgrade = next(s for s in made.steps if s.kind is CU)
    assert str(upgrade.target) == "15.2.1748.10" and upgrade.closes == (PROXYNOTSHELL,)


@pytest.mark.parametrize("text,product", [
    ("15.2.1748.49", "2019"), ("15.1.2507.72", "2016"), ("15.2.2562.46", "SE"),
    ("14.3.513.0", "2010"), ("15.0.1497.48", "2013")])
def test_current(catalogs: tuple[Catalog, ...], text: str, product: str) -> None:
    made = plan(text, catalogs)
    assert made.current and made.final_build == parse_dotted(text)
    assert made.next_step is None
    assert made.steps[0].kind is NONE and "Nothing to install" in made.steps[0].text
    # Out-of-support lines still end with the move; SE (Modern Lifecycle) does not.
    assert kinds(made) == ([NONE] if product == "SE" else [NONE, MOVE])


def test_se_behind_installs_its_newest_update(catalogs: tuple[Catalog, ...],
                                              newest_row: dict[tuple[str, str], dict[str, str]]) -> None:
    made = plan("15.2.2562.17", catalogs)
    assert kinds(made) == [SU]
    assert str(made.steps[0].target) == newest_row[("SE", "RTM")]["build"]
    assert made.steps[0].closes == ()  # SE RTM contains every fix


def test_2010(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("14.3.509.0", catalogs)  # Update Rollup 31
    assert kinds(made) == [SU, MOVE]
    assert (str(made.steps[0].target), made.steps[0].kb) == ("14.3.513.0", "KB5000978")
    assert made.steps[0].closes == (PROXYLOGON,)  # roles unknown: UM may be there
    no_um = plan("14.3.509.0", catalogs, roles=frozenset({ServerRole.MAILBOX}))
    assert kinds(no_um) == [SU, MOVE] and no_um.steps[0].closes == ()
    assert "Exchange Server 2010 is out of support since 2020-10-13" in made.steps[-1].text
    assert not any(s.kind is CU for s in made.steps)  # SP3 is the last servicing level


def test_a_disputed_build_is_planned_from_its_cu(catalogs: tuple[Catalog, ...]) -> None:
    made = plan("15.1.1415.8", catalogs)
    assert made.planned and "disputed" in made.reason
    assert str(made.steps[0].target) == "15.1.1415.10"


# -- no plan -------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    None, Build(15, 1, 2507, None), parse_dotted("15.1.2600.1"), parse_dotted("15.1.2507.99"),
    parse_dotted("16.0.100.1"), parse_dotted("14.3.600.0")])
def test_an_unknown_build_gets_no_plan_but_a_reason(catalogs: tuple[Catalog, ...],
                                                    build: Build | None) -> None:
    made = plan_build(build, catalogs[0], catalogs, on=ON)
    assert made.steps == () and not made.planned and made.final_build is None
    assert made.reason.startswith("read the build first")


def _observation(**fields: object) -> Observation:
    host = fields.pop("host", Host("ex01"))
    return Observation(host=host, observed_at=AS_OF, source="test", **fields)  # type: ignore[arg-type]


def test_plan_host_reads_the_observation(catalogs: tuple[Catalog, ...]) -> None:
    roles = frozenset({ServerRole.MAILBOX})
    seen = _observation(host=Host("ex01", roles=roles), exsetup_version="15.01.1847.003",
                        dotnet_release=461808)
    assert plan_host(seen, catalogs[0], catalogs, on=ON) == plan(
        "15.1.1847.3", catalogs, dotnet_release=461808, roles=roles)


@pytest.mark.parametrize("fields,why", [
    ({"host": Host("ex01", ad_build="Version 15.1 (Build 32507.6)")}, "only the CU level"),
    ({"admin_display_version": "Version 15.1 (Build 2507.6)"}, "only the CU level"),
    ({"exsetup_version": "not a build"}, "unreadable"),
    ({}, "was not read")])
def test_plan_host_without_a_full_build(catalogs: tuple[Catalog, ...],
                                        fields: dict[str, object], why: str) -> None:
    made = plan_host(_observation(**fields), catalogs[0], catalogs, on=ON)
    assert made.steps == () and why in made.reason


# -- advisories as arguments ----------------------------------------------------------------

HEAD = """
id = "{id}"
version = "1"
title = "Test advisory {id}"
published = "2024-01-01"
url = "https://example.invalid/{id}"
short = "{short}"
fix_name = "the test fix"
fixes_name = "the test fixes"
update_name = "test update"
cves_name = "the test CVEs"
[[cves]]
id = "CVE-0000-0001"
title = "test"
source = "test"
[[mitigations]]
id = "block"
title = "URL Rewrite rule Block-Test"
kind = "rewrite_rules"
names = ["Block-Test"]
covers = ["CVE-0000-0001"]
products = ["2016", "SE"]
source = "test"
"""
RULE = """
[[products]]
product = "{product}"
cves = ["CVE-0000-0001"]
requires_role = ""
fixed_from = "{fixed_from}"
upgrade_to = "{upgrade_to}"
mitigated_when = {mitigated_when}
source = "test rule"
fixes = [{fixes}]
"""


def advisory(id: str, short: str, *rules: dict[str, str]) -> Advisory:
    text = HEAD.format(id=id, short=short) + "".join(
        RULE.format(**{"fixed_from": "", "upgrade_to": "", "mitigated_when": "[]", "fixes": "",
                       **rule}) for rule in rules)
    return parse_advisory(tomllib.loads(text))


def test_an_advisory_no_update_closes_stays_unresolved(catalogs: tuple[Catalog, ...]) -> None:
    open_on_se = advisory("test-open", "Open", {"product": "SE", "mitigated_when": '["block"]'})
    made = plan_build(parse_dotted("15.2.2562.46"), catalogs[0], [open_on_se], on=ON)
    assert not made.current and made.unresolved == ("test-open",)
    assert kinds(made) == [NONE]
    assert "No update the catalogue knows closes Open" in made.steps[0].text
    assert "URL Rewrite rule Block-Test" in made.steps[0].text


def test_the_target_choice_is_explained(catalogs: tuple[Catalog, ...]) -> None:
    older = advisory("test-older", "Older", {"product": "2016", "fixed_from": "CU21",
                                             "upgrade_to": "CU22"})
    made = plan_build(parse_dotted("15.1.2176.14"), catalogs[0], [older], on=ON)
    upgrade = next(s for s in made.steps if s.kind is CU)
    assert "Older has no update for CU19" in upgrade.text
    assert "Older names CU22, and CU23 contains the fixes" in upgrade.text
    assert upgrade.closes == ("test-older",)


def test_a_fix_beyond_the_catalogue_is_installed_from_the_advisory(
        catalogs: tuple[Catalog, ...]) -> None:
    beyond = advisory("test-beyond", "Beyond", {
        "product": "2016", "fixes": '{ cu = "CU23", build = "15.1.2507.80", kb = "KB9999999", '
                                    'supported_cu = true, source = "test fix" }'})
    made = plan_build(parse_dotted("15.1.2507.72"), catalogs[0], [beyond], on=ON)
    step = made.steps[0]
    assert (step.kind, str(step.target), step.kb) == (SU, "15.1.2507.80", "KB9999999")
    assert step.closes == ("test-beyond",) and "test fix" in step.source


def test_advisories_may_be_given_as_advisories_or_catalogues(
        catalogs: tuple[Catalog, ...]) -> None:
    build = parse_dotted("15.1.1847.3")
    as_catalogs = plan_build(build, catalogs[0], catalogs, on=ON)
    as_advisories = plan_build(build, catalogs[0], [c.advisory for c in catalogs], on=ON)
    twice = plan_build(build, catalogs[0], [*catalogs, *(c.advisory for c in catalogs)], on=ON)
    assert as_catalogs == as_advisories == twice
    alone = plan_build(build, catalogs[0], [], on=ON)  # no advisory: the newest update only
    assert [s.closes for s in alone.steps] == [() for _ in alone.steps]
    assert not any(s.kind is SU and "quick" in s.text for s in alone.steps)


@pytest.mark.parametrize("kb,link", [
    ("KB5000871", "https://support.microsoft.com/help/5000871"),
    ("kb5011155", "https://support.microsoft.com/help/5011155"),
    (None, None), ("5000871", None), ("KB12", None), ("", None)])
def test_kb_link(kb: str | None, link: str | None) -> None:
    assert kb_link(kb) == link


# -- every catalogued build ----------------------------------------------------------------

def test_every_plan_ends_current_and_compliant(catalogs: tuple[Catalog, ...],
                                               csv_rows: list[dict[str, str]]) -> None:
    """For every undisputed build: the plan says current, or its last install step leaves the
    host on the newest known update of a CU that every advisory grades patched (or not
    applicable), observed now."""
    assert len(catalogs) >= 1
    outcomes: dict[str, int] = defaultdict(int)
    for row in csv_rows:
        if row["kind"] == "other":
            continue
        made = plan(row["build"], catalogs)
        assert made.planned, row["build"]
        final = made.final_build
        assert final is not None, row["build"]
        assert su_level(final, catalogs[0]).state is SuState.CURRENT, (row["build"], final)
        seen = _observation(exsetup_version=str(final))
        for catalog in catalogs:
            verdict = evaluate(seen, catalog, AS_OF)
            assert verdict.status in (Status.PATCHED, Status.NOT_APPLICABLE), (
                row["build"], str(final), catalog.advisory.id, verdict.reason)
        assert made.unresolved == ()
        for step in made.steps:
            assert step.text and (step.source or step.kind is NONE), (row["build"], step)
            assert step.link == kb_link(step.kb)
        installs = [s for s in made.steps if s.kind in (SU, CU)]
        assert bool(installs) != made.current, row["build"]
        outcomes["current" if made.current else "upgrade" if any(
            s.kind is CU for s in installs) else "update"] += 1
    assert set(outcomes) == {"current", "upgrade", "update"}


# -- prerequisites data --------------------------------------------------------------------

@pytest.fixture(scope="module")
def prerequisites() -> Prerequisites:
    return load_prerequisites()


def test_every_catalogued_cu_has_prerequisites(catalogs: tuple[Catalog, ...],
                                               prerequisites: Prerequisites) -> None:
    catalog = catalogs[0]
    for group in catalog.groups:
        if group.cu == "Preview":
            continue
        row = prerequisites.for_cu(group.product, group.cu)
        assert row is not None, (group.product, group.cu)
        assert row.source.strip()
        if group.product != "2010":
            assert row.dotnet and row.ad is not None, (group.product, group.cu)
    known = {(g.product, g.cu) for g in catalog.groups}
    assert {(r.product, r.cu) for r in prerequisites.cus} <= known


def test_every_row_is_sourced() -> None:
    data = tomllib.loads(PREREQUISITES_TOML.read_text(encoding="utf-8"))
    for table in ("dotnet", "cus", "updates"):
        assert data[table]
        assert all(str(entry.get("source", "")).strip() for entry in data[table]), table


@pytest.mark.parametrize("version,release", [
    ("4.5", 378389), ("4.6.2", 394802), ("4.7.2", 461808), ("4.8", 528040), ("4.8.1", 533320)])
def test_dotnet_release_minimums(prerequisites: Prerequisites, version: str, release: int) -> None:
    assert prerequisites.version(version).release == release
    assert prerequisites.installed(release).version == version  # type: ignore[union-attr]
    assert prerequisites.installed(release + 9).version == version  # type: ignore[union-attr]


@pytest.mark.parametrize("product,cu,low,high", [
    ("2013", "CU23", "4.7.2", "4.8"), ("2016", "CU23", "4.8", "4.8"),
    ("2016", "CU14", "4.7.2", "4.8"), ("2019", "CU15", "4.8", "4.8.1"),
    ("2019", "CU1", "4.7.2", "4.7.2"), ("SE", "RTM", "4.8", "4.8.1")])
def test_supported_dotnet(prerequisites: Prerequisites, product: str, cu: str, low: str,
                          high: str) -> None:
    found = prerequisites.dotnet_range(product, cu)
    assert found is not None
    assert (found[0].version, found[1].version) == (low, high)


@pytest.mark.parametrize("product,cu,schema,prepare_ad", [
    ("2016", "CU23", False, True),  # 15334 since CU21; new organization objectVersion
    ("2019", "CU12", False, True),  # 17003 since CU10
    ("2016", "CU21", True, True), ("2019", "CU10", True, True), ("2016", "CU19", True, True),
    ("2019", "CU2", True, True), ("2013", "CU7", True, False), ("2016", "CU16", False, False)])
def test_ad_changes_relative_to_the_previous_cu(prerequisites: Prerequisites, product: str,
                                                cu: str, schema: bool, prepare_ad: bool) -> None:
    changes = prerequisites.ad_changes(product, cu)
    assert ("PrepareSchema" in changes) is schema
    assert ("PrepareAD" in changes) is prepare_ad


def test_2019_cu15_to_se_needs_no_preparation(prerequisites: Prerequisites) -> None:
    cu15, se = prerequisites.for_cu("2019", "CU15"), prerequisites.for_cu("SE", "RTM")
    assert cu15 is not None and se is not None and cu15.ad and se.ad
    assert ad_commands(cu15.ad, se.ad) == ()


def test_ad_after_update_rows_name_catalogued_updates(
        prerequisites: Prerequisites, csv_rows: list[dict[str, str]]) -> None:
    by_build = {row["build"]: row for row in csv_rows}
    for row in prerequisites.updates:
        listed = by_build[str(row.build)]
        assert (listed["product"], listed["cu"], listed["kb"]) == (row.product, row.cu, row.kb)
        assert listed["kind"] == "SU"


@pytest.mark.parametrize("text,message", [
    ('dotnet = [{ version = "4.8", release = 528040, source = "s" }]\n'
     'cus = [{ product = "2016", cu = "CU23", dotnet = ["4.9"], source = "s" }]', "unknown .NET"),
    ('dotnet = [{ version = "4.8", release = 528040, source = "s" }]\n'
     'cus = [{ product = "2016", cu = "CU23", dotnet = ["4.8"], range_upper = 1, source = "s" }]',
     "go together"),
    ('dotnet = [{ version = "4.8", release = 528040, source = "" }]', "source"),
    ('dotnet = [{ version = "4.8", release = 528040, source = "s" },'
     ' { version = "4.7.2", release = 461808, source = "s" }]', "ascending"),
    ('cus = [{ product = "2016", cu = "CU23", dotnet = [], source = "s", unconfirmed = ["x"] }]',
     "unconfirmed"),
    ('updates = [{ product = "2016", cu = "CU23", build = "15.1.2507", kb = "KB1", '
     'command = "PrepareAllDomains", why = "w", source = "s" }]', "updates"),
    ('updates = [{ product = "2016", cu = "CU23", build = "15.1.2507.9", kb = "KB1", '
     'command = "PrepareEverything", why = "w", source = "s" }]', "Setup switch"),
])
def test_malformed_prerequisites_are_refused(text: str, message: str) -> None:
    with pytest.raises(PrerequisiteError, match=message):
        parse_prerequisites(text)


def test_unconfirmed_facts_make_the_plan_ask(catalogs: tuple[Catalog, ...]) -> None:
    shipped = PREREQUISITES_TOML.read_text(encoding="utf-8")
    doubtful = parse_prerequisites(shipped.replace(
        'source = "matrix; hc-ad", notes = "no schema change from CU22',
        'source = "matrix; hc-ad", unconfirmed = ["ad", "dotnet"], notes = "no schema change '
        'from CU22'))
    made = plan_build(parse_dotted("15.1.1847.3"), catalogs[0], catalogs, on=ON,
                      dotnet_release=528040, prerequisites=doubtful)
    checks = [s.text for s in made.steps if s.kind is PRE]
    assert any(t.startswith("Check the .NET Framework Exchange Server 2016 CU23 needs") for t in checks)
    assert any(t.startswith("Check whether Active Directory needs preparing") for t in checks)
    assert not any("/PrepareSchema (schema rangeUpper" in t for t in checks)


def test_the_move_off_2010_and_2013_names_the_way_round_the_coexistence_block():
    from datetime import date as _date

    from compliance.builds import parse_dotted as _dotted
    from compliance.catalog import load_catalog as _load
    from compliance.catalog import load_catalogs as _all
    from compliance.plan import StepKind as _Kind
    from compliance.plan import plan_build as _plan

    on = _date(2026, 11, 30)
    for build, via in (("14.3.513.0", "Exchange 2016 CU23"), ("15.0.1497.48", "2019 CU14")):
        plan = _plan(_dotted(build), _load(), _all(), on=on)
        (move,) = [s for s in plan.steps if s.kind is _Kind.MIGRATE]
        assert via in move.text and "cannot be installed" in move.text, move.text
        assert "supportability" in move.source or "wesselius" in move.source
    plan = _plan(_dotted("15.1.2507.16"), _load(), _all(), on=on)  # 2016: SE installs beside it
    (move,) = [s for s in plan.steps if s.kind is _Kind.MIGRATE]
    assert "cannot be installed" not in move.text

"""The later advisories as data (ProxyShell, ProxyNotShell) against builds.csv, their boundary
builds through ``evaluate``, and every catalogued build under every advisory.

The data checks read the files with csv/tomllib and compare them with the facts of
shared/reference/later_advisories.md written out here; the verdict checks derive their
expectations from the raw files, never from compliance code.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from compliance.catalog import ADVISORY_IDS, DEFAULT_ADVISORY, Catalog, load_catalog, load_catalogs
from compliance.evaluate import evaluate
from compliance.models import (
    BuildSource,
    Flag,
    Host,
    InstalledUpdate,
    Observation,
    Status,
    server_roles,
)

from .conftest import DATA, key

PROXYSHELL, PROXYNOTSHELL = "2021-05-proxyshell", "2022-11-proxynotshell"
LATER = (PROXYSHELL, PROXYNOTSHELL)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SEEN = NOW - timedelta(hours=1)
CU_KINDS = {"RTM", "Preview", "SP", "CU"}
UM = server_roles(["Mailbox", "UnifiedMessaging"])

# The reference's facts, written out (S1-S8, S24): (product, CU) -> (fixing build, KB).
FIXES = {
    PROXYSHELL: {
        ("2013", "CU23"): ("15.0.1497.18", "KB5003435"),
        ("2016", "CU19"): ("15.1.2176.14", "KB5003435"),
        ("2016", "CU20"): ("15.1.2242.10", "KB5003435"),
        ("2019", "CU8"): ("15.2.792.15", "KB5003435"),
        ("2019", "CU9"): ("15.2.858.12", "KB5003435"),
    },
    PROXYNOTSHELL: {
        ("2013", "CU23"): ("15.0.1497.44", "KB5019758"),
        ("2016", "CU22"): ("15.1.2375.37", "KB5019758"),
        ("2016", "CU23"): ("15.1.2507.16", "KB5019758"),
        ("2019", "CU11"): ("15.2.986.36", "KB5019758"),
        ("2019", "CU12"): ("15.2.1118.20", "KB5019758"),
    },
}
# The name builds.csv gives each fixing SU, and the first CU containing the fix per product.
SU_NAME = {PROXYSHELL: "May21SU", PROXYNOTSHELL: "Nov22SU"}
FIXED_FROM = {
    PROXYSHELL: {"2013": "", "2016": "CU21", "2019": "CU10", "SE": "RTM"},
    PROXYNOTSHELL: {"2013": "", "2016": "", "2019": "CU13", "SE": "RTM"},
}
AFFECTED = ("2013", "2016", "2019", "SE")


def _load(advisory_id: str) -> dict[str, Any]:
    with (DATA / "advisories" / f"{advisory_id}.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, Any]]:
    """Every shipped advisory file as tomllib reads it."""
    return {advisory_id: _load(advisory_id) for advisory_id in ADVISORY_IDS}


@pytest.fixture(scope="module")
def catalogs() -> dict[str, Catalog]:
    return {catalog.advisory.id: catalog for catalog in load_catalogs()}


def _products(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["product"]: p for p in data["products"]}


def _cus(csv_rows: list[dict[str, str]], product: str) -> dict[str, tuple[int, ...]]:
    """Each CU of ``product`` in builds.csv -> its base build."""
    return {row["cu"]: key(row["cu_base_build"]) for row in csv_rows
            if row["product"] == product and row["kind"] in CU_KINDS}


# -- the files against the reference and builds.csv ------------------------------------------------


def test_the_advisory_files_are_the_known_ids_in_order(raw: dict[str, dict[str, Any]],
                                                       catalogs: dict[str, Catalog]) -> None:
    shipped = sorted(path.stem for path in (DATA / "advisories").glob("*.toml"))
    assert list(ADVISORY_IDS) == shipped == sorted(ADVISORY_IDS)
    assert ADVISORY_IDS[0] == DEFAULT_ADVISORY
    assert [raw[i]["id"] for i in ADVISORY_IDS] == list(ADVISORY_IDS)
    assert list(catalogs) == list(ADVISORY_IDS)
    # One set of releases, shared; load_catalog(id) gives the same advisory.
    first, *rest = catalogs.values()
    assert all(c.releases is first.releases and c.groups is first.groups for c in rest)
    assert all(load_catalog(i).advisory == catalogs[i].advisory for i in ADVISORY_IDS)
    assert len({c.version for c in catalogs.values()}) == len(ADVISORY_IDS)


@pytest.mark.parametrize(("advisory_id", "published"), [
    (DEFAULT_ADVISORY, "2021-03-02"), (PROXYSHELL, "2021-05-11"), (PROXYNOTSHELL, "2022-09-29"),
])
def test_publication_is_the_public_disclosure_date(raw: dict[str, dict[str, Any]],
                                                   advisory_id: str, published: str) -> None:
    assert date.fromisoformat(raw[advisory_id]["published"]).isoformat() == published


@pytest.mark.parametrize("advisory_id", ADVISORY_IDS)
def test_every_row_has_a_source_and_the_words_are_set(raw: dict[str, dict[str, Any]],
                                                      advisory_id: str) -> None:
    data = raw[advisory_id]
    rows = [*data["cves"], *data["mitigations"], *data["products"],
            *(fix for p in data["products"] for fix in p["fixes"])]
    assert [row for row in rows if not str(row.get("source", "")).strip()] == []
    for word in ("short", "fix_name", "fixes_name", "update_name", "cves_name"):
        assert str(data[word]).strip(), word


@pytest.mark.parametrize("advisory_id", LATER)
def test_fixes_are_the_reference_facts(raw: dict[str, dict[str, Any]], advisory_id: str) -> None:
    got = {(p["product"], f["cu"]): (f["build"], f["kb"])
           for p in raw[advisory_id]["products"] for f in p["fixes"]}
    assert got == FIXES[advisory_id]
    assert {p: _products(raw[advisory_id])[p]["fixed_from"] for p in AFFECTED} == \
        FIXED_FROM[advisory_id]


@pytest.mark.parametrize("advisory_id", LATER)
def test_every_fix_is_a_trusted_su_row_of_its_cu_with_the_same_kb(
        raw: dict[str, dict[str, Any]], row_of: Any, advisory_id: str) -> None:
    problems: list[tuple[str, ...]] = []
    for product in raw[advisory_id]["products"]:
        for fix in product["fixes"]:
            try:
                row = row_of(fix["build"])
            except KeyError:
                problems.append((fix["build"], "not in builds.csv"))
                continue
            if (row["product"], row["cu"], row["kb"], row["kind"]) != (
                    product["product"], fix["cu"], fix["kb"], "SU") \
                    or SU_NAME[advisory_id] not in row["name"] \
                    or key(fix["build"]) <= key(row["cu_base_build"]):
                problems.append((fix["build"], row["product"], row["cu"], row["kb"], row["name"]))
    assert problems == []


@pytest.mark.parametrize("advisory_id", LATER)
def test_every_catalogued_fixing_su_is_a_fix(raw: dict[str, dict[str, Any]],
                                             csv_rows: list[dict[str, str]],
                                             advisory_id: str) -> None:
    """The other way round: no SU of the fixing month in builds.csv is missing from the file."""
    fixes = {f["build"] for p in raw[advisory_id]["products"] for f in p["fixes"]}
    named = {row["build"] for row in csv_rows
             if SU_NAME[advisory_id] in row["name"] and row["kind"] != "other"}
    assert named == fixes


def test_the_april_2021_su_is_a_note_not_the_proxyshell_fix(
        raw: dict[str, dict[str, Any]], csv_rows: list[dict[str, str]]) -> None:
    # KB5001779 fixed CVE-2021-34473/34523 but not CVE-2021-31207: each April SU is below the
    # May SU of its CU, which is the fix.
    fixes = {(p["product"], f["cu"]): key(f["build"])
             for p in raw[PROXYSHELL]["products"] for f in p["fixes"]}
    april = [row for row in csv_rows if "Apr21SU" in row["name"]]
    assert {row["kb"] for row in april} == {"KB5001779"} and len(april) == 5
    assert all(key(row["build"]) < fixes[(row["product"], row["cu"])] for row in april)


@pytest.mark.parametrize("advisory_id", LATER)
def test_every_cu_of_every_affected_product_is_decided(
        raw: dict[str, dict[str, Any]], csv_rows: list[dict[str, str]],
        advisory_id: str) -> None:
    """Each CU in builds.csv is fixed by an SU, at/after fixed_from, or cu_update_required; the
    three never overlap, a CU that needs a CU update has no SU of the fixing KB in builds.csv,
    and the CU to move to is itself decided."""
    products = _products(raw[advisory_id])
    for product in AFFECTED:
        rule = products[product]
        cus = _cus(csv_rows, product)
        fixed = {f["cu"] for f in rule["fixes"]}
        first = cus[rule["fixed_from"]] if rule["fixed_from"] else None
        contains = {cu for cu, base in cus.items() if first is not None and base >= first}
        update = set(cus) - fixed - contains
        assert fixed <= set(cus) and not fixed & contains, product
        assert fixed | contains | update == set(cus), product
        kbs = {f["kb"] for f in rule["fixes"]}
        leftover = [row["build"] for row in csv_rows if row["product"] == product
                    and row["cu"] in update and row["kb"] in kbs]
        assert leftover == [], (product, leftover)
        if rule["upgrade_to"]:
            assert rule["upgrade_to"] in fixed | contains, product


def test_the_cus_without_a_fix_are_the_reference_ones(
        raw: dict[str, dict[str, Any]], csv_rows: list[dict[str, str]]) -> None:
    def update_required(advisory_id: str, product: str) -> set[str]:
        rule = _products(raw[advisory_id])[product]
        cus = _cus(csv_rows, product)
        first = cus[rule["fixed_from"]] if rule["fixed_from"] else None
        return {cu for cu, base in cus.items() if cu not in {f["cu"] for f in rule["fixes"]}
                and not (first is not None and base >= first)}

    # ProxyShell: 2013 up to CU22 and SP1, 2016 up to CU18, 2019 up to CU7 (reference S9, S10).
    assert update_required(PROXYSHELL, "2013") == set(_cus(csv_rows, "2013")) - {"CU23"}
    assert update_required(PROXYSHELL, "2016") == {"Preview", "RTM"} | {f"CU{n}" for n in range(1, 19)}
    assert update_required(PROXYSHELL, "2019") == {"Preview", "RTM"} | {f"CU{n}" for n in range(1, 8)}
    # ProxyNotShell: 2016 CU21 and 2019 CU10 (last SU Mar22SU) and everything older.
    assert update_required(PROXYNOTSHELL, "2016") == {"Preview", "RTM"} | {f"CU{n}" for n in range(1, 22)}
    assert update_required(PROXYNOTSHELL, "2019") == {"Preview", "RTM"} | {f"CU{n}" for n in range(1, 11)}
    for advisory_id in LATER:
        assert update_required(advisory_id, "SE") == set()


@pytest.mark.parametrize("advisory_id", LATER)
def test_2010_is_named_not_affected_with_a_source(raw: dict[str, dict[str, Any]],
                                                  catalogs: dict[str, Catalog],
                                                  advisory_id: str) -> None:
    rule = _products(raw[advisory_id])["2010"]
    assert (rule["cves"], rule["fixes"], rule["mitigated_when"]) == ([], [], [])
    assert "not affected" in rule["source"]
    parsed = catalogs[advisory_id].advisory.rule("2010")
    assert parsed is not None and not parsed.affected


def test_mitigations_of_the_later_advisories(raw: dict[str, dict[str, Any]]) -> None:
    assert raw[PROXYSHELL]["mitigations"] == []
    assert all(p["mitigated_when"] == [] for p in raw[PROXYSHELL]["products"])
    (rule,) = raw[PROXYNOTSHELL]["mitigations"]
    assert rule["kind"] == "rewrite_rule_content"
    assert (rule["site"], rule["match_url"], rule["inputs"], rule["patterns"]) == (
        "Default Web Site", ".*", ["{UrlDecode:{REQUEST_URI}}"],
        ["(?=.*autodiscover)(?=.*powershell)"])
    assert rule["actions"] == ["AbortRequest", "CustomResponse"]
    assert {h["name"] for h in rule["name_hints"]} == {
        "PowerShell - inbound", "EEMS M1.1 PowerShell - inbound"}
    assert "(?=.*autodiscover\\.json)(?=.*powershell)" in rule["superseded_patterns"]
    assert {p["product"] for p in raw[PROXYNOTSHELL]["products"]
            if p["mitigated_when"] == [rule["id"]]} == {"2013", "2016", "2019"}


# -- boundary builds through evaluate ------------------------------------------------------------


def observe(exsetup: str | None = None, *, ad: str | None = None, roles: Any = None,
            updates: tuple[InstalledUpdate, ...] = (), indicators: tuple[str, ...] = (),
            errors: tuple[str, ...] = ()) -> Observation:
    return Observation(Host("EX01", "ex01.corp.example", roles=roles, ad_build=ad), SEEN, "test",
                       exsetup_version=exsetup, installed_updates=updates,
                       indicators=indicators, probe_errors=errors)


V, P, N = Status.VULNERABLE, Status.PATCHED, Status.NOT_APPLICABLE
CU_UPDATE = Flag.CU_UPDATE_REQUIRED

BOUNDARIES = [
    # ProxyShell: the May 2021 SU per CU, CU21/CU10 contain it.
    pytest.param(PROXYSHELL, "15.1.2176.14", P, False, id="ps-2016-cu19-may21su"),
    pytest.param(PROXYSHELL, "15.1.2176.13", V, False, id="ps-2016-cu19-one-below"),
    pytest.param(PROXYSHELL, "15.1.2176.12", V, False, id="ps-2016-cu19-apr21su-31207-open"),
    pytest.param(PROXYSHELL, "15.1.2176.9", V, False, id="ps-2016-cu19-mar21su"),
    pytest.param(PROXYSHELL, "15.1.2242.10", P, False, id="ps-2016-cu20-may21su"),
    pytest.param(PROXYSHELL, "15.1.2242.8", V, False, id="ps-2016-cu20-apr21su"),
    pytest.param(PROXYSHELL, "15.1.2308.8", P, False, id="ps-2016-cu21-first-cu-with-fix"),
    pytest.param(PROXYSHELL, "15.1.2507.6", P, False, id="ps-2016-cu23"),
    pytest.param(PROXYSHELL, "15.1.2106.13", V, True, id="ps-2016-cu18-mar21su-old-cu"),
    pytest.param(PROXYSHELL, "15.1.1415.10", V, True, id="ps-2016-cu8-special-march-su"),
    pytest.param(PROXYSHELL, "15.0.1497.18", P, False, id="ps-2013-cu23-may21su"),
    pytest.param(PROXYSHELL, "15.0.1497.17", V, False, id="ps-2013-cu23-one-below"),
    pytest.param(PROXYSHELL, "15.0.1473.6", V, True, id="ps-2013-cu22-mar21su-old-cu"),
    pytest.param(PROXYSHELL, "15.2.858.12", P, False, id="ps-2019-cu9-may21su"),
    pytest.param(PROXYSHELL, "15.2.858.11", V, False, id="ps-2019-cu9-one-below"),
    pytest.param(PROXYSHELL, "15.2.792.15", P, False, id="ps-2019-cu8-may21su"),
    pytest.param(PROXYSHELL, "15.2.922.7", P, False, id="ps-2019-cu10-first-cu-with-fix"),
    pytest.param(PROXYSHELL, "15.2.721.13", V, True, id="ps-2019-cu7-mar21su-old-cu"),
    pytest.param(PROXYSHELL, "15.2.2562.17", P, False, id="ps-se-rtm"),
    pytest.param(PROXYSHELL, "14.3.513.0", N, False, id="ps-2010-ur32"),
    pytest.param(PROXYSHELL, "14.3.123.4", N, False, id="ps-2010-sp3"),
    # ProxyNotShell: the November 2022 SU per CU, 2019 CU13 contains it.
    pytest.param(PROXYNOTSHELL, "15.2.1118.15", V, False, id="pns-2019-cu12-oct22su"),
    pytest.param(PROXYNOTSHELL, "15.2.1118.19", V, False, id="pns-2019-cu12-one-below"),
    pytest.param(PROXYNOTSHELL, "15.2.1118.20", P, False, id="pns-2019-cu12-nov22su"),
    pytest.param(PROXYNOTSHELL, "15.2.986.36", P, False, id="pns-2019-cu11-nov22su"),
    pytest.param(PROXYNOTSHELL, "15.2.986.30", V, False, id="pns-2019-cu11-oct22su"),
    pytest.param(PROXYNOTSHELL, "15.2.1258.12", P, False, id="pns-2019-cu13-base"),
    pytest.param(PROXYNOTSHELL, "15.2.922.27", V, True, id="pns-2019-cu10-mar22su-old-cu"),
    pytest.param(PROXYNOTSHELL, "15.1.2308.27", V, True, id="pns-2016-cu21-mar22su-old-cu"),
    pytest.param(PROXYNOTSHELL, "15.1.2375.37", P, False, id="pns-2016-cu22-nov22su"),
    pytest.param(PROXYNOTSHELL, "15.1.2375.32", V, False, id="pns-2016-cu22-oct22su"),
    pytest.param(PROXYNOTSHELL, "15.1.2507.16", P, False, id="pns-2016-cu23-nov22su"),
    pytest.param(PROXYNOTSHELL, "15.1.2507.13", V, False, id="pns-2016-cu23-oct22su"),
    pytest.param(PROXYNOTSHELL, "15.1.2507.23", P, False, id="pns-2016-cu23-later-su"),
    pytest.param(PROXYNOTSHELL, "15.0.1497.44", P, False, id="pns-2013-cu23-nov22su"),
    pytest.param(PROXYNOTSHELL, "15.0.1497.42", V, False, id="pns-2013-cu23-oct22su"),
    pytest.param(PROXYNOTSHELL, "15.0.1497.12", V, False, id="pns-2013-cu23-mar21su"),
    pytest.param(PROXYNOTSHELL, "15.2.2562.17", P, False, id="pns-se-rtm"),
    pytest.param(PROXYNOTSHELL, "14.3.513.0", N, False, id="pns-2010-ur32"),
]


@pytest.mark.parametrize(("advisory_id", "build", "status", "cu_update"), BOUNDARIES)
def test_boundary_builds(catalogs: dict[str, Catalog], raw: dict[str, dict[str, Any]],
                         advisory_id: str, build: str, status: Status, cu_update: bool) -> None:
    verdict = evaluate(observe(build), catalogs[advisory_id], NOW)
    assert verdict.status is status, verdict.reason
    assert (CU_UPDATE in verdict.flags) is cu_update
    assert verdict.advisory == f"{advisory_id}/{raw[advisory_id]['version']}"
    assert verdict.build_source is BuildSource.EXSETUP
    if status is V:
        product = verdict.product or ""
        assert verdict.cves_open == tuple(_products(raw[advisory_id])[product]["cves"])
    else:
        assert verdict.cves_open == ()


def test_march_2021_patched_is_not_proxyshell_patched(catalogs: dict[str, Catalog]) -> None:
    obs = observe("15.1.2176.9")  # 2016 CU19 Mar21SU
    logon = evaluate(obs, catalogs[DEFAULT_ADVISORY], NOW)
    shell = evaluate(obs, catalogs[PROXYSHELL], NOW)
    assert (logon.status, shell.status) == (P, V)
    assert "15.1.2176.14" in shell.reason and "KB5003435" in shell.action
    # No interim mitigation exists: the action says to isolate the server until the update.
    assert "until then isolate the server from the internet" in shell.action
    assert shell.mitigations == ()


def test_the_words_come_from_the_advisory(catalogs: dict[str, Catalog]) -> None:
    shell, notshell = catalogs[PROXYSHELL], catalogs[PROXYNOTSHELL]
    assert evaluate(observe("15.1.2176.14"), shell, NOW).action.startswith(
        "None: the May 2021 fixes are installed")
    old = evaluate(observe("15.1.2106.13"), shell, NOW)
    assert old.reason.endswith(": no May 2021 update exists for this CU")
    assert "Update to Exchange Server 2016 CU23 or later (it contains the May 2021 fixes)" in \
        old.action
    assert evaluate(observe("15.1.2308.27"), notshell, NOW).reason.endswith(
        ": no November 2022 update exists for this CU")
    for catalog in (shell, notshell):
        for build in ("15.1.2106.13", "15.1.2176.9", "15.2.1118.15"):
            verdict = evaluate(observe(build), catalog, NOW)
            assert "March 2021" not in verdict.reason + verdict.action, (catalog.advisory.id, build)


def test_ad_cu_level_and_installed_update_records_use_the_advisorys_words(
        catalogs: dict[str, Catalog]) -> None:
    shell = catalogs[PROXYSHELL]
    # AD alone shows a CU that contains the fix.
    cu21 = evaluate(observe(ad="Version 15.1 (Build 32308.8)"), shell, NOW)
    assert cu21.status is P and cu21.reason.endswith("a CU that contains the May 2021 fixes")
    # AD shows CU20, and the July 2021 SU is recorded: it supersedes the May fix.
    jul21 = InstalledUpdate("KB5004779", "Security Update for Exchange Server 2016 CU20 (KB5004779)")
    later = evaluate(observe(ad="Version 15.1 (Build 32242.4)", updates=(jul21,)), shell, NOW)
    assert later.status is P
    assert any("supersedes KB5003435 (the May 2021 fix, 15.1.2242.10)" in e.value
               for e in later.evidence)
    # AD shows CU19 and only the March SU is recorded: the Security Update level is unknown.
    mar21 = InstalledUpdate("KB5000871", "Security Update for Exchange Server 2016 CU19 (KB5000871)")
    march = evaluate(observe(ad="Version 15.1 (Build 32176.2)", updates=(mar21,)), shell, NOW)
    assert march.status is Status.UNKNOWN


@pytest.mark.parametrize("advisory_id", LATER)
def test_2010_is_not_applicable_whatever_its_build_and_roles(
        catalogs: dict[str, Catalog], advisory_id: str) -> None:
    for obs in (observe("14.3.513.0", roles=UM), observe("14.3.123.4"),
                observe(ad="Version 14.3 (Build 30123.4)")):
        verdict = evaluate(obs, catalogs[advisory_id], NOW)
        assert verdict.status is N and verdict.cves_open == ()
        assert CU_UPDATE not in verdict.flags and Flag.OUT_OF_SUPPORT in verdict.flags
        assert "not affected" in verdict.reason and "CVE record" in verdict.reason
        assert verdict.action.startswith("None: this server is not affected")
    # An unknown product line stays unplaceable: "not affected" is said only of a named one.
    assert evaluate(observe("16.0.1.1"), catalogs[advisory_id], NOW).status is Status.UNKNOWN


def test_indicators_flag_every_advisory_but_an_unread_check_only_its_own(
        catalogs: dict[str, Catalog]) -> None:
    hit = observe("15.2.1118.20", indicators=("CVE-2021-26855: ServerInfo~a]@x/ecp",))
    for catalog in catalogs.values():
        verdict = evaluate(hit, catalog, NOW)
        assert Flag.INDICATORS_FOUND in verdict.flags, catalog.advisory.id
        assert verdict.action.startswith("Investigate for compromise first")
    unread = observe("15.2.1118.20", errors=("CVE-2021-26855: access to HttpProxy logs denied",))
    flagged = {c.advisory.id for c in catalogs.values()
               if Flag.INDICATORS_UNREADABLE in evaluate(unread, c, NOW).flags}
    assert flagged == {DEFAULT_ADVISORY}


# -- every catalogued build under every advisory ---------------------------------------------------


def _below_the_fix(data: dict[str, Any], csv_rows: list[dict[str, str]],
                   row: dict[str, str]) -> bool:
    """From the raw files: the build is below its CU's fix (or its CU has none) and its CU is
    before the product's fixed_from (or there is none)."""
    rule = _products(data).get(row["product"])
    assert rule is not None, row["product"]
    fix = next((f for f in rule["fixes"] if f["cu"] == row["cu"]), None)
    if fix is not None and key(row["build"]) >= key(fix["build"]):
        return False
    first = _cus(csv_rows, row["product"]).get(rule["fixed_from"]) if rule["fixed_from"] else None
    return first is None or key(row["build"]) < first


@pytest.mark.parametrize("advisory_id", ADVISORY_IDS)
def test_no_build_below_its_fix_is_ever_patched(catalogs: dict[str, Catalog],
                                                raw: dict[str, dict[str, Any]],
                                                csv_rows: list[dict[str, str]],
                                                advisory_id: str) -> None:
    wrong, checked = [], 0
    for row in csv_rows:
        rule = _products(raw[advisory_id])[row["product"]]
        # 2010 under March 2021 only with UM (the only case it is affected).
        verdict = evaluate(observe(row["build"], roles=UM), catalogs[advisory_id], NOW)
        if not rule["cves"]:
            if verdict.status is not N:
                wrong.append((row["build"], verdict.status, "not affected"))
            continue
        if _below_the_fix(raw[advisory_id], csv_rows, row):
            checked += 1
            if verdict.status is P:
                wrong.append((row["build"], verdict.status, verdict.reason))
        elif row["kind"] != "other" and verdict.status is not P:
            wrong.append((row["build"], verdict.status, "at or above the fix"))
    assert wrong == []
    assert checked > 100

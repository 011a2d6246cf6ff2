"""The catalogue data itself (builds.csv, the advisory TOML) and Catalog.place."""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from compliance.advisory import AdvisoryError, parse_advisory
from compliance.builds import parse_dotted
from compliance.catalog import Catalog, CatalogError, build_catalog
from compliance.models import Build

ROOT = Path(__file__).resolve().parents[2]
BUILDS_CSV = ROOT / "compliance" / "data" / "builds.csv"
ADVISORY_TOML = ROOT / "compliance" / "data" / "advisories" / "2021-03-proxylogon.toml"
REFERENCE_CSV = Path("/work/shared/reference/exchange_builds.csv")
REFERENCE_SHA256 = "612a3ccbbb4a3b7170f7b06c14513ce34123ebb9e24962b25241543d66fab400"
CU_KINDS = {"RTM", "Preview", "SP", "CU"}


def key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# -- builds.csv ------------------------------------------------------------------------------


def test_row_count(csv_rows: list[dict[str, str]], catalog: Catalog) -> None:
    assert len(csv_rows) == 373
    assert len(catalog.releases) == 373


def test_catalogue_is_a_byte_identical_copy_of_the_reference() -> None:
    # The reference lives outside the repository, so its digest is pinned here: the test
    # runs (and does not skip) on a fresh CI machine too. Where the reference is present,
    # the bytes are compared directly as well.
    data = BUILDS_CSV.read_bytes()
    assert hashlib.sha256(data).hexdigest() == REFERENCE_SHA256
    if REFERENCE_CSV.exists():
        assert data == REFERENCE_CSV.read_bytes()


def test_builds_are_unique(csv_rows: list[dict[str, str]], catalog: Catalog) -> None:
    counts = Counter(parse_dotted(row["build"]) for row in csv_rows)
    assert [build for build, n in counts.items() if n > 1] == []
    assert len(catalog.by_build) == len(csv_rows)


def test_every_row_has_a_source(csv_rows: list[dict[str, str]]) -> None:
    assert [row["build"] for row in csv_rows if not row["source"].strip()] == []


def test_every_row_names_a_product_cu_kind_and_name(csv_rows: list[dict[str, str]]) -> None:
    kinds = {"RTM", "Preview", "SP", "CU", "SU", "HU", "RU", "other"}
    products = {"2010", "2013", "2016", "2019", "SE"}
    bad = [
        row["build"] for row in csv_rows
        if row["kind"] not in kinds or row["product"] not in products
        or not row["cu"] or not row["name"]
    ]
    assert bad == []


def test_each_cu_has_one_base_that_is_its_own_cu_row(csv_rows: list[dict[str, str]]) -> None:
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in csv_rows:
        groups[(row["product"], row["cu"])].append(row)
    problems = []
    for group, rows in groups.items():
        bases = {row["cu_base_build"] for row in rows}
        if len(bases) != 1:
            problems.append((group, "several bases", bases))
            continue
        base = bases.pop()
        base_rows = [row for row in rows if row["build"] == base]
        if len(base_rows) != 1 or base_rows[0]["kind"] not in CU_KINDS:
            problems.append((group, "base is not a CU/SP/RTM/Preview row", base))
    assert problems == []


def _date_key(date: str, precision: int) -> tuple[int, ...]:
    return tuple(int(part) for part in date.split("-"))[:precision]


def test_release_dates_do_not_go_backwards_within_a_cu(csv_rows: list[dict[str, str]]) -> None:
    # Disputed rows (kind=other) are left out: each comes from a single, questioned source,
    # so its date is no more trustworthy than its build (see their notes column).
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in csv_rows:
        if row["kind"] != "other" and row["release_date"]:
            groups[(row["product"], row["cu"])].append(row)
    backwards = []
    for group, rows in groups.items():
        rows.sort(key=lambda row: key(row["build"]))
        for earlier, later in itertools.pairwise(rows):
            # month-only dates ('YYYY-MM') compare at month precision
            precision = min(len(earlier["release_date"].split("-")),
                            len(later["release_date"].split("-")))
            if _date_key(later["release_date"], precision) < _date_key(
                earlier["release_date"], precision
            ):
                backwards.append((group, earlier["build"], earlier["release_date"],
                                  later["build"], later["release_date"]))
    assert backwards == []


def test_dates_match_their_precision(csv_rows: list[dict[str, str]]) -> None:
    lengths = {"day": 10, "month": 7, "": 0}
    assert [
        row["build"] for row in csv_rows
        if len(row["release_date"]) != lengths[row["date_precision"]]
    ] == []


def test_disputed_rows_are_marked_and_kept(csv_rows: list[dict[str, str]], catalog: Catalog) -> None:
    other = {row["build"] for row in csv_rows if row["kind"] == "other"}
    assert len(other) == 16
    assert {"15.1.1415.8", "15.1.1466.13", "15.2.858.2"} <= other
    disputed = {str(release.build) for release in catalog.releases if release.disputed}
    assert disputed == other
    # every disputed row says why, in the data
    assert [
        row["build"] for row in csv_rows
        if row["kind"] == "other" and not (row["notes"] or row["source_disagreement"])
    ] == []


def test_disputed_rows_keep_their_reason_in_the_release(catalog: Catalog) -> None:
    release = catalog.release(parse_dotted("15.1.1415.8"))
    assert release is not None and release.disputed
    assert "15.1.1415.10" in release.notes


def test_exchange_2010_ur32_is_in_the_catalogue(row_of: Any, advisory_data: dict[str, Any]) -> None:
    row = row_of("14.3.513.0")
    assert (row["product"], row["cu"], row["kb"]) == ("2010", "SP3", "KB5000978")
    assert "Update Rollup 32" in row["name"]
    fixes_2010 = next(p for p in advisory_data["products"] if p["product"] == "2010")["fixes"]
    assert [(f["cu"], f["build"], f["kb"]) for f in fixes_2010] == [
        ("SP3", "14.3.513.0", "KB5000978")
    ]


# -- the advisory against the catalogue --------------------------------------------------------


def _fixes(advisory_data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["product"], fix) for p in advisory_data["products"] for fix in p["fixes"]]


def test_every_fix_is_a_trusted_su_row_with_the_same_kb(
    advisory_data: dict[str, Any], row_of: Any
) -> None:
    problems = []
    for product, fix in _fixes(advisory_data):
        try:
            row = row_of(fix["build"])
        except KeyError:
            problems.append((product, fix["cu"], fix["build"], "not in catalogue"))
            continue
        expected_kind = "RU" if product == "2010" else "SU"
        if (row["product"], row["cu"], row["kb"], row["kind"]) != (
            product, fix["cu"], fix["kb"], expected_kind
        ):
            problems.append((product, fix["cu"], fix["build"], row["kind"], row["kb"]))
    assert problems == []


def test_fixes_match_the_reference_facts(advisory_data: dict[str, Any]) -> None:
    # reference README: SUs for 2013 SP1, CU21-CU23; 2016 CU8-CU19; 2019 RTM-CU8; 2010 UR32.
    cus = defaultdict(set)
    for product, fix in _fixes(advisory_data):
        cus[product].add(fix["cu"])
    assert cus["2013"] == {"SP1", "CU21", "CU22", "CU23"}
    assert cus["2016"] == {f"CU{n}" for n in range(8, 20)}
    assert cus["2019"] == {"RTM"} | {f"CU{n}" for n in range(1, 9)}
    assert cus["2010"] == {"SP3"}
    assert cus["SE"] == set()
    # Microsoft's build table wins the 2016 CU8/CU9 dispute
    fixes = {(p, f["cu"]): f["build"] for p, f in _fixes(advisory_data)}
    assert fixes[("2016", "CU8")] == "15.1.1415.10"
    assert fixes[("2016", "CU9")] == "15.1.1466.16"


def test_every_trusted_mar21su_row_is_a_fix(
    csv_rows: list[dict[str, str]], advisory_data: dict[str, Any]
) -> None:
    fix_builds = {fix["build"] for _product, fix in _fixes(advisory_data)}
    mar21 = {row["build"] for row in csv_rows if "Mar21SU" in row["name"] and row["kind"] != "other"}
    assert len(mar21) == 25
    assert mar21 - fix_builds == set()
    # and the other way round, for 2013-2019 (2010's fix is an update rollup, not "Mar21SU")
    assert fix_builds - mar21 == {"14.3.513.0"}


def test_one_fix_per_cu(advisory_data: dict[str, Any]) -> None:
    counts = Counter((product, fix["cu"]) for product, fix in _fixes(advisory_data))
    assert [cu for cu, n in counts.items() if n > 1] == []


def test_fix_is_above_its_cu_base(advisory_data: dict[str, Any], row_of: Any) -> None:
    below = [
        (product, fix["cu"]) for product, fix in _fixes(advisory_data)
        if key(fix["build"]) <= key(row_of(fix["build"])["cu_base_build"])
    ]
    assert below == []


def test_advisory_cross_references_exist(
    advisory_data: dict[str, Any], csv_rows: list[dict[str, str]]
) -> None:
    cus = {(row["product"], row["cu"]) for row in csv_rows if row["kind"] in CU_KINDS}
    missing = []
    for product in advisory_data["products"]:
        for field in ("fixed_from", "upgrade_to"):
            if product[field] and (product["product"], product[field]) not in cus:
                missing.append((product["product"], field, product[field]))
    assert missing == []
    by_product = {p["product"]: p for p in advisory_data["products"]}
    assert (by_product["2016"]["fixed_from"], by_product["2019"]["fixed_from"]) == ("CU20", "CU9")


def test_fixed_from_bases_are_the_first_fixed_cus(
    advisory_data: dict[str, Any], row_of: Any
) -> None:
    # reference README: 2016 CU20 (15.1.2242.4) and 2019 CU9 (15.2.858.5), 16 March 2021
    for build, cu in (("15.1.2242.4", "CU20"), ("15.2.858.5", "CU9")):
        row = row_of(build)
        assert (row["cu"], row["kind"], row["release_date"]) == (cu, "CU", "2021-03-16")


def test_upgrade_targets_come_after_fixed_from(oracle: Any) -> None:
    for product, rule in oracle.products().items():
        first = oracle.fixed_from_base(product)
        target = oracle.cu_base(product, rule["upgrade_to"]) if rule["upgrade_to"] else None
        if first is not None and target is not None:
            assert target >= first, product


def test_mitigations_name_the_march_2021_rules(advisory_data: dict[str, Any]) -> None:
    mitigations = {m["id"]: m for m in advisory_data["mitigations"]}
    assert mitigations["backend_cookie_rewrite"]["names"] == [
        "X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound"
    ]
    assert mitigations["backend_cookie_rewrite"]["covers"] == ["CVE-2021-26855"]
    assert "2019" not in mitigations["um_services_disabled"]["products"]
    # 2010 has no MSExchangeUMCR: its UM mitigation is the one service.
    assert mitigations["um_service_disabled_2010"]["names"] == ["MSExchangeUM"]
    assert mitigations["um_service_disabled_2010"]["products"] == ["2010"]


def test_loaded_advisory_matches_the_file(catalog: Catalog, advisory_data: dict[str, Any]) -> None:
    advisory = catalog.advisory
    assert advisory.id == advisory_data["id"] == "2021-03-proxylogon"
    assert {rule.product for rule in advisory.products} == {"2010", "2013", "2016", "2019", "SE"}
    rule_2010 = advisory.rule("2010")
    assert rule_2010 is not None
    assert rule_2010.cves == ("CVE-2021-26857",)
    assert rule_2010.requires_role == "UnifiedMessaging"
    rule_2016 = advisory.rule("2016")
    assert rule_2016 is not None
    fix = rule_2016.fix_for("CU19")
    assert fix is not None
    assert (fix.build, fix.kb, fix.supported_cu) == (Build(15, 1, 2176, 9), "KB5000871", True)
    cu8 = rule_2016.fix_for("CU8")
    assert cu8 is not None and cu8.supported_cu is False
    assert rule_2016.fix_for("CU20") is None
    assert advisory.rule("2007") is None
    # The words the evaluator uses for it (its verdict texts are pinned in test_evaluate.py).
    assert (advisory.short, advisory.fix_name, advisory.fixes_name, advisory.update_name,
            advisory.cves_name) == ("ProxyLogon", "the March 2021 fix", "the March 2021 fixes",
                                    "March 2021 update", "the March 2021 CVEs")
    assert all(rule.affected for rule in advisory.products)


# -- malformed data ------------------------------------------------------------------------------


def _mutated(advisory_data: dict[str, Any], change: Any) -> dict[str, Any]:
    data = copy.deepcopy(advisory_data)
    change(data)
    return data


def _product(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["products"] if p["product"] == name)


def _fix(data: dict[str, Any], product: str, cu: str) -> dict[str, Any]:
    return next(f for f in _product(data, product)["fixes"] if f["cu"] == cu)


MALFORMED = [
    pytest.param(lambda d: d.pop("id"), id="missing-id"),
    pytest.param(lambda d: d.pop("cves"), id="missing-cves"),
    pytest.param(lambda d: d.pop("short"), id="missing-short"),
    pytest.param(lambda d: d.pop("fix_name"), id="missing-fix-name"),
    pytest.param(lambda d: d.update(fixes_name=3), id="fixes-name-not-a-string"),
    pytest.param(lambda d: d.update(cves_name=" "), id="cves-name-blank"),
    pytest.param(lambda d: d["mitigations"][0].pop("kind"), id="mitigation-missing-kind"),
    pytest.param(lambda d: _product(d, "2016").pop("fixed_from"), id="product-missing-fixed-from"),
    pytest.param(lambda d: _fix(d, "2016", "CU19").pop("build"), id="fix-missing-build"),
    pytest.param(lambda d: _product(d, "2016")["cves"].append("CVE-2099-0001"),
                 id="product-names-undefined-cve"),
    pytest.param(lambda d: _product(d, "2016")["mitigated_when"].append("no_such_mitigation"),
                 id="product-names-undefined-mitigation"),
    pytest.param(lambda d: d["mitigations"][0].update(kind="registry_key"),
                 id="unknown-mitigation-kind"),
    pytest.param(lambda d: d["mitigations"][0].update(covers=["CVE-2099-0001"]),
                 id="mitigation-covers-undefined-cve"),
    pytest.param(lambda d: d["mitigations"][0].update(names="X-BEResource Abort - inbound"),
                 id="names-not-a-list"),
    pytest.param(lambda d: _product(d, "2016").update(cves=[26855]), id="cves-not-strings"),
    pytest.param(lambda d: _fix(d, "2016", "CU19").update(build="15.1.2176"),
                 id="fix-build-not-four-parts"),
    pytest.param(lambda d: _fix(d, "2016", "CU8").update(supported_cu="false"),
                 id="supported-cu-not-a-boolean"),
    pytest.param(
        lambda d: _product(d, "2016")["fixes"].append(
            dict(_fix(d, "2016", "CU19"), build="15.1.2176.12")
        ),
        id="two-fixes-for-one-cu",
    ),
]


@pytest.mark.parametrize("change", MALFORMED)
def test_malformed_advisory_raises_advisory_error(
    advisory_data: dict[str, Any], change: Any
) -> None:
    data = _mutated(advisory_data, change)
    try:
        parse_advisory(data)
    except AdvisoryError:
        return
    except Exception as error:  # report which error it was
        raise AssertionError(f"raised {type(error).__name__}, not AdvisoryError: {error}") from None
    raise AssertionError("malformed advisory was accepted")


def test_unmodified_advisory_parses(advisory_data: dict[str, Any]) -> None:
    assert parse_advisory(copy.deepcopy(advisory_data)).id == "2021-03-proxylogon"


def test_malformed_catalogue_row_raises_catalog_error() -> None:
    text = BUILDS_CSV.read_text(encoding="utf-8")
    header, first, *rest = text.splitlines(keepends=True)
    broken = header + first.replace("14.3.123.4,", "14.3.123,", 1) + "".join(rest)
    with pytest.raises(CatalogError, match="line 2"):
        build_catalog(broken, ADVISORY_TOML.read_text(encoding="utf-8"))


# -- placement -----------------------------------------------------------------------------------

PLACEMENTS = [
    pytest.param(Build(15, 1, 2176, 9), "2016", "CU19", "15.1.2176.2", True, id="known-su"),
    pytest.param(Build(15, 1, 2176, 2), "2016", "CU19", "15.1.2176.2", True, id="known-cu"),
    pytest.param(Build(15, 1, 2176, 42), "2016", "CU19", "15.1.2176.2", False,
                 id="unknown-su-above-fix-in-known-cu"),
    pytest.param(Build(15, 1, 2200, 1), "2016", None, None, False, id="between-cus"),
    pytest.param(Build(15, 1, 2242, 3), "2016", None, None, False,
                 id="one-revision-below-cu20-base"),
    pytest.param(Build(15, 1, 2176, None), "2016", "CU19", "15.1.2176.2", False,
                 id="ad-cu-level-no-revision"),
    pytest.param(Build(15, 2, 858, None), "2019", "CU9", "15.2.858.5", False,
                 id="ad-cu-level-2019-cu9"),
    pytest.param(Build(15, 2, 1234, None), "2019", None, None, False,
                 id="ad-cu-level-unknown-build-number"),
    pytest.param(Build(14, 3, 600, 0), "2010", "SP3", "14.3.123.4", False,
                 id="2010-later-rollup-raises-build-number"),
    pytest.param(Build(14, 3, 513, 0), "2010", "SP3", "14.3.123.4", True, id="2010-ur32"),
    pytest.param(Build(14, 3, 123, None), "2010", "SP3", "14.3.123.4", False,
                 id="2010-ad-sp-level"),
    pytest.param(Build(15, 2, 2562, 17), "SE", "RTM", "15.2.2562.17", True, id="se-rtm"),
    pytest.param(Build(15, 2, 2562, 99), "SE", "RTM", "15.2.2562.17", False, id="se-unknown-su"),
    pytest.param(Build(15, 2, 2562, None), "SE", "RTM", "15.2.2562.17", False, id="se-ad-level"),
    pytest.param(Build(15, 1, 225, 16), "2016", "Preview", "15.1.225.16", True,
                 id="2016-preview-build-225"),
    pytest.param(Build(15, 1, 225, 42), "2016", "RTM", "15.1.225.42", True,
                 id="2016-rtm-build-225"),
    pytest.param(Build(15, 1, 225, 50), "2016", "RTM", "15.1.225.42", False,
                 id="2016-unknown-above-rtm-build-225"),
    pytest.param(Build(15, 1, 225, None), "2016", None, None, False,
                 id="2016-ad-level-225-is-ambiguous"),
    pytest.param(Build(15, 0, 100, 1), "2013", None, None, False, id="below-first-2013-release"),
    pytest.param(Build(16, 0, 1, 1), None, None, None, False, id="unknown-product-line"),
    pytest.param(Build(15, 1, 1415, 8), "2016", "CU8", "15.1.1415.2", True, id="disputed-row"),
]


@pytest.mark.parametrize(("build", "product", "cu", "base", "known"), PLACEMENTS)
def test_place(catalog: Catalog, build: Build, product: str | None, cu: str | None,
               base: str | None, known: bool) -> None:
    placement = catalog.place(build)
    assert placement.build == build
    assert placement.product == product
    assert placement.cu == cu
    assert placement.cu_base == (parse_dotted(base) if base else None)
    assert (placement.release is not None) is known
    if known:
        assert placement.release is not None and placement.release.build == build


def test_every_catalogue_row_places_in_its_own_cu(
    catalog: Catalog, csv_rows: list[dict[str, str]]
) -> None:
    wrong = []
    for row in csv_rows:
        placement = catalog.place(parse_dotted(row["build"]))
        if (placement.product, placement.cu, str(placement.cu_base)) != (
            row["product"], row["cu"], row["cu_base_build"]
        ):
            wrong.append((row["build"], placement.product, placement.cu))
    assert wrong == []


def test_catalogue_version_names_the_newest_release(
    catalog: Catalog, csv_rows: list[dict[str, str]]
) -> None:
    newest = max(row["release_date"] for row in csv_rows if row["release_date"])
    assert catalog.newest_release == newest
    assert catalog.version.startswith(f"{newest}+")

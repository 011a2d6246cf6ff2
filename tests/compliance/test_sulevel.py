"""The Security Update level (compliance/sulevel.py): expectations come from builds.csv read
with ``csv`` (conftest's ``csv_rows``), not from the code under test."""

from __future__ import annotations

from collections import defaultdict

import pytest

from compliance.builds import parse_dotted
from compliance.catalog import Catalog, build_catalog
from compliance.models import Build
from compliance.sulevel import (
    SuState,
    newest_release,
    newest_releases,
    newest_update,
    su_level,
)

UPDATE_KINDS = {"SU", "RU", "HU"}


def key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _undisputed(rows: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """Non-disputed rows per (product, CU), one per build, oldest first."""
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = defaultdict(dict)
    for row in rows:
        if row["kind"] != "other":
            groups[(row["product"], row["cu"])].setdefault(row["build"], row)
    return {group: sorted(by_build.values(), key=lambda r: key(r["build"]))
            for group, by_build in groups.items()}


@pytest.fixture(scope="module")
def groups(csv_rows: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    return _undisputed(csv_rows)


# -- single cases --------------------------------------------------------------------------

def test_the_newest_update_is_current(catalog: Catalog,
                                      groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    newest_row = groups[("2019", "CU14")][-1]
    level = su_level(parse_dotted(newest_row["build"]), catalog)
    assert level.state is SuState.CURRENT and level.current
    assert level.behind == 0
    assert level.newest is not None and level.newest.name == newest_row["name"]
    assert (level.product, level.cu) == ("2019", "CU14")


def test_one_behind(catalog: Catalog, groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    rows = groups[("2019", "CU14")]
    level = su_level(parse_dotted(rows[-2]["build"]), catalog)
    assert level.state is SuState.BEHIND and not level.current
    assert level.behind == 1
    assert level.newest is not None and str(level.newest.build) == rows[-1]["build"]


def test_a_v2_re_release_counts_as_a_release_of_its_own(catalog: Catalog) -> None:
    # 2019 CU13: Nov24SU (15.2.1258.38) was re-released as Nov24SUv2 (15.2.1258.39).
    assert catalog.name_of(parse_dotted("15.2.1258.39")) == "Exchange Server 2019 CU13 Nov24SUv2"
    v1 = su_level(parse_dotted("15.2.1258.38"), catalog)
    assert (v1.state, v1.behind) == (SuState.BEHIND, 1)
    v2 = su_level(parse_dotted("15.2.1258.39"), catalog)
    assert (v2.state, v2.behind) == (SuState.CURRENT, 0)


def test_a_host_on_a_v1_counts_the_v2_and_every_later_update(
        catalog: Catalog, groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    rows = groups[("2016", "CU23")]
    names = [r["name"] for r in rows]
    v1 = names.index("Exchange Server 2016 CU23 Aug23SU")
    assert names[v1 + 1] == "Exchange Server 2016 CU23 Aug23SUv2"
    level = su_level(parse_dotted(rows[v1]["build"]), catalog)
    assert level.behind == len(rows) - v1 - 1
    assert su_level(parse_dotted(rows[v1 + 1]["build"]), catalog).behind == len(rows) - v1 - 2


def test_a_disputed_row_is_unknown_never_current_nor_counted(catalog: Catalog) -> None:
    # 15.1.1415.8: one source's 2016 CU8 Mar21SU; Microsoft's table says 15.1.1415.10.
    assert catalog.release(parse_dotted("15.1.1415.8")).disputed  # type: ignore[union-attr]
    level = su_level(parse_dotted("15.1.1415.8"), catalog)
    assert level.state is SuState.UNKNOWN and level.behind is None
    assert "disputed" in level.reason
    assert level.newest is not None and str(level.newest.build) == "15.1.1415.10"


def test_a_disputed_row_above_every_release_of_its_cu_is_unknown(catalog: Catalog) -> None:
    # 2013 CU6 got no update; 15.0.995.32 is seen only in hash baselines (kind=other).
    level = su_level(parse_dotted("15.0.995.32"), catalog)
    assert level.state is SuState.UNKNOWN
    assert level.newest is not None and str(level.newest.build) == "15.0.995.29"


def test_a_cu_level_only_build_is_unknown(catalog: Catalog) -> None:
    level = su_level(Build(15, 1, 2507, None), catalog)
    assert level.state is SuState.UNKNOWN and level.behind is None
    assert (level.product, level.cu) == ("2016", "CU23")
    assert "only the CU level" in level.reason
    assert level.newest is not None  # the Catalogue page can still show what is newest


@pytest.mark.parametrize("text", ["15.1.2600.5", "16.0.100.1", "15.1.100.1"])
def test_an_unplaceable_build_is_unknown(catalog: Catalog, text: str) -> None:
    level = su_level(parse_dotted(text), catalog)
    assert level.state is SuState.UNKNOWN
    assert level.cu is None and level.newest is None and level.behind is None


def test_no_build_is_unknown(catalog: Catalog) -> None:
    level = su_level(None, catalog)
    assert level.state is SuState.UNKNOWN and level.build is None


def test_a_build_above_every_known_update_is_unknown_not_current(catalog: Catalog) -> None:
    # On CU23 (same build number) but above its newest update: released after the catalogue.
    level = su_level(parse_dotted("15.1.2507.99"), catalog)
    assert level.state is SuState.UNKNOWN
    assert "update the catalogue" in level.reason


def test_an_uncatalogued_build_between_updates_is_behind(
        catalog: Catalog, groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    build = parse_dotted("15.1.2507.50")
    assert catalog.release(build) is None
    above = [r for r in groups[("2016", "CU23")] if key(r["build"]) > (15, 1, 2507, 50)]
    level = su_level(build, catalog)
    assert (level.state, level.behind) == (SuState.BEHIND, len(above))


def test_a_cu_without_updates_is_current_on_the_cu_itself(catalog: Catalog) -> None:
    level = su_level(parse_dotted("15.0.913.22"), catalog)  # 2013 CU5, never updated
    assert level.state is SuState.CURRENT
    assert level.newest is not None and level.newest.kind == "CU"
    assert newest_update(catalog, "2013", "CU5") is None


def test_a_2010_rollup_counts_like_an_update(catalog: Catalog) -> None:
    assert (su_level(parse_dotted("14.3.509.0"), catalog).behind) == 1
    assert su_level(parse_dotted("14.3.513.0"), catalog).state is SuState.CURRENT


# -- every catalogued build ----------------------------------------------------------------

def test_every_undisputed_build_against_the_csv(
        catalog: Catalog, csv_rows: list[dict[str, str]],
        groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    checked = 0
    for row in csv_rows:
        if row["kind"] == "other":
            continue
        rows = groups[(row["product"], row["cu"])]
        higher = {r["build"] for r in rows if key(r["build"]) > key(row["build"])}
        level = su_level(parse_dotted(row["build"]), catalog)
        assert level.behind == len(higher), row["build"]
        assert level.state is (SuState.CURRENT if not higher else SuState.BEHIND), row["build"]
        checked += 1
    assert checked == sum(1 for r in csv_rows if r["kind"] != "other") > 300


def test_every_disputed_build_is_unknown(catalog: Catalog, csv_rows: list[dict[str, str]]) -> None:
    disputed = [r for r in csv_rows if r["kind"] == "other"]
    assert disputed
    for row in disputed:
        assert su_level(parse_dotted(row["build"]), catalog).state is SuState.UNKNOWN, row["build"]


# -- newest known release per CU (the Catalogue page) -------------------------------------

def test_newest_release_per_cu(catalog: Catalog,
                               groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    newest = newest_releases(catalog)
    assert set(newest) == set(groups)
    for group, rows in groups.items():
        assert str(newest[group].build) == rows[-1]["build"], group
    assert str(newest[("2019", "CU13")].build) == "15.2.1258.39"  # the v2, not the v1
    assert str(newest[("2013", "CU6")].build) == "15.0.995.29"  # the CU: the other row is disputed
    assert str(newest[("2016", "CU8")].build) == "15.1.1415.10"
    # In the catalogue's order: by the CU's base build.
    order = [catalog.cu_base(product, cu) for product, cu in newest]
    assert order == sorted(order)  # type: ignore[type-var]


def test_newest_update_skips_the_cu_itself_and_disputed_rows(
        catalog: Catalog, groups: dict[tuple[str, str], list[dict[str, str]]]) -> None:
    for (product, cu), rows in groups.items():
        updates = [r for r in rows if r["kind"] in UPDATE_KINDS]
        found = newest_update(catalog, product, cu)
        if updates:
            assert found is not None and str(found.build) == updates[-1]["build"]
        else:
            assert found is None
    assert newest_release(catalog, "2016", "CU99") is None


BUILDS_HEADER = ("build,product,cu,kind,name,kb,release_date,source,cu_base_build,"
                 "source_disagreement,notes")
ADVISORY = """
id = "test"
version = "1"
title = "Test"
published = "2024-01-01"
url = "https://example.invalid/test"
short = "Test"
fix_name = "the test fix"
fixes_name = "the test fixes"
update_name = "test update"
cves_name = "the test CVEs"
mitigations = []
[[cves]]
id = "CVE-0000-0001"
title = "t"
source = "test"
[[products]]
product = "2019"
cves = ["CVE-0000-0001"]
requires_role = ""
fixed_from = ""
upgrade_to = ""
mitigated_when = []
source = "test"
fixes = []
"""


def test_a_small_catalogue_with_a_disputed_row_above_the_newest() -> None:
    rows = [
        "15.2.100.5,2019,CU1,CU,CU1,,2024-01-01,t,15.2.100.5,,",
        "15.2.100.7,2019,CU1,SU,CU1 Feb24SU,KB1000001,2024-02-01,t,15.2.100.5,,",
        "15.2.100.8,2019,CU1,SU,CU1 Feb24SUv2,KB1000002,2024-02-08,t,15.2.100.5,,",
        "15.2.100.9,2019,CU1,other,CU1 (seen in one source),,2024-03,t,15.2.100.5,disputed,",
    ]
    small = build_catalog("\n".join([BUILDS_HEADER, *rows]) + "\n", ADVISORY)
    assert str(newest_releases(small)[("2019", "CU1")].build) == "15.2.100.8"
    assert su_level(parse_dotted("15.2.100.5"), small).behind == 2
    assert su_level(parse_dotted("15.2.100.7"), small).behind == 1
    assert su_level(parse_dotted("15.2.100.8"), small).state is SuState.CURRENT
    assert su_level(parse_dotted("15.2.100.9"), small).state is SuState.UNKNOWN
    assert su_level(parse_dotted("15.2.100.6"), small).behind == 2  # not catalogued, placed

"""compliance.builds: every build form Exchange shows, its refusals, and ordering."""

from __future__ import annotations

import re

import pytest

from compliance.builds import (
    BuildParseError,
    encode_version_number,
    parse_admin_display_version,
    parse_any,
    parse_build,
    parse_dotted,
    parse_serial_number,
    parse_version_number,
)
from compliance.models import Build, BuildSource

B = Build

DOTTED = [
    pytest.param("15.1.2176.9", B(15, 1, 2176, 9), id="dotted"),
    pytest.param("15.01.2176.009", B(15, 1, 2176, 9), id="zero-padded-file-version"),
    pytest.param("15.00.1497.012", B(15, 0, 1497, 12), id="zero-padded-2013"),
    pytest.param("15.02.0721.013", B(15, 2, 721, 13), id="zero-padded-leading-zero-build"),
    pytest.param("14.3.513.0", B(14, 3, 513, 0), id="2010-revision-zero"),
    pytest.param("  15.1.2176.9\n", B(15, 1, 2176, 9), id="surrounding-whitespace"),
]


@pytest.mark.parametrize(("text", "expected"), DOTTED)
def test_parse_dotted(text: str, expected: Build) -> None:
    assert parse_dotted(text) == expected


ADMIN_DISPLAY = [
    pytest.param("Version 15.1 (Build 2176.2)", B(15, 1, 2176, 2), id="2016-cu19"),
    pytest.param("Version 15.0 (Build 1497.2)", B(15, 0, 1497, 2), id="2013-cu23"),
    pytest.param("Version 14.3 (Build 123.4)", B(14, 3, 123, 4), id="2010-sp3"),
    pytest.param("version 15.2 (build 858.5)", B(15, 2, 858, 5), id="lower-case"),
    pytest.param("VERSION 15.2 (BUILD 858.5)", B(15, 2, 858, 5), id="upper-case"),
    pytest.param("Version 15.2 (Build 1118.007)", B(15, 2, 1118, 7), id="padded-revision"),
]


@pytest.mark.parametrize(("text", "expected"), ADMIN_DISPLAY)
def test_parse_admin_display_version(text: str, expected: Build) -> None:
    assert parse_admin_display_version(text) == expected


SERIAL = [
    pytest.param("Version 15.1 (Build 32176.2)", B(15, 1, 2176, 2), id="2016-cu19-minus-30000"),
    pytest.param("Version 15.2 (Build 31118.007)", B(15, 2, 1118, 7), id="padded-revision-2019-cu12"),
    pytest.param("Version 15.2 (Build 30986.005)", B(15, 2, 986, 5), id="padded-revision-2019-cu11"),
    pytest.param("Version 15.1 (Build 32507.006)", B(15, 1, 2507, 6), id="padded-revision-2016-cu23"),
    pytest.param("Version 15.0 (Build 31178.04)", B(15, 0, 1178, 4), id="2013-cu12-community"),
    pytest.param("Version 15.0 (Build 30516.32)", B(15, 0, 516, 32), id="2013-rtm"),
    pytest.param("Version 14.3 (Build 30123.4)", B(14, 3, 123, 4), id="2010-sp3"),
    pytest.param(
        "Version 15.1 (Build 32176.2: Security Update For Exchange Server)",
        B(15, 1, 2176, 2),
        id="description-suffix",
    ),
    pytest.param("Version 15.1 (Build 32176.2 : patched)", B(15, 1, 2176, 2),
                 id="description-suffix-spaced"),
    pytest.param("version 15.1 (build 32176.2)", B(15, 1, 2176, 2), id="lower-case"),
    pytest.param("VERSION 15.1 (BUILD 32176.2)", B(15, 1, 2176, 2), id="upper-case"),
]


@pytest.mark.parametrize(("text", "expected"), SERIAL)
def test_parse_serial_number(text: str, expected: Build) -> None:
    assert parse_serial_number(text) == expected


VERSION_NUMBERS = [
    pytest.param(1942063232, B(15, 1, 2176, None), id="2016-cu19-int"),
    pytest.param("1942063232", B(15, 1, 2176, None), id="2016-cu19-str"),
    pytest.param(" 1942063232 ", B(15, 1, 2176, None), id="2016-cu19-str-padded"),
    pytest.param(1937801568, B(14, 0, 352, None), id="community-filter-2010-or-later"),
]


@pytest.mark.parametrize(("value", "expected"), VERSION_NUMBERS)
def test_parse_version_number(value: int | str, expected: Build) -> None:
    build = parse_version_number(value)
    assert build == expected
    assert build.revision is None


def test_version_number_matches_the_documented_packing() -> None:
    # (Build & 0x7FFF) | (Minor & 63) << 16 | (Major & 63) << 22 | 0x70008000, written out.
    assert encode_version_number(B(15, 1, 2176, 2)) == 1942063232
    assert encode_version_number(B(14, 0, 352, 0)) == 1937801568
    assert encode_version_number(B(15, 2, 858, 5)) == 0x70008000 + (15 << 22) + (2 << 16) + 858


def test_version_number_ignores_the_revision() -> None:
    assert encode_version_number(B(15, 1, 2176, 2)) == encode_version_number(B(15, 1, 2176, 9))


REJECTED = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("15.1.2176", id="three-parts"),
    pytest.param("15.1.2176.9.1", id="five-parts"),
    pytest.param("abc", id="letters"),
    pytest.param("15.1.2176.9a", id="trailing-letter"),
    pytest.param("15.1.2176.", id="trailing-dot"),
    pytest.param("15,1,2176,9", id="commas"),
    pytest.param("15.1. 2176.9", id="inner-space"),
    pytest.param("-1", id="negative-int"),
    pytest.param("-1942063232", id="negative-version-number"),
    pytest.param("99999999999", id="huge-int"),
    pytest.param(str(2**31), id="just-above-int32"),
    pytest.param("12345", id="int-without-marker-bits"),
    pytest.param(str(0x70000000 | (15 << 22) | (1 << 16) | 2176), id="int-missing-0x8000-bit"),
    pytest.param("Version 15.1 (Build 2176)", id="version-form-without-revision"),
    pytest.param("Version 15.1 (Build 2176.2", id="version-form-unclosed"),
    pytest.param("Version 15.1 (Build 2176.2) extra", id="version-form-trailing-text"),
    pytest.param("Build 2176.2", id="no-version-prefix"),
]


@pytest.mark.parametrize("text", REJECTED)
def test_parse_any_rejects(text: str) -> None:
    with pytest.raises(BuildParseError):
        parse_any(text)


SOURCE_REJECTIONS = [
    pytest.param(parse_serial_number, "Version 15.1 (Build 2176.2)",
                 id="serialNumber-without-offset"),
    pytest.param(parse_admin_display_version, "Version 15.1 (Build 32176.2)",
                 id="AdminDisplayVersion-with-offset"),
    pytest.param(parse_dotted, "Version 15.1 (Build 2176.2)", id="dotted-given-version-form"),
    pytest.param(parse_dotted, "1942063232", id="dotted-given-int"),
    pytest.param(parse_admin_display_version, "15.1.2176.2", id="AdminDisplayVersion-given-dotted"),
    pytest.param(parse_serial_number, "15.1.2176.2", id="serialNumber-given-dotted"),
    pytest.param(parse_version_number, "15.1.2176.2", id="versionNumber-given-dotted"),
    pytest.param(parse_version_number, -1, id="versionNumber-negative-int"),
    pytest.param(parse_version_number, 2**40, id="versionNumber-huge-int"),
    pytest.param(parse_version_number, 2176, id="versionNumber-no-marker"),
    pytest.param(parse_version_number, "", id="versionNumber-empty"),
]


@pytest.mark.parametrize(("parser", "text"), SOURCE_REJECTIONS)
def test_source_specific_parsers_reject(parser, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BuildParseError):
        parser(text)


def test_parse_error_is_a_value_error_naming_the_input() -> None:
    with pytest.raises(ValueError, match=re.escape("'15.1.2176.9.1'")):
        parse_dotted("15.1.2176.9.1")


RECOGNISED = [
    pytest.param("15.1.2176.9", B(15, 1, 2176, 9), BuildSource.EXSETUP, id="dotted"),
    pytest.param("15.01.2176.009", B(15, 1, 2176, 9), BuildSource.EXSETUP, id="file-version"),
    pytest.param("Version 15.1 (Build 2176.2)", B(15, 1, 2176, 2),
                 BuildSource.ADMIN_DISPLAY_VERSION, id="admin-display-version"),
    pytest.param("Version 15.1 (Build 32176.2)", B(15, 1, 2176, 2),
                 BuildSource.AD_SERIAL_NUMBER, id="serial-number"),
    pytest.param("Version 15.2 (Build 31118.007)", B(15, 2, 1118, 7),
                 BuildSource.AD_SERIAL_NUMBER, id="serial-number-padded"),
    pytest.param("Version 15.1 (Build 32176.2: x)", B(15, 1, 2176, 2),
                 BuildSource.AD_SERIAL_NUMBER, id="serial-number-description"),
    pytest.param("version 14.3 (build 30123.4)", B(14, 3, 123, 4),
                 BuildSource.AD_SERIAL_NUMBER, id="serial-number-lower-case"),
    pytest.param("1942063232", B(15, 1, 2176, None), BuildSource.AD_VERSION_NUMBER,
                 id="version-number"),
    pytest.param(" 1937801568\n", B(14, 0, 352, None), BuildSource.AD_VERSION_NUMBER,
                 id="version-number-whitespace"),
]


@pytest.mark.parametrize(("text", "build", "source"), RECOGNISED)
def test_parse_any_recognises_the_form(text: str, build: Build, source: BuildSource) -> None:
    assert parse_any(text) == (build, source)


@pytest.mark.parametrize(("text", "build", "source"), RECOGNISED)
def test_parse_build_agrees_with_parse_any(text: str, build: Build, source: BuildSource) -> None:
    assert parse_build(text, source) == build


@pytest.mark.parametrize(
    ("source", "cu_level_only"),
    [
        pytest.param(BuildSource.EXSETUP, False, id="exsetup"),
        pytest.param(BuildSource.INSTALLED_UPDATE, False, id="installed-update"),
        pytest.param(BuildSource.AD_SERIAL_NUMBER, True, id="serial-number"),
        pytest.param(BuildSource.AD_VERSION_NUMBER, True, id="version-number"),
        pytest.param(BuildSource.ADMIN_DISPLAY_VERSION, True, id="admin-display-version"),
    ],
)
def test_only_ad_sources_are_cu_level_only(source: BuildSource, cu_level_only: bool) -> None:
    assert source.cu_level_only is cu_level_only


ORDERED_PAIRS = [
    pytest.param(B(15, 1, 2176, 9), B(15, 1, 2176, 10), id="revision-numeric-not-string"),
    pytest.param(B(15, 1, 999, 1), B(15, 1, 2176, 2), id="build-numeric-not-string"),
    pytest.param(B(15, 1, 2176, 99), B(15, 1, 2242, 4), id="build-beats-revision"),
    pytest.param(B(15, 0, 1497, 12), B(15, 1, 225, 16), id="minor-beats-build"),
    pytest.param(B(14, 3, 513, 0), B(15, 0, 516, 32), id="major-beats-everything"),
    pytest.param(B(15, 1, 2176, None), B(15, 1, 2176, 0), id="no-revision-below-revision-0"),
    pytest.param(B(15, 1, 2176, None), B(15, 1, 2176, 2), id="no-revision-below-cu-base"),
    pytest.param(B(15, 1, 2106, 99), B(15, 1, 2176, None), id="no-revision-above-older-build"),
]


@pytest.mark.parametrize(("low", "high"), ORDERED_PAIRS)
def test_ordering_is_numeric(low: Build, high: Build) -> None:
    assert low < high
    assert high > low
    assert low <= high
    assert not high < low
    assert low != high


def test_ordering_of_parsed_strings() -> None:
    texts = ["15.1.2176.10", "15.1.999.1", "15.1.2176.9", "15.1.2176.2", "15.01.2242.004"]
    ordered = sorted(texts, key=parse_dotted)
    assert ordered == ["15.1.999.1", "15.1.2176.2", "15.1.2176.9", "15.1.2176.10",
                       "15.01.2242.004"]


def test_equal_builds_compare_equal_and_hash_alike() -> None:
    assert parse_dotted("15.01.2176.009") == parse_dotted("15.1.2176.9")
    assert hash(parse_dotted("15.01.2176.009")) == hash(B(15, 1, 2176, 9))
    assert B(15, 1, 2176, None) != B(15, 1, 2176, 0)


def test_comparison_with_other_types_is_refused() -> None:
    with pytest.raises(TypeError):
        _ = B(15, 1, 2176, 9) < "15.1.2176.10"  # type: ignore[operator]


@pytest.mark.parametrize(
    ("build", "text"),
    [
        pytest.param(B(15, 1, 2176, 9), "15.1.2176.9", id="with-revision"),
        pytest.param(B(15, 1, 2176, None), "15.1.2176", id="cu-level-only"),
    ],
)
def test_str(build: Build, text: str) -> None:
    assert str(build) == text


# -- every row of the catalogue ------------------------------------------------------------


def test_every_row_build_and_build_long_agree(csv_rows: list[dict[str, str]]) -> None:
    mismatches = [
        (row["build"], row["build_long"])
        for row in csv_rows
        if parse_dotted(row["build"]) != parse_dotted(row["build_long"])
    ]
    assert mismatches == []
    # build_long is the padded file-version form: 2 + 2 + 4 + 3 digits
    assert all(
        [len(part) for part in row["build_long"].split(".")] == [2, 2, 4, 3] for row in csv_rows
    )


def test_every_row_serial_number_is_its_cu_base(csv_rows: list[dict[str, str]]) -> None:
    # The data says: ad_serialNumber_expected is the CU base build with 30000 added to the
    # build number (AD holds the CU level, never the SU level).
    mismatches = []
    for row in csv_rows:
        base = row["cu_base_build"].split(".")
        written = f"Version {base[0]}.{base[1]} (Build {int(base[2]) + 30000}.{base[3]})"
        parsed = parse_serial_number(row["ad_serialNumber_expected"])
        if row["ad_serialNumber_expected"] != written or parsed != parse_dotted(row["cu_base_build"]):
            mismatches.append((row["build"], row["ad_serialNumber_expected"], row["cu_base_build"]))
    assert mismatches == []


def test_every_row_admin_display_version_is_its_cu_base(csv_rows: list[dict[str, str]]) -> None:
    mismatches = [
        row["build"]
        for row in csv_rows
        if parse_admin_display_version(row["admin_display_version_expected"])
        != parse_dotted(row["cu_base_build"])
        or parse_any(row["admin_display_version_expected"])[1]
        is not BuildSource.ADMIN_DISPLAY_VERSION
        or parse_any(row["ad_serialNumber_expected"])[1] is not BuildSource.AD_SERIAL_NUMBER
    ]
    assert mismatches == []


def test_every_row_version_number_round_trips(csv_rows: list[dict[str, str]]) -> None:
    mismatches = []
    for row in csv_rows:
        number = int(row["ad_versionNumber_expected"])
        decoded = parse_version_number(number)
        major, minor, build, _revision = (int(p) for p in row["cu_base_build"].split("."))
        if (
            decoded != B(major, minor, build, None)
            or encode_version_number(decoded) != number
            or encode_version_number(parse_dotted(row["cu_base_build"])) != number
            or parse_any(row["ad_versionNumber_expected"]) != (decoded, BuildSource.AD_VERSION_NUMBER)
        ):
            mismatches.append((row["build"], number))
    assert mismatches == []

"""Property tests of compliance.builds: every parser returns a Build or says BuildParseError.

A parser that raised anything else would crash a collection (or a whole import); one that
accepted garbage could place a host in the wrong CU. The strategies mix arbitrary text
(Unicode digits and spaces included), the real forms with numbers of any size, and ints.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from compliance.builds import (
    BuildParseError,
    encode_version_number,
    parse_ad_build,
    parse_admin_display_version,
    parse_any,
    parse_build,
    parse_dotted,
    parse_serial_number,
    parse_version_number,
)
from compliance.models import Build, BuildSource

MARK = 0x70008000
MAX_VERSION_NUMBER = 0x7FFFFFFF
TEXT_PARSERS: tuple[Callable[[str], Build], ...] = (
    parse_dotted, parse_admin_display_version, parse_serial_number, parse_version_number,
)

# Characters that look like parts of a build: ASCII and non-ASCII digits (Arabic-Indic,
# Devanagari, fullwidth, superscript), ASCII and Unicode spaces, separators, form words.
_DIGITS = "0123456789" "٠١٢٣٤٥٦٧٨٩" "०१२३" "０１２３４５" "²³¹"
_SPACES = " \t\n\r\x0b\x0c\u00a0\u2003\u3000\u200b\ufeff"
_PUNCT = ".,:;()+-_/\\ ．·"
build_alphabet = st.sampled_from(_DIGITS + _SPACES + _PUNCT + "VersionBuild")

number = st.one_of(
    st.integers(min_value=0, max_value=99_999),
    st.integers(min_value=-10, max_value=10**40),
    st.integers(min_value=0, max_value=5_000).map(lambda n: "0" * n + "1"),
).map(str)
unicode_number = st.text(alphabet=st.sampled_from(_DIGITS), min_size=1, max_size=8)
any_number = st.one_of(number, unicode_number)
space = st.text(alphabet=st.sampled_from(_SPACES), max_size=3)


@st.composite
def dotted_like(draw: st.DrawFn) -> str:
    parts = draw(st.lists(any_number, min_size=1, max_size=6))
    sep = draw(st.sampled_from([".", ".", ".", ",", "..", " . ", "．"]))
    return draw(space) + sep.join(parts) + draw(space)


@st.composite
def version_form_like(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(["Version", "version", "VERSION", "Versión", "Ver"]))
    build_word = draw(st.sampled_from(["Build", "build", "BUILD", "Bulid"]))
    description = draw(st.sampled_from(["", ": Exchange", ":", ": (nested)", ": a:b"]))
    text = (f"{draw(space)}{word}{draw(space) or ' '}{draw(any_number)}.{draw(any_number)}"
            f"{draw(space) or ' '}({build_word} {draw(any_number)}.{draw(any_number)}"
            f"{description}){draw(space)}")
    return text


huge_digits = st.integers(min_value=4_290, max_value=4_400).map(lambda n: "7" * n)

build_text = st.one_of(
    st.text(),
    st.text(alphabet=build_alphabet, max_size=40),
    dotted_like(),
    version_form_like(),
    number,
    huge_digits,
    huge_digits.map(lambda digits: f"15.1.{digits}.9"),
    huge_digits.map(lambda digits: f"Version 15.1 (Build {digits}.2)"),
)

# Forms Exchange actually writes, as pinned examples: every one must parse.
REAL_FORMS = [
    "15.1.2176.9", "15.01.2176.009", " 15.2.858.5\r\n", "Version 15.1 (Build 2176.2)",
    "Version 15.1 (Build 32176.2)", "Version 14.3 (Build 30123.4)", "1942063232",
    "Version 15.2 (Build 30858.5: Exchange Server 2019 CU9)",
]


def _outcome(parser: Callable[[str], object], text: str) -> object | None:
    """The parser's result, or None when it refused with BuildParseError; nothing else."""
    try:
        return parser(text)
    except BuildParseError as error:
        assert str(error), "a BuildParseError must say what was seen"
        return None


def _assert_build(value: object) -> None:
    assert isinstance(value, Build)
    for part in (value.major, value.minor, value.build):
        assert isinstance(part, int) and part >= 0
    assert value.revision is None or (isinstance(value.revision, int) and value.revision >= 0)


@given(build_text)
@example("١٥.١.٢١٧٦.٩")  # Arabic-Indic digits: \d without re.ASCII would accept them
@example("15.1.2176.9\n")
@example("")
@example("\u2003")
@example("Version 15.1 (Build 2176.2) trailing")
@example("1_942_063_232")
@example("-1942063232")
@pytest.mark.parametrize("parser", TEXT_PARSERS, ids=lambda p: p.__name__)
def test_text_parsers_return_a_build_or_refuse(parser: Callable[[str], Build], text: str) -> None:
    result = _outcome(parser, text)
    if result is not None:
        _assert_build(result)


@given(build_text)
@example("١٥٤٢٠٦٣٢٣٢")
@example("1942063232")
@example("7" * 5000)
@pytest.mark.parametrize("parser", [parse_any, parse_ad_build], ids=lambda p: p.__name__)
def test_form_recognisers_return_a_build_or_refuse(parser: Callable[[str], object], text: str) -> None:
    result = _outcome(parser, text)
    if result is not None:
        assert isinstance(result, tuple) and len(result) == 2
        build, source = result
        _assert_build(build)
        assert isinstance(source, BuildSource)


@given(build_text, st.sampled_from(list(BuildSource)))
def test_parse_build_agrees_with_the_source_form(text: str, source: BuildSource) -> None:
    result = _outcome(lambda t: parse_build(t, source), text)
    if result is not None:
        _assert_build(result)
        assert (result.revision is None) == (source is BuildSource.AD_VERSION_NUMBER)


@pytest.mark.parametrize("text", REAL_FORMS)
def test_the_real_forms_parse(text: str) -> None:
    build, source = parse_any(text)
    _assert_build(build)
    assert (source is BuildSource.EXSETUP) == (text.strip()[:1].isdigit() and "." in text)


# -- parse_dotted round trip ---------------------------------------------------------------

CANONICAL_DOTTED = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){3}", re.ASCII)


# Four ASCII digit runs (some too long for the parser), ASCII or Unicode space around them.
ascii_dotted = st.builds(
    lambda lead, parts, trail: lead + ".".join(parts) + trail,
    space, st.lists(st.text(alphabet=st.sampled_from("0123456789"), min_size=1, max_size=6),
                    min_size=4, max_size=4), space,
)


@given(st.one_of(ascii_dotted, build_text, dotted_like()))
@example("015.01.2176.009")
@example(" 15.1.2176.9 ")
@example("000.000.00000.0000")
def test_a_parsed_dotted_build_round_trips_through_str(text: str) -> None:
    build = _outcome(parse_dotted, text)
    if build is None:
        return
    assert isinstance(build, Build)
    rendered = str(build)
    assert CANONICAL_DOTTED.fullmatch(rendered), rendered
    assert parse_dotted(rendered) == build
    # The canonical form is what the parts were, without padding or spaces.
    assert rendered.split(".") == [str(int(p)) for p in text.strip().split(".")]


@given(st.integers(0, 999), st.integers(0, 999), st.integers(0, 65_535), st.integers(0, 9_999))
def test_every_representable_build_round_trips(major: int, minor: int, build: int, revision: int) -> None:
    """Up to 65535 per part: a Windows file version is four 16-bit numbers (larger is refused)."""
    value = Build(major, minor, build, revision)
    assert parse_dotted(str(value)) == value
    padded = f"{major:02d}.{minor:02d}.{build:04d}.{revision:03d}"
    assert parse_dotted(padded) == value
    assert parse_any(str(value)) == (value, BuildSource.EXSETUP)


# -- parse_ad_build ---------------------------------------------------------------------------


@given(st.one_of(build_text, dotted_like(), version_form_like()))
@example("15.1.2176.9")
@example("15.1.2176")
@example("Version 15.1 (Build 2176.9)")
def test_parse_ad_build_never_yields_a_revision_level_source(text: str) -> None:
    result = _outcome(parse_ad_build, text)
    if result is None:
        return
    assert isinstance(result, tuple)
    build, source = result
    assert source not in (BuildSource.EXSETUP, BuildSource.INSTALLED_UPDATE)
    assert source.cu_level_only
    assert (build.revision is None) == (source is BuildSource.AD_VERSION_NUMBER)
    # Agrees with the recogniser it wraps; only the dotted form is taken away.
    assert parse_any(text) == result


@given(dotted_like())
def test_a_dotted_build_is_never_an_ad_value(text: str) -> None:
    if _outcome(parse_dotted, text) is not None:
        with pytest.raises(BuildParseError):
            parse_ad_build(text)


# -- parse_version_number ---------------------------------------------------------------------

marked_ints = st.integers(0, MAX_VERSION_NUMBER).map(lambda n: n | MARK)
version_ints = st.one_of(
    st.integers(),
    st.integers(-(2**64), 2**64),
    marked_ints,
    marked_ints.map(lambda n: n + 2**31),          # marker bits present, but too large
    marked_ints.map(lambda n: -n),
    marked_ints.map(lambda n: n & ~(1 << 15)),     # one marker bit missing
    marked_ints.map(lambda n: n & ~(1 << 29)),
)


def _is_version_number(n: int) -> bool:
    return 0 <= n <= MAX_VERSION_NUMBER and n & MARK == MARK


@given(version_ints)
@example(0)
@example(MARK)
@example(MAX_VERSION_NUMBER)
@example(MAX_VERSION_NUMBER + 1)
@example(-1)
@example(1942063232)
def test_parse_version_number_accepts_exactly_the_marked_ints(n: int) -> None:
    result = _outcome(parse_version_number, n)  # type: ignore[arg-type]
    assert (result is not None) == _is_version_number(n), hex(n)
    if result is not None:
        assert isinstance(result, Build) and result.revision is None
        # The packing is a bijection on valid numbers: encoding gives the number back.
        assert encode_version_number(result) == n
        # The decimal text AD holds reads the same, with or without spaces around it.
        assert parse_version_number(str(n)) == result
        assert parse_version_number(f" {n}\t") == result
        assert parse_any(str(n)) == (result, BuildSource.AD_VERSION_NUMBER)


@given(st.text(alphabet=st.sampled_from("0123456789"), min_size=1, max_size=12))
def test_ascii_digit_text_reads_as_its_integer(text: str) -> None:
    result = _outcome(parse_version_number, text)
    assert (result is not None) == _is_version_number(int(text))


def test_bools_are_not_version_numbers() -> None:
    for value in (True, False):
        with pytest.raises(BuildParseError):
            parse_version_number(value)


def test_a_huge_int_is_refused_as_a_build_parse_error() -> None:
    huge = 10 ** (sys.get_int_max_str_digits() + 10)
    with pytest.raises(BuildParseError):
        parse_version_number(huge)

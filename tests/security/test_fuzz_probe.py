"""Property and corpus tests of the probe document reader (collectors.probe).

The document comes from the server being judged; a compromised Exchange server writes what
it likes. load_document may only return a validated dict or raise ProbeDocumentError;
parse_document may only return an Observation, with a bad_output failure for anything that
is not a valid document, and never a verdict from garbage.
"""

from __future__ import annotations

import codecs
import copy
import json
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import currently_in_test_context, event, example, given
from hypothesis import strategies as st

from collectors.probe import (
    BAD_OUTPUT_HINT,
    MAX_DOCUMENT_BYTES,
    ProbeDocumentError,
    load_document,
    parse_document,
)
from compliance.builds import BuildParseError, parse_admin_display_version, parse_dotted
from compliance.catalog import load_catalog
from compliance.evaluate import evaluate
from compliance.models import Host, Observation, Reason, Status
from tests.collectors.documents import dumps, probe_document
from tests.security import corpus
from tests.security.corpus import GOOD, GOOD_PRETTY, GOOD_TEXT, TimedOut, time_limit

CATALOG = load_catalog()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOST = Host("EX1")


def _load(data: str | bytes) -> dict[str, Any] | None:
    """load_document's result, or None when it refused with ProbeDocumentError; nothing else."""
    try:
        document = load_document(data)
    except ProbeDocumentError as error:
        assert str(error), "a refusal must say why"
        return None
    assert isinstance(document, dict)
    return document


def _parse(data: str | bytes) -> Observation:
    obs = parse_document(data, HOST, "winrm", NOW)
    assert isinstance(obs, Observation)
    assert obs.observed_at == NOW and obs.source == "winrm"
    if obs.failure is not None:
        assert obs.failure.reason == "bad_output"
        assert obs.failure.detail and obs.failure.hint == BAD_OUTPUT_HINT
    return obs


def _check(data: str | bytes) -> dict[str, Any] | None:
    """The whole contract for one input: load, parse, grade; returns the document if valid."""
    document = _load(data)
    obs = _parse(data)
    verdict = evaluate(obs, CATALOG, NOW)
    if currently_in_test_context():  # statistics (--hypothesis-show-statistics) for @given tests
        event("accepted" if document is not None else "refused")
        event(f"status={verdict.status.value}")
    if document is None:
        # Refused: a bad_output failure, graded unknown (the probe failed), never anything else.
        assert obs.failure is not None
        assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.PROBE_FAILED
        assert obs.exsetup_version is None and obs.installed_updates == ()
        return None
    assert obs.failure is None, obs.failure
    if verdict.status is Status.PATCHED:
        assert _parses(parse_dotted, obs.exsetup_version) or (
            _parses(parse_admin_display_version, obs.admin_display_version)), (document, verdict)
    return document


def _parses(parser: Any, text: str | None) -> bool:
    if text is None:
        return False
    try:
        parser(text)
    except BuildParseError:
        return False
    return True


# -- arbitrary input ----------------------------------------------------------------------------

prefixes = st.sampled_from([b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE,
                            codecs.BOM_UTF32_LE, b"{", b'{"schema":"exchange-probe/1",'])


@given(prefixes, st.binary(max_size=2048))
@example(b"", b"")
@example(b"", b"\xff\xfe\x00")
@example(b"", b"\xfe\xff\xd8\x00")  # a lone high surrogate in UTF-16-BE
@example(b"", b"NaN")
@example(b"", b"-Infinity")
def test_arbitrary_bytes_are_refused_or_accepted_never_crash(prefix: bytes, data: bytes) -> None:
    _check(prefix + data)


@given(st.text(max_size=2048))
@example("\ufeff" + GOOD_TEXT)
@example("\x00")
@example("\u2028" + GOOD_TEXT + "\u2029")  # Unicode line separators: strip() removes them
@example(" \t\r\n")
def test_arbitrary_text_is_refused_or_accepted_never_crash(text: str) -> None:
    _check(text)


# -- mutated documents -----------------------------------------------------------------------------

# Text a store can hold: NUL and lone surrogates are refused on purpose (see load_document).
CLEAN = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
clean_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(CLEAN, max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(CLEAN, max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
              st.sampled_from(["15.1.2176.9", "15.2.858.5", "KB5000871", "Mailbox", "exchange-probe/1",
                               "2026-11-25T09:00:00Z", "Version 15.1 (Build 2176.2)", ""])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


GOOD_PATHS = _paths(GOOD)


@st.composite
def mutated(draw: st.DrawFn) -> str | bytes:
    document = copy.deepcopy(GOOD)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(GOOD_PATHS))
        parent: Any = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            operation = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if operation == "replace":
                parent[path[-1]] = draw(json_values)
            elif operation == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(json_values)
            else:
                parent.append(draw(json_values))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    text = json.dumps(document, indent=draw(st.sampled_from([None, 2])),
                      ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["str", "utf-8", "utf-8-sig", "utf-16"]))
    return text if encoding == "str" else text.encode(encoding)


@given(mutated())
def test_mutated_documents_are_refused_or_read_without_failure(data: str | bytes) -> None:
    _check(data)


# -- valid documents, generated ---------------------------------------------------------------------

ROLES = ["Mailbox", "ClientAccess", "UnifiedMessaging", "HubTransport", "FrontendTransport", "Cafe", "Edge"]
exsetup = st.one_of(
    st.none(),
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", st.integers(0, 999), st.integers(0, 99),
              st.integers(0, 99_999), st.integers(0, 9_999)),
    st.sampled_from(["15.1.2176.9", "15.2.792.10", "14.3.513.0", "15.0.1497.12", "15.1.2176.2"]),
)


@given(
    host=st.text(CLEAN, min_size=1, max_size=20),
    exsetup_version=exsetup,
    roles=st.lists(st.sampled_from(ROLES), unique=True),
    rewrite_rules=st.lists(st.text(CLEAN, max_size=30), max_size=3),
    kbs=st.lists(st.integers(0, 10**8).map(lambda n: f"KB{n}"), max_size=3),
    um_disabled=st.booleans(),
    findings=st.dictionaries(st.sampled_from(["CVE-2021-26855", "CVE-2021-27065"]),
                             st.lists(st.text(CLEAN, max_size=30), max_size=2), max_size=2),
    errors=st.lists(st.text(CLEAN, max_size=30), max_size=3),
    fqdn=st.one_of(st.none(), st.text(CLEAN, min_size=1, max_size=30)),
    extra=st.dictionaries(st.text(CLEAN, max_size=10).filter(lambda k: k not in GOOD), clean_json,
                          max_size=3),
)
def test_every_valid_document_is_read_without_failure(
        host: str, exsetup_version: str | None, roles: list[str], rewrite_rules: list[str],
        kbs: list[str], um_disabled: bool, findings: dict[str, list[str]], errors: list[str],
        fqdn: str | None, extra: dict[str, Any]) -> None:
    document = probe_document(host, exsetup_version, roles=roles, rewrite_rules=rewrite_rules, kbs=kbs,
                              um_disabled=um_disabled, findings=findings, errors=errors, fqdn=fqdn)
    document.update(extra)  # unknown fields are allowed everywhere
    loaded = _check(dumps(document))
    assert loaded is not None, "a document the builder makes must be valid"
    obs = _parse(dumps(document).encode("utf-16"))
    assert obs.failure is None
    assert obs.exsetup_version == exsetup_version
    assert [u.kb for u in obs.installed_updates] == kbs
    assert len(obs.indicators) == sum(len(v) for v in findings.values())


# -- the corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(corpus.REAL_VALID))
def test_the_real_fixture_documents_pass(name: str) -> None:
    assert _check(corpus.REAL_VALID[name]) is not None


def test_every_truncation_of_a_real_document_is_refused() -> None:
    texts = corpus.prefixes(GOOD_TEXT) + corpus.prefixes(GOOD_PRETTY, step=7)
    for fixture in corpus.REAL_VALID.values():
        texts += corpus.prefixes(fixture.decode("utf-8").rstrip(), step=13)
    for text in texts:
        assert _check(text) is None, f"a {len(text)}-character prefix was accepted"
        assert _load(text.encode("utf-8")) is None
    # UTF-16 with a byte-order mark: every cut, odd ones in the middle of a code unit.
    encoded = GOOD_TEXT.encode("utf-16")
    for cut in range(0, len(encoded), 5):
        assert _check(encoded[:cut]) is None, cut


WRONG_TYPES = list(corpus.wrong_types())


@pytest.mark.parametrize(("path", "value", "text"), [case[1:] for case in WRONG_TYPES],
                         ids=[case[0] for case in WRONG_TYPES])
def test_a_wrongly_typed_field_is_refused_or_harmless(path: tuple[str, ...], value: Any, text: str) -> None:
    document = _check(text)
    if not corpus.type_allowed(path, value):
        assert document is None, f"{'.'.join(path)} = {value!r} was accepted"
        obs = _parse(text)
        assert obs.failure is not None and path[0] in obs.failure.detail, "the refusal names the field"


@pytest.mark.parametrize("name", sorted(corpus.ENCODINGS))
def test_encodings(name: str) -> None:
    data, accepted = corpus.ENCODINGS[name]
    document = _check(data)
    assert (document is not None) == accepted
    if accepted:
        assert document == GOOD


@pytest.mark.parametrize("name", sorted(corpus.NON_UTF8))
def test_non_utf8_bytes_are_refused(name: str) -> None:
    assert _check(corpus.NON_UTF8[name]) is None


@pytest.mark.parametrize("name", sorted(corpus.OTHER_BAD))
def test_other_bad_shapes_are_refused(name: str) -> None:
    assert _check(corpus.OTHER_BAD[name]) is None


@pytest.mark.parametrize("name", sorted(corpus.REAL_INVALID))
def test_the_invalid_fixture_documents_are_refused(name: str) -> None:
    assert _check(corpus.REAL_INVALID[name]) is None


# -- size ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bytes", "str"])
def test_a_50_mb_document_is_refused_quickly_in_bounded_memory(kind: str) -> None:
    tracemalloc.start()
    try:
        data: str | bytes = corpus.oversized()
        if kind == "str":
            data = data.decode("ascii")
        tracemalloc.reset_peak()  # from here on: what refusing it costs, on top of the input
        started = time.perf_counter()
        with pytest.raises(ProbeDocumentError, match=r"over the 5 MB limit"):
            load_document(data)
        obs = parse_document(data, HOST, "winrm", NOW)
        elapsed = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert obs.failure is not None and "MB limit" in obs.failure.detail
    assert elapsed < 1.0, f"{elapsed:.2f} s to refuse an oversized document"
    # The input (50 MB, still alive) is counted; the refusal must not copy, decode or parse it.
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert peak - len(data) < 16 * 2**20, f"peak {peak / 2**20:.0f} MB for a {len(data) / 2**20:.0f} MB input"


def test_the_size_limit_is_exact() -> None:
    at_limit = corpus.exactly_at_limit()
    assert len(at_limit) == MAX_DOCUMENT_BYTES
    assert _check(at_limit) == GOOD
    with pytest.raises(ProbeDocumentError, match="limit"):
        load_document(at_limit + b" ")


# -- depth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(corpus.DEEP))
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_deep_nesting_is_refused_without_a_recursion_crash(name: str, kind: str) -> None:
    text = corpus.DEEP[name]
    data = text if kind == "str" else text.encode()
    started = time.perf_counter()
    assert _check(data) is None
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("shape", ["list", "object"])
def test_nesting_just_below_the_decoder_limit_is_refused_or_read(shape: str) -> None:
    """Depths the JSON decoder still accepts, in a field the schema does not describe.

    Whether the decoder's limit is hit depends on the caller's stack depth, so load_document
    and parse_document (one frame deeper) may disagree at the edge; each must still answer.
    """
    for depth in corpus.recursion_window_depths():
        value = "[" * depth + "]" * depth if shape == "list" else '{"a":' * depth + "1" + "}" * depth
        text = GOOD_TEXT[:-1] + ',"extra":' + value + "}"
        _load(text)
        obs = _parse(text)
        assert obs.failure is None or "recursion" in obs.failure.detail or (
            "nested deeper" in obs.failure.detail)


def test_nesting_at_the_decoder_limit_in_a_typed_field_is_refused() -> None:
    for depth in corpus.recursion_window_depths():
        text = corpus.nested_error_document(depth)
        assert _load(text) is None
        assert _parse(text).failure is not None


# -- known resource and crash bugs -------------------------------------------------------------------


@pytest.mark.parametrize("call", ["load_document", "parse_document"])
def test_an_overlong_integer_literal_is_refused(call: str) -> None:
    text = corpus.huge_int_document()
    if call == "load_document":
        with pytest.raises(ProbeDocumentError):
            load_document(text)
    else:
        assert _parse(text).failure is not None


def test_an_overflowing_log_window_is_not_a_crash() -> None:
    text = corpus.overflowing_log_window_document()
    _load(text)
    obs = _parse(text)
    assert obs.log_window_days is None or obs.log_window_days >= 0


def test_unorderable_roles_are_refused_in_bounded_time() -> None:
    text = corpus.unorderable_roles_document(10_000)
    with time_limit(1.5):
        assert _load(text) is None


def test_many_schema_errors_are_refused_in_bounded_memory() -> None:
    text = corpus.error_flood_document(10_000)
    tracemalloc.start()
    try:
        assert _load(text) is None
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * len(text), f"peak {peak / 2**20:.1f} MB for a {len(text) / 1024:.0f} KB document"


def test_the_time_limit_helper_interrupts_pure_python() -> None:
    """The xfail above must fail by the limit, not by running for hours."""
    started = time.perf_counter()
    with pytest.raises(TimedOut), time_limit(0.2):
        while True:
            pass
    assert time.perf_counter() - started < 1.0


def test_documents_built_for_tests_are_valid() -> None:
    """The corpus rests on the builder's document being valid; check the base itself."""
    assert _check(GOOD_TEXT) == GOOD
    assert _check(dumps(probe_document("EX1", None, roles=[]))) is not None

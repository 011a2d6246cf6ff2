"""Hostile and broken probe documents, shared by the probe and import tests.

Everything here is built from the test builder (tests/collectors/documents.py) and the real
fixture documents, so the corpus follows the format when it changes. ``BAD`` entries must be
refused by ``load_document`` with ``ProbeDocumentError``; ``KNOWN_BUGS`` are inputs that
currently escape as other exceptions or use unbounded resources (see the xfail tests).
"""

from __future__ import annotations

import codecs
import copy
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from collectors.probe import MAX_DOCUMENT_BYTES, probe_schema
from tests.collectors.documents import REWRITE_RULES, dumps, probe_document

FIXTURES = Path(__file__).resolve().parents[1] / "collectors" / "probe_documents"
COLLECTED_AT = "2026-11-25T09:00:00Z"


def good_document(host: str = "EX1", collected_at: str = COLLECTED_AT) -> dict[str, Any]:
    """A full, valid document: every section filled, so every field can be broken."""
    return probe_document(host, "15.1.2176.9", kbs=["KB5000871"], rewrite_rules=REWRITE_RULES,
                          roles=["Mailbox", "UnifiedMessaging"],
                          findings={"CVE-2021-26855": ["ServerInfo~a]@x:444/ecp/y.js"]},
                          errors=["eomt: key missing"], collected_at=collected_at)


GOOD = good_document()
GOOD_TEXT = dumps(GOOD)
GOOD_PRETTY = json.dumps(GOOD, indent=2)
REAL_VALID = {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.json"))}
REAL_INVALID = {path.name: path.read_bytes() for path in sorted((FIXTURES / "invalid").glob("*.json"))}


def replace_once(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced; fails loudly if the builder's output changed."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)

# -- truncation -----------------------------------------------------------------------------


def prefixes(text: str, step: int = 1) -> list[str]:
    """Every strict prefix (every ``step``-th cut point, and always the last one)."""
    cuts = sorted({*range(0, len(text), step), len(text) - 1})
    return [text[:cut] for cut in cuts]


# -- wrongly typed fields -------------------------------------------------------------------

REPLACEMENTS: dict[str, Any] = {
    "int": 7, "float": 1.5, "str": "x", "empty_str": "", "list": [1], "empty_list": [],
    "null": None, "dict": {"a": 1}, "empty_dict": {}, "bool": True,
}
_JSON_TYPES = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
               list: "array", dict: "object"}


def _schema_of(path: tuple[str, ...]) -> dict[str, Any]:
    """The (resolved) schema of a property path, walking properties and $defs."""
    schema = probe_schema()
    node: dict[str, Any] = schema
    for key in path:
        node = node.get("properties", {}).get(key, {})
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def type_allowed(path: tuple[str, ...], value: Any) -> bool:
    """Whether the schema lets ``value`` stand at ``path`` by type/const/enum alone (a
    conservative answer: True means "may pass", False means "must be refused")."""
    node = _schema_of(path)
    if "const" in node:
        return bool(value == node["const"])
    if "enum" in node:
        return value in node["enum"]
    if "anyOf" in node:
        return True
    declared = node.get("type")
    if declared is None:
        return True
    allowed = {declared} if isinstance(declared, str) else set(declared)
    kind = _JSON_TYPES[type(value)]
    if kind == "integer" and "number" in allowed:
        return True
    return kind in allowed


def field_paths(document: dict[str, Any]) -> list[tuple[str, ...]]:
    """Top-level fields, and the fields of the mitigations and indicators objects."""
    paths: list[tuple[str, ...]] = [(key,) for key in document]
    for section in ("mitigations", "indicators"):
        paths += [(section, key) for key in document[section]]
    return paths


def with_value(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def wrong_types() -> Iterator[tuple[str, tuple[str, ...], Any, str]]:
    """(id, path, replacement, text) for every field and every replacement type."""
    for path in field_paths(GOOD):
        for label, value in REPLACEMENTS.items():
            yield f"{'.'.join(path)}={label}", path, value, dumps(with_value(GOOD, path, value))


# -- encodings ------------------------------------------------------------------------------

# The good document re-encoded; True means load_document must accept it.
ENCODINGS: dict[str, tuple[bytes, bool]] = {
    "utf-8": (GOOD_TEXT.encode("utf-8"), True),
    "utf-8-bom": (codecs.BOM_UTF8 + GOOD_TEXT.encode("utf-8"), True),
    "utf-16-le-bom": (codecs.BOM_UTF16_LE + GOOD_TEXT.encode("utf-16-le"), True),
    "utf-16-be-bom": (codecs.BOM_UTF16_BE + GOOD_TEXT.encode("utf-16-be"), True),
    "utf-16-le-no-bom": (GOOD_TEXT.encode("utf-16-le"), False),
    "utf-16-be-no-bom": (GOOD_TEXT.encode("utf-16-be"), False),
    "utf-32-le-bom": (codecs.BOM_UTF32_LE + GOOD_TEXT.encode("utf-32-le"), False),
    "utf-32-be-bom": (codecs.BOM_UTF32_BE + GOOD_TEXT.encode("utf-32-be"), False),
    "utf-16-bom-odd-length": (codecs.BOM_UTF16_LE + GOOD_TEXT.encode("utf-16-le") + b"\x00", False),
    "utf-16-le-bom-then-be": (codecs.BOM_UTF16_LE + GOOD_TEXT.encode("utf-16-be"), False),
}

_HOST_ACCENTED = replace_once(GOOD_TEXT, '"host":"EX1"', '"host":"EXÉ1"')
NON_UTF8: dict[str, bytes] = {
    "latin-1": _HOST_ACCENTED.encode("latin-1"),
    "cp1252-smart-quotes": replace_once(GOOD_TEXT, '"errors":["eomt: key missing"]',
                                             '"errors":["eomt: \u201ckey\u201d"]').encode("cp1252"),
    "lone-continuation-byte": b"\x80" + GOOD_TEXT.encode(),
    "invalid-sequence-in-string": GOOD_TEXT.encode().replace(b'"EX1"', b'"EX\xc3\x28"'),
    "overlong-slash": GOOD_TEXT.encode().replace(b"/", b"\xc0\xaf", 1),
    "encoded-surrogate": replace_once(GOOD_TEXT, "EX1", "EX\ud800").encode("utf-8", "surrogatepass"),
    "truncated-multibyte": GOOD_TEXT.encode()[:-1] + b"\xe2\x82",
    "ff-only": b"\xff",
    "fe-ff-only": b"\xfe\xff",
    "utf-16-bom-only": codecs.BOM_UTF16_LE,
    "utf-8-bom-only": codecs.BOM_UTF8,
    "nul-bytes": b"\x00" * 64,
}

# -- size and depth -------------------------------------------------------------------------

BIG_BYTES = 50 * 1024 * 1024


def oversized(size: int = BIG_BYTES) -> bytes:
    """A document-shaped JSON text of ``size`` bytes (a valid head, a huge padding field)."""
    head = GOOD_TEXT[:-1] + ',"padding":"'
    return (head.encode() + b"a" * (size - len(head) - 2) + b'"}')


def exactly_at_limit() -> bytes:
    """The good document padded with trailing whitespace to exactly MAX_DOCUMENT_BYTES."""
    body = GOOD_TEXT.encode()
    return body + b" " * (MAX_DOCUMENT_BYTES - len(body))


DEPTH = 100_000
DEEP: dict[str, str] = {
    "arrays-closed": "[" * DEPTH + "]" * DEPTH,
    "arrays-open": "[" * DEPTH,
    "objects-closed": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "objects-open": '{"a":' * DEPTH,
    "mixed": '[{"a":' * (DEPTH // 2) + "1" + "}]" * (DEPTH // 2),
    "inside-a-valid-document": GOOD_TEXT[:-1] + ',"extra":' + "[" * DEPTH + "]" * DEPTH + "}",
    "inside-errors": replace_once(GOOD_TEXT, '"errors":["eomt: key missing"]',
                                       '"errors":[' + "[" * DEPTH + "]" * DEPTH + "]"),
}

# -- other shapes ---------------------------------------------------------------------------

OTHER_BAD: dict[str, str] = {
    "empty": "",
    "whitespace": " \r\n\t ",
    "null": "null",
    "array": "[]",
    "string": '"exchange-probe/1"',
    "number": "1",
    "two-documents": GOOD_TEXT + GOOD_TEXT,
    "trailing-garbage": GOOD_TEXT + "x",
    "schema-missing": dumps({key: value for key, value in GOOD.items() if key != "schema"}),
    "schema-2": dumps(with_value(GOOD, ("schema",), "exchange-probe/2")),
    "required-missing": dumps({key: value for key, value in GOOD.items() if key != "mitigations"}),
    "exsetup-with-suffix": dumps(with_value(GOOD, ("exsetup_version",), "15.1.2176.9 (patched)")),
    "host-empty": dumps(with_value(GOOD, ("host",), "")),
    "roles-duplicated": dumps(with_value(GOOD, ("roles",), ["Mailbox", "Mailbox"])),
    "roles-unknown": dumps(with_value(GOOD, ("roles",), ["Mailbox", "Wizard"])),
    "kb-not-a-kb": dumps(with_value(GOOD, ("installed_updates",),
                                    [{"kb": "5000871", "name": "x", "installed_on": None}])),
    "collected-at-local-time": dumps(with_value(GOOD, ("collected_at",), "2026-11-25T09:00:00+01:00")),
    "javascript-comment": "// probe\n" + GOOD_TEXT,
    "single-quotes": GOOD_TEXT.replace('"', "'"),
    "powershell-error-text": "Get-Item : Cannot find path 'C:\\Program Files\\Microsoft\\Exchange Server'",
}


def bad_corpus() -> dict[str, bytes]:
    """Named inputs that must each be refused with ProbeDocumentError (small ones only)."""
    corpus: dict[str, bytes] = {}
    for cut in (0, 1, 2, len(GOOD_TEXT) // 3, len(GOOD_TEXT) // 2, len(GOOD_TEXT) - 1):
        corpus[f"truncated-at-{cut}"] = GOOD_TEXT[:cut].encode()
    for name, path, value, text in wrong_types():
        if not type_allowed(path, value):
            corpus[f"wrong-type-{name}"] = text.encode()
    corpus.update({f"encoding-{name}": data for name, (data, ok) in ENCODINGS.items() if not ok})
    corpus.update({f"non-utf8-{name}": data for name, data in NON_UTF8.items()})
    corpus.update({f"deep-{name}": text.encode() for name, text in DEEP.items()})
    corpus.update({f"other-{name}": text.encode() for name, text in OTHER_BAD.items()})
    corpus.update({f"invalid-fixture-{name}": data for name, data in REAL_INVALID.items()})
    return corpus


# -- known bugs (see the xfail tests) ---------------------------------------------------------

# Hostile documents are for another host than GOOD, so that an import of both reads both.
HOSTILE_TEXT = dumps(good_document("EX2"))


def huge_int_document() -> str:
    """A valid document with one integer literal longer than Python's int-from-text limit."""
    return HOSTILE_TEXT[:-1] + ',"extra":' + "9" * (sys.get_int_max_str_digits() + 1) + "}"


def overflowing_log_window_document() -> str:
    """log_window_days an integer too large for a float (schema: any number)."""
    return replace_once(HOSTILE_TEXT, '"log_window_days":30', '"log_window_days":1' + "0" * 400)


def nested_error_document(depth: int) -> str:
    """errors[0] an object nested ``depth`` levels deep (schema: errors are strings)."""
    return replace_once(HOSTILE_TEXT, '"errors":["eomt: key missing"]',
                             '"errors":[' + '{"a":' * depth + "1" + "}" * depth + "]")


def recursion_window_depths() -> range:
    """Nesting depths around the JSON decoder's limit, wherever the caller's stack is."""
    limit = sys.getrecursionlimit()
    return range(max(1, limit - 400), limit + 1)


def error_flood_document(items: int) -> str:
    """``errors`` as ``items`` integers: each one is a separate schema error."""
    return replace_once(HOSTILE_TEXT, '"errors":["eomt: key missing"]', '"errors":[' + ",".join(["0"] * items) + "]")


def unorderable_roles_document(items: int) -> str:
    """``roles`` as distinct objects: jsonschema's uniqueItems cannot sort them and falls
    back to comparing every pair."""
    return replace_once(HOSTILE_TEXT, '"roles":["Mailbox","UnifiedMessaging"]',
                             '"roles":[' + ",".join(f'{{"r":{i}}}' for i in range(items)) + "]")


def lone_surrogate_document(host: str = "EX2") -> str:
    """A schema-valid document whose strings hold JSON-escaped lone surrogates."""
    return dumps(with_value(good_document(host + "\ud800"), ("errors",), ["eomt: \udfff"]))


# -- a time limit for code that may not return ------------------------------------------------


class TimedOut(BaseException):
    """Raised in the main thread by SIGALRM when a time_limit expires (a BaseException, so
    that no ``except Exception`` in the code under test swallows it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block (pure-Python code: it sees the signal between bytecodes)."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise TimedOut(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

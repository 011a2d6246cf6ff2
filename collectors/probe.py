"""The probe script and its output: loading, compacting, and parsing one JSON document.

The document format is a public contract (``exchange-probe/1``, docs/probe.md and
``probe.schema.json``). ``parse_document`` turns it into an ``Observation``; anything that
is not a valid document becomes an observation with a ``bad_output`` failure, never an
exception and never a verdict from garbage. Unknown extra fields are ignored.

The optional parts of minor version 1.2 (``dotnet_release``, ``mitigations.rewrite_rule_details``)
and 1.3 (``investigation``, read by collectors/traces.py) cost only themselves: their JSON type is
checked with the document, and whatever is wrong inside them (a number out of range, a malformed or
oversized rule entry, too many entries) is dropped by the reader with a ``<field>: ...`` line in
the observation's probe errors. Minor version 1.4 changed only what ``investigation.log_reach``
lists (every HttpProxy protocol folder); ``install_path`` (in the contract from 1.0) is kept in
the observation, for compliance/investigation.py to judge which files are the install's.
``indicators.log_window_days`` is read from 0 to ``MAX_LOG_WINDOW_DAYS`` days (the schema lets
any number through); another value is left out the same way. Minor version 1.5 added
``investigation.candidate_folders`` (the folders the web-shell search looked in, each there or
not), read into ``Traces.candidate_folders`` (``collectors.traces.investigation_traces``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from collectors.traces import clean, investigation_traces
from compliance.advisory import DROPPED
from compliance.failures import HINTS, FailureReason
from compliance.models import (
    MAX_LOG_WINDOW_DAYS,
    AppPoolState,
    Failure,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    RewriteCondition,
    RewriteRule,
    ServiceState,
    WebConfigFile,
    WebConfigState,
    server_roles,
)
from files import FileRefused, read_bounded

SCHEMA_ID = "exchange-probe/1"
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
CVES = ("CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065")
BAD_OUTPUT_HINT = HINTS[FailureReason.BAD_OUTPUT]


class ProbeDocumentError(ValueError):
    """The text is not a valid probe document; the message says which part is wrong."""


@cache
def probe_script() -> str:
    return (resources.files("collectors") / "probe.ps1").read_text(encoding="utf-8")


@cache
def probe_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (resources.files("collectors") / "probe.schema.json").read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(probe_schema())


_BLOCK_COMMENT = re.compile(r"^\s*<#.*?#>\s*$", re.DOTALL | re.MULTILINE)


def compact(script: str) -> str:
    """The script without comment-only lines, comment blocks, blank lines and indentation.

    What the collector sends on the bootstrap's standard input (collectors/remote.py), kept
    small to stay readable (tests/collectors/test_probe_script.py); only whole comment lines
    are removed, never text inside a line.
    """
    without_blocks = _BLOCK_COMMENT.sub("", script)
    lines = []
    for line in without_blocks.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _findings(indicators: Mapping[str, Any], names: tuple[str, ...],
              label: str | None = None) -> tuple[str, ...]:
    """One line per finding of the checks ``names``, prefixed by the check (or ``label``)."""
    found = []
    for name in names:
        for item in indicators.get(name) or []:
            detail = item.get("detail") if isinstance(item, Mapping) else item
            where = item.get("path") if isinstance(item, Mapping) else None
            found.append(f"{label or name}: {detail}" + (f" ({where})" if where else ""))
    return tuple(found)


def _web_configs(value: Any) -> tuple[WebConfigFile, ...] | None:
    """The ``web_config`` list; absent or null: not checked (None). A state the schema does
    not know (a document that skipped validation) reads as unreadable, never as fine."""
    if not isinstance(value, list):
        return None
    found = []
    for item in value:
        if isinstance(item, Mapping) and item.get("path"):
            try:
                state = WebConfigState(str(item.get("state")))
            except ValueError:
                state = WebConfigState.UNREADABLE
            found.append(WebConfigFile(str(item["path"]), state))
    return tuple(found)


def _eomt(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    return {str(name): str(text) for name, text in value.items()}


# Bounds of the optional 1.2 parts (docs/probe.md). The probe keeps within them and the reader
# checks them again, entry by entry: a server can send anything.
MAX_RULES = 200
MAX_CONDITIONS = 20
MAX_RULE_TEXT = 1024
MAX_DOTNET_RELEASE = 9_999_999
# Dropped entries named one by one in probe errors; past these, one line counts the rest.
MAX_DROP_LINES = 5
_JSON_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a text"),
               (list, "a list"), (Mapping, "an object"))


def _kind(value: Any) -> str:
    """What a JSON value is, for an error line (the value itself is never echoed)."""
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "null")


def _kind_at(entry: Mapping[str, Any], key: str) -> str:
    return _kind(entry[key]) if key in entry else "missing"


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dotnet_release(value: Any) -> tuple[int | None, tuple[str, ...]]:
    """``dotnet_release``: a whole number from 0 to MAX_DOTNET_RELEASE, or None (absent, null:
    not read, no error; anything else: left out with a probe error)."""
    if value is None:
        return None, ()
    if _is_whole_number(value) and 0 <= value <= MAX_DOTNET_RELEASE:
        return value, ()
    what = "a number out of range" if _is_whole_number(value) else _kind(value)
    return None, (f"dotnet_release: left out, {what} and not a .NET Framework release "
                  f"(a whole number from 0 to {MAX_DOTNET_RELEASE})",)


def _log_window_days(value: Any) -> tuple[float | None, tuple[str, ...]]:
    """``indicators.log_window_days``: a number of days from 0 to MAX_LOG_WINDOW_DAYS, or None
    (null: no log file read, no error; any other number, which the schema lets through, or a
    value that is not one: left out with a probe error, and the judge then takes the CVE checks
    as covering nothing). A day count past the calendar would stop the judge (OverflowError)."""
    if value is None:
        return None, ()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            days = float(value)
        except OverflowError:  # an integer past a float's range
            days = math.inf
        if 0 <= days <= MAX_LOG_WINDOW_DAYS:  # NaN compares false: left out too
            return days, ()
        what = "a number out of range"
    else:
        what = f"{_kind(value)} and not a number"
    return None, (f"log_window_days: left out, {what} (from 0 to {MAX_LOG_WINDOW_DAYS} days)",)


# Characters of ``install_path`` kept: Exchange's install path is far shorter; a longer value
# is no install path this reader trusts, so it is left out whole (a cut one would be another).
MAX_INSTALL_PATH = 1024


def _install_path(value: Any) -> tuple[str | None, tuple[str, ...]]:
    """``install_path`` as printed (a text or null: the schema checked it), cleaned (no NUL,
    no byte-order mark, no lone surrogate); longer than MAX_INSTALL_PATH: left out with an
    ``install_path: ...`` probe error, which compliance/investigation.py reads as an install
    path not known, excusing no file."""
    if not isinstance(value, str):
        return None, ()
    if len(value) > MAX_INSTALL_PATH:
        return None, (f"install_path: left out, longer than {MAX_INSTALL_PATH} characters",)
    return clean(value, MAX_INSTALL_PATH), ()


def _rule_text(entry: Mapping[str, Any], key: str, *, empty: bool = True) -> str:
    """The text at ``key`` of a rule or condition entry; raises ValueError saying what is wrong
    (never echoing the value: it is the server's)."""
    value = entry.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is {_kind_at(entry, key)}, not a text")
    if len(value) > MAX_RULE_TEXT:
        raise ValueError(f"{key} is longer than {MAX_RULE_TEXT} characters")
    if not value and not empty:
        raise ValueError(f"{key} is empty")
    if not _clean_text(value):
        raise ValueError(f"{key} holds invalid Unicode (lone surrogates) or NUL characters")
    return value


def _flag(entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{key} is {_kind_at(entry, key)}, not true or false")
    return value


def _optional_flag(entry: Mapping[str, Any], key: str) -> bool | None:
    """A flag a probe before it did not write: absent or null is None (not read)."""
    return None if entry.get(key) is None else _flag(entry, key)


def _rewrite_rule(entry: Any) -> RewriteRule:
    """One ``rewrite_rule_details`` entry; raises ValueError saying what is wrong with it."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{_kind(entry)}, not an object")
    conditions = entry.get("conditions")
    if not isinstance(conditions, list):
        raise ValueError(f"conditions is {_kind_at(entry, 'conditions')}, not a list")
    if len(conditions) > MAX_CONDITIONS:
        raise ValueError(f"more than {MAX_CONDITIONS} conditions")
    read = []
    for number, condition in enumerate(conditions, 1):
        if not isinstance(condition, Mapping):
            raise ValueError(f"condition {number} is {_kind(condition)}, not an object")
        try:
            read.append(RewriteCondition(_rule_text(condition, "input"),
                                         _rule_text(condition, "pattern"),
                                         _flag(condition, "negate"),
                                         _optional_flag(condition, "ignore_case")))
        except ValueError as error:
            raise ValueError(f"condition {number}: {error}") from None
    rule = RewriteRule(
        name=_rule_text(entry, "name", empty=False), site=_rule_text(entry, "site", empty=False),
        match_url=_rule_text(entry, "match_url"), action=_rule_text(entry, "action"),
        conditions=tuple(read), logical_grouping=_rule_text(entry, "logical_grouping"),
        enabled=_flag(entry, "enabled"), match_negate=_optional_flag(entry, "match_negate"),
        pattern_syntax=(None if entry.get("pattern_syntax") is None
                        else _rule_text(entry, "pattern_syntax")),
        stop_processing=_optional_flag(entry, "stop_processing"),
        truncated=_optional_flag(entry, "truncated"))
    # The probe cuts texts at MAX_RULE_TEXT: one that long may be the head of a longer one.
    texts = (rule.name, rule.site, rule.match_url, rule.action, rule.logical_grouping,
             rule.pattern_syntax or "", *(t for c in rule.conditions for t in (c.input, c.pattern)))
    if any(len(text) >= MAX_RULE_TEXT for text in texts):
        rule = replace(rule, truncated=True)
    return rule


def _rewrite_rule_details(value: Any) -> tuple[tuple[RewriteRule, ...] | None, tuple[str, ...]]:
    """``mitigations.rewrite_rule_details``: the well-formed entries among the first MAX_RULES
    and a probe error for each one dropped, or None when absent or null (not read)."""
    if value is None:
        return None, ()
    if not isinstance(value, list):
        return None, (f"rewrite_rule_details: left out, {_kind(value)} and not a list",)
    rules = []
    dropped = []
    for number, entry in enumerate(value[:MAX_RULES], 1):
        try:
            rules.append(_rewrite_rule(entry))
        except ValueError as error:
            dropped.append(f"rewrite_rule_details: entry {number} {DROPPED}: {error}")
    errors = dropped[:MAX_DROP_LINES]
    if len(dropped) > MAX_DROP_LINES:
        errors.append(f"rewrite_rule_details: {len(dropped) - MAX_DROP_LINES} more entries "
                      f"{DROPPED}")
    if len(value) > MAX_RULES:
        errors.append(f"rewrite_rule_details: {len(value) - MAX_RULES} entries past the first "
                      f"{MAX_RULES} left out")
    return tuple(rules), tuple(errors)


def _without_optional_content(document: dict[str, Any]) -> dict[str, Any]:
    """The document as ``load_document`` checks it: the optional 1.2 and 1.3 parts keep their
    JSON type but not their content (rule entries, the release's number, the investigation's
    members), which the reader checks itself, so that a bad entry or number drops only itself
    (``observation_from_document``)."""
    checked = dict(document)
    if isinstance(checked.get("investigation"), dict):
        checked["investigation"] = {}
    release = checked.get("dotnet_release")
    if isinstance(release, int | float) and not isinstance(release, bool):
        checked["dotnet_release"] = None
    mitigations = checked.get("mitigations")
    if isinstance(mitigations, dict) and isinstance(mitigations.get("rewrite_rule_details"), list):
        checked["mitigations"] = {**mitigations, "rewrite_rule_details": []}
    return checked


# Bounds checked before the schema: they keep validation linear and small on hostile input.
MAX_DEPTH = 16
MAX_ITEMS = 2000
MAX_HOST_LENGTH = 255


def _structure_problem(document: Any) -> str | None:
    """Depth, list lengths and text that no store can hold, checked without recursion."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            items = list(value.items())
            if len(items) > MAX_ITEMS:
                return f"an object with more than {MAX_ITEMS} keys"
            for key, item in items:
                if not _clean_text(key):
                    return "a key that is not valid text"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                return f"a list with more than {MAX_ITEMS} items"
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if not _clean_text(value):
                return "text with invalid Unicode (lone surrogates) or NUL characters"
        elif isinstance(value, float) and not math.isfinite(value):
            return "a number that is not finite (NaN or Infinity)"
    return None


def _clean_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_document(path: Path, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read through a bound
    (files.read_bounded). Raises ``ProbeDocumentError`` saying why not (unreadable, not a
    regular file, too big)."""
    try:
        return read_bounded(path, limit)
    except FileRefused as error:
        raise ProbeDocumentError(str(error)) from None


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys: a document saying two things is refused.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


# Version fields are read as builds: no surrounding whitespace, no control character.
_VERSION_FIELDS = ("exsetup_version", "admin_display_version")


def load_document(text: str | bytes) -> dict[str, Any]:
    """Decode and validate one document; raises ``ProbeDocumentError`` saying why not. The
    content of the optional 1.2 parts is left to ``observation_from_document``."""
    # Characters never outnumber UTF-8 bytes: count characters first, encode only if it may fit.
    size = len(text)
    if isinstance(text, str) and size <= MAX_DOCUMENT_BYTES:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise ProbeDocumentError(f"document is {size} bytes, over the "
                                 f"{MAX_DOCUMENT_BYTES // (1024 * 1024)} MB limit")
    if isinstance(text, bytes):
        # PowerShell's `>` writes UTF-16 with a byte-order mark: accept it as well as UTF-8.
        encoding = "utf-16" if text[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        try:
            text = text.decode(encoding)
        except UnicodeDecodeError as error:
            raise ProbeDocumentError(f"not UTF-8 (or UTF-16 with a byte-order mark) text: "
                                     f"{error}") from None
    stripped = text.strip()
    if not stripped:
        raise ProbeDocumentError("empty output")
    try:
        document = json.loads(stripped, object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        raise ProbeDocumentError(f"refused: the key {str(error)[:80]!r} appears twice in one "
                                 "object") from None
    except (ValueError, RecursionError) as error:  # also ints past Python's digit limit
        raise ProbeDocumentError(f"not JSON: {str(error)[:200]}") from None
    if not isinstance(document, dict):
        raise ProbeDocumentError("not a JSON object")
    checked = _without_optional_content(document)
    problem = _structure_problem(checked)
    if problem:
        raise ProbeDocumentError(f"refused: {problem}")
    if document.get("schema") != SCHEMA_ID:
        raise ProbeDocumentError(f"schema is {str(document.get('schema'))[:80]!r}, expected "
                                 f"{SCHEMA_ID!r}")
    host = document.get("host")
    if isinstance(host, str) and not 0 < len(host) <= MAX_HOST_LENGTH:
        raise ProbeDocumentError(f"host name must be 1 to {MAX_HOST_LENGTH} characters")
    for field in _VERSION_FIELDS:
        value = document.get(field)
        if isinstance(value, str) and (value != value.strip() or not value.isascii()
                                       or any(not c.isprintable() for c in value)):
            raise ProbeDocumentError(f"{field}: {value[:40]!r} holds whitespace around it, a "
                                     "control character or a non-ASCII character")
    # The first error only: collecting (and sorting) every error costs memory on hostile input.
    first = next(iter(_validator().iter_errors(checked)), None)
    if first is not None:
        where = "/".join(str(p) for p in first.absolute_path) or "(document)"
        raise ProbeDocumentError(f"{where}: {first.message}"[:300])
    return document


def parse_document(text: str | bytes, host: Host, source: str,
                   received_at: datetime) -> Observation:
    """The observation a probe answered for ``host`` just now; bad documents become failures.

    The collector's clock dates it (``received_at``): a server's wrong clock must not make
    fresh data stale, nor stale data fresh.
    """
    try:
        document = load_document(text)
    except ProbeDocumentError as error:
        return Observation(host, received_at, source,
                           failure=Failure(FailureReason.BAD_OUTPUT, str(error), BAD_OUTPUT_HINT))
    return observation_from_document(document, host, source, received_at)


def document_time(document: Mapping[str, Any]) -> datetime | None:
    """``collected_at`` as an aware datetime, or None when unreadable."""
    try:
        collected = datetime.fromisoformat(str(document["collected_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return collected if collected.tzinfo else collected.replace(tzinfo=UTC)


def observation_from_document(document: Mapping[str, Any], host: Host, source: str,
                              observed_at: datetime | None) -> Observation:
    """Translate a validated document (see ``load_document``), dated ``observed_at``. The
    optional 1.2 and 1.3 parts are read defensively: what is wrong in them is dropped and named
    in ``probe_errors`` after the probe's own lines."""
    mitigations = document.get("mitigations") or {}
    rule_details, rule_errors = _rewrite_rule_details(
        mitigations.get("rewrite_rule_details") if isinstance(mitigations, Mapping) else None)
    dotnet_release, dotnet_errors = _dotnet_release(document.get("dotnet_release"))
    install_path, install_errors = _install_path(document.get("install_path"))
    probe_errors = tuple(str(e) for e in document.get("errors") or [])
    traces, trace_errors = investigation_traces(document.get("investigation"), probe_errors)
    indicators = document.get("indicators") or {}
    roles = document.get("roles")
    # replace(): every other field the host came with (AD's published names...) stays.
    if roles and host.roles is None:
        host = replace(host, fqdn=host.fqdn or _text(document.get("fqdn")),
                       roles=server_roles(roles))
    elif host.fqdn is None and document.get("fqdn"):
        host = replace(host, fqdn=str(document["fqdn"]))
    window_days, window_errors = _log_window_days(indicators.get("log_window_days"))
    return Observation(
        host=host,
        observed_at=observed_at,
        source=source,
        exsetup_version=_text(document.get("exsetup_version")),
        admin_display_version=_text(document.get("admin_display_version")),
        installed_updates=tuple(
            InstalledUpdate(str(u.get("kb", "")), str(u.get("name") or ""), _text(u.get("installed_on")))
            for u in document.get("installed_updates") or [] if isinstance(u, Mapping) and u.get("kb")
        ),
        mitigations=MitigationState(
            rewrite_rules=tuple(str(r) for r in mitigations.get("rewrite_rules") or []),
            services={str(name): ServiceState(_text(v.get("status")), _text(v.get("start_mode")))
                      for name, v in (mitigations.get("services") or {}).items()
                      if isinstance(v, Mapping)},
            app_pools={str(name): AppPoolState(_text(v.get("state")), v.get("auto_start"))
                       for name, v in (mitigations.get("app_pools") or {}).items()
                       if isinstance(v, Mapping)},
            url_rewrite_module=_text(mitigations.get("url_rewrite_module")),
            eomt=_eomt(mitigations.get("eomt")),
            defender_signature_version=_text(mitigations.get("defender_signature_version")),
            rewrite_rule_details=rule_details,
        ),
        indicators=_findings(indicators, CVES),
        suspicious_files=_findings(indicators, ("suspicious_files",), "file"),
        probe_errors=(probe_errors + rule_errors + dotnet_errors + trace_errors + install_errors
                      + window_errors),
        log_window_days=window_days,
        indicators_truncated=bool(indicators.get("truncated", False)),
        web_configs=_web_configs(document.get("web_config")),
        dotnet_release=dotnet_release,
        traces=traces,
        install_path=install_path,
    )

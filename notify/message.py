"""The words of a report: the e-mail's subject and body, and the webhook's JSON. Pure.

Host names and details are untrusted (they come from AD and the probe's output), so:

- the subject is fixed text with numbers only: no host name can reach a mail header;
- every untrusted string is cut to a bounded length and its control and format characters
  (CR, LF, ESC, bidirectional overrides...) are shown as visible escapes such as ``\\x1b``
  (``store.export.inert``, the terminal's rule) rather than obeyed;
- ``http(s)://``, ``www`` and ``@`` get an invisible zero-width space so no mail or chat
  client turns a host name into a link or an address;
- in the webhook's ``"text"`` (read as Markdown by Teams and as mrkdwn by Slack), ``&``, ``<``
  and ``>`` become entities (Slack's own escaping: ``<!channel>`` cannot ping, ``<url|x>``
  cannot link) and Markdown's specials are backslash-escaped (``[x](http://evil)`` is text).

Sizes are bounded: the e-mail lists at most ``MAIL_LIMIT`` changes, the chat text
``CHAT_LIMIT``, and the whole JSON body fits ``PAYLOAD_BUDGET`` bytes (Teams refuses more
than 28 KB), each saying how many it left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC
from typing import Any

from notify.changes import Change, ChangeKind, Report
from store.export import inert

MAIL_LIMIT = 200  # changes listed in the e-mail
CHAT_LIMIT = 30  # changes listed in the webhook's "text": a chat message is read at a glance
STRUCTURED_LIMIT = 1000  # changes in the webhook's structured part, before the byte budget
# Bytes of JSON. Teams' incoming webhooks refuse messages over 28 KB and have been seen to
# count each byte of a body twice (as UTF-16): 14 000 stays under the limit either way.
PAYLOAD_BUDGET = 14_000
HOST_CHARS = 100  # longest host name shown
DETAIL_CHARS = 300  # longest detail shown
PAYLOAD_VERSION = 1

LABELS = {
    ChangeKind.NEW_INDICATORS: "New compromise indicators",
    ChangeKind.REGRESSED: "No longer patched",
    ChangeKind.MITIGATION_REMOVED: "Mitigation removed",
    ChangeKind.OVERDUE: "Overdue",
    ChangeKind.ACCEPTANCE_EXPIRING: "Risk acceptance expiring",
    ChangeKind.NEW_SERVER: "New servers",
}

_AUTOLINK = re.compile(r"(?i)https?:/|www|@")
UNLINK = "\u200b"  # zero-width space: breaks a link pattern, invisible to a reader
# Markdown's inline specials, and the backslash itself (so an escape cannot be undone).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def subject(report: Report) -> str:
    """The e-mail subject: snapshot number and counts only, never a host name, e.g.
    ``ProxyLogon compliance, snapshot 42: 3 changes (No longer patched 1, New servers 2)``."""
    return f"ProxyLogon compliance, snapshot {report.snapshot_id}: {_total(report)} ({_tally(report, ', ')})"


def text(report: Report) -> str:
    """The plain-text e-mail body: a headline, the counts, then the changes grouped by kind
    (at most ``MAIL_LIMIT``, then how many more)."""
    lines = [_headline(report) + ".",
             f"Snapshot taken {report.taken_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC.", ""]
    lines += [f"{LABELS[kind]}: {count}" for kind, count in report.counts.items() if count]
    lines += _listed(report, MAIL_LIMIT, _plain, "  - ", blank_between=True)
    lines += ["", "The dashboard shows every host and its evidence."]
    return "\n".join(lines) + "\n"


def payload(report: Report, budget: int = PAYLOAD_BUDGET) -> dict[str, Any]:
    """The webhook's JSON document (``encoded`` gives its bytes, at most ``budget`` of them):

    ``{"text": <Markdown summary for Slack/Teams>, "proxylogon": {"version": 1,
    "snapshot_id": int, "previous_id": int | null, "taken_at": ISO 8601 UTC,
    "counts": {kind: n, ...every kind}, "total": n, "changes": [{"kind", "host", "detail"}],
    "omitted": n}}`` where ``omitted`` counts the changes left out of ``changes``.
    """
    total = len(report.changes)
    chat = min(CHAT_LIMIT, total)
    # The structured list gives way first: the chat text is what people read.
    structured = _most(min(STRUCTURED_LIMIT, total),
                       lambda n: len(encoded(_payload(report, chat, n))) <= budget)
    if structured == 0:
        chat = _most(chat, lambda n: len(encoded(_payload(report, n, 0))) <= budget)
    return _payload(report, chat, structured)


def _most(limit: int, fits: Callable[[int], bool]) -> int:
    """The largest ``n <= limit`` that ``fits`` (0 if none does), ``fits`` being monotone."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def encoded(document: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, ASCII only."""
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def chat_literal(value: object, limit: int = DETAIL_CHARS) -> str:
    """``value`` as Slack mrkdwn / Teams Markdown that shows as its text: one line, at most
    ``limit`` characters of it, no link, no mention, no formatting."""
    escaped = _MARKDOWN.sub(r"\\\1", _plain(value, limit))
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(value: object, limit: int = DETAIL_CHARS) -> str:
    """Untrusted text for a plain-text body: cut, control characters shown, links broken."""
    shown = inert(value)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return _AUTOLINK.sub(lambda match: match.group(0) + UNLINK, shown)


def _payload(report: Report, chat: int, structured: int) -> dict[str, Any]:
    lines = [_headline(report), _tally(report, " · "), ""]
    lines += _listed(report, chat, chat_literal, "- ", blank_between=False)
    return {
        "text": "\n".join(lines).rstrip("\n"),
        "proxylogon": {
            "version": PAYLOAD_VERSION,
            "snapshot_id": report.snapshot_id,
            "previous_id": report.previous_id,
            "taken_at": report.taken_at.astimezone(UTC).isoformat(),
            "counts": {kind.value: count for kind, count in report.counts.items()},
            "total": len(report.changes),
            "changes": [{"kind": change.kind.value, "host": _data(change.host, HOST_CHARS),
                         "detail": _data(change.detail, DETAIL_CHARS)}
                        for change in report.changes[:structured]],
            "omitted": len(report.changes) - structured,
        },
    }


def _data(value: str, limit: int) -> str:
    """An untrusted string in the structured part: cut and control characters shown, but no
    link breaking (a receiver gets the name as it is, to match it against its own data)."""
    shown = inert(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _listed(report: Report, limit: int, escape: Callable[[object, int], str], bullet: str, *,
            blank_between: bool) -> list[str]:
    """The first ``limit`` changes under a heading per kind, then how many were left out."""
    lines: list[str] = []
    kind: ChangeKind | None = None
    for change in report.changes[:limit]:
        if change.kind is not kind:
            kind = change.kind
            lines += ["", f"{LABELS[kind]}:"] if blank_between or lines else [f"{LABELS[kind]}:"]
        lines.append(bullet + _item(change, escape))
    left = len(report.changes) - min(limit, len(report.changes))
    if left:
        lines += ["", f"... and {left} more {'change' if left == 1 else 'changes'} not listed here."]
    return lines


def _item(change: Change, escape: Callable[[object, int], str]) -> str:
    return f"{escape(change.host, HOST_CHARS)}: {escape(change.detail, DETAIL_CHARS)}"


def _headline(report: Report) -> str:
    since = ("(the first)" if report.previous_id is None
             else f"since snapshot {report.previous_id}")
    return f"ProxyLogon patch compliance: {_total(report)} in snapshot {report.snapshot_id} {since}"


def _total(report: Report) -> str:
    count = len(report.changes)
    return f"{count} {'change' if count == 1 else 'changes'}"


def _tally(report: Report, separator: str) -> str:
    return separator.join(f"{LABELS[kind]} {count}" for kind, count in report.counts.items()
                          if count) or "none"

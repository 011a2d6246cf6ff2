"""notify.message: the subject, the e-mail body and the webhook JSON (pure)."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from notify.changes import Change, ChangeKind, Report
from notify.message import (
    CHAT_LIMIT,
    MAIL_LIMIT,
    PAYLOAD_BUDGET,
    UNLINK,
    chat_literal,
    encoded,
    payload,
    subject,
    text,
)
from settings import resolve

TAKEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOSTILE = ("<!channel>", "[x](http://evil.example)", "EX\r\nBcc: victim@corp.example",
           "\x1b[2J\x1b]8;;http://evil\x07", "EX\u202eexe.txt", "*bold* _it_ `code` ~s~ |t| #h",
           "<https://evil.example|click> &amp; @here")


def report(*changes: Change, previous: int | None = 41) -> Report:
    return Report(42, TAKEN, previous, changes)


SAMPLE = report(Change(ChangeKind.NEW_SERVER, "EX09", "first seen, vulnerable"),
                Change(ChangeKind.REGRESSED, "EX01", "patched -> vulnerable"),
                Change(ChangeKind.NEW_SERVER, "EX08", "first seen, patched"),
                Change(ChangeKind.NEW_INDICATORS, "EX03", "3 compromise indicators, 0 before"))


def many(count: int, kind: ChangeKind = ChangeKind.NEW_SERVER) -> Report:
    return report(*(Change(kind, f"EX{n:04}", "first seen, patched") for n in range(count)))


def test_the_subject_holds_the_snapshot_and_counts_only():
    assert subject(SAMPLE) == ("ProxyLogon compliance, snapshot 42: 4 changes "
                               "(New compromise indicators 1, No longer patched 1, New servers 2)")
    assert subject(report(Change(ChangeKind.OVERDUE, "EX01", "due"))) == (
        "ProxyLogon compliance, snapshot 42: 1 change (Overdue 1)")


@pytest.mark.parametrize("name", HOSTILE)
def test_no_host_name_reaches_the_subject(name):
    line = subject(report(Change(ChangeKind.NEW_SERVER, name, name)))
    assert line == "ProxyLogon compliance, snapshot 42: 1 change (New servers 1)"


def test_the_mail_body_lists_counts_then_changes_by_kind_most_urgent_first():
    assert text(SAMPLE) == """\
ProxyLogon patch compliance: 4 changes in snapshot 42 since snapshot 41.
Snapshot taken 2026-11-25 12:00:00 UTC.

New compromise indicators: 1
No longer patched: 1
New servers: 2

New compromise indicators:
  - EX03: 3 compromise indicators, 0 before

No longer patched:
  - EX01: patched -> vulnerable

New servers:
  - EX08: first seen, patched
  - EX09: first seen, vulnerable

The dashboard shows every host and its evidence.
"""


def test_the_first_snapshot_and_other_time_zones_are_said_plainly():
    east = Report(1, TAKEN.astimezone(timezone(timedelta(hours=5))), None,
                  (Change(ChangeKind.NEW_SERVER, "EX01", "first seen, patched"),))
    body = text(east)
    assert body.startswith("ProxyLogon patch compliance: 1 change in snapshot 1 (the first).\n"
                           "Snapshot taken 2026-11-25 12:00:00 UTC.\n")


def test_a_long_mail_lists_its_limit_and_says_how_many_more():
    body = text(many(MAIL_LIMIT + 7))
    assert body.count("  - EX") == MAIL_LIMIT
    assert "... and 7 more changes not listed here." in body
    assert "EX0199:" in body and "EX0200:" not in body
    assert "more" not in text(many(MAIL_LIMIT))


def test_the_messages_are_deterministic_whatever_the_input_order():
    shuffled = report(*reversed(SAMPLE.changes))
    assert (text(shuffled), subject(shuffled), payload(shuffled)) == (
        text(SAMPLE), subject(SAMPLE), payload(SAMPLE))
    assert encoded(payload(SAMPLE)) == encoded(payload(shuffled))


def test_the_payload_has_a_chat_text_and_a_structured_part():
    document = payload(SAMPLE)
    assert set(document) == {"text", "proxylogon"}
    assert document["proxylogon"] == {
        "version": 1, "snapshot_id": 42, "previous_id": 41,
        "taken_at": "2026-11-25T12:00:00+00:00",
        "counts": {"new_indicators": 1, "regressed": 1, "mitigation_removed": 0, "overdue": 0,
                   "acceptance_expiring": 0, "new_server": 2},
        "total": 4, "omitted": 0,
        "changes": [
            {"kind": "new_indicators", "host": "EX03", "detail": "3 compromise indicators, 0 before"},
            {"kind": "regressed", "host": "EX01", "detail": "patched -> vulnerable"},
            {"kind": "new_server", "host": "EX08", "detail": "first seen, patched"},
            {"kind": "new_server", "host": "EX09", "detail": "first seen, vulnerable"}]}
    assert document["text"] == (
        "ProxyLogon patch compliance: 4 changes in snapshot 42 since snapshot 41\n"
        "New compromise indicators 1 · No longer patched 1 · New servers 2\n\n"
        "New compromise indicators:\n- EX03: 3 compromise indicators, 0 before\n\n"
        "No longer patched:\n- EX01: patched -&gt; vulnerable\n\n"
        "New servers:\n- EX08: first seen, patched\n- EX09: first seen, vulnerable")
    assert json.loads(encoded(document)) == document
    assert encoded(document).isascii()


def test_a_long_chat_text_lists_its_limit_and_the_structured_part_all():
    document = payload(many(CHAT_LIMIT + 3))
    assert document["text"].count("\n- EX") == CHAT_LIMIT
    assert document["text"].endswith("... and 3 more changes not listed here.")
    assert len(document["proxylogon"]["changes"]) == CHAT_LIMIT + 3
    assert document["proxylogon"]["omitted"] == 0


def test_the_payload_fits_its_byte_budget_and_counts_what_it_left_out():
    big = report(*(Change(ChangeKind.REGRESSED, f"EX{n:04}-" + "x" * 90, "y" * 300)
                   for n in range(2000)))
    document = payload(big)
    size = len(encoded(document))
    assert size <= PAYLOAD_BUDGET
    structured = document["proxylogon"]
    assert structured["total"] == 2000
    assert structured["omitted"] == 2000 - len(structured["changes"]) > 0
    assert structured["counts"]["regressed"] == 2000
    # As many as fit: one more change would not (each is well under 500 bytes).
    assert size > PAYLOAD_BUDGET - 500
    assert len(encoded(payload(big, budget=5_000))) <= 5_000
    tiny = payload(big, budget=10)  # cannot fit: everything optional is left out
    assert tiny["proxylogon"]["changes"] == [] and "- EX" not in tiny["text"]


def test_long_untrusted_strings_are_cut():
    document = payload(report(Change(ChangeKind.NEW_SERVER, "H" * 5000, "d" * 5000)))
    change = document["proxylogon"]["changes"][0]
    assert len(change["host"]) == 100 and change["host"].endswith("…")
    assert len(change["detail"]) == 300
    assert max(len(line) for line in text(report(Change(ChangeKind.NEW_SERVER, "H" * 5000,
                                                        "d" * 5000))).splitlines()) < 420


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_host_name_is_inert_in_every_body(name):
    hostile = report(Change(ChangeKind.NEW_SERVER, name, f"first seen, {name}"))
    body, document = text(hostile), payload(hostile)
    chat, structured = document["text"], document["proxylogon"]["changes"][0]
    for shown in (body, chat, structured["host"], structured["detail"]):
        assert not CONTROL.search(shown), repr(shown)
    # One line per change: a CR/LF in a name cannot forge another line.
    assert len(body.splitlines()) == len(text(report(Change(ChangeKind.NEW_SERVER, "EX", "d")))
                                         .splitlines())
    assert len(chat.splitlines()) == 5
    # Slack: no mention, no <url|label> link; Markdown: no [label](url) link, no emphasis.
    assert "<" not in chat and ">" not in chat.replace("&gt;", "")
    assert "<!channel>" not in chat and "[x](" not in chat
    assert "http://evil" not in chat and "http://evil" not in body
    assert not re.search(r"(?<!\\)[*_`~|#\[\]()]", chat.split("\n", 2)[2])


@pytest.mark.parametrize(("value", "expected"), [
    ("EX01", "EX01"),
    ("<!channel>", "&lt;\\!channel&gt;"),
    ("[x](http://evil)", f"\\[x\\]\\(http:/{UNLINK}/evil\\)"),
    ("a & b", "a &amp; b"),
    ("*bold*", "\\*bold\\*"),
    ("back\\slash", "back\\\\slash"),
    ("line\nbreak\x1b", "line\\\\x0abreak\\\\x1b"),
    ("mail@here", f"mail@{UNLINK}here"),
    ("www.evil.example", f"www{UNLINK}.evil.example"),
])
def test_chat_literal_escapes_markup_and_shows_controls(value, expected):
    assert chat_literal(value) == expected


def test_the_documented_payload_and_settings_are_what_the_code_makes_and_takes():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    example = re.search(r"```json\n(.*?)```", doc, re.DOTALL)
    assert example and json.loads(example[1]) == payload(SAMPLE)
    section = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert section
    settings = resolve({}, tomllib.loads(section[1]), {}).secrets.notifications
    assert settings.smtp_host and settings.webhook_url and settings.mail_to

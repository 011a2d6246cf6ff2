"""notify.delivery against real peers on loopback: an aiosmtpd server with STARTTLS and AUTH
(tests/peers/smtp.py) and an HTTPS webhook receiver (tests/peers/webhook.py), both with
certificates from a throwaway CA. Waits between tries go through an injected ``sleep`` that
only records them."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from notify.changes import Change, ChangeKind, Report
from notify.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, Delivery, deliver
from notify.message import encoded, payload, subject, text
from settings import NotificationSettings, SettingsError, resolve
from tests.peers.loopback import HOST, free_port
from tests.peers.smtp import SmtpPeer
from tests.peers.tls import TlsFiles

pytestmark = pytest.mark.integration

USER, PASSWORD = "svc-notify@corp.example", "Sm7p-pa55word!"
SECRET = "whsec-0123456789abcdef"
TOKEN_PATH = "/services/T0001/B0002/t0kenInPath"
TOKEN_QUERY = "code=t0kenInQuery"
NOW = 1_796_040_000.0  # the injected clock: the signature's timestamp and the Date header
REPORT = Report(42, datetime(2026, 11, 25, 12, 0, tzinfo=UTC), 41, (
    Change(ChangeKind.REGRESSED, "EX01", "patched -> vulnerable"),
    Change(ChangeKind.NEW_SERVER, "EX09", "first seen, vulnerable")))


def notifications(environ: dict[str, str] | None = None, **keys: Any) -> NotificationSettings:
    """Through the one settings table, as the collection job will read them."""
    return resolve({}, {"notifications": keys}, environ or {}).secrets.notifications


def mail_keys(tls: TlsFiles, port: int, **keys: Any) -> dict[str, Any]:
    return {"smtp_host": HOST, "smtp_port": port, "smtp_ca_file": str(tls.ca_file),
            "smtp_username": USER, "smtp_password": PASSWORD,
            "mail_from": "exchange-audit@corp.example",
            "mail_to": ["secops@corp.example", "messaging@corp.example"], **keys}


def hook_keys(tls: TlsFiles, url: str, **keys: Any) -> dict[str, Any]:
    return {"webhook_url": url, "webhook_ca_file": str(tls.ca_file), **keys}


def mail(tls: TlsFiles, port: int, **keys: Any) -> NotificationSettings:
    return notifications(**mail_keys(tls, port, **keys))


def hook(tls: TlsFiles, url: str, **keys: Any) -> NotificationSettings:
    return notifications(**hook_keys(tls, url, **keys))


class Sleeps(list[float]):
    """The injected ``sleep``: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sent(report: Report, settings: NotificationSettings, sleeps: Sleeps | None = None
         ) -> tuple[Delivery, ...]:
    return deliver(report, settings, sleep=sleeps if sleeps is not None else Sleeps(),
                   clock=lambda: NOW)


def assert_no_secret(delivery: Delivery) -> None:
    shown = repr(delivery)
    for secret in (PASSWORD, SECRET, "t0kenInPath", "t0kenInQuery", "T0001"):
        assert secret not in shown, shown
    assert "\n" not in delivery.error and "\r" not in delivery.error


# --- nothing to do ------------------------------------------------------------------------------

def test_nothing_configured_sends_nothing():
    assert deliver(REPORT, notifications(), sleep=Sleeps()) == ()


def test_an_empty_report_sends_nothing(tls, smtp, webhook):
    settings = notifications(**mail_keys(tls, smtp.port), **hook_keys(tls, webhook.url()))
    assert sent(Report(42, REPORT.taken_at, 41, ()), settings) == ()
    assert smtp.messages == [] and smtp.logins == [] and webhook.requests == []


# --- e-mail ------------------------------------------------------------------------------------

def test_one_message_is_delivered_over_starttls_after_login(tls, smtp):
    sleeps = Sleeps()
    assert sent(REPORT, mail(tls, smtp.port), sleeps) == (
        Delivery("email", f"127.0.0.1:{smtp.port}", True, 1, ""),)
    assert sleeps == []
    [received] = smtp.messages
    assert received.tls and received.authenticated
    assert received.mail_from == "exchange-audit@corp.example"
    assert received.rcpt_tos == ("secops@corp.example", "messaging@corp.example")
    message = received.message
    assert message["Subject"] == subject(REPORT)
    assert message["From"] == "exchange-audit@corp.example"
    assert message["To"] == "secops@corp.example, messaging@corp.example"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@corp.example>") and "snapshot-42" in message["Message-ID"]
    assert message["Date"].datetime == datetime.fromtimestamp(NOW, UTC)  # the injected clock
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == text(REPORT)
    assert smtp.logins == [("PLAIN", True)] or smtp.logins == [("LOGIN", True)]


def test_the_password_may_come_from_the_environment(tls, smtp):
    keys = mail_keys(tls, smtp.port)
    del keys["smtp_password"]
    settings = notifications({"PROXYLOGON_SMTP_PASSWORD": PASSWORD}, **keys)
    assert [d.ok for d in sent(REPORT, settings)] == [True]
    assert len(smtp.messages) == 1


# aiosmtpd warns that AUTH without STARTTLS is risky: here the whole session is TLS (SMTPS).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_delivers_too(tls):
    peer = SmtpPeer(tls, username=USER, password=PASSWORD, implicit_tls=True)
    try:
        [delivery] = sent(REPORT, mail(tls, peer.port, smtp_tls=True))
        assert delivery.ok, delivery
        assert [m.authenticated for m in peer.messages] == [True]
    finally:
        peer.close()


def test_a_wrong_password_fails_once_without_showing_it(tls, smtp):
    sleeps = Sleeps()
    [delivery] = sent(REPORT, mail(tls, smtp.port, smtp_password="not-" + PASSWORD), sleeps)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert "authentication refused (535 5.7.8 Authentication credentials invalid)" in delivery.error
    assert "not-" not in delivery.error
    assert_no_secret(delivery)
    assert smtp.messages == []
    # One connection: smtplib may try each mechanism the server offers, but never again.
    assert 1 <= len(smtp.logins) <= 2 and not any(ok for _, ok in smtp.logins)


def test_a_server_that_repeats_the_password_does_not_make_the_error_show_it(tls):
    peer = SmtpPeer(tls, username=USER, password="another", echo_refused=True)
    try:
        [delivery] = sent(REPORT, mail(tls, peer.port))
    finally:
        peer.close()
    assert not delivery.ok and delivery.attempts == 1
    assert delivery.error.startswith("SMTP authentication refused (535 5.7.8 bad password ***)")
    assert_no_secret(delivery)


def test_a_server_certificate_from_another_ca_is_refused(tls, smtp):
    sleeps = Sleeps()
    [delivery] = sent(REPORT, mail(tls, smtp.port, smtp_ca_file=str(tls.other_ca_file)), sleeps)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert "TLS certificate not trusted" in delivery.error
    assert smtp.messages == [] and smtp.logins == []


def test_a_dead_server_is_tried_attempts_times_with_growing_waits(tls):
    sleeps = Sleeps()
    [delivery] = sent(REPORT, mail(tls, free_port(), attempts=4, backoff_seconds=1.5), sleeps)
    assert not delivery.ok and delivery.attempts == 4
    assert delivery.error == "connection refused"
    assert sleeps == [1.5, 3.0, 6.0]


def test_the_wait_between_tries_is_capped(tls):
    sleeps = Sleeps()
    sent(REPORT, mail(tls, free_port(), attempts=8, backoff_seconds=5), sleeps)
    assert sleeps == [5, 10, 20, 40, 60, 60, 60]


def test_the_password_is_never_sent_without_tls(tls, smtp):
    [delivery] = sent(REPORT, mail(tls, smtp.port, smtp_starttls=False))
    assert not delivery.ok and delivery.attempts == 0
    assert "refusing to send the SMTP password without TLS" in delivery.error
    assert smtp.logins == [] and smtp.messages == []


def test_a_server_that_requires_starttls_refuses_a_plain_client_for_good(tls, smtp):
    sleeps = Sleeps()
    [delivery] = sent(REPORT, mail(tls, smtp.port, smtp_starttls=False, smtp_username=""), sleeps)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert delivery.error.startswith("SMTP 530")
    assert smtp.messages == []


@pytest.mark.parametrize(("keys", "error"), [
    ({"mail_from": ""}, "mail_from is empty"),
    ({"mail_to": []}, "mail_to is empty"),
    ({"smtp_password": ""}, "no SMTP password"),
    ({"smtp_ca_file": "/nonexistent/ca.pem"}, "cannot read smtp_ca_file /nonexistent/ca.pem"),
])
def test_incomplete_mail_settings_fail_before_connecting(tls, smtp, keys, error):
    [delivery] = sent(REPORT, mail(tls, smtp.port, **keys))
    assert not delivery.ok and delivery.attempts == 0 and error in delivery.error
    assert smtp.logins == [] and smtp.messages == []


# --- webhook -----------------------------------------------------------------------------------

def test_the_webhook_receives_the_json_payload(tls, webhook):
    [delivery] = sent(REPORT, hook(tls, webhook.url(TOKEN_PATH + "?" + TOKEN_QUERY)))
    assert delivery == Delivery("webhook", f"https://127.0.0.1:{webhook.port}/…", True, 1, "")
    [request] = webhook.requests
    assert request.method == "POST" and request.path == TOKEN_PATH + "?" + TOKEN_QUERY
    assert request.headers["content-type"] == "application/json"
    assert request.body == encoded(payload(REPORT))
    document = json.loads(request.body)
    assert document["text"].startswith("ProxyLogon patch compliance: 2 changes in snapshot 42")
    assert document["proxylogon"]["changes"] == [
        {"kind": "regressed", "host": "EX01", "detail": "patched -> vulnerable"},
        {"kind": "new_server", "host": "EX09", "detail": "first seen, vulnerable"}]
    assert SIGNATURE_HEADER.lower() not in request.headers  # no secret, no signature


def test_the_signature_verifies_with_the_secret(tls, webhook):
    [delivery] = sent(REPORT, hook(tls, webhook.url(), webhook_secret=SECRET))
    assert delivery.ok
    [request] = webhook.requests
    timestamp = request.headers[TIMESTAMP_HEADER.lower()]
    assert timestamp == str(int(NOW))
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers[SIGNATURE_HEADER.lower()], f"sha256={expected}")
    wrong = hmac.new(b"another secret", timestamp.encode() + b"." + request.body,
                     hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER.lower()] != f"sha256={wrong}"


def test_the_secret_may_come_from_the_environment(tls, webhook):
    settings = notifications({"PROXYLOGON_WEBHOOK_SECRET": SECRET}, webhook_url=webhook.url(),
                             webhook_ca_file=str(tls.ca_file))
    assert [d.ok for d in sent(REPORT, settings)] == [True]
    assert webhook.requests[0].headers[SIGNATURE_HEADER.lower()].startswith("sha256=")


def test_two_server_errors_then_success_takes_three_attempts(tls, webhook):
    webhook.answer(500, 503)
    sleeps = Sleeps()
    [delivery] = sent(REPORT, hook(tls, webhook.url(), webhook_secret=SECRET), sleeps)
    assert delivery.ok and delivery.attempts == 3 and delivery.error == ""
    assert sleeps == [2.0, 4.0]
    assert len(webhook.requests) == 3
    assert len({r.body for r in webhook.requests}) == 1  # the same message each time


def test_too_many_requests_is_tried_again(tls, webhook):
    webhook.answer(429)
    [delivery] = sent(REPORT, hook(tls, webhook.url()))
    assert delivery.ok and delivery.attempts == 2


def test_a_receiver_that_always_fails_is_given_up_after_attempts(tls, webhook):
    webhook.answer(*[500] * 10)
    sleeps = Sleeps()
    [delivery] = sent(REPORT, hook(tls, webhook.url(TOKEN_PATH), attempts=3), sleeps)
    assert not delivery.ok and delivery.attempts == 3
    assert delivery.error == "HTTP 500 from the receiver"
    assert len(webhook.requests) == 3 and sleeps == [2.0, 4.0]
    assert_no_secret(delivery)


def test_a_client_error_is_not_tried_again(tls, webhook):
    webhook.answer(400)
    sleeps = Sleeps()
    [delivery] = sent(REPORT, hook(tls, webhook.url()), sleeps)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert delivery.error == "HTTP 400: the receiver refused the message"
    assert len(webhook.requests) == 1


def test_a_redirect_is_not_followed(tls, webhook):
    webhook.answer(302)
    [delivery] = sent(REPORT, hook(tls, webhook.url(TOKEN_PATH), webhook_secret=SECRET))
    assert not delivery.ok and delivery.attempts == 1
    assert "redirects are not followed" in delivery.error
    assert [r.path for r in webhook.requests] == [TOKEN_PATH]  # never /elsewhere


@pytest.mark.parametrize("scheme", ["http", "ftp", "HTTP"])
def test_a_url_other_than_https_is_refused(tls, webhook, scheme):
    url = webhook.url(TOKEN_PATH).replace("https", scheme, 1)
    # The settings refuse it before any run ...
    with pytest.raises(SettingsError, match="webhook_url must be an https:// URL"):
        hook(tls, url, webhook_secret=SECRET)
    # ... and delivery refuses it too, should settings ever be made some other way.
    made = hook(tls, webhook.url(TOKEN_PATH), webhook_secret=SECRET).model_copy(
        update={"webhook_url": url})
    [delivery] = sent(REPORT, made)
    assert not delivery.ok and delivery.attempts == 0
    assert f"webhook_url must be https:// (not {scheme.lower()}://)" in delivery.error
    assert delivery.target == f"{scheme.lower()}://127.0.0.1:{webhook.port}/…"
    assert webhook.requests == []
    assert_no_secret(delivery)


def test_a_receiver_certificate_from_another_ca_is_refused(tls, webhook):
    sleeps = Sleeps()
    [delivery] = sent(REPORT, hook(tls, webhook.url(TOKEN_PATH + "?" + TOKEN_QUERY),
                                   webhook_ca_file=str(tls.other_ca_file)), sleeps)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert delivery.error.startswith("TLS certificate not trusted")
    assert webhook.requests == []
    assert_no_secret(delivery)


def test_a_missing_ca_file_fails_before_connecting(tls, webhook):
    [delivery] = sent(REPORT, hook(tls, webhook.url(), webhook_ca_file="/nonexistent/ca.pem"))
    assert not delivery.ok and delivery.attempts == 0
    assert delivery.error == "webhook_ca_file /nonexistent/ca.pem is not a file"


def test_a_dead_receiver_fails_without_showing_its_url(tls):
    port = free_port()
    url = f"https://user:pa55@127.0.0.1:{port}{TOKEN_PATH}?{TOKEN_QUERY}"
    sleeps = Sleeps()
    [delivery] = sent(REPORT, hook(tls, url, webhook_secret=SECRET), sleeps)
    assert not delivery.ok and delivery.attempts == 3 and sleeps == [2.0, 4.0]
    assert delivery.error == "connection refused"
    assert delivery.target == f"https://127.0.0.1:{port}/…"
    assert "pa55" not in repr(delivery) and "user" not in repr(delivery)
    assert_no_secret(delivery)


def test_a_receiver_that_never_answers_times_out_and_is_tried_again(tls):
    silent = socket.create_server((HOST, 0))  # the kernel accepts; nobody ever answers
    try:
        url = f"https://{HOST}:{silent.getsockname()[1]}{TOKEN_PATH}"
        sleeps = Sleeps()
        [delivery] = sent(REPORT, hook(tls, url, timeout_seconds=0.2, attempts=2), sleeps)
    finally:
        silent.close()
    assert not delivery.ok and delivery.attempts == 2 and sleeps == [2.0]
    assert delivery.error == "no answer within 0.2 s"
    assert_no_secret(delivery)


# --- both --------------------------------------------------------------------------------------

HOSTILE = Report(43, REPORT.taken_at, 42, (
    Change(ChangeKind.NEW_SERVER, "<!channel>", "first seen, vulnerable"),
    Change(ChangeKind.NEW_SERVER, "[x](http://evil.example)", "first seen, patched"),
    Change(ChangeKind.REGRESSED, "EX\r\nBcc: victim@corp.example", "patched -> unknown"),
    Change(ChangeKind.NEW_INDICATORS, "\x1b[2J\x1b]8;;http://evil\x07EX", "1 compromise indicator, 0 before\x1b[0m")))


def test_hostile_host_names_reach_neither_header_nor_markup(tls, smtp, webhook):
    settings = notifications(**mail_keys(tls, smtp.port), **hook_keys(tls, webhook.url()))
    deliveries = sent(HOSTILE, settings)
    assert [(d.channel, d.ok) for d in deliveries] == [("email", True), ("webhook", True)]

    [received] = smtp.messages
    assert received.message["Subject"] == ("ProxyLogon compliance, snapshot 43: 4 changes "
                                           "(New compromise indicators 1, No longer patched 1, "
                                           "New servers 2)")
    assert received.message["Bcc"] is None and received.rcpt_tos == (
        "secops@corp.example", "messaging@corp.example")
    body = received.message.get_content()
    assert "\x1b" not in body and "\\x1b[2J" in body
    assert "EX\\x0d\\x0aBcc: victim@" in body
    assert "http://evil" not in body

    chat = json.loads(webhook.requests[0].body)["text"]
    assert "<!channel>" not in chat and "&lt;\\!channel&gt;" in chat
    assert "[x](" not in chat and "\\[x\\]\\(" in chat
    assert "\x1b" not in chat and "\r" not in chat and "http://evil" not in chat
    # headline, tally, blank; heading + 1 item; blank, heading + 1; blank, heading + 2: no forged line
    assert len(chat.splitlines()) == 3 + 2 + 3 + 4


def test_one_failing_channel_does_not_stop_the_other(tls, webhook):
    settings = notifications(**mail_keys(tls, free_port(), attempts=2),
                             **hook_keys(tls, webhook.url()))
    email, posted = sent(REPORT, settings)
    assert (email.channel, email.ok, email.attempts) == ("email", False, 2)
    assert (posted.channel, posted.ok) == ("webhook", True)


def test_deliver_never_raises(tls, webhook):
    def broken_sleep(seconds: float) -> None:
        raise RuntimeError(f"sleep broke while holding {SECRET}")

    webhook.answer(500)
    [delivery] = deliver(REPORT, hook(tls, webhook.url(), webhook_secret=SECRET),
                         sleep=broken_sleep)
    assert not delivery.ok and delivery.error == "unexpected RuntimeError"
    assert_no_secret(delivery)


def test_the_settings_section_has_no_key_this_module_ignores():
    used = {"smtp_host", "smtp_port", "smtp_starttls", "smtp_tls", "smtp_ca_file", "smtp_username",
            "smtp_password", "mail_from", "mail_to", "webhook_url", "webhook_secret",
            "webhook_ca_file", "timeout_seconds", "attempts", "backoff_seconds"}
    # expiring_days is the collection job's (ACCEPTANCE_EXPIRING changes), not delivery's.
    assert set(NotificationSettings.model_fields) - used == {"expiring_days"}

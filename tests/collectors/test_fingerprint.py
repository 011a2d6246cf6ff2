"""The unauthenticated HTTPS fingerprint (collectors/fingerprint.py, issue 18 part 1).

The parsers are tested with literal answers; the rest end to end against the OWA-like peer on
loopback (tests/peers/owa.py) with its throwaway CA: disclosures and their certainty, TLS refused
by default and recorded-not-trusted on request, the deadline and timeouts, what is sent (GETs
only, no cookie, no credentials, no redirect off the endpoint) and the bound on concurrency.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from collectors.fingerprint import (
    BODY_LIMIT,
    MAX_REDIRECTS,
    Answer,
    Certainty,
    Disclosure,
    Endpoint,
    EndpointKind,
    Fingerprint,
    FingerprintConfig,
    Source,
    TlsState,
    classify,
    endpoints_for,
    fingerprint,
    fingerprint_all,
    parse_logon_page,
    parse_manifest,
    parse_owa_version,
)
from compliance.failures import FailureReason
from compliance.models import Build, Host
from tests.peers.loopback import free_port
from tests.peers.owa import OwaNode, OwaPeer, logon_page, manifest, start_owa

MANIFEST = "/ecp/Current/exporttool/microsoft.exchange.ediscovery.exporttool.application"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwaPeer]:
    started = start_owa(tmp_path_factory.mktemp("owa"))
    yield started
    started.stop()


def _config(peer: OwaPeer, **changes: object) -> FingerprintConfig:
    values: dict[str, object] = {"ca_file": str(peer.ca_file), "deadline_seconds": 10.0,
                                 "timeout_seconds": 5.0}
    values.update(changes)
    return FingerprintConfig(**values)  # type: ignore[arg-type]


def _read(peer: OwaPeer, name: str, *nodes: OwaNode, **changes: object) -> Fingerprint:
    url = peer.set_endpoint(name, *nodes)
    return fingerprint(Endpoint(name, url), _config(peer, **changes), now=lambda: NOW)


def _full(text: str) -> Build:
    major, minor, build, revision = (int(part) for part in text.split("."))
    return Build(major, minor, build, revision)


# --- X-OWA-Version -----------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "expected"), [
    pytest.param([], [], id="missing-header"),
    pytest.param(["15.1.2375.17"], [("15.1.2375.17", Certainty.FULL_BUILD)], id="four-part"),
    pytest.param([" 15.2.986.5 "], [("15.2.986.5", Certainty.FULL_BUILD)], id="padded"),
    pytest.param(["14.3.513.0", "14.3.513.0"], [("14.3.513.0", Certainty.FULL_BUILD)], id="twice"),
    pytest.param(["15.2.986.5", "15.2.858.5"], [("15.2.986.5", Certainty.FULL_BUILD),
                                                ("15.2.858.5", Certainty.FULL_BUILD)], id="two-nodes"),
    pytest.param(["15.1.2375"], [("15.1.2375", Certainty.CU_LEVEL)], id="three-part-is-cu-level"),
])
def test_owa_version_header(values, expected):
    found = parse_owa_version(values, "/owa/")
    assert [(str(d.build), d.certainty) for d in found] == expected
    assert all(d.source is Source.HEADER and d.where == "/owa/" and not d.problem for d in found)


@pytest.mark.parametrize("value", [
    pytest.param("15.1.x.17", id="letters"),
    pytest.param("15.1.2375.17.1", id="five-parts"),
    pytest.param("15.1.2375.99999", id="revision-too-long"),
    pytest.param("15.1", id="two-parts"),
    pytest.param("\x1b[2J15.1.2375.17", id="escape-sequence"),
    pytest.param("١٥.1.2375.17", id="non-ascii-digits"),
    pytest.param("9" * 5000, id="huge"),
    pytest.param("", id="empty"),
])
def test_a_malformed_header_is_kept_as_a_problem_never_a_build(value):
    (found,) = parse_owa_version([value])
    assert found.build is None and found.certainty is None
    assert "not a build number" in found.problem
    assert len(found.raw) <= 100 and found.raw == value.strip()[:100]


# --- the logon page's resource paths ------------------------------------------------------------

def test_the_logon_page_of_2013_and_later_gives_the_cu_level_only():
    found = parse_logon_page(logon_page("15.1.2176"), "/owa/auth/logon.aspx")
    assert found is not None
    assert (found.source, found.raw, found.certainty) == (Source.LOGON_PATH, "15.1.2176", Certainty.CU_LEVEL)
    assert found.build == Build(15, 1, 2176, None)  # every SU of 2016 CU19 looks like this


@pytest.mark.parametrize(("body", "build", "certainty"), [
    pytest.param(b'<link rel="shortcut icon" href="/owa/auth/15.1.845/themes/resources/favicon.ico" '
                 b'type="image/x-icon">', "15.1.845", Certainty.CU_LEVEL, id="greenbone-sample"),
    pytest.param(b'<link href="/owa/14.3.513.0/themes/resources/logon.css">', "14.3.513.0",
                 Certainty.FULL_BUILD, id="exchange-2010-four-part"),
    pytest.param(b'<link href="/owa/8.3.485.1/themes/base/logon.css">', "8.3.485.1",
                 Certainty.FULL_BUILD, id="exchange-2007"),
    pytest.param(b'url("/owa/auth/15.2.986.5/themes/resources/segoeui-regular.ttf")', "15.2.986.5",
                 Certainty.FULL_BUILD, id="four-part-under-auth"),
    pytest.param(b'<LINK HREF="/OWA/Auth/15.0.1497/themes/resources/owafont.css">', "15.0.1497",
                 Certainty.CU_LEVEL, id="any-case-as-iis"),
])
def test_logon_page_paths(body, build, certainty):
    found = parse_logon_page(body)
    assert found is not None and str(found.build) == build and found.certainty is certainty


@pytest.mark.parametrize("body", [
    pytest.param(b"<html><head><title>Outlook</title></head></html>", id="no-path"),
    pytest.param(b"", id="empty"),
    pytest.param(b'href="/owa/auth/15.1.123456/themes/"', id="six-digit-part"),
    pytest.param(b'href="/owa/auth/current/themes/"', id="not-a-version"),
    pytest.param(b"url=https%3a%2f%2fmail%2fowa%2fauth%2f15.1.2176%2f", id="escaped-in-a-query"),
    pytest.param(b"x" * BODY_LIMIT + b'href="/owa/auth/15.1.2176/themes/"', id="past-the-read-limit"),
])
def test_a_page_without_a_versioned_path_discloses_nothing(body):
    assert parse_logon_page(body) is None


def test_a_page_naming_two_builds_is_refused():
    found = parse_logon_page(b'href="/owa/auth/15.1.2176/themes/a" href="/owa/auth/15.1.2242/themes/b"')
    assert found is not None and found.build is None
    assert "2 different builds: 15.1.2176, 15.1.2242" in found.problem


def test_a_hostile_page_is_read_in_bounded_time():
    body = b"/owa/auth/1.1.1.1x" * 1_000_000  # 18 MB of near-matches
    started = time.monotonic()
    assert parse_logon_page(body) is None
    assert time.monotonic() - started < 2


# --- the export tool manifest -------------------------------------------------------------------

# As public notes show it (curl | xmllint | grep version), inside the manifest's root element.
PUBLIC_SAMPLE = b"""<?xml version="1.0" encoding="utf-8"?>
<asmv1:assembly xmlns:asmv1="urn:schemas-microsoft-com:asm.v1" xmlns="urn:schemas-microsoft-com:asm.v2">
 <assemblyIdentity xmlns="urn:schemas-microsoft-com:asm.v1" name="microsoft.exchange.ediscovery.exporttool.application" version="15.1.2375.7" publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil"/>
 <dependency><dependentAssembly>
 <assemblyIdentity name="microsoft.exchange.ediscovery.exporttool" version="15.1.2375.7" publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil" type="win32"/>
 </dependentAssembly></dependency>
 <r:license xmlns:r="urn:mpeg:mpeg21:2003:01-REL-R-NS" xmlns:as="http://schemas.microsoft.com/windows/pki/2005/Authenticode">
 <as:assemblyIdentity xmlns="urn:schemas-microsoft-com:asm.v1" name="microsoft.exchange.ediscovery.exporttool.application" version="15.1.2375.7" publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil"/>
 </r:license>
</asmv1:assembly>
"""  # noqa: E501


@pytest.mark.parametrize(("body", "build"), [
    pytest.param(PUBLIC_SAMPLE, "15.1.2375.7", id="public-sample"),
    pytest.param(manifest("15.2.986.5"), "15.2.986.5", id="peer-manifest"),
])
def test_the_manifest_gives_the_full_build(body, build):
    found = parse_manifest(body, MANIFEST)
    assert (found.source, found.raw, found.certainty, found.problem) == (
        Source.MANIFEST, build, Certainty.FULL_BUILD, "")
    assert found.build == _full(build)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<assembly><assemblyIdentity name="microsoft.exchange.ediscovery.exporttool" version="&lol3;"/></assembly>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE assembly [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<assembly><assemblyIdentity name="microsoft.exchange.ediscovery.exporttool" version="&x;"/></assembly>"""


@pytest.mark.parametrize(("body", "says"), [
    pytest.param(PUBLIC_SAMPLE.replace(b'"15.1.2375.7"', b'"15.1.2375.x"'), "not a build number: "
                 "'15.1.2375.x'", id="malformed-version"),
    pytest.param(PUBLIC_SAMPLE.replace(b'"15.1.2375.7"', b'"15.1.2375"'), "not a build number",
                 id="three-part-version"),
    pytest.param(PUBLIC_SAMPLE.replace(b'"15.1.2375.7"', b'""', 1), "versions differ",
                 id="empty-version-in-one-place"),
    pytest.param(PUBLIC_SAMPLE.replace(b'version="15.1.2375.7" publicKeyToken="b1d1a6c45aa418ce" '
                                       b'language="neutral" processorArchitecture="msil" type',
                                       b'version="15.1.2308.8" type'), "versions differ: 15.1.2375.7, "
                 "15.1.2308.8", id="versions-disagree"),
    pytest.param(b"<html><body>404 - File or directory not found.</body></html>",
                 "not a ClickOnce manifest (root element 'html')", id="an-html-page"),
    pytest.param(b"\x00\xffnot xml at all", "not XML", id="not-xml"),
    pytest.param(PUBLIC_SAMPLE[:300], "not XML", id="cut-short"),
    pytest.param(b'<asmv1:assembly xmlns:asmv1="urn:schemas-microsoft-com:asm.v1"/>',
                 "names no export tool assembly", id="no-identity"),
    pytest.param(BILLION_LAUGHS, "refused XML", id="entity-expansion"),
    pytest.param(EXTERNAL_ENTITY, "refused XML", id="external-entity"),
    pytest.param(b"<assembly>" + b" " * BODY_LIMIT + b"</assembly>", "larger than 256 KB",
                 id="over-the-read-limit"),
])
def test_an_unreadable_manifest_is_a_problem_never_a_build(body, says):
    found = parse_manifest(body)
    assert found.build is None and found.certainty is None
    assert says in found.problem, found.problem


# --- classification and records -----------------------------------------------------------------

@pytest.mark.parametrize(("error", "reason"), [
    (socket.gaierror(-2, "Name or service not known"), FailureReason.DNS),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), FailureReason.TLS),
    (ssl.SSLError(1, "wrong version number"), FailureReason.TLS),
    (TimeoutError("timed out"), FailureReason.TIMEOUT),
    (ConnectionRefusedError(111, "Connection refused"), FailureReason.CONNECT),
    (http.client.RemoteDisconnected("Remote end closed connection"), FailureReason.CONNECT),
    (OSError(113, "No route to host"), FailureReason.CONNECT),
    (http.client.BadStatusLine("SSH-2.0-OpenSSH_9.2"), FailureReason.BAD_OUTPUT),
    (http.client.LineTooLong("header line"), FailureReason.BAD_OUTPUT),
    (ValueError("surprise"), FailureReason.PROBE_ERROR),
])
def test_classify(error, reason):
    assert classify(error)[0] is reason
    assert classify(error, cut=True)[0] is FailureReason.TIMEOUT  # past the deadline: a timeout


def test_an_untrusted_fingerprint_proves_no_build():
    disclosed = (Disclosure(Source.HEADER, "15.1.2176.9", "/owa/", Build(15, 1, 2176, 9),
                            Certainty.FULL_BUILD),
                 Disclosure(Source.LOGON_PATH, "15.1.2176", "/owa/auth/logon.aspx",
                            Build(15, 1, 2176), Certainty.CU_LEVEL))
    trusted = Fingerprint(Endpoint("EX01", "https://ex01/"), NOW, TlsState("TLSv1.3", True),
                          disclosures=disclosed)
    assert trusted.builds(Certainty.FULL_BUILD) == (Build(15, 1, 2176, 9),)
    assert trusted.builds(Certainty.CU_LEVEL) == (Build(15, 1, 2176),)
    for tls in (TlsState("TLSv1.3", False, "self-signed certificate"), None):
        untrusted = Fingerprint(Endpoint("EX01", "https://ex01/"), NOW, tls, disclosures=disclosed)
        assert not untrusted.trusted
        assert untrusted.builds(Certainty.FULL_BUILD) == untrusted.builds(Certainty.CU_LEVEL) == ()


def test_endpoints_are_servers_by_fqdn_then_namespaces_with_overrides():
    hosts = [Host("EX01", "ex01.corp.example"), Host("EX02"), Host("EX03", "ex03.corp.example"),
             Host("EVIL", "x.example/owa?"), Host("EX04", "mail.corp.example")]
    config = FingerprintConfig(namespaces=("mail.corp.example", "autodiscover.corp.example"),
                               urls=(("ex03.CORP.example", "https://10.0.0.3:8443/base"),
                                     ("ex02", "https://10.0.0.2/"),
                                     ("Autodiscover.corp.example", "https://10.0.0.9/")))
    assert endpoints_for(hosts, config) == [
        Endpoint("EX01", "https://ex01.corp.example/"),
        Endpoint("EX02", "https://10.0.0.2/"),  # by name
        Endpoint("EX03", "https://10.0.0.3:8443/base/"),  # by FQDN, any case; a slash added
        Endpoint("EVIL", ""),  # an AD value that is no host name: nothing is sent to it
        Endpoint("EX04", "https://mail.corp.example/"),  # the namespace is this server's name:
        # kept as a namespace too (review finding: it was dropped, and its findings never made)
        Endpoint("mail.corp.example", "https://mail.corp.example/", EndpointKind.NAMESPACE),
        Endpoint("autodiscover.corp.example", "https://10.0.0.9/", EndpointKind.NAMESPACE),
    ]


def test_a_server_and_a_namespace_at_one_url_are_read_once_and_both_recorded(peer):
    url = peer.set_endpoint("e2e-shared", OwaNode())
    config = _config(peer)
    shared = [Endpoint("EX-SHARED", url), Endpoint("mail.shared.example", url, EndpointKind.NAMESPACE)]
    before = len(peer.seen("e2e-shared"))
    counted: list[bool] = []
    server, namespace = fingerprint_all(shared, config, progress=counted.append)
    assert server.endpoint == shared[0] and namespace.endpoint == shared[1]
    assert server.disclosures and namespace.disclosures == server.disclosures
    assert len(counted) == 1  # one read
    read_once = len(peer.seen("e2e-shared")) - before
    alone = fingerprint_all(shared[:1], config)
    assert alone[0].disclosures == server.disclosures
    assert len(peer.seen("e2e-shared")) - before == 2 * read_once  # the pair cost one reading


def test_an_endpoint_that_is_no_host_name_fails_without_a_request(peer):
    result = fingerprint(Endpoint("EVIL", ""), _config(peer))
    assert result.failure is not None and result.failure.reason == FailureReason.DNS
    assert "not a host name: nothing was sent" in result.failure.detail and result.answers == ()


# --- end to end, against the peer ---------------------------------------------------------------

def test_exchange_2016_discloses_three_ways_over_three_gets(peer):
    result = _read(peer, "e2e-2016", OwaNode(header="15.1.2375.17", logon_version="15.1.2375",
                                             manifest_version="15.1.2375.17"))
    assert result.failure is None and result.trusted and result.observed_at == NOW
    assert result.tls is not None and result.tls.version.startswith("TLSv1.")
    assert len(result.tls.certificate_sha256) == 64
    assert [(d.source, d.raw, d.certainty) for d in result.disclosures] == [
        (Source.HEADER, "15.1.2375.17", Certainty.FULL_BUILD),
        (Source.LOGON_PATH, "15.1.2375", Certainty.CU_LEVEL),
        (Source.MANIFEST, "15.1.2375.17", Certainty.FULL_BUILD)]
    assert result.builds(Certainty.FULL_BUILD) == (Build(15, 1, 2375, 17),)
    assert result.builds(Certainty.CU_LEVEL) == (Build(15, 1, 2375),)
    base = "/e2e-2016/"
    logon = (f"{base}owa/auth/logon.aspx?url=https%3a%2f%2f127.0.0.1%3a{peer.port}%2fe2e-2016"
             "%2fowa%2f&reason=0")
    assert [(a.path, a.status) for a in result.answers] == [
        (f"{base}owa/", 302), (logon, 200), (f"/e2e-2016{MANIFEST}", 200)]
    assert result.owa == result.answers[1] and result.ecp == result.answers[2]
    assert all(0 < a.seconds < 5 and a.size > 0 and not a.truncated for a in result.answers)


def test_only_gets_without_credentials_or_cookies_are_sent(peer):
    result = _read(peer, "e2e-wire", OwaNode())
    seen = peer.seen("e2e-wire")
    assert len(seen) == len(result.answers) == 3
    assert {s.method for s in seen} == {"GET"}
    assert len({s.client_port for s in seen}) == 1  # one connection, one TLS handshake
    for request in seen:
        # The peer set a cookie on its first two answers: none came back.
        assert set(request.headers) == {"host", "user-agent", "accept", "accept-encoding"}
        assert request.headers["accept-encoding"] == "identity"
        assert request.headers["host"] == f"127.0.0.1:{peer.port}"


def test_exchange_2010_gives_its_full_build_in_the_path_and_has_no_export_tool(peer):
    result = _read(peer, "e2e-2010", OwaNode(header=None, logon_version="14.3.513.0",
                                             auth_segment=False, manifest_version=None))
    assert result.failure is None
    assert [(d.source, d.raw, d.certainty) for d in result.disclosures] == [
        (Source.LOGON_PATH, "14.3.513.0", Certainty.FULL_BUILD)]
    assert result.ecp is not None and result.ecp.status == 404


def test_a_header_stripped_by_a_proxy_leaves_the_path_and_the_manifest(peer):
    result = _read(peer, "e2e-noheader", OwaNode(header=None))
    assert [d.source for d in result.disclosures] == [Source.LOGON_PATH, Source.MANIFEST]
    assert result.builds(Certainty.FULL_BUILD) == (Build(15, 1, 2176, 9),)


def test_a_three_part_path_alone_never_shows_the_security_update(peer):
    result = _read(peer, "e2e-cuonly", OwaNode(header=None, manifest_version=None))
    assert result.failure is None and result.trusted
    assert result.builds(Certainty.FULL_BUILD) == ()
    assert result.builds(Certainty.CU_LEVEL) == (Build(15, 1, 2176, None),)


def test_broken_after_an_update_answers_500_which_is_recorded_not_a_failure(peer):
    result = _read(peer, "e2e-broken", OwaNode(status=500))
    assert result.failure is None and result.disclosures == ()
    assert result.owa is not None and result.ecp is not None
    assert (result.owa.status, result.ecp.status) == (500, 500)
    assert [a.path for a in result.answers] == ["/e2e-broken/owa/", f"/e2e-broken{MANIFEST}"]


def test_a_load_balanced_namespace_shows_both_builds(peer):
    old, new = OwaNode(header="15.1.2176.2", manifest_version="15.1.2176.2", fe_server="EX01"), \
        OwaNode(header="15.1.2176.9", manifest_version="15.1.2176.9", fe_server="EX02")
    url = peer.set_endpoint("e2e-lb", old, new)
    result = fingerprint(Endpoint("mail.corp.example", url, EndpointKind.NAMESPACE), _config(peer))
    assert result.failure is None
    assert result.builds(Certainty.FULL_BUILD) == (Build(15, 1, 2176, 2), Build(15, 1, 2176, 9))
    assert {s.node for s in peer.seen("e2e-lb")} == {0, 1}


def test_tls_with_an_unknown_ca_is_refused_by_default_before_any_request(peer):
    result = _read(peer, "e2e-wrongca", OwaNode(), ca_file=str(peer.other_ca_file))
    assert result.failure is not None and result.failure.reason == FailureReason.TLS
    assert "certificate not trusted" in result.failure.detail and "ca_file" in result.failure.hint
    assert result.tls is None and result.answers == () and result.disclosures == ()
    assert peer.seen("e2e-wrongca") == []  # the handshake failed: no HTTP request was sent


def test_the_system_cas_do_not_trust_the_test_ca(peer):
    result = _read(peer, "e2e-systemca", OwaNode(), ca_file=None)
    assert result.failure is not None and result.failure.reason == FailureReason.TLS


def test_an_invalid_certificate_is_recorded_not_trusted_when_asked(peer):
    result = _read(peer, "e2e-record", OwaNode(), ca_file=str(peer.other_ca_file),
                   record_invalid_certificate=True)
    assert result.failure is None
    assert result.tls is not None and not result.tls.verified and not result.trusted
    assert "unable to get local issuer certificate" in result.tls.problem
    assert len(result.disclosures) == 3  # read, for a person to see...
    assert result.builds(Certainty.FULL_BUILD) == result.builds(Certainty.CU_LEVEL) == ()  # ...not proof


def test_a_slow_endpoint_is_cut_at_its_deadline(peer):
    started = time.monotonic()
    result = _read(peer, "e2e-slow", OwaNode(delay=5), deadline_seconds=1.0, timeout_seconds=1.0)
    elapsed = time.monotonic() - started
    assert result.failure is not None and result.failure.reason == FailureReason.TIMEOUT
    assert "deadline" in result.failure.detail
    assert 0.9 < elapsed < 3, elapsed  # not the 5 s the answer would take


def test_a_trickling_answer_is_cut_at_the_deadline_though_each_byte_is_in_time(peer):
    # Each byte arrives well within the read timeout: only the deadline's socket cut ends it.
    started = time.monotonic()
    result = _read(peer, "e2e-trickle", OwaNode(trickle=0.05), deadline_seconds=1.5,
                   timeout_seconds=1.0)
    elapsed = time.monotonic() - started
    assert result.failure is not None and result.failure.reason == FailureReason.TIMEOUT
    assert "cut at the per-endpoint deadline" in result.failure.detail
    assert 1.4 < elapsed < 4, elapsed  # not the 23 minutes the page would take


def test_one_request_is_bounded_by_the_timeout(peer):
    started = time.monotonic()
    result = _read(peer, "e2e-timeout", OwaNode(delay=5), deadline_seconds=10, timeout_seconds=0.5)
    assert result.failure is not None and result.failure.reason == FailureReason.TIMEOUT
    assert "within the timeout" in result.failure.detail
    assert time.monotonic() - started < 3


def test_a_failure_keeps_what_was_read_before_it(peer):
    # The logon page trickles past the deadline: the /owa/ redirect's header stays.
    result = _read(peer, "e2e-partial", OwaNode(trickle=0.05), deadline_seconds=1.0,
                   timeout_seconds=1.0)
    assert result.failure is not None and result.failure.reason == FailureReason.TIMEOUT
    assert [a.status for a in result.answers] == [302]
    assert [(d.source, d.raw) for d in result.disclosures] == [(Source.HEADER, "15.1.2176.9")]


@pytest.mark.parametrize("target", [
    pytest.param("https://adfs.elsewhere.invalid/adfs/ls/?wa=wsignin1.0", id="another-host"),
    pytest.param("http://127.0.0.1:{port}/e2e-redirect/owa/auth/logon.aspx", id="plain-http"),
    pytest.param("https://127.0.0.1:1/e2e-redirect/owa/auth/logon.aspx", id="another-port"),
    pytest.param("https://127.0.0.1:{port}/e2e-redirect/owa/\x1b[2J", id="control-characters"),
])
def test_a_redirect_off_the_endpoint_is_not_followed(peer, target):
    result = _read(peer, "e2e-redirect", OwaNode(redirect=target.format(port=peer.port)))
    assert result.failure is None
    assert result.owa is not None and result.owa.status == 302
    assert result.owa.note == "redirect to another origin: not followed"
    assert [s.path for s in peer.seen("e2e-redirect")][-2:] == ["/e2e-redirect/owa/",
                                                                f"/e2e-redirect{MANIFEST}"]
    assert result.disclosures[0].source is Source.HEADER  # the redirect's header is still read


def test_a_redirect_loop_on_the_endpoint_stops(peer):
    result = _read(peer, "e2e-loop", OwaNode(redirect=peer.url("e2e-loop") + "owa/"))
    assert result.failure is None and result.owa is not None
    assert result.owa.note == f"more than {MAX_REDIRECTS} redirects: not followed"
    assert [a.path for a in result.answers].count("/e2e-loop/owa/") == MAX_REDIRECTS + 1


def test_a_huge_page_is_read_up_to_the_limit_only(peer):
    # The versioned path comes after 10 MB: never read. The next request takes a new connection.
    result = _read(peer, "e2e-huge", OwaNode(padding=10_000_000))
    assert result.failure is None and result.owa is not None
    assert (result.owa.size, result.owa.truncated) == (BODY_LIMIT, True)
    assert [d.source for d in result.disclosures] == [Source.HEADER, Source.MANIFEST]
    assert result.ecp is not None and result.ecp.status == 200
    ports = [s.client_port for s in peer.seen("e2e-huge")]
    assert ports[0] == ports[1] != ports[2]  # the cut page's connection was not reused


def test_a_hostile_manifest_is_refused(peer):
    result = _read(peer, "e2e-laughs", OwaNode(manifest_body=BILLION_LAUGHS))
    manifest_seen = [d for d in result.disclosures if d.source is Source.MANIFEST]
    assert len(manifest_seen) == 1 and "refused XML" in manifest_seen[0].problem


def test_nothing_listening_is_a_connect_failure():
    endpoint = Endpoint("EX09", f"https://127.0.0.1:{free_port()}/")
    result = fingerprint(endpoint, FingerprintConfig(deadline_seconds=5, timeout_seconds=2))
    assert result.failure is not None and result.failure.reason == FailureReason.CONNECT
    assert "443" in result.failure.hint


def test_concurrency_is_bounded_and_results_keep_their_order(peer):
    names = [f"e2e-pool-{i:02d}" for i in range(12)]
    urls = [peer.set_endpoint(name, OwaNode(delay=0.2, header=f"15.1.2176.{i}"))
            for i, name in enumerate(names)]
    calls: list[bool] = []
    started = time.monotonic()
    results = fingerprint_all([Endpoint(n, u) for n, u in zip(names, urls, strict=True)],
                              _config(peer, concurrency=4), progress=calls.append)
    elapsed = time.monotonic() - started
    assert [r.endpoint.name for r in results] == names
    assert [r.disclosures[0].raw for r in results] == [f"15.1.2176.{i}" for i in range(12)]
    assert calls == [False] * 12
    assert peer.peak(names) == 4  # reached, never passed
    assert elapsed >= 3 * 3 * 0.2  # three waves of three answers of 0.2 s


def test_a_stopped_run_raises(peer):
    url = peer.set_endpoint("e2e-stop", OwaNode(delay=0.3))
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError):
        fingerprint_all([Endpoint("e2e-stop", url)], _config(peer), stop=stop)


def test_answers_are_frozen_records():
    answer = Answer("/owa/", 302, 0.01)
    with pytest.raises(AttributeError):
        answer.status = 200  # type: ignore[misc]


def test_a_certificate_that_fails_on_a_later_connection_makes_the_whole_reading_untrusted(
        tmp_path, monkeypatch):
    """Review finding: only the first connection's TLS state was recorded. An endpoint (a load
    balancer node, or someone on the path) that validates on the first connection, closes it,
    and shows another certificate on the next must not have what it says next count as proof."""
    import tests.peers.owa as owa
    from collectors.fingerprint import endpoint_record
    from compliance.outside_record import view_of

    monkeypatch.setattr(owa._Handler, "protocol_version", "HTTP/1.0")  # a connection per answer
    good, other = start_owa(tmp_path / "good"), start_owa(tmp_path / "other")
    try:
        valid, invalid = good._server.tls, other._server.tls
        handshakes: list[int] = []

        class Switching:
            def wrap_socket(self, sock, server_side):
                handshakes.append(1)
                chosen = valid if len(handshakes) == 1 else invalid
                return chosen.wrap_socket(sock, server_side=server_side)

        monkeypatch.setattr(good._server, "tls", Switching())
        url = good.set_endpoint("EX-SWITCH", OwaNode(header=None, logon_version="15.1.2176",
                                                     manifest_version="15.1.2176.2"))
        config = FingerprintConfig(enabled=True, ca_file=str(good.ca_file),
                                   urls=(("EX-SWITCH", url),), record_invalid_certificate=True,
                                   deadline_seconds=10, timeout_seconds=5)
        result = fingerprint_all(endpoints_for([Host("EX-SWITCH")], config), config)[0]
        assert len(handshakes) >= 2 and result.disclosures  # read over both certificates
        assert result.tls is not None and not result.tls.verified and result.tls.problem
        assert not result.trusted and result.builds(Certainty.FULL_BUILD) == ()
        view = view_of(endpoint_record(result))
        assert not view.trusted and view.builds == ()
    finally:
        good.stop()
        other.stop()


def test_the_progress_total_is_the_number_of_reads():
    """collect's progress line counts reads: a namespace at a server's URL adds none, so the
    line ends at n/n (it stopped one short when the total counted endpoints)."""
    from collectors.fingerprint import reads

    shared = [Endpoint("EX1", "https://ex1.corp.example/"),
              Endpoint("ex1.corp.example", "https://EX1.corp.example/", EndpointKind.NAMESPACE),
              Endpoint("EVIL", ""), Endpoint("EVIL2", ""),
              Endpoint("mail.corp.example", "https://mail.corp.example/", EndpointKind.NAMESPACE)]
    assert reads(shared) == 4  # the shared URL once; each endpoint without a URL its own

"""collectors/fingerprint.py ``outside_view``: a ``Fingerprint`` as the core's ``OutsideView``
(compliance/outside.py); an untrusted one carries no build."""

from __future__ import annotations

from datetime import UTC, datetime

from collectors.fingerprint import (
    Certainty,
    Disclosure,
    Endpoint,
    EndpointKind,
    Fingerprint,
    Source,
    TlsState,
    outside_view,
)
from compliance.models import Build, Failure
from compliance.outside import ViewKind

NOW = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
DISCLOSED = (
    Disclosure(Source.HEADER, "15.1.2176.4", "/owa/", Build(15, 1, 2176, 4), Certainty.FULL_BUILD),
    Disclosure(Source.LOGON_PATH, "15.1.2176", "/owa/auth/logon.aspx", Build(15, 1, 2176),
               Certainty.CU_LEVEL),
    Disclosure(Source.MANIFEST, "15.1.x", "/ecp/Current/exporttool/x.application",
               problem="not a build number"),
)


def test_a_trusted_fingerprint_gives_its_builds_and_where_they_were_read():
    fp = Fingerprint(Endpoint("mail.corp.example", "https://mail.corp.example/",
                              EndpointKind.NAMESPACE), NOW, TlsState("TLSv1.3", True),
                     disclosures=DISCLOSED)
    view = outside_view(fp)
    assert (view.name, view.kind, view.observed_at, view.trusted) == (
        "mail.corp.example", ViewKind.NAMESPACE, NOW, True)
    assert view.full_builds == (Build(15, 1, 2176, 4),)
    assert view.cu_builds == (Build(15, 1, 2176),)
    assert view.where == ("15.1.2176.4 from x_owa_version at /owa/",
                          "15.1.2176 from logon_path at /owa/auth/logon.aspx")
    assert view.problem == ""


def test_an_untrusted_or_failed_fingerprint_gives_no_build_and_says_why():
    untrusted = outside_view(Fingerprint(Endpoint("EX01", "https://ex01/"), NOW,
                                         TlsState("TLSv1.3", False, "self-signed certificate"),
                                         disclosures=DISCLOSED))
    assert (untrusted.kind, untrusted.trusted) == (ViewKind.SERVER, False)
    assert untrusted.full_builds == untrusted.cu_builds == ()
    assert untrusted.problem == "certificate not trusted: self-signed certificate"
    failed = outside_view(Fingerprint(Endpoint("EX02", "https://ex02/"), NOW,
                                      failure=Failure("dns", "name lookup failed")))
    assert failed.builds == () and failed.problem == "dns: name lookup failed"

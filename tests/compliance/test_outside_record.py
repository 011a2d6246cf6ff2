"""compliance/outside_record.py: the stored form of the outside view, the view it gives back, and
which endpoints a snapshot keeps (``carry``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.catalog import load_catalog
from compliance.evaluate import Policy, assess
from compliance.models import Build, Failure, Host, Observation
from compliance.outside import ViewKind
from compliance.outside_record import (
    AnswerRecord,
    EndpointRecord,
    OutsideRecord,
    Seen,
    TlsRecord,
    apply_view,
    carry,
    dumps,
    loads,
    view_of,
)

NOW = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
TLS = TlsRecord("TLSv1.3", True, "", "00" * 32)
DISCLOSED = (
    Seen("x_owa_version", "15.1.2176.4", "/owa/", Build(15, 1, 2176, 4), "full_build"),
    Seen("logon_path", "15.1.2176", "/owa/auth/logon.aspx", Build(15, 1, 2176), "cu_level"),
    Seen("exporttool_manifest", "15.1.x", "/ecp/x.application", problem="not a build number"),
)


def _record(name: str = "EX01", kind: ViewKind = ViewKind.SERVER, at: datetime = NOW,
            **fields) -> EndpointRecord:
    return EndpointRecord(name, kind, f"https://{name.lower()}/", at, **fields)


def test_the_stored_document_reads_back_as_written():
    record = OutsideRecord((
        _record(disclosures=DISCLOSED, tls=TLS, owa=AnswerRecord("/owa/auth/logon.aspx", 200, 0.031),
                ecp=AnswerRecord("/ecp/x.application", 404, 0.002, "a note")),
        _record("EX02", failure=Failure("tls", "certificate not trusted", "set ca_file"),
                observed_in=3),
        _record("mail.corp.example", ViewKind.NAMESPACE, disclosures=DISCLOSED[:1], tls=TLS),
    ))
    text = dumps(record)
    assert loads(text) == record and dumps(loads(text)) == text


@pytest.mark.parametrize("text", ['{"format": "other/1"}', "[]", '{"format": '
                                  '"proxylogon-outside/1", "endpoints": [{}], "namespaces": []}'])
def test_a_document_no_writer_makes_is_refused(text):
    with pytest.raises(ValueError, match="not an outside record"):
        loads(text)


def test_the_view_of_a_record_counts_only_validated_builds():
    view = view_of(_record(disclosures=DISCLOSED, tls=TLS))
    assert view.full_builds == (Build(15, 1, 2176, 4),) and view.cu_builds == (Build(15, 1, 2176),)
    assert view.where == ("15.1.2176.4 from x_owa_version at /owa/",
                          "15.1.2176 from logon_path at /owa/auth/logon.aspx")
    untrusted = view_of(_record(disclosures=DISCLOSED, tls=TlsRecord("TLSv1.2", False, "expired")))
    assert untrusted.builds == () and untrusted.problem == "certificate not trusted: expired"
    failed = view_of(_record(failure=Failure("connect", "refused")))
    assert failed.builds == () and failed.problem == "connect: refused"


def test_carry_keeps_what_the_run_did_not_read_again_while_fresh():
    catalog = load_catalog()
    members = assess([Observation(Host("EX01", "ex01.corp.example"), NOW, "t"),
                      Observation(Host("EX02"), NOW, "t")], catalog, NOW, source="t",
                     tool_version="t").assessments
    old = NOW - timedelta(hours=1)
    previous = OutsideRecord((
        _record("ex01.corp.example", at=old),  # a member, by its FQDN; not read again: kept
        _record("EX02", at=old),  # read again by this run (names match in any case)
        _record("GONE", at=old),  # no longer in the fleet
        _record("mail.corp.example", ViewKind.NAMESPACE, at=old, observed_in=1),
        _record("stale.corp.example", ViewKind.NAMESPACE, at=NOW - timedelta(days=8)),
    ))
    run = (_record("ex02"),)
    kept = carry(run, previous, 5, members, NOW, Policy())
    assert [(r.name, r.observed_in) for r in kept] == [
        ("ex02", None), ("ex01.corp.example", 5), ("mail.corp.example", 1)]
    assert carry((), None, None, members, NOW) == ()


def test_without_endpoints_nothing_changes_and_nothing_is_stored():
    catalog = load_catalog()
    fleet = assess([Observation(Host("EX01"), NOW, "t", exsetup_version="15.1.2176.9")],
                   catalog, NOW, source="t", tool_version="t").assessments
    assert apply_view(fleet, (), catalog, NOW) == (fleet, None)

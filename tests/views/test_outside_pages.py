"""AppTest runs the Overview, Hosts and Collection pages on a store whose latest snapshot holds
the outside view (issue 18), on one without it, and with hostile text from the network.

Each test has its own data directory, hence its own store URL: cached reads keyed by the URL
do not leak between tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.models import Build, Failure, Host, Observation
from compliance.outside import ViewKind
from compliance.outside_record import AnswerRecord, EndpointRecord, Seen, TlsRecord
from store import SnapshotStore
from views import labels
from views.markdown import shown

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW, HOSTS, COLLECTION = "views/overview.py", "views/hosts.py", "views/collection.py"
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
NAMESPACE = "mail.corp.example"
HOSTILE = "<img src=x onerror=alert(1)> **bold**"
NOW = datetime.now(UTC).replace(microsecond=0)
SEEN = NOW - timedelta(minutes=2)
TLS = TlsRecord("TLSv1.3", True, "", "ab" * 32)


@pytest.fixture
def store(monkeypatch, tmp_path) -> Iterator[SnapshotStore]:
    """An empty store where the pages look for it (the default SQLite file in the data dir)."""
    monkeypatch.setenv("PROXYLOGON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PROXYLOGON_DEMO", "false")
    for name in ("PROXYLOGON_STORE_URL", "PROXYLOGON_SIGNING_KEY", "PROXYLOGON_MAX_AGE_DAYS",
                 "PROXYLOGON_COLLECTION_CONFIG", "PROXYLOGON_COLLECTION_INVENTORY"):
        monkeypatch.delenv(name, raising=False)
    opened = SnapshotStore.open(f"sqlite:///{tmp_path / 'compliance.db'}")
    yield opened
    opened.dispose()


def _run(namespace: str = NAMESPACE):  # type: ignore[no-untyped-def]
    """EX1 and EX2 publish the namespace; EX1 is patched inside, EX2 is not; EX3 not behind it."""
    behind = {"internal_names": (namespace,)}
    at = NOW - timedelta(minutes=5)
    observations = [
        Observation(Host("EX1", "ex1.corp.example", **behind), at, "test",
                    exsetup_version=PATCHED),
        Observation(Host("EX2", "ex2.corp.example", **behind), at, "test",
                    exsetup_version=VULNERABLE),
        Observation(Host("EX3", "ex3.corp.example"), at, "test", exsetup_version=PATCHED),
    ]
    return assess(observations, load_catalog(), NOW, source="test", tool_version="t")


def _seen(*builds: str, raw: str | None = None) -> tuple[Seen, ...]:
    return tuple(Seen("x_owa_version", raw or b, "/owa/", Build(*map(int, b.split("."))),
                      "full_build") for b in builds)


def _endpoints(namespace: str = NAMESPACE, raw: str | None = None,
               detail: str = "cut at the deadline") -> tuple[EndpointRecord, ...]:
    return (
        # EX1: ExSetup at the March SU, OWA still the old build (an SU run without elevation)
        EndpointRecord("EX1", ViewKind.SERVER, "https://ex1.corp.example/", SEEN,
                       (*_seen(VULNERABLE, raw=raw),
                        Seen("logon_path", "/owa/auth/15.1.2176/themes", "/owa/",
                             Build(15, 1, 2176, None), "cu_level")),
                       TLS, AnswerRecord("/owa/auth/logon.aspx", 200, 0.03),
                       AnswerRecord("/ecp/x.application", 200, 0.01)),
        EndpointRecord("EX3", ViewKind.SERVER, "https://ex3.corp.example/", SEEN, (),
                       TlsRecord("TLSv1.3", False, "self-signed certificate", "cd" * 32),
                       AnswerRecord("/owa/", 500, 0.2)),
        EndpointRecord("EX2", ViewKind.SERVER, "https://ex2.corp.example/", SEEN,
                       failure=Failure("timeout", detail, "raise the deadline")),
        EndpointRecord(namespace, ViewKind.NAMESPACE, f"https://{namespace}/", SEEN,
                       _seen(PATCHED, VULNERABLE), TLS, AnswerRecord("/owa/", 200, 0.02)),
    )


def _page(page: str) -> AppTest:
    """``page`` run through app.py (the Overview links to the Hosts page by its path)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    if page != OVERVIEW:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def _markdown(at: AppTest) -> list[str]:
    """Every Markdown source on the page (markdown, captions, alerts)."""
    return [e.value for kind in ("markdown", "caption", "warning", "success", "info", "error")
            for e in getattr(at, kind)]


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The one dataframe on the page that has ``column``."""
    (found,) = [d.value for d in at.dataframe if column in d.value.columns]
    return found


def _host_detail(host: str) -> AppTest:
    at = _page(HOSTS)
    at.selectbox(key="detail_host").set_value(host).run()
    assert not at.exception, at.exception
    return at


def test_the_overview_counts_the_disagreements_and_lists_each_namespace_action(store):
    store.save(_run(), load_catalog(), outside=_endpoints())
    at = _page(OVERVIEW)
    texts = " ".join(shown(t) for t in _markdown(at))
    assert "Outside view: 1 host and 1 namespace disagree with the inside view" in texts
    findings = _frame(at, "finding")
    assert list(findings["namespace"]) == [NAMESPACE]
    assert list(findings["finding"]) == [labels.FINDING_LABELS[next(iter(labels.FINDING_LABELS))]]
    assert list(findings["builds"]) == [VULNERABLE] and list(findings["hosts"]) == ["EX1, EX2"]
    assert NAMESPACE in findings["action"].iloc[0] and "unpatched" in findings["action"].iloc[0]


def test_the_hosts_detail_shows_three_sources_with_the_outside_build_and_certainty(store):
    store.save(_run(), load_catalog(), outside=_endpoints())
    at = _host_detail("EX1")
    texts = " ".join(shown(t) for t in _markdown(at))
    assert "ExSetup.exe" in texts and PATCHED in texts  # the inside build
    assert "certificate valid" in texts and "OWA: HTTP 200 in 0.03 s" in texts
    assert "ECP: HTTP 200 in 0.01 s" in texts
    told = _frame(at, "certainty")
    assert list(zip(told["build"], told["certainty"], strict=True)) == [
        (VULNERABLE, labels.CERTAINTY_LABELS["full_build"]),
        ("15.1.2176", labels.CERTAINTY_LABELS["cu_level"])]
    assert "outside_older_than_inside" in texts  # the flag beside them

    untrusted = " ".join(shown(t) for t in _markdown(_host_detail("EX3")))
    assert "not trusted" in untrusted and "(self-signed certificate)" in untrusted
    assert "OWA: HTTP 500 in 0.20 s" in untrusted and "ECP: no answer" in untrusted


def test_the_collection_page_shows_the_fingerprints_coverage(store):
    store.save(_run(), load_catalog(), outside=_endpoints())
    # The next run reads EX1 alone: the other three are carried while fresh.
    store.save(_run(), load_catalog(), outside=_endpoints()[:1])
    at = _page(COLLECTION)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Endpoints read": "1", "Failed": "0", "Untrusted certificate": "0",
                       "Carried from earlier runs": "3"}
    everything = _frame(at, "tls_verified")
    assert sorted(everything["name"]) == sorted(["EX1", "EX2", "EX3", NAMESPACE])
    assert everything["carried_from"].notna().sum() == 3


def test_the_collection_page_counts_failures_by_reason_and_untrusted_certificates(store):
    store.save(_run(), load_catalog(), outside=_endpoints())
    at = _page(COLLECTION)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Endpoints read": "3", "Failed": "1", "Untrusted certificate": "1",
                       "Carried from earlier runs": "0"}
    failures = _frame(at, "names")
    assert failures.to_dict("records") == [
        {"failure_reason": "timeout", "endpoints": 1, "names": "EX2"}]


def test_hostile_names_and_disclosures_are_shown_as_text(store):
    store.save(_run(HOSTILE), load_catalog(),
               outside=_endpoints(HOSTILE, raw=HOSTILE, detail=HOSTILE))
    overview = _page(OVERVIEW)
    assert list(_frame(overview, "finding")["namespace"]) == [HOSTILE]
    detail = _host_detail("EX1")
    assert HOSTILE in set(_frame(detail, "certainty")["raw"])
    failed = _host_detail("EX2")
    collection = _page(COLLECTION)
    assert HOSTILE in set(_frame(collection, "tls_verified")["failure_detail"])
    for at in (overview, detail, failed, collection):
        for source in _markdown(at):
            # Only escaped: a backslash before each character Markdown would read.
            assert not re.search(r"(?<!\\)<img|(?<!\\)\*\*bold", source), source
    assert any(HOSTILE in shown(t) for t in _markdown(failed))  # the failure, escaped


def test_a_store_without_an_outside_view_renders_every_page(store):
    store.save(_run(), load_catalog())
    for page in (OVERVIEW, HOSTS, "views/worklist.py", COLLECTION, "views/snapshots.py",
                 "views/catalog.py"):
        texts = [shown(t) for t in _markdown(_page(page))]  # no exception on any
        assert not any("Outside view:" in t for t in texts), page
        if page in (OVERVIEW, COLLECTION):
            assert any("outside view is off" in t for t in texts), page
    detail = " ".join(shown(t) for t in _markdown(_host_detail("EX1")))
    assert "not fingerprinted" in detail and "outside view is off" in detail


def test_an_outside_view_that_compared_nothing_is_not_shown_as_all_agreeing(store):
    """Review finding: every endpoint failed or untrusted read as a green "0 disagree"."""
    failed = (
        EndpointRecord("EX1", ViewKind.SERVER, "https://ex1.corp.example/", SEEN,
                       failure=Failure("timeout", "cut at the deadline", "raise the deadline")),
        EndpointRecord("EX3", ViewKind.SERVER, "https://ex3.corp.example/", SEEN, (),
                       TlsRecord("TLSv1.3", False, "self-signed certificate", "cd" * 32)),
    )
    store.save(_run(), load_catalog(), outside=failed)
    at = _page(OVERVIEW)
    assert not at.success or not any("Outside view" in s.value for s in at.success)
    warned = " ".join(shown(w.value) for w in at.warning)
    assert "Outside view: nothing could be compared." in warned
    assert "2 of 2 endpoints compared nothing (1 failed, 1 with an untrusted certificate)" in warned


def test_the_host_detail_shows_the_endpoint_the_reconciliation_read(store):
    """Review finding: the first stored match was shown; the reconciliation prefers the host's
    inventory name over its FQDN."""
    by_fqdn = EndpointRecord("ex1.corp.example", ViewKind.SERVER, "https://10.0.0.1/", SEEN,
                             _seen(PATCHED), TLS, AnswerRecord("/owa/", 200, 0.05))
    store.save(_run(), load_catalog(), outside=(by_fqdn, *_endpoints()))
    at = _host_detail("EX1")
    texts = " ".join(shown(t) for t in _markdown(at))
    assert "https://ex1.corp.example/" in texts and "https://10.0.0.1/" not in texts

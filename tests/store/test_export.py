"""Worklist rows and their CSV: urgency order, columns, formula injection neutralised."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from compliance.evaluate import assess
from compliance.models import Failure, Host, Observation, server_roles
from compliance.summary import summarise
from compliance.worklist import rank
from store.export import WORKLIST_COLUMNS, neutralise, to_csv, worklist_rows

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")",
                     id="equals"),
        pytest.param("+1+1", "'+1+1", id="plus"),
        pytest.param("-2+3", "'-2+3", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\tcmd", "'\tcmd", id="tab"),
        pytest.param("\rcmd", "'\rcmd", id="carriage-return"),
        pytest.param("EX01", "EX01", id="plain"),
        pytest.param("a=b", "a=b", id="equals-inside"),
        pytest.param(None, "", id="none"),
        pytest.param(3, "3", id="number"),
    ],
)
def test_neutralise(cell, expected):
    assert neutralise(cell) == expected


def _obs(name: str, build: str | None = None, failure: Failure | None = None,
         indicators: tuple[str, ...] = ()) -> Observation:
    return Observation(Host(name, fqdn=f"{name.lower()}.test.example",
                            roles=server_roles(["Mailbox"])),
                       NOW, "test", exsetup_version=build, failure=failure,
                       indicators=indicators)


def _rows(catalog):
    snapshot = assess([
        _obs("PATCHED", "15.1.2176.9"),
        _obs("=HYPERLINK(\"http://evil.example\",\"click\")", "15.1.2176.2"),
        _obs("DOWN", failure=Failure("connect", "refused", "open port 5986")),
        _obs("SHELL", "15.1.2176.9", indicators=("web shell in ECP log",)),
        _obs("OLD", "15.1.845.34"),
    ], catalog, NOW, source="test", tool_version="0.test")
    return worklist_rows(rank(summarise(a) for a in snapshot.assessments), 42, NOW.isoformat())


def test_worklist_holds_non_compliant_hosts_most_urgent_first(shipped_catalog):
    rows = _rows(shipped_catalog)
    assert [r["host"] for r in rows] == [
        "SHELL",  # patched, but compromise indicators: investigate first
        "=HYPERLINK(\"http://evil.example\",\"click\")", "OLD",  # vulnerable
        "DOWN",  # unknown
    ]
    assert [r["status"] for r in rows] == ["patched", "vulnerable", "vulnerable", "unknown"]
    assert all(r["snapshot_id"] == 42 for r in rows)
    assert all(r["action"] for r in rows)


def test_worklist_csv_has_the_columns_and_inert_cells(shipped_catalog):
    text = to_csv(_rows(shipped_catalog))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == WORKLIST_COLUMNS
    for required in ("host", "fqdn", "status", "product", "cu", "build", "action", "reason"):
        assert required in WORKLIST_COLUMNS
    hostile = parsed[1]
    assert hostile["host"].startswith("'=HYPERLINK")
    assert hostile["fqdn"].startswith("'=hyperlink")
    for row in parsed:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@")), value
    assert parsed[2]["host"] == "OLD"
    assert "KB" not in parsed[2]["action"]  # CU5 got no SU: the action is a CU update
    assert "CU23" in parsed[2]["action"]


def test_host_rows_have_exactly_the_host_columns(shipped_catalog):
    from compliance.evaluate import evaluate
    from compliance.models import Assessment, Host, Observation
    from store.export import HOST_COLUMNS, host_row

    observation = Observation(Host("EX1"), None, "test")
    row = host_row(summarise(Assessment(observation, evaluate(observation, shipped_catalog, NOW))))
    assert tuple(row) == HOST_COLUMNS  # an empty fleet's table gets the same columns


@pytest.mark.parametrize(("site", "dag", "owner"), [
    pytest.param("Paris", "DAG-PAR", "dag-team", id="dag-first"),
    pytest.param("PARIS", "dag-par", "dag-team", id="dag-case-insensitive"),
    pytest.param("pArIs", "", "paris-team", id="no-dag-site"),
    pytest.param("paris", "DAG-OTHER", "paris-team", id="dag-without-owner-site"),
    pytest.param("Lyon", "DAG-OTHER", "", id="neither"),
    pytest.param("", "", "", id="nothing-known"),
])
def test_the_owner_is_the_dags_then_the_sites_case_insensitively(site, dag, owner):
    from store.export import Owners

    owners = Owners.of({"Paris": "paris-team"}, {"Dag-Par": "dag-team"})
    assert owners.owner_for(site, dag) == owner
    assert Owners().owner_for(site, dag) == ""
    assert owners == Owners((("Paris", "paris-team"),), (("Dag-Par", "dag-team"),))
    assert hash(owners) == hash(Owners.of({"Paris": "paris-team"}, {"Dag-Par": "dag-team"}))


def test_worklist_rows_carry_the_owner_from_the_settings(shipped_catalog):
    from settings import load_settings
    from store.export import Owners

    config = load_settings({"worklist": {"site_owners": {"paris": "site-team"},
                                         "dag_owners": {"dag-par": "dag-team"}}}, {})
    observations = [Observation(Host(name, site="Paris", dag=dag), NOW, "test",
                                exsetup_version="15.1.845.34")
                    for name, dag in (("IN-DAG", "DAG-PAR"), ("ALONE", None))]
    snapshot = assess(observations, shipped_catalog, NOW, source="test", tool_version="0.test")
    items = rank(summarise(a) for a in snapshot.assessments)
    owners = Owners(config.site_owners, config.dag_owners)
    rows = worklist_rows(items, 1, NOW.isoformat(), owners)
    assert {r["host"]: r["owner"] for r in rows} == {"IN-DAG": "dag-team", "ALONE": "site-team"}
    assert [r["owner"] for r in worklist_rows(items, 1, NOW.isoformat())] == ["", ""]
    assert WORKLIST_COLUMNS.index("owner") == WORKLIST_COLUMNS.index("dag") + 1

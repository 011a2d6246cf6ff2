"""``[triage]`` ``first_scan_by`` and ``first_scan_within_days`` (compliance/triage.py): when the
directive's first full scan after the fix is due, as data; a bad value is a load error that
names the key."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from compliance.advisory import AdvisoryError, parse_advisory
from compliance.catalog import load_catalogs

MARCH = (Path(__file__).resolve().parents[2] / "compliance" / "data" / "advisories"
         / "2021-03-proxylogon.toml")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return tomllib.loads(MARCH.read_text(encoding="utf-8"))


def test_the_shipped_first_scan_due(raw: dict[str, Any]) -> None:
    # As written: noon on 5 April 2021 in US Eastern daylight time, as the directive was
    # reported; read as an instant in UTC.
    assert raw["triage"]["first_scan_by"] == datetime(2021, 4, 5, 12, 0,
                                                      tzinfo=timezone(timedelta(hours=-4)))
    triage = load_catalogs()[0].advisory.triage
    assert triage is not None
    assert (triage.first_scan_by, triage.first_scan_within_days) == (
        datetime(2021, 4, 5, 16, 0, tzinfo=UTC), 5)
    assert triage.first_scan_by.tzinfo is UTC


@pytest.mark.parametrize(("key", "value"), [
    pytest.param("first_scan_by", date(2021, 4, 5), id="by-a-date"),
    pytest.param("first_scan_by", datetime(2021, 4, 5, 12, 0), id="by-a-local-time"),
    pytest.param("first_scan_by", "2021-04-05T16:00:00Z", id="by-a-string"),
    pytest.param("first_scan_by", None, id="by-missing"),
    pytest.param("first_scan_within_days", 0, id="within-zero"),
    pytest.param("first_scan_within_days", -5, id="within-negative"),
    pytest.param("first_scan_within_days", True, id="within-a-boolean"),
    pytest.param("first_scan_within_days", 5.0, id="within-a-float"),
    pytest.param("first_scan_within_days", "5", id="within-a-string"),
    pytest.param("first_scan_within_days", None, id="within-missing"),
])
def test_a_bad_first_scan_due_is_a_load_error_naming_the_key(raw: dict[str, Any], key: str,
                                                             value: object) -> None:
    data = copy.deepcopy(raw)
    if value is None:
        data["triage"].pop(key)
    else:
        data["triage"][key] = value
    with pytest.raises(AdvisoryError, match=key):
        parse_advisory(data)


def test_the_days_may_be_one(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    data["triage"]["first_scan_within_days"] = 1
    triage = parse_advisory(data).triage
    assert triage is not None and triage.first_scan_within_days == 1

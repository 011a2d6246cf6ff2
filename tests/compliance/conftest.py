"""Shared fixtures for the compliance tests.

The data files are read here with ``csv`` and ``tomllib`` directly, so tests can derive
their expectations from the data without going through the code under test.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compliance.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "compliance" / "data"
BUILDS_CSV = DATA / "builds.csv"
ADVISORY_TOML = DATA / "advisories" / "2021-03-proxylogon.toml"

Key = tuple[int, int, int, int]


def key(text: str) -> Key:
    """A dotted build as a tuple of ints, parsed without compliance.builds."""
    parts = tuple(int(part) for part in text.split("."))
    assert len(parts) == 4, text
    return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class Oracle:
    """Expectations from the raw CSV and TOML, written independently of compliance/."""

    rows: list[dict[str, str]]
    advisory: dict[str, Any]

    def products(self) -> dict[str, dict[str, Any]]:
        return {p["product"]: p for p in self.advisory["products"]}

    def fix(self, product: str, cu: str) -> dict[str, Any] | None:
        rule = self.products().get(product)
        if rule is None:
            return None
        return next((f for f in rule["fixes"] if f["cu"] == cu), None)

    def cu_base(self, product: str, cu: str) -> Key | None:
        bases = {r["cu_base_build"] for r in self.rows if r["product"] == product and r["cu"] == cu}
        assert len(bases) <= 1, (product, cu, bases)
        return key(bases.pop()) if bases else None

    def fixed_from_base(self, product: str) -> Key | None:
        fixed_from = self.products()[product]["fixed_from"]
        return self.cu_base(product, fixed_from) if fixed_from else None

    def expected_status(self, row: dict[str, str]) -> str:
        """ExSetup-only grading of one catalogue row (2010 as if UM were installed).

        patched iff the build is at or above the fix for its (product, cu), or its CU's
        base is at or above the base of the product's ``fixed_from`` CU. A disputed row
        (kind=other) below "its fix" is unknown; for a disputed row "its fix" is the first
        build proven to contain the fixes: the CU's fixing build, or the ``fixed_from``
        base when the build itself is below that base (2019 CU9 15.2.858.2, which one
        source calls CU9 but which is below Microsoft's CU9 build 15.2.858.5).
        """
        build = key(row["build"])
        fix = self.fix(row["product"], row["cu"])
        at_fix = fix is not None and build >= key(fix["build"])
        first = self.fixed_from_base(row["product"])
        cu_fixed = first is not None and key(row["cu_base_build"]) >= first
        if row["kind"] == "other" and not at_fix and not (first is not None and build >= first):
            return "unknown"
        return "patched" if at_fix or cu_fixed else "vulnerable"


@pytest.fixture(scope="session")
def catalog(shipped_catalog: Catalog) -> Catalog:
    """The shipped catalogue under the short name these tests use."""
    return shipped_catalog


@pytest.fixture(scope="session")
def csv_rows() -> list[dict[str, str]]:
    with BUILDS_CSV.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def advisory_data() -> dict[str, Any]:
    with ADVISORY_TOML.open("rb") as handle:
        return tomllib.load(handle)


@pytest.fixture(scope="session")
def oracle(csv_rows: list[dict[str, str]], advisory_data: dict[str, Any]) -> Oracle:
    return Oracle(csv_rows, advisory_data)


@pytest.fixture(scope="session")
def row_of(csv_rows: list[dict[str, str]]) -> Callable[[str], dict[str, str]]:
    by_build = {row["build"]: row for row in csv_rows}
    return by_build.__getitem__

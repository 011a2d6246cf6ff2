"""Shared fixtures, and the CI rule that nothing may be skipped for a missing tool."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from compliance.catalog import Catalog, load_catalog
from store import SnapshotStore

# Hypothesis's 200 ms deadline per example measures the machine, not the code: on a slow or
# busy CI machine it failed a test whose examples were right (test_columns_round_trip took
# 316 ms an example on 2026-12-02). Tests that are about time measure it themselves.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

# The real test peers' session fixtures (slapd_standard, slapd_bulk, ...).
pytest_plugins = ["tests.peers.fixtures", "tests.peers.wsman_fixtures", "tests.peers.postgres_fixtures",
                  "tests.peers.kdc_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
# A fixed "now" for tests that must not depend on the clock.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def shipped_catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'compliance.db'}"


@pytest.fixture
def empty_store(store_url: str) -> Iterator[SnapshotStore]:
    opened = SnapshotStore.open(store_url)
    yield opened
    opened.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: .ci/run installs every tool the suite needs."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        print(f"\nCI: {skipped} test(s) skipped; in CI every test must run.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""The views' shared fixture: the dashboard run once on the demo fleet, and its store."""

from __future__ import annotations

import pytest

from store import SnapshotStore
from tests.views.apps import open_app


@pytest.fixture
def demo_app(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    at = open_app(monkeypatch, tmp_path)
    at.run()
    assert not at.exception, at.exception
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'compliance.db'}")
    yield at, store
    store.dispose()

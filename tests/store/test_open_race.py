"""Opening a new store from several processes at once: one migrates, the others wait for it.

Boundary: a dashboard and a collector started together on a fresh store both found it empty
and both created its tables; the second failed ("table meta already exists").
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _open(url: str, barrier: object, answers: object) -> None:
    sys.path.insert(0, str(ROOT))
    from store import SnapshotStore

    barrier.wait()  # type: ignore[attr-defined]
    try:
        SnapshotStore.open(url).dispose()
        answers.put("ok")  # type: ignore[attr-defined]
    except Exception as error:
        answers.put(f"{type(error).__name__}: {error}")  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new' / 'compliance.db'}"
    return request.getfixturevalue("postgres_url")


def test_four_processes_opening_a_new_store_together_all_succeed(fresh_url):
    from store import SnapshotStore

    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(4), context.Queue()
    openers = [context.Process(target=_open, args=(fresh_url, barrier, answers))
               for _ in range(4)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=120)
    assert [answers.get(timeout=5) for _ in openers] == ["ok"] * 4
    store = SnapshotStore.open(fresh_url)
    try:
        assert store.verify().ok and store.latest() is None
    finally:
        store.dispose()

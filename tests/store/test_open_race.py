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


def test_on_postgresql_a_migration_waits_past_the_stores_lock_timeout(postgres_url):
    """Review finding: PostgreSQL's lock_timeout (the store's, 30 s by default) also bounds an
    advisory lock wait, so a process waiting for another's long migration gave up early. Here
    another session holds the migration lock for 3 s and the store's lock timeout is 1 s."""
    import threading
    import time

    from sqlalchemy import create_engine, text

    from store import SnapshotStore
    from store.snapshots import MIGRATION_LOCK_KEY

    holder = create_engine(postgres_url)
    with holder.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        started = time.monotonic()
        outcome: list[BaseException | None] = []

        def open_store() -> None:
            try:
                SnapshotStore.open(postgres_url, lock_timeout=1.0).dispose()
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)

        opener = threading.Thread(target=open_store)
        opener.start()
        time.sleep(3.0)
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        opener.join(timeout=60)
    holder.dispose()
    assert outcome == [None], outcome
    assert time.monotonic() - started >= 3.0


def test_a_new_sqlite_store_is_switched_to_wal_only_under_the_migration_lock(tmp_path):
    """CI finding: three of four processes opening a new store together failed with
    "database is locked" from ``PRAGMA journal_mode=WAL``: SQLite skips its busy handler when
    waiting could deadlock, and the switch ran before the migration lock was taken. While
    another process holds that lock, an opener must not have touched the store's file."""
    import threading
    import time

    from filelock import FileLock

    from store import SnapshotStore

    database = tmp_path / "compliance.db"
    outcome: list[BaseException | None] = []

    def open_store() -> None:
        try:
            SnapshotStore.open(f"sqlite:///{database}").dispose()
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with FileLock(f"{database}.migrate.lock"):
        opener = threading.Thread(target=open_store)
        opener.start()
        time.sleep(1.5)
        assert not outcome and not database.exists(), "opened before the lock was free"
    opener.join(timeout=60)
    assert outcome == [None], outcome
    assert database.read_bytes()[18:20] == b"\x02\x02"  # WAL mode


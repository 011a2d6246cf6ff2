"""Faults end with the previous state intact and a clear message."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from collectors.directory import DirectoryConfig, DirectoryError, discover
from compliance.catalog import load_catalog
from compliance.evaluate import Policy, assess, evaluate
from compliance.models import Host, Observation, Status
from store import SnapshotStore, StoreError
from tests.peers.ad_tree import BULK_STANDARD_SIZE
from tests.peers.proxy import CuttingProxy

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _snapshot(catalog, at: datetime):
    return assess([Observation(Host("EX1"), at, "t", exsetup_version="15.1.2176.9")], catalog, at,
                  source="t", tool_version="t")


def test_a_full_database_loses_nothing_and_says_so(tmp_path):
    catalog = load_catalog()
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    store.save(_snapshot(catalog, NOW), catalog)

    def full(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO RESULTS"):
            raise OperationalError(statement, parameters, Exception("database or disk is full"))

    event.listen(store.engine, "before_cursor_execute", full)
    with pytest.raises(StoreError, match=r"disk is full.*nothing was written"):
        store.save(_snapshot(catalog, NOW + timedelta(days=1)), catalog)
    event.remove(store.engine, "before_cursor_execute", full)
    assert len(store.history()) == 1 and store.verify().ok
    store.dispose()


def test_a_database_locked_past_the_lock_timeout_loses_nothing_and_says_so(tmp_path):
    path = tmp_path / "store.db"
    catalog = load_catalog()
    store = SnapshotStore.open(f"sqlite:///{path}", lock_timeout=0.5)
    store.save(_snapshot(catalog, NOW), catalog)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock and does not let go
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"locked.*nothing was written.*more than 0.5 s.*"
                                             r"lock_timeout"):
            store.save(_snapshot(catalog, NOW + timedelta(days=1)), catalog)
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.4 < waited < 10  # it waited for the lock, then gave up
    assert len(store.history()) == 1 and store.verify().ok
    store.save(_snapshot(catalog, NOW + timedelta(days=1)), catalog)  # once free, saving works again
    assert len(store.history()) == 2 and store.verify().ok
    store.dispose()


def test_an_import_into_a_locked_database_exits_with_the_reason(tmp_path):
    path = tmp_path / "store.db"
    SnapshotStore.open(f"sqlite:///{path}").dispose()
    document = ROOT / "tests" / "collectors" / "probe_documents" / "exchange2016_cu19_patched.json"
    env = {**os.environ, "PROXYLOGON_LOCK_TIMEOUT": "0.5",
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = subprocess.run([sys.executable, "-m", "collectors", "import", str(document),
                               "--db", f"sqlite:///{path}", "--secrets",
                               os.devnull],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 1, done.stderr
    assert "database is locked" in done.stderr and "nothing was written" in done.stderr
    assert "Traceback" not in done.stderr
    store = SnapshotStore.open(f"sqlite:///{path}")
    assert store.history() == [] and store.verify().ok
    store.dispose()


def test_an_export_to_a_full_disk_fails_clearly(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(url)
    store.save(_snapshot(load_catalog(), NOW), load_catalog())
    store.dispose()
    done = subprocess.run([sys.executable, "-m", "store", "--db", url, "export", "--format",
                           "json", "--output", "/dev/full"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot write /dev/full" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("jump", [timedelta(days=-400), timedelta(hours=2), timedelta(days=30)])
def test_a_clock_that_jumps_never_makes_a_host_patched(jump):
    """Observed 'in the future' or long ago by a jumping clock: unknown, never patched."""
    catalog = load_catalog()
    observed = NOW + jump
    obs = Observation(Host("EX1"), observed, "t", exsetup_version="15.1.2176.9")
    verdict = evaluate(obs, catalog, NOW, Policy())
    assert verdict.status is Status.UNKNOWN


# -- a directory server that dies mid-search ----------------------------------------------------

CUT_AFTER = 1_000_000  # bytes of answer: past the first 1000-entry page of the 5000-server fleet


def _directory(peer, *urls: str) -> DirectoryConfig:
    return DirectoryConfig(servers=urls, bind_user=peer.service_dn, ca_file=str(peer.ca_file),
                           connect_timeout=3.0, timeout=10.0)


def test_a_directory_server_dying_mid_search_is_named_and_nothing_partial_is_kept(slapd_bulk):
    proxy = CuttingProxy(slapd_bulk.ldaps_port, cut_after=CUT_AFTER)
    url = f"ldaps://127.0.0.1:{proxy.port}"
    try:
        with pytest.raises(DirectoryError) as caught:
            discover(_directory(slapd_bulk, url), slapd_bulk.service_password)
    finally:
        proxy.close()
    assert proxy.cuts == 1  # the answer really was cut, after the first page
    error = caught.value
    assert error.server == url and error.operation.startswith("search of CN=Microsoft Exchange")
    assert "mid-search" in str(error) and "another server" in str(error)


def test_a_search_cut_on_one_domain_controller_is_redone_on_the_next(slapd_bulk, caplog):
    proxy = CuttingProxy(slapd_bulk.ldaps_port, cut_after=CUT_AFTER)
    dying = f"ldaps://127.0.0.1:{proxy.port}"
    try:
        with caplog.at_level(logging.WARNING, logger="collectors.directory"):
            found = discover(_directory(slapd_bulk, dying, slapd_bulk.ldaps_url),
                             slapd_bulk.service_password)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert found.server == slapd_bulk.ldaps_url
    assert len(found.servers) == BULK_STANDARD_SIZE  # all of them, from the second DC alone
    assert any(dying in record.getMessage() for record in caplog.records)


def test_an_answer_every_domain_controller_would_give_is_not_retried_elsewhere(slapd_bulk):
    """Only a failed connection moves on to the next DC: a wrong base is named as it is."""
    config = DirectoryConfig(servers=(slapd_bulk.ldaps_url, slapd_bulk.ldap_url),
                             bind_user=slapd_bulk.service_dn, ca_file=str(slapd_bulk.ca_file),
                             base="CN=Configuration,DC=nowhere,DC=example", connect_timeout=3.0,
                             timeout=10.0)
    with pytest.raises(DirectoryError) as caught:
        discover(config, slapd_bulk.service_password)
    assert caught.value.server == slapd_bulk.ldaps_url
    assert caught.value.operation.startswith("search of CN=Microsoft Exchange")


def test_collect_with_its_directory_dying_mid_search_keeps_the_previous_snapshot(slapd_bulk, tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(db)
    store.save(_snapshot(load_catalog(), NOW), load_catalog())
    store.dispose()
    proxy = CuttingProxy(slapd_bulk.ldaps_port, cut_after=CUT_AFTER)
    url = f"ldaps://127.0.0.1:{proxy.port}"
    config = tmp_path / "collection.toml"
    config.write_text(f'[ldap]\nservers = ["{url}"]\nbind_user = "{slapd_bulk.service_dn}"\n'
                      f'ca_file = "{slapd_bulk.ca_file}"\nconnect_timeout = 3\ntimeout = 10\n'
                      '[winrm]\nusername = "TEST\\\\svc-probe"\n')
    env = {**os.environ, "PROXYLOGON_LDAP_PASSWORD": slapd_bulk.service_password,
           "PROXYLOGON_WINRM_PASSWORD": "Dummy-Probe-Pass-1",
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    try:
        done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config",
                               str(config), "--db", db, "--secrets", os.devnull],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert done.returncode == 1, done.stderr
    assert f"error: {url}: search of" in done.stderr and "mid-search" in done.stderr
    assert "Traceback" not in done.stderr and slapd_bulk.service_password not in done.stderr
    store = SnapshotStore.open(db)
    assert len(store.history()) == 1 and store.verify().ok
    store.dispose()


def test_an_export_that_fails_over_an_existing_file_leaves_it_as_it_was(tmp_path,
                                                                        monkeypatch):
    import errno
    import os

    from store.__main__ import _write

    target = tmp_path / "evidence.json"
    target.write_text("the export of last week")

    def full_disk(_descriptor: int) -> None:  # the data only reaches the disk here
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _write(target, b"{" + b" " * 100_000 + b"}")
    assert target.read_text() == "the export of last week"
    assert [p.name for p in tmp_path.iterdir()] == ["evidence.json"]  # no temporary file left
    monkeypatch.undo()
    _write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["evidence.json"]


@pytest.mark.parametrize("keep", ["0", "-5"])
def test_prune_refuses_to_keep_fewer_than_one_snapshot(tmp_path, keep):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(url)
    store.save(_snapshot(load_catalog(), NOW), load_catalog())
    store.dispose()
    done = subprocess.run([sys.executable, "-m", "store", "--db", url, "prune", "--keep", keep],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "keep at least 1" in done.stderr
    store = SnapshotStore.open(url)
    try:
        assert not store.latest().pruned and store.audit_log() == []
    finally:
        store.dispose()


@pytest.mark.parametrize(("args", "environ", "says"), [
    (["--db", "not a url", "history"], {}, "not a database URL"),
    (["--db", "postgresql+psycopg://u:s3cret-pw@127.0.0.1:1/x", "history"], {},
     "cannot open store"),
    (["history"], {"PROXYLOGON_MAX_AGE_DAYS": "1e308"}, "must be a positive number up to 36500"),
    (["history"], {"PROXYLOGON_LOCK_TIMEOUT": "1e12"}, "must be a positive number up to 86400"),
    (["--db", "GARBAGE", "verify"], {}, "file is not a database"),
])
def test_a_bad_store_or_setting_is_one_line_never_a_traceback(tmp_path, args, environ, says):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite, it only has its name" * 100)
    args = [f"sqlite:///{garbage}" if a == "GARBAGE" else a for a in args]
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data"), **environ}
    done = subprocess.run([sys.executable, "-m", "store", "--secrets",
                           os.devnull, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines
    assert "s3cret-pw" not in done.stderr


def _store_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "store", "--secrets", os.devnull,
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data"),
                               **(env or {})})


def _one_line(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines


def _filled(tmp_path: Path, count: int = 3) -> Path:
    path = tmp_path / "store.db"
    catalog = load_catalog()
    store = SnapshotStore.open(f"sqlite:///{path}")
    for day in range(count):
        at = NOW + timedelta(days=day)
        store.save(assess([Observation(Host(f"EX{i}"), at, "t", exsetup_version="15.1.2176.2")
                           for i in range(300)], catalog, at, source="t", tool_version="t"),
                   catalog)
    store.dispose()
    return path


def test_verify_of_a_file_damaged_mid_way_is_one_line(tmp_path):
    path = _filled(tmp_path)
    size = path.stat().st_size
    with path.open("r+b") as handle:  # garbage over the middle of the file
        handle.seek(size // 2)
        handle.write(os.urandom(16384))
    done = _store_cli(tmp_path, "--db", f"sqlite:///{path}", "verify")
    assert done.returncode in (1, 2), done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith(("verification failed:", "FAIL", "error:")), lines


def test_export_from_a_read_only_store_is_one_line_and_exports_nothing(tmp_path):
    path = _filled(tmp_path, 1)
    out = tmp_path / "hosts.csv"
    done = _store_cli(tmp_path, "--db", f"sqlite:///file:{path}?mode=ro&uri=true", "export",
                      "--format", "csv", "--output", str(out))
    _one_line(done, 2, "read-only")
    assert not out.exists()  # an export nobody could audit is not made


@pytest.mark.parametrize("args", [["export", "--format", "csv"], ["prune", "--keep", "1"]])
def test_export_or_prune_while_another_writer_holds_the_lock_is_one_line(tmp_path, args):
    path = _filled(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = _store_cli(tmp_path, "--db", f"sqlite:///{path}", *args,
                          env={"PROXYLOGON_LOCK_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _one_line(done, 2, "database is locked")
    assert not done.stdout
    store = SnapshotStore.open(f"sqlite:///{path}")
    try:
        assert not any(s.pruned for s in store.history()) and store.verify().ok
    finally:
        store.dispose()


def test_collect_with_a_data_directory_it_cannot_write_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("name\nEX1\n")
    config = tmp_path / "collection.toml"
    config.write_text('[winrm]\nusername = "svc"\n')
    done = subprocess.run(
        [sys.executable, "-m", "collectors", "collect", "--config", str(config), "--inventory",
         str(inventory), "--db", f"sqlite:///{tmp_path / 'store.db'}", "--secrets",
         os.devnull], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PROXYLOGON_DATA_DIR": str(blocker / "data"),
             "PROXYLOGON_WINRM_PASSWORD": "dummy"})
    _one_line(done, 1, "cannot write the collection lock")
    assert "nothing was collected" in done.stderr

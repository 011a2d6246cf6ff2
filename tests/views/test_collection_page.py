"""AppTest runs views/collection.py on its own: runs, failures, collect now, upload import.

Each test has its own data directory, hence its own store URL: cached reads and the runner
registry (both keyed by the URL) do not leak between tests.
"""

from __future__ import annotations

import math
import sqlite3
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from collectors import background
from collectors import job as job_module
from collectors.demo import seed_demo
from collectors.job import run_lock
from collectors.probe import MAX_DOCUMENT_BYTES
from compliance.catalog import load_catalog
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import HostBehavior, WsmanPeer
from views.markdown import shown

ROOT = Path(__file__).resolve().parents[2]
CONFIG_ENV = "PROXYLOGON_COLLECTION_CONFIG"
INVENTORY_ENV = "PROXYLOGON_COLLECTION_INVENTORY"
WAIT = 60.0


def _page(monkeypatch: pytest.MonkeyPatch, data_dir: Path, config: Path | None = None,
          inventory: Path | None = None) -> AppTest:
    monkeypatch.setenv("PROXYLOGON_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PROXYLOGON_DEMO", "false")
    monkeypatch.delenv("PROXYLOGON_STORE_URL", raising=False)
    for name, value in ((CONFIG_ENV, config), (INVENTORY_ENV, inventory)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    return AppTest.from_file(str(ROOT / "views" / "collection.py"), default_timeout=60)


def _url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'compliance.db'}"


def _texts(elements) -> str:
    return " ".join(shown(e.value) for e in elements)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def demo_store(tmp_path):
    store = SnapshotStore.open(_url(tmp_path))
    seed_demo(store, load_catalog(), datetime.now(UTC))
    yield store
    store.dispose()


def test_an_empty_store_says_there_is_no_snapshot_yet(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception, at.exception
    assert "No snapshot yet" in _texts(at.info)
    assert len(at.dataframe) == 0 and len(at.expander) == 0


def test_the_demo_store_shows_every_run_and_the_latest_failures_by_reason(monkeypatch, tmp_path,
                                                                          demo_store):
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception, at.exception
    history = demo_store.history()
    runs = at.dataframe[0].value
    assert len(runs) == len(history) == 8
    assert list(runs["id"]) == [info.id for info in reversed(history)]  # newest first
    assert set(runs["source"]) == {"demo"}
    assert list(runs["fleet"]) == [info.host_count for info in reversed(history)]
    assert set(runs["observed"]) == {68}  # every demo run observes the whole demo fleet
    assert list(runs["coverage"]) == [f"{info.fresh_count}/68" for info in reversed(history)]
    assert all(info.fresh_count < 68 for info in history)  # failures are not coverage
    assert "demo" in set(runs["scope"]).pop()
    expected_failures = [sum(1 for a in demo_store.assessments(info.id) if a.observation.failure)
                         for info in reversed(history)]
    assert list(runs["failures"]) == expected_failures

    latest = history[-1]
    failed = Counter(a.observation.failure.reason for a in demo_store.assessments(latest.id)
                     if a.observation.failure)
    assert failed, "the demo's latest snapshot has failures"
    labels = {e.label: e for e in at.expander}
    assert len(labels) == len(failed)
    for reason, count in failed.items():
        (label,) = [lbl for lbl in labels if lbl.startswith(f"**{reason}**:")]
        assert f"{count} host" in label
        assert "**Fix:**" in _texts(labels[label].markdown)
    assert f"Failures in snapshot #{latest.id}" in _texts(at.subheader)


def test_without_a_collection_config_there_is_no_button_but_the_how_to(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception
    assert "collect_now" not in [b.key for b in at.button]
    info = _texts(at.info)
    assert CONFIG_ENV in info and "collection.example.toml" in info
    assert "python -m collectors collect --config" in _texts(at.code)


def test_a_broken_collection_config_is_named_and_offers_no_run(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path / "data", config=tmp_path / "missing.toml")
    at.run()
    assert not at.exception
    assert "missing.toml not found" in _texts(at.error)
    assert at.button(key="collect_now").disabled


def _winrm_config(tmp_path: Path, peer: WsmanPeer) -> Path:
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n"
                      f'username = "{peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{peer.ca_file}"\n'
                      "deadline_seconds = 10\nread_timeout_seconds = 3\n"
                      "operation_timeout_seconds = 2\nretries = 0\n")
    return config


@pytest.mark.integration
def test_collect_now_runs_the_collection_in_the_background_and_shows_the_result(
        monkeypatch, tmp_path, wsman_peer):
    hosts = {"PAGE-EX01": HostBehavior(stdout=dumps(probe_document(
                 "PAGE-EX01", "15.1.2176.9", kbs=["KB5000871"], collected_at=_now()))),
             "PAGE-EX02": HostBehavior(stdout=dumps(probe_document(
                 "PAGE-EX02", "15.2.792.3", collected_at=_now()))),
             "PAGE-AUTH": HostBehavior(http_status=401)}
    lines = ["name,winrm_url"]
    for name, behavior in hosts.items():
        wsman_peer.set_host(name, behavior)
        lines.append(f"{name},{wsman_peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("PROXYLOGON_WINRM_PASSWORD", wsman_peer.password)
    data_dir = tmp_path / "data"
    at = _page(monkeypatch, data_dir, config=_winrm_config(tmp_path, wsman_peer),
               inventory=inventory)
    at.run()
    assert not at.exception, at.exception
    assert "No snapshot yet" in _texts(at.info)
    assert "hosts.csv (3 hosts)" in _texts(at.caption)

    at.button(key="collect_now").click().run()
    assert not at.exception, at.exception
    runner = background.runner_for(_url(data_dir))
    assert runner.wait(WAIT)
    state = runner.state()
    assert state.phase is background.Phase.SAVED, state.error
    assert (state.total, state.done, state.failed) == (3, 3, 1)

    at.run()
    assert not at.exception, at.exception
    assert "Last collection: snapshot #1 saved: 3 hosts" in _texts(at.success)
    runs = at.dataframe[0].value
    assert list(runs["source"]) == ["collect"] and list(runs["failures"]) == [1]
    assert list(runs["coverage"]) == ["2/3"] and list(runs["fleet"]) == [3]
    (auth,) = at.expander
    assert auth.label.startswith("**auth**: 1 host")
    assert "Remote Management Users" not in _texts(auth.markdown)  # the auth hint, not another
    assert "credentials were rejected" in _texts(auth.markdown)
    assert wsman_peer.password not in _texts(at.markdown) + _texts(at.success)


def test_the_page_shows_a_running_job_with_its_progress_to_every_tab(monkeypatch, tmp_path):
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name\nEX01\n")
    config = tmp_path / "collection.toml"
    config.write_text('[winrm]\nusername = "CORP\\\\svc"\n')
    data_dir = tmp_path / "data"
    at = _page(monkeypatch, data_dir, config=config, inventory=inventory)

    release = background.threading.Event()

    def job(hooks: job_module.Hooks) -> str:
        hooks.started(4)
        hooks.progress(True)
        release.wait(WAIT)
        return "snapshot #9 saved: 4 hosts"

    runner = background.runner_for(_url(data_dir))
    assert runner.start(job)  # as if another tab had clicked
    try:
        at.run()
        assert not at.exception, at.exception
        (bar,) = at.get("progress")
        assert bar.proto.text == "1/4 hosts, 1 failed"
        assert at.button(key="collect_now").disabled
        assert "collect_stop" in [b.key for b in at.button]
    finally:
        release.set()
    assert runner.wait(WAIT)
    at.run()
    assert not at.exception, at.exception
    assert "Last collection: snapshot #9 saved: 4 hosts" in _texts(at.success)
    assert not at.button(key="collect_now").disabled


def test_collect_now_while_another_process_holds_the_lock_says_so(monkeypatch, tmp_path):
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name\nEX01\n")
    config = tmp_path / "collection.toml"
    config.write_text('[winrm]\nusername = "CORP\\\\svc"\n')
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PROXYLOGON_WINRM_PASSWORD", "unused")
    at = _page(monkeypatch, data_dir, config=config, inventory=inventory)
    at.run()
    with run_lock(data_dir):  # a scheduled `python -m collectors collect` in progress
        at.button(key="collect_now").click().run()
        assert background.runner_for(_url(data_dir)).wait(WAIT)
    at.run()
    assert not at.exception, at.exception
    warning = _texts(at.warning)
    assert "Another collection is running" in warning and "collect.lock" in warning


def test_upload_imports_a_valid_document_and_names_a_broken_one(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert at.button(key="import_now").disabled
    good = dumps(probe_document("UP-EX01", "15.1.2176.9", collected_at=_now())).encode()
    at.file_uploader(key="import_files").set_value([
        ("UP-EX01.json", good, "application/json"),
        ("broken.json", b'{"schema": "exchange-probe/1"}', "application/json"),
    ]).run()
    at.button(key="import_now").click().run()
    assert not at.exception, at.exception
    assert "Imported: snapshot #1 saved: 1 hosts" in _texts(at.success)
    (error,) = at.error
    assert "Rejected broken.json" in shown(error.value)
    runs = at.dataframe[0].value  # redrawn after the import: the new snapshot is listed
    assert list(runs["source"]) == ["import"] and list(runs["observed"]) == [1]

    store = SnapshotStore.open(_url(tmp_path))
    try:
        latest = store.latest()
        assert latest is not None and latest.source == "import"
        (assessment,) = store.assessments(latest.id)
        assert assessment.observation.source == "import:UP-EX01.json"
    finally:
        store.dispose()


def test_the_upload_limit_is_the_probe_documents_limit_in_config_and_help(monkeypatch, tmp_path):
    """Issue 16: the uploader said "200MB per file" (Streamlit's default) while the help said
    5 MB. Streamlit's MB are MiB (maxUploadSize * 1024 * 1024 bytes)."""
    limit_mb = math.ceil(MAX_DOCUMENT_BYTES / 2**20)
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] == limit_mb
    assert (limit_mb - 1) * 2**20 < MAX_DOCUMENT_BYTES <= limit_mb * 2**20  # the smallest
    at = _page(monkeypatch, tmp_path)
    at.run()
    uploader = at.file_uploader(key="import_files")
    assert uploader.proto.max_upload_size_mb == limit_mb
    assert f"at most {MAX_DOCUMENT_BYTES / 2**20:g} MB" in uploader.help
    assert "200" not in uploader.help


def test_the_uploaders_limit_and_help_follow_max_document_bytes(monkeypatch, tmp_path):
    """Derived from collectors.probe.MAX_DOCUMENT_BYTES, not a second literal."""
    import collectors.probe

    monkeypatch.setattr(collectors.probe, "MAX_DOCUMENT_BYTES", 3 * 2**20)
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception, at.exception
    uploader = at.file_uploader(key="import_files")
    assert uploader.proto.max_upload_size_mb == 3
    assert "at most 3 MB" in uploader.help and "5 MB" not in uploader.help
    assert "at most 3 MB" in " ".join(s.help for s in at.subheader if s.help)


def test_upload_of_only_broken_files_imports_nothing(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    at.run()
    at.file_uploader(key="import_files").set_value(("bad.json", b"{", "application/json")).run()
    at.button(key="import_now").click().run()
    assert not at.exception, at.exception
    assert "Rejected bad.json: not JSON" in _texts(at.error)
    assert "Nothing was imported" in _texts(at.warning)
    assert "No snapshot yet" in _texts(at.info)


def test_an_import_into_a_locked_store_says_so_and_keeps_no_old_success(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    monkeypatch.setenv("PROXYLOGON_LOCK_TIMEOUT", "0.3")
    at.run()
    good = dumps(probe_document("UP-EX01", "15.1.2176.9", collected_at=_now())).encode()
    at.file_uploader(key="import_files").set_value(("UP-EX01.json", good, "application/json")).run()
    at.button(key="import_now").click().run()
    assert "Imported: snapshot #1" in _texts(at.success)

    holder = sqlite3.connect(tmp_path / "compliance.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the store
    try:
        at.button(key="import_now").click().run()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not at.exception, at.exception
    assert "Import failed" in _texts(at.error) and "database is locked" in _texts(at.error)
    assert "Imported:" not in _texts(at.success)  # the first import's success is not repeated
    store = SnapshotStore.open(_url(tmp_path))
    try:
        assert len(store.history()) == 1 and store.verify().ok
    finally:
        store.dispose()


def test_an_upload_after_the_demo_keeps_the_fleet_and_its_failures(monkeypatch, tmp_path,
                                                                   demo_store):
    demo_latest = demo_store.latest()
    assert demo_latest is not None
    demo_failed = {a.observation.host.name for a in demo_store.assessments(demo_latest.id)
                   if a.observation.failure}
    at = _page(monkeypatch, tmp_path)
    at.run()
    good = dumps(probe_document("EXHAND01", "15.1.2176.2", collected_at=_now())).encode()
    at.file_uploader(key="import_files").set_value([
        ("probe-EXHAND01.json", good, "application/json")]).run()
    at.button(key="import_now").click().run()
    assert not at.exception, at.exception
    assert ("Imported: snapshot #9 saved: 1 hosts observed by this run, 68 carried forward; "
            "fleet 69 hosts") in _texts(at.success)
    runs = at.dataframe[0].value
    top = runs.iloc[0]
    assert (top["source"], top["observed"], top["fleet"], top["failures"]) == ("import", 1, 69, 0)
    assert top["scope"] == "import of 1 probe documents"
    # The hosts the demo's last collection could not read still show, with that run's snapshot.
    listed = {}
    for expander in at.expander:
        for frame in expander.dataframe:
            listed.update(dict(zip(frame.value["host"], frame.value["snapshot"], strict=True)))
    assert set(listed) == demo_failed and set(listed.values()) == {demo_latest.id}


def test_a_failed_attempt_on_a_host_with_a_fresh_reading_is_listed_for_its_run(monkeypatch,
                                                                               tmp_path):
    from compliance.evaluate import assess
    from compliance.fleet import IMPORT, INVENTORY
    from compliance.models import Failure, Host, Observation

    catalog = load_catalog()
    now = datetime.now(UTC)
    store = SnapshotStore.open(_url(tmp_path))
    try:
        store.save(assess([Observation(Host("EXHAND01"), now, "import:probe.json",
                                       exsetup_version="15.1.2176.9")], catalog, now,
                          source="import", tool_version="t", scopes=lambda _h: (IMPORT,)),
                   catalog)
        collected = store.save(assess(
            [Observation(Host("EXHAND01"), now, "winrm",
                         failure=Failure("connect", "connection refused"))],
            catalog, now, source="collect", tool_version="t",
            scopes=lambda _h: (INVENTORY,)), catalog)
    finally:
        store.dispose()
    at = _page(monkeypatch, tmp_path)
    at.run()
    assert not at.exception, at.exception
    runs = at.dataframe[0].value
    assert list(runs["failures"]) == [1, 0] and list(runs["observed"]) == [0, 1]
    (connect,) = at.expander
    assert connect.label.startswith("**connect**: 1 host")
    (table,) = connect.dataframe
    assert list(table.value["host"]) == ["EXHAND01"] and list(table.value["snapshot"]) == [
        collected]

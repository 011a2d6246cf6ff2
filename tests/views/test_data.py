"""views/data.py's audited downloads: the file is handed over only once its export is recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st

from settings import Settings
from store import SnapshotStore
from store.snapshots import StoreError
from views import data


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'compliance.db'}",
                    signing_key=None, lock_timeout=5.0, collection_config=None,
                    collection_inventory=None, demo=False, max_age=timedelta(days=7))


def _exports(config: Settings) -> list[dict[str, object]]:
    store = SnapshotStore.open(config.store_url)
    try:
        return [e for e in store.audit_log() if e["action"] == "export"]
    finally:
        store.dispose()


def test_the_file_comes_with_its_record_and_nothing_before_the_click(tmp_path):
    config = _settings(tmp_path)
    built: list[int] = []
    st.session_state["who"] = "ana@corp.example"
    try:
        download = data.audited(config, 7, "worklist CSV (3 hosts)",
                                lambda: built.append(1) or b"host\r\n")
    finally:
        del st.session_state["who"]  # the click comes later, outside the script run
    assert not built and not _exports(config)
    assert download() == b"host\r\n"
    (entry,) = _exports(config)
    assert (entry["who"], entry["snapshot_id"], entry["detail"]) == (
        "ana@corp.example", 7, "worklist CSV (3 hosts)")


def test_a_file_that_fails_to_build_is_not_recorded(tmp_path):
    config = _settings(tmp_path)
    SnapshotStore.open(config.store_url).dispose()

    def broken() -> bytes:
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        data.audited(config, 1, "evidence bundle", broken)()
    assert not _exports(config)


def test_an_export_that_cannot_be_recorded_is_not_handed_over(tmp_path):
    (tmp_path / "compliance.db").mkdir()  # the store cannot be opened for writing
    download = data.audited(_settings(tmp_path), 1, "one-page report", lambda: b"<html>")
    with pytest.raises(StoreError, match="cannot open store"):
        download()


def test_the_host_table_and_groups_agree_with_the_stored_summaries(tmp_path, shipped_catalog):
    from datetime import UTC, datetime

    from collectors.demo import seed_demo
    from compliance.worklist import PRIORITY_NAMES, priority

    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    store = SnapshotStore.open(url)
    try:
        latest = seed_demo(store, shipped_catalog, datetime(2026, 11, 25, tzinfo=UTC))[-1]
        summaries = store.summaries(latest, shipped_catalog)
    finally:
        store.dispose()
    table = data.host_table(url, latest)
    assert tuple(table.columns) == data.HOST_TABLE_COLUMNS
    assert list(table["host"]) == [s.host for s in summaries]
    wanted = [("" if (p := priority(s.status, s.flags, s.investigation)) is None
               else PRIORITY_NAMES[p])
              for s in summaries]
    assert list(table["need"]) == wanted
    groups = data.fleet_groups(url, latest)
    assert int(groups["hosts"].sum()) == len(summaries)
    by_need = groups.groupby("need")["hosts"].sum().to_dict()
    assert by_need == {need: wanted.count(need) for need in set(wanted)}

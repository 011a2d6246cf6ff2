"""Issue 12, terminal output is inert: untrusted values printed by the command lines (host
names, file names, reasons) cannot clear the screen, ring the bell or forge a line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.fleet import IMPORT
from compliance.models import Host, Observation
from store import SnapshotStore
from store.export import inert

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOSTILE = "EX\x1b[2J\x07\nfake:  patched -> patched\u202e"


@pytest.mark.parametrize(("raw", "shown"), [
    ("EX01", "EX01"),
    ("EX\x1b[2J", "EX\\x1b[2J"),
    ("a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"),
    ("left\u202eright", "left\\u202eright"),
    ("Zürich", "Zürich"),
    (None, ""),
])
def test_inert(raw, shown):
    assert inert(raw) == shown


def _cli(module: str, *args: str, cwd_env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(cwd_env or {})})


def _one_host_store(tmp_path: Path, host: str) -> tuple[str, SnapshotStore]:
    """A store holding one snapshot of one patched host named ``host``."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    catalog = load_catalog()
    store = SnapshotStore.open(url)
    store.save(assess([Observation(Host(host), NOW, "t", exsetup_version="15.1.2176.9")],
                      catalog, NOW, source="import", tool_version="t"), catalog)
    return url, store


def test_store_diff_prints_a_hostile_host_name_inertly(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    catalog = load_catalog()
    store = SnapshotStore.open(url)
    for at, build in ((NOW - timedelta(days=1), "15.1.2176.2"), (NOW, "15.1.2176.9")):
        store.save(assess([Observation(Host(HOSTILE), at, "t", exsetup_version=build)], catalog,
                          at, source="import", tool_version="t", scopes=lambda _h: (IMPORT,)),
                   catalog)
    store.dispose()
    done = _cli("store", "--db", url, "--secrets", os.devnull, "diff", "1",
                "2")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "EX\\x1b[2J\\x07\\x0afake" in done.stdout
    assert not any(line.startswith("fake") for line in done.stdout.splitlines())


def test_an_import_rejection_prints_a_hostile_file_name_inertly(tmp_path):
    bad = tmp_path / "probe-\x1b[2J\x07.json"
    bad.write_text('{"schema": "exchange-probe/1"}')
    done = _cli("collectors", "import", str(bad), "--db", f"sqlite:///{tmp_path / 's.db'}",
                "--secrets", os.devnull,
                cwd_env={"PROXYLOGON_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 1
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "probe-\\x1b[2J\\x07.json" in done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("args", [["audit"], ["export", "--format", "csv"]])
def test_data_printed_to_a_terminal_is_inert_and_to_a_pipe_exact(tmp_path, args):
    from store.__main__ import main

    url, store = _one_host_store(tmp_path, HOSTILE)
    store.record(HOSTILE, "import", 1, HOSTILE)
    store.dispose()
    base = ["--db", url, "--secrets", os.devnull]
    terminal, pipe = _Terminal(), io.StringIO()
    assert main([*base, *args], stdout=terminal, stderr=io.StringIO()) == 0
    assert main([*base, *args], stdout=pipe, stderr=io.StringIO()) == 0
    assert "\x1b" not in terminal.getvalue() and "\u202e" not in terminal.getvalue()
    assert "EX\\x1b[2J\\x07" in terminal.getvalue()
    assert "\x1b[2J\x07" in pipe.getvalue()  # a file or a pipe gets the data as stored


def test_history_and_verify_print_stored_values_inertly(tmp_path):
    from sqlalchemy import text

    url, store = _one_host_store(tmp_path, "EX1")
    store.record("alice", "import", 1, "one")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE snapshots SET counts = :c"),
                     {"c": '{"\\u001b[2J\\u0007EVIL": 2}'})
        conn.execute(text("UPDATE audit_log SET sequence = 7"))
        conn.execute(text("UPDATE audit_log SET who = :w"), {"w": "x\x1b[31m"})
    store.dispose()
    for args in (["history"], ["verify"]):
        done = _cli("store", "--db", url, "--secrets", os.devnull, *args)
        assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout, args


def test_a_bundle_without_output_is_refused_before_it_is_audited(tmp_path):
    url, store = _one_host_store(tmp_path, "EX1")
    done = _cli("store", "--db", url, "--secrets", os.devnull, "export",
                "--format", "bundle")
    assert done.returncode == 2 and "give --output" in done.stderr
    assert store.audit_log() == []
    store.dispose()

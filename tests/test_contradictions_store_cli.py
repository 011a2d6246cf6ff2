"""``python -m store --help`` against what the command does (issue 16, item 9).

- every subcommand is listed in ``--help`` with a one-line help (``history`` had none, so the
  list under "positional arguments" skipped it);
- every exit status the help's "Exit status" paragraph promises is the one the command
  returns: 0 ok; 1 verification failed or nothing to export (an empty result); 2 usage,
  settings or store errors.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.demo import seed_demo
from compliance.catalog import load_catalog
from store import SnapshotStore

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, db: str | None = None, env: dict[str, str] | None = None,
         cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PROXYLOGON_SIGNING_KEY", "PROXYLOGON_STORE_URL")}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    command = [sys.executable, "-m", "store", "--secrets", os.devnull]
    if db is not None:
        command += ["--db", db]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=environ)


def _help() -> str:
    done = _cli("--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_subcommand_is_listed_in_the_help_with_a_one_line_help():
    text = _help()
    usage_choices = re.search(r"\{([a-z,-]+)\}", text)
    assert usage_choices, text
    commands = usage_choices.group(1).split(",")
    assert {"history", "verify", "diff", "export", "reevaluate", "prune", "adopt-key",
            "retire", "audit"} <= set(commands)
    # argparse lists a subcommand under "positional arguments" only when it has a help.
    listed = text[text.index("positional arguments:"):text.index("options:")]
    for command in commands:
        line = re.search(rf"^    {re.escape(command)}\s+(\S.*)$", listed, re.MULTILINE)
        assert line, f"{command} has no one-line help in --help:\n{listed}"


def _exit_paragraph() -> str:
    text = " ".join(_help().split())
    start = text.index("Exit status:")
    return text[start:text.index("positional arguments")]


def test_the_help_promises_1_for_nothing_to_export_and_2_for_usage_errors():
    promised = _exit_paragraph()
    one = promised[promised.index("; 1 "):promised.index("; 2 ")]
    two = promised[promised.index("; 2 "):]
    assert "verification failed" in one and "nothing to export" in one, promised
    assert "usage" in two and "settings" in two and "nothing to export" not in two, promised


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'compliance.db'}"
    store = SnapshotStore.open(url)
    try:
        seed_demo(store, load_catalog(), datetime.now(UTC))
    finally:
        store.dispose()
    return url


@pytest.fixture
def pruned_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pruned.db'}"
    store = SnapshotStore.open(url)
    try:
        seed_demo(store, load_catalog(), datetime.now(UTC))
        assert store.prune(1, "test") == 7
    finally:
        store.dispose()
    return url


def test_exit_0_when_it_worked(demo_url, tmp_path):
    for args in (["history"], ["verify"], ["diff", "1", "latest"], ["reevaluate"],
                 ["export", "--format", "csv"], ["audit"]):
        done = _cli(*args, db=demo_url)
        assert done.returncode == 0, (args, done.stderr)


def test_exit_1_when_verification_fails(tmp_path):
    url = f"sqlite:///{tmp_path / 'tampered.db'}"
    store = SnapshotStore.open(url)
    try:
        ids = seed_demo(store, load_catalog(), datetime.now(UTC))
    finally:
        store.dispose()
    with sqlite3.connect(tmp_path / "tampered.db") as conn:
        conn.execute("UPDATE results SET status = 'patched' WHERE snapshot_id = ?", (ids[2],))
    done = _cli("verify", db=url)
    assert done.returncode == 1, done.stderr
    assert f"FAIL snapshot #{ids[2]}" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("verification failed:")

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    done = _cli("verify", "--bundle", str(bad))
    assert done.returncode == 1 and done.stderr.startswith("verification failed:"), done.stderr


def test_exit_1_when_there_is_nothing_to_export(tmp_path, pruned_url):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    SnapshotStore.open(empty).dispose()
    cases = [
        (empty, ["export", "--format", "csv"], "holds no snapshot yet"),
        (empty, ["export", "--format", "json", "--output", str(tmp_path / "x.json")],
         "holds no snapshot yet"),
        (pruned_url, ["export", "--as-of", "2000-01-01T00:00Z", "--format", "csv"],
         "no snapshot at or before"),
        (pruned_url, ["export", "--snapshot", "1", "--format", "json"], "was pruned"),
    ]
    for url, args, says in cases:
        done = _cli(*args, db=url)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nothing to export: "), lines
        assert says in lines[0] and not done.stdout
    assert not (tmp_path / "x.json").exists()


def test_exit_2_on_usage_settings_and_store_errors(tmp_path, demo_url):
    cases = [
        (["bogus"], demo_url, {}, "invalid choice"),                      # usage (argparse)
        (["export"], demo_url, {}, "--format"),                           # usage (argparse)
        (["export", "--format", "bundle"], demo_url, {}, "give --output"),  # usage
        (["export", "--snapshot", "x", "--format", "csv"], demo_url, {}, "neither an id"),
        (["export", "--snapshot", "99", "--format", "csv"], demo_url, {},
         "no snapshot with id 99"),                                       # an id that is not there
        (["history"], demo_url, {"PROXYLOGON_MAX_AGE_DAYS": "x"}, "max_age_days"),  # settings
        (["history"], "not a url", {}, "not a database URL"),             # store
    ]
    for args, url, env, says in cases:
        done = _cli(*args, db=url, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)

"""Issue 12, bounded and strict input: `collectors import` of files that would hang or exhaust
it, and probe documents that say two things or hide a character in a build. Each bad file is
refused by name and the good file given with it is still imported. Run under an address-space
limit, so a blow-up fails the test instead of the machine."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.probe import ProbeDocumentError, load_document, read_document
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document

ROOT = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 2 * 1024**3  # the interpreter, SQLAlchemy and jsonschema fit well inside this


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.json"
    path.write_text(dumps(probe_document("EXGOOD", "15.1.2176.9", kbs=["KB5000871"],
                                         collected_at=datetime.now(UTC).strftime(
                                             "%Y-%m-%dT%H:%M:%SZ"))))
    return path


def _import(tmp_path: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    return subprocess.run(
        [sys.executable, "-m", "collectors", "import", *map(str, paths), "--db", db,
         "--secrets", os.devnull], cwd=ROOT, capture_output=True, text=True,
        timeout=60, preexec_fn=_limit_memory,
        env={**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data")})


def _imported(tmp_path: Path) -> list[str]:
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        latest = store.latest()
        assert latest is not None
        return [a.observation.host.name for a in store.assessments(latest.id)]
    finally:
        store.dispose()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link", "directory"])
def test_a_file_that_would_hang_or_exhaust_the_import_is_refused_by_name(tmp_path, kind):
    bad = tmp_path / f"probe-{kind}.json"
    if kind == "fifo":
        os.mkfifo(bad)  # nobody writes: reading it would wait forever
    elif kind == "dev-zero-link":
        bad.symlink_to("/dev/zero")  # stat() says 0 bytes; reading never ends
    else:
        bad.mkdir()
    done = _import(tmp_path, bad, _good(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"rejected {bad}:" in done.stderr and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
    assert _imported(tmp_path) == ["EXGOOD"]


def test_a_file_over_the_limit_is_refused_without_reading_it_whole(tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(6 * 1024 * 1024)  # sparse: 6 MB of zeros
    with pytest.raises(ProbeDocumentError, match="over the 5 MB limit"):
        read_document(big)


def _text(**changes: object) -> str:
    document = probe_document("EXDUP", "15.1.2176.2",
                              collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    document.update(changes)
    return json.dumps(document)


def test_a_document_with_a_key_twice_is_refused():
    # A vulnerable build, then a patched one: json.loads would keep the last.
    text = _text().replace('"exsetup_version": "15.1.2176.2"',
                           '"exsetup_version": "15.1.2176.2", "exsetup_version": "15.1.2176.9"')
    assert text.count('"exsetup_version"') == 2
    with pytest.raises(ProbeDocumentError, match="'exsetup_version' appears twice"):
        load_document(text)
    renamed = _text().replace('"host": "EXDUP"', '"host": "EXDUP", "host": "EXOTHER"')
    with pytest.raises(ProbeDocumentError, match="'host' appears twice"):
        load_document(renamed)


@pytest.mark.parametrize("value", ["15.1.2176.9\n", " 15.1.2176.9", "15.1.2176.9\t",
                                   "15.1.2176.\u0669", "15.1.2176.9\x1b[2J"])
def test_a_build_with_whitespace_or_a_hidden_character_is_refused(value):
    with pytest.raises(ProbeDocumentError, match="exsetup_version"):
        load_document(_text(exsetup_version=value))


def test_a_plain_build_still_loads():
    assert load_document(_text())["exsetup_version"] == "15.1.2176.2"

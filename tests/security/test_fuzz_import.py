"""import_documents over a directory of hostile files: the good one is imported, every bad one
is rejected by name, and nothing crashes the import (which would lose the good documents too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.job import ImportResult, import_documents
from collectors.probe import MAX_DOCUMENT_BYTES, parse_document
from compliance.catalog import load_catalog
from compliance.evaluate import Policy, assess
from compliance.models import Host, Status
from store import SnapshotStore
from tests.collectors.documents import dumps
from tests.security import corpus

CATALOG = load_catalog()
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the corpus documents were collected at 09:00Z
POLICY = Policy()


def _import(paths: list[Path], store: SnapshotStore) -> ImportResult:
    return import_documents(paths, store=store, catalog=CATALOG, policy=POLICY, now=lambda: NOW)


def write_corpus(directory: Path, *, big: bool = True) -> tuple[Path, list[Path]]:
    """The good file and the bad ones (each must be rejected), written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    good = directory / "good-EX1.json"
    good.write_text(corpus.GOOD_TEXT)
    bad: list[Path] = []
    for name, data in corpus.bad_corpus().items():
        path = directory / f"{name}.json"
        path.write_bytes(data)
        bad.append(path)
    duplicate = directory / "second-document-for-EX1.json"
    duplicate.write_text(dumps(corpus.good_document("ex1")))  # host names compare case-insensitively
    bad.append(duplicate)
    oversized = directory / "oversized.json"
    if big:
        oversized.write_bytes(corpus.oversized())
    else:
        with oversized.open("wb") as handle:  # sparse: the size is all import_documents looks at
            handle.truncate(corpus.BIG_BYTES)
    bad.append(oversized)
    just_over = directory / "one-byte-over-the-limit.json"
    just_over.write_bytes(corpus.exactly_at_limit() + b" ")
    bad.append(just_over)
    folder = directory / "a-directory.json"
    folder.mkdir()
    bad.append(folder)
    bad.append(directory / "does-not-exist.json")
    unreadable = directory / "unreadable.json"
    unreadable.write_text(corpus.GOOD_TEXT)
    unreadable.chmod(0)
    if os.access(unreadable, os.R_OK):  # root reads anything: drop the case rather than lie
        unreadable.unlink()
    else:
        bad.append(unreadable)
    return good, bad


def _assert_result(result: ImportResult, good: Path | None, bad: list[Path]) -> None:
    rejected = [path for path, _reason in result.rejected]
    assert sorted(rejected) == sorted(str(path) for path in bad), "each bad file rejected once, by name"
    for path, reason in result.rejected:
        assert isinstance(reason, str) and reason.strip(), path
    if good is None:
        assert result.run is None
        return
    assert result.run is not None
    assessments = result.run.snapshot.assessments
    assert [a.observation.host.name for a in assessments] == ["EX1"]
    assert assessments[0].observation.failure is None
    assert assessments[0].observation.source == f"import:{good.name}"
    assert assessments[0].verdict.status is Status.PATCHED  # 15.1.2176.9 with KB5000871


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SnapshotStore]:
    opened = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.dispose()


def test_the_good_file_is_imported_and_every_bad_one_rejected_by_name(tmp_path: Path,
                                                                         store: SnapshotStore) -> None:
    good, bad = write_corpus(tmp_path / "in")
    result = _import([good, *bad], store)
    _assert_result(result, good, bad)
    assert result.run is not None
    latest = store.latest()
    assert latest is not None and latest.id == result.run.snapshot_id and latest.host_count == 1
    reasons = dict(result.rejected)
    assert "limit" in reasons[str(tmp_path / "in" / "oversized.json")]
    assert "second document" in reasons[str(tmp_path / "in" / "second-document-for-EX1.json")]


def test_with_only_bad_files_there_is_no_run(tmp_path: Path, store: SnapshotStore) -> None:
    _good, bad = write_corpus(tmp_path / "in", big=False)
    bad = [path for path in bad if not path.name.startswith("second-document")]  # valid without EX1
    result = _import(bad, store)
    _assert_result(result, None, bad)
    assert store.latest() is None, "nothing may be saved when nothing was imported"


def test_no_files_at_all(store: SnapshotStore) -> None:
    result = _import([], store)
    assert result.run is None and result.rejected == []


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    return write_corpus(tmp_path_factory.mktemp("corpus"), big=False)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnapshotStore]:
    opened = SnapshotStore.open(f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}")
    yield opened
    opened.dispose()


@settings(max_examples=25)
@given(data=st.data())
def test_any_mix_and_order_of_files(corpus_files: tuple[Path, list[Path]], shared_store: SnapshotStore,
                                    data: st.DataObject) -> None:
    good, bad = corpus_files
    chosen = data.draw(st.lists(st.sampled_from(bad), unique=True, max_size=12), label="bad files")
    with_good = data.draw(st.booleans(), label="with the good file")
    paths = data.draw(st.permutations([*chosen, good] if with_good else chosen), label="order")
    # The "second document for EX1" is itself valid: whichever of the two comes first is imported.
    valid = [path for path in paths if path == good or path.name.startswith("second-document")]
    first = valid[0] if valid else None
    result = _import(paths, shared_store)
    assert sorted(path for path, _reason in result.rejected) == sorted(
        str(path) for path in paths if path != first)
    assert all(reason.strip() for _path, reason in result.rejected)
    if first is None:
        assert result.run is None
    else:
        assert result.run is not None
        assert [a.observation.source for a in result.run.snapshot.assessments] == [f"import:{first.name}"]


# -- known bugs: one hostile file takes the whole import down ----------------------------------------


def _recursion_window_files(directory: Path) -> list[Path]:
    paths = []
    for depth in corpus.recursion_window_depths():
        path = directory / f"nested-{depth}.json"
        path.write_text(corpus.nested_error_document(depth))
        paths.append(path)
    return paths


KNOWN_CRASHES = [
    pytest.param(lambda d: [_write(d / "huge-int.json", corpus.huge_int_document())],
                 id="integer-literal-over-4300-digits",
                 ),
    pytest.param(lambda d: [_write(d / "log-window.json", corpus.overflowing_log_window_document())],
                 id="log-window-days-too-large-for-float",
                 ),
    pytest.param(_recursion_window_files, id="nesting-at-the-decoder-limit",
                 ),
    pytest.param(lambda d: [_write(d / "surrogate.json", corpus.lone_surrogate_document())],
                 id="json-escaped-lone-surrogate",
                 ),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


@pytest.mark.parametrize("make", KNOWN_CRASHES)
def test_a_hostile_file_is_rejected_and_the_good_one_still_imported(
        tmp_path: Path, store: SnapshotStore, make: Callable[[Path], list[Path]]) -> None:
    good = _write(tmp_path / "good-EX1.json", corpus.GOOD_TEXT)
    hostile = make(tmp_path)
    result = _import([good, *hostile], store)
    assert result.run is not None
    assert [a.observation.host.name for a in result.run.snapshot.assessments] == ["EX1"] or all(
        a.observation.failure is None for a in result.run.snapshot.assessments)
    assert store.latest() is not None


def test_one_hostile_probe_output_does_not_lose_the_collection(store: SnapshotStore) -> None:
    hostile = corpus.replace_once(corpus.HOSTILE_TEXT, '"eomt: key missing"', '"eomt: \\udfff"')
    observations = [parse_document(corpus.GOOD_TEXT, Host("EX1"), "winrm", NOW),
                    parse_document(hostile, Host("EX2"), "winrm", NOW)]
    snapshot = assess(observations, CATALOG, NOW, source="collect", tool_version="test")
    assert store.save(snapshot, CATALOG) > 0


# -- PostgreSQL: what SQLite lets through -------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("host", ["A" * 300, "EX\x00"], ids=["300-characters", "nul"])
def test_a_host_name_postgres_cannot_store_does_not_fail_the_import(tmp_path: Path, postgres_url: str,
                                                                    host: str) -> None:
    store = SnapshotStore.open(postgres_url)
    try:
        good = _write(tmp_path / "good-EX1.json", corpus.GOOD_TEXT)
        hostile = _write(tmp_path / "hostile.json", dumps(corpus.good_document(host)))
        result = _import([good, hostile], store)
        assert result.run is not None
    finally:
        store.dispose()


def test_the_corpus_is_what_it_claims(tmp_path: Path) -> None:
    """Guards for the corpus itself: the big file is big, the good one good."""
    good, bad = write_corpus(tmp_path / "in", big=False)
    assert json.loads(good.read_text())["host"] == "EX1"
    assert (tmp_path / "in" / "oversized.json").stat().st_size > MAX_DOCUMENT_BYTES
    assert len({path.name for path in bad}) == len(bad)

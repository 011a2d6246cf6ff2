"""The dashboard's side of the collection jobs, free of Streamlit.

- ``Runner`` runs one job at a time in a background thread and keeps its progress in a
  thread-safe ``RunState``. ``runner_for(store_url)`` is the process-wide registry, so every
  browser tab (every Streamlit session) sees the same running job.
- The job itself (``load_plan``, ``collection_job``) is collectors/job.py's, the same the
  command line runs: the same checks, lock, passwords, store and save, so a scheduled run and
  a dashboard run never overlap, even across processes.
- ``import_uploads`` stores uploaded probe documents through ``import_documents``.

Errors the runner records: ``CollectionBusy`` (the lock is held), ``InterruptedError``
(stopped, nothing saved), and the collectors' own one-line errors (``JobError``,
``DirectoryError``, ``SettingsError``, ``StoreError``...).
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PureWindowsPath
from typing import Any

from collectors.directory import DirectoryError
from collectors.inventory import InventoryError
from collectors.job import (  # the job's plan and hooks are the command line's too
    CollectionBusy,
    Hooks,
    ImportResult,
    Job,
    JobError,
    import_documents,
)
from collectors.kerberos import KerberosError
from collectors.probe import MAX_DOCUMENT_BYTES
from compliance.catalog import Catalog
from compliance.evaluate import Policy
from settings import SettingsError
from store import SnapshotStore, StoreError

log = logging.getLogger(__name__)

# Errors whose message is already one line for a person (server, operation, fix).
EXPECTED_ERRORS = (JobError, DirectoryError, KerberosError, SettingsError, InventoryError,
                   StoreError)


class Phase(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    SAVED = "saved"
    FAILED = "failed"
    BUSY = "busy"
    STOPPED = "stopped"


@dataclass(frozen=True)
class RunState:
    """A snapshot of the runner's progress; a new object on every change."""

    phase: Phase = Phase.IDLE
    run: int = 0                 # counts the starts: tells one run's outcome from the next
    total: int | None = None     # hosts to probe; None until the inventory is known
    done: int = 0
    failed: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: str | None = None   # the job's one-line summary, when it saved a snapshot
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.phase is Phase.RUNNING

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def text(self) -> str:
        if self.total is None:
            return "discovering the servers…"
        return f"{self.done}/{self.total} hosts, {self.failed} failed"




class Runner:
    """One job at a time in a daemon thread; ``state()`` may be read from any thread.

    Daemon: a server shutting down mid-run saves nothing, like an interrupted command line.
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = RunState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self) -> RunState:
        with self._lock:
            return self._state

    def start(self, job: Job, on_saved: Callable[[], None] | None = None) -> bool:
        """Start ``job`` unless one is running (then False); ``on_saved`` runs after a success."""
        with self._lock:
            if self._state.running:
                return False
            run = self._state.run + 1
            self._stop = threading.Event()
            self._state = RunState(Phase.RUNNING, run, started_at=self._clock())
            hooks = Hooks(lambda total: self._update(run, total=total),
                          lambda failed: self._tick(run, failed), self._stop)
            self._thread = threading.Thread(target=self._run, args=(job, hooks, run, on_saved),
                                            name=f"collection-{run}", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> bool:
        """Ask the running job to stop (it saves nothing); False when none is running."""
        with self._lock:
            if not self._state.running:
                return False
            self._stop.set()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current job's thread; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.state().running

    def _update(self, run: int, **changes: Any) -> None:
        with self._lock:
            if self._state.run == run:
                self._state = replace(self._state, **changes)

    def _tick(self, run: int, failed: bool) -> None:
        with self._lock:
            if self._state.run == run:
                self._state = replace(self._state, done=self._state.done + 1,
                                      failed=self._state.failed + int(failed))

    def _run(self, job: Job, hooks: Hooks, run: int, on_saved: Callable[[], None] | None) -> None:
        try:
            summary = job(hooks)
        except CollectionBusy as error:
            self._finish(run, Phase.BUSY, error=str(error))
        except (InterruptedError, KeyboardInterrupt):
            self._finish(run, Phase.STOPPED, error="stopped: nothing was saved; the previous "
                                                    "snapshots are intact")
        except EXPECTED_ERRORS as error:
            self._finish(run, Phase.FAILED, error=str(error) or type(error).__name__)
        except Exception as error:  # a thread must not die silently: record, and log the trace
            log.exception("collection run %d failed", run)
            self._finish(run, Phase.FAILED, error=f"unexpected error ({type(error).__name__}): "
                                                  f"{error}")
        else:
            if on_saved is not None:
                try:
                    on_saved()
                except Exception:
                    log.exception("after collection run %d", run)
            self._finish(run, Phase.SAVED, summary=summary)

    def _finish(self, run: int, phase: Phase, **changes: Any) -> None:
        self._update(run, phase=phase, finished_at=self._clock(), **changes)


_RUNNERS: dict[str, Runner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(key: str) -> Runner:
    """The process-wide runner for a store (by URL): the same object for every session."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = Runner()
        return runner


def upload_name(name: str) -> str:
    """A file name safe to write: the last path part, odd characters replaced, no dot first."""
    base = PureWindowsPath(name).name  # splits on both / and \
    cleaned = re.sub(r"[^\w.\-]", "_", base).lstrip(".")[-100:]
    return cleaned or "upload.json"


def import_uploads(files: Sequence[tuple[str, bytes]], *, store: SnapshotStore, catalog: Catalog,
                   policy: Policy, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                   who: str | None = None) -> ImportResult:
    """Uploaded (name, content) probe documents as one snapshot, like ``python -m collectors
    import``. Each file keeps its name made safe by ``upload_name`` (the snapshot records it as
    ``import:<name>``); rejected ones are listed under that name, in upload order."""
    names = [upload_name(name) for name, _content in files]
    rejected: dict[int, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="probe-uploads-") as folder:
        written: dict[str, int] = {}
        for index, (_name, content) in enumerate(files):
            if len(content) > MAX_DOCUMENT_BYTES:
                rejected[index] = (names[index], f"file is over the {MAX_DOCUMENT_BYTES // 2**20} "
                                                 "MB limit")
                continue
            # A folder per upload: two uploads of the same name must not overwrite each other.
            path = Path(folder) / str(index) / names[index]
            path.parent.mkdir()
            path.write_bytes(content)
            written[str(path)] = index
        result = ImportResult(None, [])
        if written:
            result = import_documents([Path(p) for p in written], store=store, catalog=catalog,
                                      policy=policy, now=now, who=who)
    for where, reason in result.rejected:
        index = written[where]
        rejected[index] = (names[index], reason)
    return ImportResult(result.run, [rejected[i] for i in sorted(rejected)])

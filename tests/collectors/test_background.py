"""The dashboard's collection runner, its wiring of ``collect`` and the upload import.

The runner is driven by fake jobs synchronised with events, so no test sleeps on a guess.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors import background
from collectors import job as job_module
from collectors.background import Phase, Runner
from collectors.job import CollectionBusy, Hooks, JobError, run_lock
from collectors.probe import MAX_DOCUMENT_BYTES
from compliance.catalog import load_catalog
from compliance.evaluate import Policy
from settings import SettingsError as ConfigError
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document

WAIT = 10.0


@dataclass
class Gate:
    """A fake job that reports what it is told, then waits to be released."""

    total: int = 3
    ticks: tuple[bool, ...] = ()
    result: str | BaseException = "snapshot #1 saved: 3 hosts"
    reported: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, hooks: Hooks) -> str:
        hooks.started(self.total)
        for failed in self.ticks:
            hooks.progress(failed)
        self.reported.set()
        assert self.release.wait(WAIT)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def _finished(runner: Runner) -> background.RunState:
    assert runner.wait(WAIT)
    return runner.state()


def test_a_second_start_while_running_is_refused():
    runner, first = Runner(), Gate()
    assert runner.start(first)
    assert first.reported.wait(WAIT)
    second = Gate()
    assert not runner.start(second)
    first.release.set()
    state = _finished(runner)
    assert state.phase is Phase.SAVED and state.run == 1
    assert not second.reported.is_set()
    assert runner.start(second)  # free again once the first has finished
    second.release.set()
    assert _finished(runner).run == 2


def test_progress_counts_update_while_running():
    runner = Runner()
    assert runner.state().phase is Phase.IDLE and not runner.state().running
    job = Gate(total=4, ticks=(False, True, False))
    runner.start(job)
    assert job.reported.wait(WAIT)
    state = runner.state()
    assert state.running and (state.total, state.done, state.failed) == (4, 3, 1)
    assert state.fraction == 0.75 and state.text == "3/4 hosts, 1 failed"
    assert state.started_at is not None and state.finished_at is None
    job.release.set()
    assert _finished(runner).done == 3


def test_before_the_inventory_is_known_the_text_says_so():
    state = background.RunState(Phase.RUNNING, 1)
    assert state.fraction == 0.0 and "discovering" in state.text


def test_finishing_reports_the_summary_and_runs_the_after_hook():
    saved: list[str] = []
    runner = Runner()
    job = Gate(result="snapshot #7 saved: 3 hosts (patched 3); 0.1 s")
    job.release.set()
    runner.start(job, on_saved=lambda: saved.append("invalidated"))
    state = _finished(runner)
    assert state.phase is Phase.SAVED
    assert state.summary == "snapshot #7 saved: 3 hosts (patched 3); 0.1 s" and state.error is None
    assert state.finished_at is not None and saved == ["invalidated"]


@pytest.mark.parametrize(("error", "phase", "message"), [
    (JobError("no host to probe: the directory returned none"), Phase.FAILED,
     "no host to probe: the directory returned none"),
    (CollectionBusy("another collection is running (pid 1)"), Phase.BUSY,
     "another collection is running (pid 1)"),
    (InterruptedError("collection stopped"), Phase.STOPPED, "stopped: nothing was saved"),
    (ZeroDivisionError("division by zero"), Phase.FAILED,
     "unexpected error (ZeroDivisionError): division by zero"),
])
def test_a_failing_job_reports_its_error_and_skips_the_after_hook(error, phase, message):
    saved: list[str] = []
    runner = Runner()
    job = Gate(result=error)
    job.release.set()
    runner.start(job, on_saved=lambda: saved.append("invalidated"))
    state = _finished(runner)
    assert state.phase is phase and state.summary is None
    assert state.error is not None and state.error.startswith(message)
    assert saved == []


def test_stop_reaches_the_job():
    runner = Runner()
    entered = threading.Event()

    def job(hooks: Hooks) -> str:
        entered.set()
        if hooks.stop.wait(WAIT):
            raise InterruptedError("collection stopped before every host was probed")
        return "not stopped"

    assert not runner.stop()  # nothing to stop yet
    runner.start(job)
    assert entered.wait(WAIT)
    assert runner.stop()
    assert _finished(runner).phase is Phase.STOPPED


def test_another_tab_sees_the_same_running_job():
    url = f"sqlite:///{uuid.uuid4().hex}.db"
    job = Gate(total=2, ticks=(True,))
    assert background.runner_for(url).start(job)
    assert job.reported.wait(WAIT)
    other_tab = background.runner_for(url)
    assert other_tab is background.runner_for(url)
    assert other_tab.state().running and other_tab.state().text == "1/2 hosts, 1 failed"
    assert not other_tab.start(Gate())
    assert not background.runner_for(url + "-other").state().running
    job.release.set()
    assert other_tab.wait(WAIT) and other_tab.state().phase is Phase.SAVED


# -- the collect job, wired as the command line wires it --------------------------------------

def _config(tmp_path: Path, ldap: bool = False) -> Path:
    path = tmp_path / "collection.toml"
    text = '[winrm]\nusername = "CORP\\\\svc-exprobe"\n'
    if ldap:
        text += '[ldap]\nservers = ["ldaps://dc1.corp.example"]\nbind_user = "svc@corp.example"\n'
    path.write_text(text)
    return path


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.csv"
    path.write_text("name,winrm_url\nEX01,https://127.0.0.1:1/wsman\nEX02,\n")
    return path


def test_the_plan_applies_the_command_lines_checks(tmp_path):
    plan = job_module.load_plan(_config(tmp_path), _inventory(tmp_path))
    assert [e.name for e in plan.inventory] == ["EX01", "EX02"]
    assert "hosts.csv (2 hosts)" in plan.describe() and "CORP\\svc-exprobe" in plan.describe()
    with pytest.raises(ConfigError, match="nothing to probe"):
        job_module.load_plan(_config(tmp_path))
    (tmp_path / "ldap-only.toml").write_text('[ldap]\nservers = ["ldaps://dc1"]\nbind_user = "u"\n')
    with pytest.raises(ConfigError, match="no \\[winrm\\] section"):
        job_module.load_plan(tmp_path / "ldap-only.toml", _inventory(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        job_module.load_plan(tmp_path / "missing.toml")


@dataclass
class FakeCollect:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        kwargs["started"](2)
        kwargs["progress"](False)
        kwargs["progress"](True)
        return type("Result", (), {"summary": lambda self: "snapshot #1 saved: 2 hosts"})()


@dataclass
class FakeStore:
    disposed: bool = False

    def dispose(self) -> None:
        self.disposed = True


def _job(tmp_path: Path, collect: FakeCollect, store: FakeStore, environ: dict[str, str],
         ldap: bool = False) -> job_module.Job:
    plan = job_module.load_plan(_config(tmp_path, ldap), _inventory(tmp_path))
    from settings import load_secrets

    secrets = tmp_path / "secrets.toml"
    return job_module.collection_job(plan, secrets=load_secrets(secrets) if secrets.exists()
                                     else {},
                                     environ=environ, open_store=lambda: store,
                                     catalog=load_catalog(), policy=Policy(),
                                     data_dir=tmp_path / "data", collect_fn=collect)


def test_the_job_resolves_secrets_takes_the_lock_and_reports_progress(tmp_path):
    (tmp_path / "secrets.toml").write_text('[ldap]\npassword = "ldap-secret"\n')
    collect, store = FakeCollect(), FakeStore()
    runner = Runner()
    runner.start(_job(tmp_path, collect, store, {"PROXYLOGON_WINRM_PASSWORD": "winrm-secret"},
                      ldap=True))
    state = _finished(runner)
    assert state.phase is Phase.SAVED, state.error
    assert state.summary == "snapshot #1 saved: 2 hosts"
    assert (state.total, state.done, state.failed) == (2, 2, 1)
    (call,) = collect.calls
    assert call["winrm_password"] == "winrm-secret" and call["ldap_password"] == "ldap-secret"
    assert call["store"] is store and store.disposed
    assert [e.name for e in call["inventory"]] == ["EX01", "EX02"]
    assert call["stop"] is not None
    with run_lock(tmp_path / "data"):  # released after the run
        pass


def test_a_held_lock_is_reported_as_busy(tmp_path):
    collect, store = FakeCollect(), FakeStore()
    runner = Runner()
    with run_lock(tmp_path / "data"):
        runner.start(_job(tmp_path, collect, store, {"PROXYLOGON_WINRM_PASSWORD": "x"}))
        state = _finished(runner)
    assert state.phase is Phase.BUSY and "another collection is running" in (state.error or "")
    assert collect.calls == [] and not store.disposed


def test_a_missing_password_fails_with_the_fix_and_saves_nothing(tmp_path):
    collect, store = FakeCollect(), FakeStore()
    runner = Runner()
    runner.start(_job(tmp_path, collect, store, {}))
    state = _finished(runner)
    assert state.phase is Phase.FAILED
    assert "PROXYLOGON_WINRM_PASSWORD" in (state.error or "")
    assert collect.calls == []


# -- uploads ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "safe"), [
    ("EX01.json", "EX01.json"),
    ("../../etc/passwd.json", "passwd.json"),
    ("C:\\Users\\admin\\probe EX02.json", "probe_EX02.json"),
    (".hidden.json", "hidden.json"),
    ("..", "upload.json"),
    ("", "upload.json"),
])
def test_upload_names_are_reduced_to_a_safe_basename(name, safe):
    assert background.upload_name(name) == safe


@pytest.fixture
def store(tmp_path):
    opened = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.dispose()


def test_uploads_import_the_good_documents_and_name_the_bad_ones(store):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    good = dumps(probe_document("EX01", "15.1.2176.9", collected_at=now)).encode()
    files = [
        ("../EX01.json", good),
        ("broken.json", b'{"schema": "exchange-probe/1", "host": "X"}'),
        ("huge.json", b" " * (MAX_DOCUMENT_BYTES + 1)),
        ("EX01.json", good),  # the same name again: written apart, rejected as a second EX01
        ("EX02.json", dumps(probe_document("EX02", "15.2.792.3", collected_at=now)).encode()),
    ]
    result = background.import_uploads(files, store=store, catalog=load_catalog(), policy=Policy())
    assert result.run is not None
    assert "2 hosts" in result.run.summary()
    assert [name for name, _reason in result.rejected] == ["broken.json", "huge.json", "EX01.json"]
    reasons = dict(result.rejected)
    assert "MB limit" in reasons["huge.json"]
    assert "second document for host EX01" in reasons["EX01.json"]
    latest = store.latest()
    assert latest is not None and latest.source == "import" and latest.host_count == 2
    sources = {a.observation.host.name: a.observation.source for a in store.assessments(latest.id)}
    assert sources == {"EX01": "import:EX01.json", "EX02": "import:EX02.json"}


def test_uploads_with_nothing_valid_save_nothing(store):
    result = background.import_uploads([("a.json", b"not json")], store=store,
                                       catalog=load_catalog(), policy=Policy())
    assert result.run is None and result.rejected[0][0] == "a.json"
    assert "not JSON" in result.rejected[0][1]
    assert store.is_empty()

"""One server's document against the whole fleet (issue 21, review): a value at the calendar's
ends, or any fault while reading or judging one host, costs that host only. Its collection
becomes a failure, its investigation fails closed (never clean), and the other hosts are
collected, judged and saved as ever.
"""

from __future__ import annotations

from typing import Any

import pytest

import store.snapshots
from collectors import remote
from collectors.probe import parse_document
from collectors.remote import Output, Target, probe_all
from compliance.evaluate import assess
from compliance.failures import FailureReason
from compliance.investigation import InvestigationState
from compliance.models import Host
from tests.collectors.documents import dumps, msert_tail
from tests.collectors.test_probe_1_4 import NOW, _current, _observed
from tests.collectors.test_remote_shell import PASSWORD, URL, FakeShell, Opener, _config

State = InvestigationState
EDGE = ["Microsoft Safety Scanner v1.333, (build 1.333.1102.0)", "Started On Fri Dec 31 23:59:59 9999",
        "Full Scan Results:"]


def _evil(**change: Any) -> dict[str, Any]:
    document = _current()
    document["host"] = "EVIL"
    for key, value in change.items():
        document["indicators" if key == "log_window_days" else "investigation"][key] = value
    return document


def _save(store: Any, catalog: Any, *documents: dict[str, Any]) -> dict[str, Any]:
    observations = [_observed(_current()), *(parse_document(dumps(d), Host(d["host"]), "import", NOW)
                                              for d in documents)]
    run = assess(observations, catalog, NOW, source="test", tool_version="t")
    snapshot_id = store.save(run, catalog)  # one server's document must not stop the save
    return store.investigations(snapshot_id)


@pytest.mark.parametrize("days", [1e6, 1e12, -1e12])
def test_a_huge_log_window_does_not_stop_the_fleets_save(empty_store, shipped_catalog, days: float):
    found = _save(empty_store, shipped_catalog, _evil(log_window_days=days))
    assert found["EX16-14"].state is State.CLEAN
    assert found["EVIL"].state is State.INCOMPLETE


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_an_install_date_at_the_end_of_the_calendar_does_not_stop_the_save(empty_store, shipped_catalog,
                                                                            day: str):
    document = _evil()
    document["installed_updates"][0]["installed_on"] = day
    found = _save(empty_store, shipped_catalog, document)
    assert found["EX16-14"].state is State.CLEAN
    # Its install date is not credible; the observed fix time is the collection itself, and the
    # scan of 10 March came before it.
    assert found["EVIL"].state is State.NOT_INVESTIGATED


def test_a_host_whose_judging_raises_fails_closed_and_the_others_are_saved(empty_store, shipped_catalog,
                                                                          monkeypatch):
    judge = store.snapshots.judge_observation

    def fragile(observation, *args, **kwargs):  # type: ignore[no-untyped-def]
        if observation.host.name == "EVIL":
            raise ZeroDivisionError("a fault no reader foresaw")
        return judge(observation, *args, **kwargs)

    monkeypatch.setattr(store.snapshots, "judge_observation", fragile)
    found = _save(empty_store, shipped_catalog, _evil())
    assert found["EX16-14"].state is State.CLEAN
    evil = found["EVIL"]
    assert evil.state is State.NOT_INVESTIGATED
    assert evil.evidence == ("the investigation could not be judged: ZeroDivisionError; re-collect",)
    assert "could not be judged" in evil.next_action and "a fault" not in evil.next_action
    assert empty_store.verify(workers=1).ok


def _answers(shell: FakeShell) -> Output:
    return dumps(_evil(msert_log=msert_tail(EDGE, utc_offset_minutes=-720))).encode(), b"", 0, True


def test_an_msert_date_at_the_end_of_the_calendar_does_not_stop_the_fleets_collection():
    (found,) = probe_all([Target(Host("EX01"), URL)], _config(), PASSWORD, open_shell=Opener(answer=_answers))
    assert found.failure is None and found.traces is not None
    assert [scan.started_at for scan in found.traces.scans or ()] == [None]


def test_a_host_whose_answer_cannot_be_read_is_a_failure_and_the_run_goes_on(monkeypatch):
    read = remote.parse_document

    def fragile(text, host, source, received_at):  # type: ignore[no-untyped-def]
        if host.name == "EX02":
            raise OverflowError("date value out of range")
        return read(text, host, source, received_at)

    monkeypatch.setattr(remote, "parse_document", fragile)
    ticks: list[bool] = []
    targets = [Target(Host(f"EX0{i}"), URL) for i in range(1, 4)]
    found = probe_all(targets, _config(concurrency=2), PASSWORD, progress=ticks.append, open_shell=Opener())
    assert [o.host.name for o in found] == ["EX01", "EX02", "EX03"]
    assert [o.failure is None for o in found] == [True, False, True]
    failure = found[1].failure
    assert failure is not None and failure.reason == FailureReason.BAD_OUTPUT
    assert failure.detail == (f"{URL}: the collector could not read this host's answer (OverflowError)")
    assert sorted(ticks) == [False, False, True]

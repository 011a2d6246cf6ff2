"""An investigation (compliance/investigation.py) as the store keeps it: one JSON text per host.

The snapshot stores each host's ``Investigation`` for its own advisory (March 2021) judged at
save time, as ``dumps`` writes it (the row's ``investigation_detail`` column, under the
snapshot's digest from format 7 on), and a few summary columns the pages filter and count on
(compliance/summary.py): the state, the next action, the fix time, the next scan due and how
many directive steps were missed. ``columns`` is the only derivation of those from the record,
so verify and the evidence bundle can check that the two agree. Pure.

A row stored before issue 21 holds no record: it reads as ``not_investigated`` (``BEFORE``),
never as clean (``stored_state``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance.investigation import (
    Directive,
    DirectiveStep,
    Investigation,
    InvestigationState,
    StepState,
    Window,
)
from compliance.models import Status

# What a row stored before issue 21 says of the investigation (it holds no record).
BEFORE = "no traces recorded (collected before issue 21)"
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                         sort_keys=True)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# A step's state to and from its stored text by a dict (an evidence bundle reads and writes
# 60,000 of them at 10,000 hosts; an Enum's call and its ``value`` are several times slower).
_STEP_TEXT = {state: state.value for state in StepState}
_STEP_STATE = {state.value: state for state in StepState}


def _step_state(value: Any) -> StepState:
    found = _STEP_STATE.get(value) if isinstance(value, str) else None
    return found if found is not None else StepState(value)  # the Enum's own error otherwise


def _read_time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("a stored time without its offset")
    return moment


def to_dict(investigation: Investigation) -> dict[str, Any]:
    window, directive = investigation.window, investigation.directive
    return {
        "state": investigation.state.value,
        "next_action": investigation.next_action,
        "window": None if window is None else {
            "start": _time(window.start), "end": _time(window.end),
            "end_source": window.end_source},
        "evidence": list(investigation.evidence),
        "directive": None if directive is None else {
            "name": directive.name, "source": directive.source,
            "steps": [{"name": s.name, "due": _time(s.due), "state": _STEP_TEXT[s.state],
                       "met_by": _time(s.met_by)} for s in directive.steps]},
    }


def from_dict(data: Any) -> Investigation:
    """``to_dict`` read back; ``ValueError`` for anything no writer of this tool makes."""
    try:
        window = data["window"]
        directive = data["directive"]
        return Investigation(
            state=InvestigationState(data["state"]),
            window=None if window is None else Window(
                _read_or_fail(window["start"]), _read_time(window["end"]),
                str(window["end_source"])),
            evidence=tuple(str(line) for line in data["evidence"]),
            next_action=str(data["next_action"]),
            directive=None if directive is None else Directive(
                str(directive["name"]), str(directive["source"]),
                tuple(DirectiveStep(str(s["name"]), _read_time(s["due"]), _step_state(s["state"]),
                                    _read_time(s["met_by"])) for s in directive["steps"])))
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not an investigation record ({type(error).__name__})") from None


def _read_or_fail(value: Any) -> datetime:
    moment = _read_time(value)
    if moment is None:
        raise ValueError("an exposure window without its start")
    return moment


def dumps(investigation: Investigation) -> str:
    return _JSON.encode(to_dict(investigation))


def loads(text: object) -> Investigation | None:
    """A stored record (None: none stored, a row from before issue 21); ``ValueError`` for a
    text no writer of this tool makes."""
    if text is None or text == "":
        return None
    try:
        return from_dict(json.loads(str(text)))
    except (ValueError, RecursionError) as error:
        raise ValueError(f"unreadable investigation record: {error}") from None


@dataclass(frozen=True, slots=True)
class Brief:
    """The summary columns of one investigation (compliance/summary.py ``HostSummary``)."""

    state: InvestigationState
    action: str
    fixed_at: str  # ISO 8601, "" when not known
    next_scan_due: str  # the first step of the directive not met yet that is due or pending
    steps_missed: int


def columns(investigation: Investigation) -> Brief:
    """The only derivation of the summary columns from a record."""
    window, directive = investigation.window, investigation.directive
    steps = directive.steps if directive else ()
    upcoming = next((s for s in steps if s.state in (StepState.DUE, StepState.PENDING)
                     and s.due is not None), None)
    return Brief(investigation.state, investigation.next_action,
                 _time(window.end) or "" if window else "",
                 _time(upcoming.due) or "" if upcoming else "",
                 sum(1 for s in steps if s.state is StepState.MISSED))


def first_scan(investigation: Investigation) -> datetime | None:
    """When the first full scan after the fix started (the directive's first step's)."""
    steps = investigation.directive.steps if investigation.directive else ()
    return steps[0].met_by if steps else None


def stored_state(state: InvestigationState | None, status: Status) -> InvestigationState:
    """What a host's stored state reads as: a row from before issue 21 (None) is not
    investigated, or not applicable when the advisory does not affect it."""
    if state is not None:
        return state
    return (InvestigationState.NOT_APPLICABLE if status is Status.NOT_APPLICABLE
            else InvestigationState.NOT_INVESTIGATED)

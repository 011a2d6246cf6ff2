"""The Hosts page's investigation section (issue 21): has anyone looked for a back door?

Beside the patch status, never changing it: the state and next action judged at the snapshot's
time (compliance/investigation.py, stored with the snapshot), then the timeline it rests on
(the exposure window, the fix and where its time was read, the scans, each log's reach, the
web-shell candidates), the directive's steps with their due time and whether each was met,
and the evidence lines. Server-read text is shown through ``literal`` in Markdown and as plain
cells in tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from compliance.investigation import Investigation
from compliance.investigation_record import BEFORE, first_scan, stored_state
from compliance.models import Observation, Status
from store.export import inert
from views import labels
from views.markdown import literal

TIMELINE_COLUMNS = ("when", "event", "detail")
STEP_COLUMNS = ("step", "due", "state", "met_by")


def _at(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def timeline_rows(found: Investigation | None, observation: Observation) -> list[dict[str, str]]:
    """The dated events of one host's investigation, oldest first (an undated one last): the
    window's start and the fix (from ``found``), then what the probe read (``traces``)."""
    events: list[tuple[datetime | None, str, str]] = []
    if found is not None and found.window is not None:
        events.append((found.window.start, "Exposure window starts",
                       "the earliest exploitation publicly reported"))
        events.append((found.window.end, "Fixed (window ends)",
                       found.window.end_source or "not fixed, or the time is not known"))
    traces = observation.traces
    if traces is not None:
        for scan in traces.scans or ():
            detail = (f"{scan.kind} scan" + (f", version {scan.version}" if scan.version else "")
                      + ("" if scan.finished else ", not finished")
                      + (f"; detected: {', '.join(scan.detections)}" if scan.detections
                         else "; nothing detected" if scan.finished else ""))
            events.append((scan.started_at, "Safety Scanner (MSERT) scan", detail))
        for detection in traces.detections or ():
            events.append((detection.detected_at, "Defender detection",
                           detection.threat + (f" ({', '.join(detection.resources)})"
                                               if detection.resources else "")))
        for reach in traces.log_reach or ():
            where = f"Log {reach.log}" + (f", folder {reach.folder}," if reach.folder else "")
            events.append((reach.oldest, f"{where} reaches back to",
                           "oldest entry" if reach.oldest
                           else "the folder holds no file" if reach.folder else "log not found"))
        for candidate in traces.candidates or ():
            events.append((candidate.created or candidate.modified, "Possible web shell",
                           f"{candidate.path} (modified {_at(candidate.modified)}, "
                           f"{candidate.size} bytes)"))
    far = datetime.max.replace(tzinfo=UTC)

    def key(event: tuple[datetime | None, str, str]) -> datetime:
        moment = event[0]
        if moment is None:
            return far
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    # Threat names, versions, log names and paths are what the server wrote: their control
    # and bidirectional characters are shown as escapes (``inert``), never obeyed.
    return [{"when": _at(moment), "event": inert(what), "detail": inert(detail)}
            for moment, what, detail in sorted(events, key=key)]


def step_rows(found: Investigation | None) -> list[dict[str, str]]:
    steps = found.directive.steps if found is not None and found.directive else ()
    return [{"step": step.name, "due": _at(step.due) if step.due else "",
             "state": labels.STEP_LABELS.get(step.state, step.state.value),
             "met_by": f"scan started {_at(step.met_by)}" if step.met_by else ""}
            for step in steps]


def investigation_timeline(found: Investigation | None, observation: Observation,
                           status: Status) -> None:
    """Render the section for one host (``found``: its stored investigation, None for a
    snapshot from before issue 21)."""
    state = stored_state(found.state if found else None, status)
    st.markdown(f"**Investigation after the fix:** {labels.investigation_label(state.value)}",
                help="Patched is not clean: the update does not remove a back door planted "
                     "before it. Judged at the snapshot's time from what the probe read; it "
                     "never changes the patch status.")
    st.markdown(f"**Investigation, next action:** "
                f"{literal(found.next_action if found is not None else BEFORE)}")
    if found is None:
        st.caption("This snapshot was saved before investigations were recorded: collect "
                   "again to judge it.")
        return
    scan = first_scan(found)
    if scan is not None:
        st.caption(f"First full scan after the fix started {_at(scan)}.")
    st.dataframe(pd.DataFrame(timeline_rows(found, observation), columns=list(TIMELINE_COLUMNS)),
                 hide_index=True, key="investigation_timeline",
                 column_config={"when": st.column_config.TextColumn("When"),
                                "event": st.column_config.TextColumn("What"),
                                "detail": st.column_config.TextColumn("Detail", width="large")})
    if found.directive is not None:
        st.markdown(f"**Directive:** {literal(found.directive.name)} "
                    f"({'every step met' if found.directive.met else 'not every step met'})",
                    help=found.directive.source)
        st.dataframe(pd.DataFrame(step_rows(found), columns=list(STEP_COLUMNS)),
                     hide_index=True, key="investigation_steps",
                     column_config={"step": st.column_config.TextColumn("Step", width="large"),
                                    "due": st.column_config.TextColumn("Due"),
                                    "state": st.column_config.TextColumn("State"),
                                    "met_by": st.column_config.TextColumn("Met by")})
    with st.expander("Investigation evidence"):
        st.markdown("\n".join(f"- {literal(line)}" for line in found.evidence) or "None.")

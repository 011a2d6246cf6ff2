"""The investigation after the fix on the pages (issue 21), on the demo fleet: the Overview's
counts, the Hosts page's column, filter and timeline, the Worklist's triage order and its
export columns. The demo gives every state to some server."""

from __future__ import annotations

from collections import Counter

from compliance.catalog import load_catalog
from compliance.investigation import InvestigationState
from compliance.investigation_record import stored_state
from compliance.models import Status
from store import SnapshotStore
from store.export import WORKLIST_COLUMNS, to_csv


def _states(store: SnapshotStore) -> Counter[tuple[str, str]]:
    return Counter((s.status.value, stored_state(s.investigation, s.status).value)
                   for s in store.summaries(store.latest().id, load_catalog()))


def test_the_demo_fleet_shows_every_state(demo_app):
    _at, store = demo_app
    seen = {state for _status, state in _states(store)}
    assert seen == {state.value for state in InvestigationState}


def test_the_overview_counts_patched_servers_nobody_investigated(demo_app):
    at, store = demo_app
    states = _states(store)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patched, not investigated"] == str(states[("patched", "not_investigated")])
    assert metrics["Indicators found"] == str(sum(n for (_s, state), n in states.items()
                                                  if state == "indicators_found"))
    # One "Indicators found" figure (review of issue 21): the KPI row's, which counts CVE
    # check hits and the investigations' detections and possible web shells alike.
    assert [m.label for m in at.metric].count("Indicators found") == 1
    assert "Indicators" not in metrics
    assert metrics["Investigation incomplete"] == str(sum(
        n for (_s, state), n in states.items() if state == "incomplete"))
    assert int(metrics["Patched, not investigated"]) > 0


def test_hosts_has_the_state_as_a_column_and_a_filter_and_the_detail_shows_the_timeline(
        demo_app):
    at, store = demo_app
    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    assert "investigation" in table.columns and "investigation_action" in table.columns
    at.multiselect(key="f_investigation").set_value(["incomplete"]).run()
    assert not at.exception, at.exception
    shown = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    assert len(shown) and set(shown["investigation"]) == {"incomplete"}
    host = sorted(shown["host"])[0]
    if len(shown) > 1:
        at.selectbox(key="detail_host").set_value(host).run()
    assert not at.exception, at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "**Investigation after the fix:** Investigation incomplete" in text
    assert "**Investigation, next action:**" in text
    timeline = next(d.value for d in at.dataframe if "event" in d.value.columns)
    events = set(timeline["event"])
    assert {"Exposure window starts", "Fixed (window ends)"} <= events
    assert any(event.startswith("Log ") for event in events)
    steps = next(d.value for d in at.dataframe if "met_by" in d.value.columns)
    assert len(steps) == 5  # the full scan after the fix and four weekly ones
    assert store.investigation(store.latest().id, host) is not None


def test_the_worklist_puts_indicators_first_and_uninvestigated_after_the_patch_work(demo_app):
    at, _store = demo_app
    at.switch_page("views/worklist.py")
    at.run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "wave" in d.value.columns)
    assert {"investigation", "investigation_action"} <= set(table.columns)
    found = table[table["investigation"] == "indicators_found"]
    assert len(found) and (found["priority"] == 0).all()
    waiting = table[(table["status"] == "patched")
                    & (table["investigation"] == "not_investigated")]
    assert len(waiting) and (waiting["priority"] == 4).all()
    incomplete = table[(table["status"] == "patched") & (table["investigation"] == "incomplete")]
    assert (incomplete["priority"] == 5).all()
    unpatched = table[table["status"].isin([Status.VULNERABLE.value, Status.UNKNOWN.value,
                                            Status.MITIGATED.value])]
    assert (unpatched["priority"] <= 3).all()
    # The exports keep every earlier column, then the two of the investigation.
    assert WORKLIST_COLUMNS[-2:] == ("investigation", "investigation_action")
    header = to_csv([]).splitlines()[0].split(",")
    assert header[:-2] == [c for c in WORKLIST_COLUMNS if not c.startswith("investigation")]
    assert header[-2:] == ["investigation", "investigation_action"]


def test_the_timeline_shows_server_written_names_and_paths_as_escapes():
    """Review of issue 21: a Defender threat name, its resources and a web-shell candidate's
    path with ESC and bidirectional overrides reach the Hosts page's timeline as escapes."""
    from datetime import UTC, datetime

    from compliance.models import Host, Observation
    from compliance.traces import Candidate, Detection, Traces
    from views.investigation import timeline_rows

    at = datetime(2021, 3, 1, tzinfo=UTC)
    traces = Traces(scans=(), detections=(Detection("Exploit:Script/Chopper\x1b[2J", at,
                                                    ("C:\\x\\\u202egnp.aspx",)),),
                    defender_available=True, log_reach=(),
                    candidates=(Candidate("C:\\inetpub\\\x1b]0;pwned\x07\u2067a.aspx", 1, at, at),),
                    fixed_at=None)
    rows = timeline_rows(None, Observation(Host("EX01"), at, "test", traces=traces))
    text = "".join(value for row in rows for value in row.values())
    assert not any(char in text for char in "\x1b\x07\u202e\u2067")
    assert "\\x1b[2J" in text and "\\u202e" in text and "\\u2067" in text


def test_the_timeline_names_each_httpproxy_folder_and_says_an_empty_one_holds_no_file():
    """Issue 21 (probe contract 1.4): each HttpProxy protocol folder is its own line, by name;
    an emptied one says so rather than "log not found" (which is what a whole log missing
    says)."""
    from datetime import UTC, datetime

    from compliance.models import Host, Observation
    from compliance.traces import LogReach, Traces
    from views.investigation import timeline_rows

    at = datetime(2021, 3, 1, tzinfo=UTC)
    traces = Traces(scans=(), detections=(), defender_available=True, candidates=(),
                    log_reach=(LogReach("httpproxy", at, "Owa"), LogReach("httpproxy", None, "Ecp"),
                               LogReach("oab_generator", None)), fixed_at=None)
    rows = timeline_rows(None, Observation(Host("EX01"), at, "test", traces=traces))
    lines = {row["event"]: row["detail"] for row in rows}
    assert lines["Log httpproxy, folder Owa, reaches back to"] == "oldest entry"
    assert lines["Log httpproxy, folder Ecp, reaches back to"] == "the folder holds no file"
    assert lines["Log oab_generator reaches back to"] == "log not found"


def test_a_damaged_investigation_record_is_shown_as_such_and_does_not_stop_the_hosts_page(
        demo_app):
    """Review of issue 21 (M5): a stored record that does not read (here cut short) makes the
    host's detail say so; the page runs on, and nothing reads it as clean."""
    from sqlalchemy import update

    from store import schema

    at, store = demo_app
    latest = store.latest().id
    host = next(s.host for s in store.summaries(latest, load_catalog())
                if s.investigation is not None)
    with store.engine.begin() as conn:
        conn.execute(update(schema.results)
                     .where(schema.results.c.snapshot_id == latest,
                            schema.results.c.host == host)
                     .values(investigation_detail='{"state":"clean"'))
    at.switch_page("views/hosts.py")
    at.run()
    at.selectbox(key="detail_host").set_value(host).run()
    assert not at.exception, at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "Investigation after the fix" in errors and "cannot be read" in errors


def test_a_patched_server_whose_investigation_found_indicators_is_told_to_investigate_first(
        demo_app):
    """Review of issue 21 (M2): DEMO-EX16-07 (a Chopper detection) and DEMO-EX16-08 (a web
    shell) are patched; their verdict says "None: the fixes are installed", true of the
    patch only. The Hosts table, its detail and the worklist files say to investigate first."""
    at, _store = demo_app
    at.switch_page("views/hosts.py")
    at.run()
    table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    found = table[table["investigation"] == "indicators_found"]
    patched = found[[list(cells) == ["patched"] for cells in found["status"]]]
    assert {"DEMO-EX16-07", "DEMO-EX16-08"} <= set(patched["host"])
    assert all(str(action).startswith("Investigate for compromise first")
               for action in patched["action"])
    at.selectbox(key="detail_host").set_value("DEMO-EX16-08").run()
    assert not at.exception, at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "**Next action:** Investigate for compromise first" in text
    at.switch_page("views/worklist.py")
    at.run()
    worklist = next(d.value for d in at.dataframe if "wave" in d.value.columns)
    for host in ("DEMO-EX16-07", "DEMO-EX16-08"):
        (action,) = worklist.loc[worklist["host"] == host, "action"]
        assert str(action).startswith("Investigate for compromise first"), action


def test_the_by_advisory_table_puts_the_compromise_first_on_the_verdict_the_investigation_covers(
        demo_app):
    """Review 2 of issue 21 (L-a): under "Next action: Investigate for compromise first", the
    detail's *By advisory* table showed the March 2021 verdict's "None: the fixes are
    installed". Its row (the advisory whose exposure window the investigation covers) now says
    to investigate first too; the other advisories' rows are their verdicts' own actions, and a
    host without indicators shows its verdict's action unchanged."""
    from compliance.summary import COMPROMISE_FIRST
    from compliance.verdicts import all_verdicts

    at, store = demo_app
    latest = store.latest().id
    at.switch_page("views/hosts.py")
    at.run()

    def by_advisory(host: str) -> list[str]:
        at.selectbox(key="detail_host").set_value(host).run()
        assert not at.exception, at.exception
        table = next(d.value for d in at.dataframe
                     if {"advisory", "action", "cves"} <= set(d.value.columns))
        return [str(action) for action in table["action"]]

    def verdicts(host: str) -> list[str]:
        (member,) = [a for a in store.assessments(latest) if a.observation.host.name == host]
        return [v.action for v in all_verdicts(member)]

    actions = by_advisory("DEMO-EX16-08")
    own, *others = verdicts("DEMO-EX16-08")
    assert others, "the demo judges every host by the other advisories too"
    assert own.startswith("None") and actions[0].startswith(COMPROMISE_FIRST), actions[0]
    assert actions[0].endswith(own[1:]), actions[0]
    assert actions[1:] == others
    assert "**Next action:** Investigate for compromise first" in "\n".join(
        m.value for m in at.markdown)
    # A patched host whose investigation found nothing to report: every row as its verdict says.
    quiet = next(s.host for s in store.summaries(latest, load_catalog())
                 if s.status is Status.PATCHED and s.advisories
                 and stored_state(s.investigation, s.status) is not InvestigationState.INDICATORS_FOUND)
    assert by_advisory(quiet) == verdicts(quiet)

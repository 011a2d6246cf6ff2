"""The one-page report for managers: a dated, self-contained HTML page that prints on A4.

Pure: a function of the snapshot's figures, its host table and the chain's state. No script,
no external resource (the page is read offline and printed), and every stored text (site and
DAG names, labels, catalogue versions) is escaped: whoever can name an AD site chooses it.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from compliance.investigation import InvestigationState
from compliance.models import Status
from compliance.triage import TriagePolicy
from compliance.worklist import PRIORITY_NAMES
from store import SnapshotInfo
from views.labels import (
    INVESTIGATION_LABELS,
    NOT_READ,
    STATUS_COLORS,
    STATUS_LABELS,
    STATUS_ORDER,
)
from views.markdown import visible
from views.summary import investigation_split, patched_share

TREND_POINTS = 12  # the last snapshots the trend table shows
GROUP_ROWS = 15  # sites or DAGs listed; the rest summed in one row

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: #222;
       margin: 24px; font-size: 12px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: #555; margin-bottom: 12px; }
.headline { font-size: 18px; font-weight: 600; margin: 12px 0 4px; }
.chain-ok { color: #0b5394; } .chain-bad { color: #b00020; font-weight: 700; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: flex; height: 10px; min-width: 160px; }
.bar span { display: block; height: 10px; }
.key span { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 10px; }
@page { size: A4; margin: 12mm; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


def _e(value: object) -> str:
    return html.escape(visible("" if value is None else str(value)), quote=True)


def _bar(counts: Mapping[str, int]) -> str:
    total = sum(counts.values()) or 1
    spans = "".join(
        f'<span style="width:{100 * counts.get(s.value, 0) / total:.2f}%;'
        f'background:{STATUS_COLORS[s]}" title="{_e(STATUS_LABELS[s])}"></span>'
        for s in STATUS_ORDER if counts.get(s.value, 0))
    return f'<div class="bar">{spans}</div>'


def _status_cells(counts: Mapping[str, int]) -> str:
    return "".join(f'<td class="n">{counts.get(s.value, 0)}</td>' for s in STATUS_ORDER)


def _group_table(table: pd.DataFrame, column: str, title: str) -> str:
    tally = Counter(zip(table[column], table["status"], strict=True))
    groups = Counter(table[column])
    ordered = [g for g, _ in groups.most_common()]
    shown, rest = ordered[:GROUP_ROWS], ordered[GROUP_ROWS:]
    rows = []
    for group in shown:
        counts = {s.value: tally[(group, s.value)] for s in Status}
        rows.append(f"<tr><td>{_e(group or '(none)')}</td>{_status_cells(counts)}"
                    f"<td>{_bar(counts)}</td></tr>")
    if rest:
        counts = {s.value: sum(tally[(g, s.value)] for g in rest) for s in Status}
        rows.append(f"<tr><td>{len(rest)} more</td>{_status_cells(counts)}"
                    f"<td>{_bar(counts)}</td></tr>")
    header = "".join(f"<th>{_e(STATUS_LABELS[s])}</th>" for s in STATUS_ORDER)
    return (f"<h2>{_e(title)}</h2><table><tr><th>{_e(column.upper() if column == 'dag' else 'AD site')}"
            f"</th>{header}<th></th></tr>{''.join(rows)}</table>")


Investigations = Mapping[int, Mapping[tuple[str, str | None], int]]


def report_html(snapshot: SnapshotInfo, history: Sequence[SnapshotInfo], table: pd.DataFrame,
                chain: str, now: datetime, demo: bool = False,
                deadlines: pd.DataFrame | None = None, policy: str = "",
                moment: datetime | None = None, investigations: Investigations | None = None,
                triage: TriagePolicy | None = None) -> str:
    """The report of ``snapshot`` (its host table as ``views.data.host_table`` gives it,
    ``history`` oldest first), stating ``chain`` (the verification state, in words) and when
    it was made (``now``, aware). ``deadlines``: the open hosts' due times
    (``views.data.deadlines``) under ``policy`` (in words), judged at ``moment`` (default
    ``now``). ``investigations``: per snapshot id, its hosts per (status, stored investigation
    state) (``views.data.investigation_trend``; None: no investigation section or column),
    under the snapshot's own advisory's ``triage`` (its directive). Returns a whole HTML
    document."""
    needs = Counter(value for value in table["need"] if value)
    waiting = sum(needs.values())
    parts = ", ".join(f"{needs.get(PRIORITY_NAMES[p], 0)} "
                      f"{'with ' if p == 0 else ''}{PRIORITY_NAMES[p]}" for p in (1, 2, 3, 0))
    share, patched, affected = patched_share(snapshot.counts)
    fresh, fleet = snapshot.coverage
    trend = []
    for info in list(history)[-TREND_POINTS:]:
        info_share = patched_share(info.counts)[0]
        unread = ("" if investigations is None else
                  f'<td class="n">{_not_investigated(investigations.get(info.id))}</td>')
        trend.append(f"<tr><td>#{info.id}</td><td>{info.taken_at:%Y-%m-%d %H:%M}</td>"
                     f'<td class="n">{info.host_count}</td><td class="n">{info_share:.0f}%</td>'
                     f"{unread}{_status_cells(info.counts)}<td>{_bar(info.counts)}</td></tr>")
    status_header = "".join(f"<th>{_e(STATUS_LABELS[s])}</th>" for s in STATUS_ORDER)
    unread_header = "" if investigations is None else f"<th>{_e(NOT_INVESTIGATED_TITLE)}</th>"
    section = ("" if investigations is None else
               _investigation_part(investigations.get(snapshot.id, {}), triage))
    key = "".join(f'<span style="background:{STATUS_COLORS[s]}"></span>{_e(STATUS_LABELS[s])}'
                  for s in STATUS_ORDER)
    bad = not chain.lower().startswith("verified")
    headline = (f"{waiting} server{'s' if waiting != 1 else ''} need action: {parts}"
                if waiting else "No server needs action")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>ProxyLogon compliance report, snapshot {snapshot.id}</title>
<style>{_STYLE}</style></head><body>
<h1>ProxyLogon compliance{' (DEMO DATA: a fictional fleet)' if demo else ''}</h1>
<div class="meta">Report made {now:%Y-%m-%d %H:%M} UTC from snapshot #{snapshot.id}, taken
{snapshot.taken_at:%Y-%m-%d %H:%M} UTC ({_e(snapshot.source)}: {_e(snapshot.label or snapshot.scope)}),
digest {_e(snapshot.hash[:16])}…; catalogue {_e(snapshot.catalog_version)}; advisory
{_e(snapshot.advisory_id)} v{_e(snapshot.advisory_version)}.</div>
<div class="{'chain-bad' if bad else 'chain-ok'}">Snapshot chain: {_e(chain)}</div>
<div class="headline">{_e(headline)}</div>
<div>{share:.0f}% of affected servers patched ({patched} of {affected}); {fleet} servers in the
fleet, {fresh} with a fresh observation. Unknown servers are never counted as patched.</div>
<div class="key">{key}</div>
{_deadline_part(deadlines, policy, moment or now)}
{section}
<h2>Trend (last {len(trend)} snapshots)</h2>
<table><tr><th>Snapshot</th><th>Taken (UTC)</th><th>Servers</th><th>% patched</th>{unread_header}
{status_header}<th></th></tr>{''.join(trend)}</table>
{_group_table(table, "site", "Status by AD site")}
{_group_table(table, "dag", "Status by DAG")}
</body></html>
"""


# The investigation after the fix (issue 21), in the Overview's words: its states by label
# (views/labels.py), its figure "Patched, not investigated".
NOT_INVESTIGATED_TITLE = "Patched, not investigated"
INVESTIGATION_COLUMNS = (InvestigationState.NOT_INVESTIGATED, InvestigationState.INCOMPLETE,
                         InvestigationState.CLEAN, InvestigationState.INDICATORS_FOUND)


def _not_investigated(counts: Mapping[tuple[str, str | None], int] | None) -> str:
    """A trend cell: the patched servers not investigated, and those of a snapshot saved
    before issue 21 as "not read" (no state stored: never clean); "" when not counted."""
    if counts is None:
        return ""
    split = investigation_split(counts)
    shown, unread = split.get(InvestigationState.NOT_INVESTIGATED.value, 0), split.get(NOT_READ, 0)
    if unread and not shown:
        return f"{unread} not read"
    return f"{shown} + {unread} not read" if unread else str(shown)


def _investigation_part(counts: Mapping[tuple[str, str | None], int],
                        triage: TriagePolicy | None) -> str:
    """Of the patched and the mitigated servers, how many in each state: a server whose row
    holds no state (saved before issue 21) counts as not investigated, as on the Overview,
    and is said so."""
    rows, unread, figure = [], 0, 0
    for status in (Status.PATCHED, Status.MITIGATED):
        split = investigation_split(counts, status.value)
        missing = split.pop(NOT_READ, 0)
        split[InvestigationState.NOT_INVESTIGATED.value] = (
            split.get(InvestigationState.NOT_INVESTIGATED.value, 0) + missing)
        if status is Status.PATCHED:
            unread, figure = missing, split[InvestigationState.NOT_INVESTIGATED.value]
        cells = "".join(f'<td class="n">{split.get(state.value, 0)}</td>'
                        for state in INVESTIGATION_COLUMNS)
        rows.append(f"<tr><td>{_e(STATUS_LABELS[status])}</td>{cells}"
                    f'<td class="n">{sum(split.values())}</td></tr>')
    header = "".join(f"<th>{_e(INVESTIGATION_LABELS[state])}</th>"
                     for state in INVESTIGATION_COLUMNS)
    before = (f" {unread} of them saved before issue 21: no traces recorded, counted as not "
              "investigated, never as clean." if unread else "")
    return (f"<h2>Patched is not clean: has anyone looked for a back door?</h2>"
            f"<div><b>{figure} patched server{'s' if figure != 1 else ''} not investigated</b>"
            f" (no full malware scan recorded after the fix).{_e(before)}</div>"
            f"<table><tr><th>Status</th>{header}<th>Servers</th></tr>{''.join(rows)}</table>"
            f"<div class=\"meta\">{_e(_directive_words(triage))}</div>")


def _directive_words(triage: TriagePolicy | None) -> str:
    if triage is None:
        return "The advisory defines no triage directive."
    every = ("weekly" if triage.followup_interval_days == 7 else
             f"every {triage.followup_interval_days} days")
    return (f"Directive: {triage.directive}: a full scan ({triage.scan_command}) after the fix, "
            f"due by {triage.first_scan_by:%Y-%m-%d %H:%M} UTC (or "
            f"{triage.first_scan_within_days} days after a later fix), then "
            f"{triage.followup_scans} {every} scans.")


OVERDUE_ROWS = 15  # overdue servers listed by name; the rest counted


def _deadline_part(deadlines: pd.DataFrame | None, policy: str, moment: datetime) -> str:
    """Overdue and soon-due counts, the oldest open item and the first overdue servers."""
    if deadlines is None or not len(deadlines):
        return ""
    at = pd.Timestamp(moment)
    late = deadlines[deadlines["due"] <= at]
    soon = int(((deadlines["due"] > at) & (deadlines["due"] <= at + pd.Timedelta(days=7))).sum())
    opened = deadlines.dropna(subset=["open_since"]).sort_values(["open_since", "due"])
    oldest = ""
    if len(opened):
        first = opened.iloc[0]
        oldest = (f" Oldest open item: {_e(first['host'])}, needing work since "
                  f"{first['open_since']:%Y-%m-%d %H:%M} UTC"
                  + (" or earlier" if first["pruned_before"] else "")
                  + f", due {first['due']:%Y-%m-%d %H:%M} UTC.")
    rows = "".join(f"<tr><td>{_e(r['host'])}</td><td>{r['due']:%Y-%m-%d %H:%M}</td>"
                   f"<td>{_e(r['deadline_rule'])}</td></tr>"
                   for _, r in late.head(OVERDUE_ROWS).iterrows())
    more = (f"<div>… and {len(late) - OVERDUE_ROWS} more overdue servers (the Worklist lists "
            "them all).</div>" if len(late) > OVERDUE_ROWS else "")
    table = (f"<table><tr><th>Overdue server</th><th>Due (UTC)</th><th>Rule</th></tr>{rows}"
             f"</table>{more}" if rows else "")
    return (f"<h2>Deadlines</h2><div><b>{len(late)} overdue</b>, {soon} due within 7 days, "
            f"as of {moment:%Y-%m-%d %H:%M} UTC.{oldest}</div>"
            f"<div class=\"meta\">Policy: {_e(policy)}.</div>{table}")

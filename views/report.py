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

from compliance.models import Status
from compliance.worklist import PRIORITY_NAMES
from store import SnapshotInfo
from views.labels import STATUS_COLORS, STATUS_LABELS, STATUS_ORDER
from views.markdown import visible
from views.summary import patched_share

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


def report_html(snapshot: SnapshotInfo, history: Sequence[SnapshotInfo], table: pd.DataFrame,
                chain: str, now: datetime, demo: bool = False,
                deadlines: pd.DataFrame | None = None, policy: str = "",
                moment: datetime | None = None) -> str:
    """The report of ``snapshot`` (its host table as ``views.data.host_table`` gives it,
    ``history`` oldest first), stating ``chain`` (the verification state, in words) and when
    it was made (``now``, aware). ``deadlines``: the open hosts' due times
    (``views.data.deadlines``) under ``policy`` (in words), judged at ``moment`` (default
    ``now``). Returns a whole HTML document."""
    needs = Counter(value for value in table["need"] if value)
    waiting = sum(needs.values())
    parts = ", ".join(f"{needs.get(PRIORITY_NAMES[p], 0)} "
                      f"{'with ' if p == 0 else ''}{PRIORITY_NAMES[p]}" for p in (1, 2, 3, 0))
    share, patched, affected = patched_share(snapshot.counts)
    fresh, fleet = snapshot.coverage
    trend = []
    for info in list(history)[-TREND_POINTS:]:
        info_share = patched_share(info.counts)[0]
        trend.append(f"<tr><td>#{info.id}</td><td>{info.taken_at:%Y-%m-%d %H:%M}</td>"
                     f'<td class="n">{info.host_count}</td><td class="n">{info_share:.0f}%</td>'
                     f"{_status_cells(info.counts)}<td>{_bar(info.counts)}</td></tr>")
    status_header = "".join(f"<th>{_e(STATUS_LABELS[s])}</th>" for s in STATUS_ORDER)
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
<h2>Trend (last {len(trend)} snapshots)</h2>
<table><tr><th>Snapshot</th><th>Taken (UTC)</th><th>Servers</th><th>% patched</th>{status_header}
<th></th></tr>{''.join(trend)}</table>
{_group_table(table, "site", "Status by AD site")}
{_group_table(table, "dag", "Status by DAG")}
</body></html>
"""


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

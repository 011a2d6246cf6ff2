"""What every page starts with: the snapshot it shows, or a clear word that there is none."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import streamlit as st

from compliance.models import Assessment
from settings import Settings
from store import SnapshotInfo, StoreError
from views import data
from views.data import OutsideTables
from views.markdown import literal


@dataclass(frozen=True)
class PageContext:
    config: Settings
    snapshot: SnapshotInfo
    previous: SnapshotInfo | None
    history: list[SnapshotInfo]


def current() -> PageContext:
    """The latest snapshot and its predecessor; stops the page when the store is empty."""
    config = data.settings()
    history = data.snapshots(config.store_url)
    if not history:
        st.info("No snapshot yet. Run a collection (`python -m collectors collect`, see the "
                "README) or turn on the demo fleet with `[dashboard] demo = true`.")
        st.stop()
    previous = history[-2] if len(history) > 1 else None
    return PageContext(config, history[-1], previous, history)


def advisory_shown(ctx: PageContext) -> str | None:
    """The advisory the page judges by (``data.chosen_advisory``), said under the caption;
    a snapshot saved before per-advisory verdicts is said to hold none for it."""
    advisory = data.chosen_advisory(ctx.snapshot)
    if advisory is None:
        return None
    st.caption(f"Judged by: **{literal(data.advisory_label(advisory))}** (choose in the sidebar)")
    if not data.judged_by_others(ctx.config.store_url, ctx.snapshot.id):
        st.warning("This snapshot was saved before per-advisory verdicts: it holds the March "
                   "2021 verdicts only, so every server shows as unknown for the other "
                   "advisories. Collect again to judge them.", icon=":material/history:")
    return advisory


def age_text(taken_at: datetime, now: datetime | None = None) -> str:
    seconds = ((now or datetime.now(UTC)) - taken_at).total_seconds()
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min ago"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def snapshot_caption(ctx: PageContext) -> None:
    snap = ctx.snapshot
    st.caption(
        f"As of **{snap.taken_at:%Y-%m-%d %H:%M} UTC** ({age_text(snap.taken_at)}) · snapshot "
        f"#{snap.id} · {snap.host_count} hosts · catalogue {literal(snap.catalog_version)} · "
        f"advisory {literal(snap.advisory_id)} v{literal(snap.advisory_version)}"
    )
    if datetime.now(UTC) - snap.taken_at > ctx.config.max_age:
        st.warning(f"The latest snapshot is older than {ctx.config.max_age.days} days: its "
                   "verdicts may no longer reflect the servers. Run a collection.")


def observed_by(assessment: Assessment, snapshot_id: int, by_id: dict[int, SnapshotInfo]) -> str:
    """Markdown: which run observed the host and when, and why it is in the fleet."""
    obs = assessment.observation
    seen = f"{obs.observed_at:%Y-%m-%d %H:%M} UTC" if obs.observed_at else "never"
    source = assessment.observed_in if assessment.carried else snapshot_id
    run = by_id.get(source) if source is not None else None
    where = (f"snapshot #{source} ({literal(run.source)}: {literal(run.label or run.scope)})"
             if run is not None else f"snapshot #{source}")
    if assessment.carried:
        text = (f"**Observed by:** {where}, at {seen}; **carried forward**: this snapshot's "
                "run did not observe it, so its verdict is that observation graded again now")
    else:
        text = f"**Observed by:** this snapshot's run, {where}, at {seen}"
    if assessment.scopes:
        text += " · **in the fleet through:** " + ", ".join(literal(s) for s in assessment.scopes)
    return text


# Where a snapshot without the outside view says how to turn it on.
OUTSIDE_OFF = ("The outside view is off for this snapshot: its run did not fingerprint OWA/ECP "
               "(set `[fingerprint] enabled = true` in the collection config, docs/fingerprint.md).")


def outside_view(url: str, snapshot_id: int) -> OutsideTables | None:
    """The snapshot's outside view (``data.outside``); None when it was not fingerprinted, or
    when its stored document cannot be read, which is then said on the page."""
    try:
        return data.outside(url, snapshot_id)
    except (StoreError, ValueError, TypeError, KeyError, OverflowError) as error:
        # A document no writer of this tool makes (verify names the snapshot): said, not a crash.
        st.error(f"**The outside view of snapshot #{snapshot_id} cannot be read.** "
                 f"{literal(str(error) or type(error).__name__)}")
        return None

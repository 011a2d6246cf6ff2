"""How the dashboard names and colours things: one mapping for every page, chart and table.

Status colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), and a status is never shown by colour alone: its label is always beside it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from compliance.investigation import InvestigationState, StepState
from compliance.models import Flag, Status
from compliance.outside import FindingKind
from compliance.outside_record import CU_LEVEL, FULL_BUILD

STATUS_ORDER = (Status.PATCHED, Status.NOT_APPLICABLE, Status.MITIGATED, Status.VULNERABLE,
                Status.UNKNOWN)
STATUS_LABELS = {
    Status.PATCHED: "Patched",
    Status.NOT_APPLICABLE: "Not affected",
    Status.MITIGATED: "Mitigated only",
    Status.VULNERABLE: "Vulnerable",
    Status.UNKNOWN: "Unknown",
}
STATUS_COLORS = {  # Okabe & Ito (2008)
    Status.PATCHED: "#0072B2",        # blue
    Status.NOT_APPLICABLE: "#999999",  # grey
    Status.MITIGATED: "#E69F00",      # orange
    Status.VULNERABLE: "#D55E00",     # vermillion
    Status.UNKNOWN: "#CC79A7",        # reddish purple
}
FLAG_LABELS = {
    Flag.UNSUPPORTED_CU: "CU without the update",
    Flag.CU_UPDATE_REQUIRED: "CU update required",
    Flag.INDICATORS_FOUND: "Compromise indicators",
    Flag.NOT_IN_CATALOG: "Build not in catalogue",
    Flag.DISPUTED_BUILD: "Disputed build",
    Flag.SUSPICIOUS_FILES: "Suspicious files",
    Flag.MITIGATION_UNREADABLE: "Mitigation unreadable",
    Flag.OUT_OF_SUPPORT: "Out of support",
    Flag.INDICATORS_UNREADABLE: "Indicators unreadable",
    Flag.OUTSIDE_OLDER_THAN_INSIDE: "OWA/ECP older than the server",
    Flag.WEB_CONFIG_BROKEN: "OWA/ECP web.config broken",
}
# The investigation after the fix (issue 21): beside the patch status, never changing it.
INVESTIGATION_LABELS = {
    InvestigationState.INDICATORS_FOUND: "Indicators found",
    InvestigationState.NOT_INVESTIGATED: "Not investigated",
    InvestigationState.INCOMPLETE: "Investigation incomplete",
    InvestigationState.CLEAN: "Investigated, clean",
    InvestigationState.NOT_APPLICABLE: "Not affected",
}
STEP_LABELS = {StepState.MET: "met", StepState.DUE: "due now", StepState.PENDING: "not due yet",
               StepState.MISSED: "missed"}
# The investigation trend: a snapshot saved before issue 21 holds no state (NULL), shown as not
# read, never as clean. Colours: Okabe & Ito, as the statuses', with the label always beside.
NOT_READ = "not_read"
NOT_READ_LABEL = "Not read (saved before issue 21)"
INVESTIGATION_TREND_ORDER = (InvestigationState.CLEAN.value, InvestigationState.INCOMPLETE.value,
                             InvestigationState.NOT_INVESTIGATED.value,
                             InvestigationState.INDICATORS_FOUND.value, NOT_READ)
INVESTIGATION_COLORS = {
    InvestigationState.CLEAN.value: "#009E73",             # bluish green
    InvestigationState.INCOMPLETE.value: "#56B4E9",        # sky blue
    InvestigationState.NOT_INVESTIGATED.value: "#E69F00",  # orange
    InvestigationState.INDICATORS_FOUND.value: "#D55E00",  # vermillion
    InvestigationState.NOT_APPLICABLE.value: "#999999",    # grey
    NOT_READ: "#999999",                                   # grey
}
# The outside view (issue 18): what a namespace showed against the fleet, and how far a
# disclosed build can be trusted (a three-part logon path never shows the Security Update).
FINDING_LABELS = {
    FindingKind.NAMESPACE_SERVES_UNPATCHED: "Namespace serves an unpatched build",
    FindingKind.NOT_IN_INVENTORY: "Build of no server in the inventory",
}
CERTAINTY_LABELS = {
    FULL_BUILD: "full build (Security Update level)",
    CU_LEVEL: "CU level only",
}
# Table headers: the column keys stay the CSV's, people read these.
COLUMN_LABELS = {
    "host": "Host", "fqdn": "FQDN", "status": "Status", "product": "Product", "cu": "CU",
    "build": "Build", "build_source": "Build read from", "known_build": "Build catalogued",
    "release": "Release", "site": "AD site", "dag": "DAG", "roles": "Roles", "flags": "Flags",
    "mitigations": "Mitigations seen", "cves_open": "CVEs open", "action": "Next action",
    "reason": "Why", "observed_at": "Last observed (UTC)", "observed_in": "Observed in snapshot",
    "carried": "Carried forward", "failure_reason": "Failure", "failure_detail": "Failure detail",
    "indicator_count": "Indicator hits", "wave": "Wave", "priority": "Priority",
    "need": "Needs", "owner": "Owner", "snapshot_id": "Snapshot", "snapshot_taken_at":
    "Snapshot taken at", "internet_facing": "Internet-facing", "category": "Change",
    "before": "Before", "after": "After", "detail": "Detail", "accepted": "Risk accepted",
    "due": "Due (UTC)", "overdue": "Overdue", "deadline_rule": "Deadline rule",
    "open_since": "Open since (UTC)",
    # issue 19: the upgrade plan's first step and the Security Update level
    "next_step": "Next step (upgrade plan)", "next_kb": "Next step KB",
    "next_link": "Next step link", "su_level": "Security Update level",
    # the outside view's tables (views/data.py ``outside``)
    "name": "Endpoint", "kind": "Kind", "url": "URL", "tls_verified": "Certificate valid",
    "tls_problem": "Certificate problem", "disclosed": "Builds disclosed",
    "owa_status": "OWA status", "owa_seconds": "OWA seconds", "ecp_status": "ECP status",
    "ecp_seconds": "ECP seconds", "carried_from": "Carried from snapshot",
    "namespace": "Namespace", "finding": "Finding", "builds": "Builds at issue",
    "seen": "Builds seen", "hosts": "Hosts behind",
    "source": "Disclosed by", "certainty": "Certainty", "raw": "As sent", "where": "Path",
    "problem": "Problem",
    # issue 21: the investigation after the fix
    "investigation": "Investigation", "investigation_action": "Investigation: next action",
}


def status_label(value: str) -> str:
    """The label of a stored status value; an unknown value is shown as it is."""
    try:
        return STATUS_LABELS[Status(value)]
    except ValueError:
        return value


def flag_label(value: str) -> str:
    try:
        return FLAG_LABELS[Flag(value)]
    except ValueError:
        return value


def investigation_label(value: object) -> str:
    if value == NOT_READ:
        return NOT_READ_LABEL
    try:
        return INVESTIGATION_LABELS[InvestigationState(str(value))]
    except ValueError:
        return str(value)


def finding_label(value: str) -> str:
    try:
        return FINDING_LABELS[FindingKind(value)]
    except ValueError:
        return value


def certainty_label(value: str) -> str:
    return CERTAINTY_LABELS.get(value, value)


def status_color(value: str) -> str:
    try:
        return STATUS_COLORS[Status(value)]
    except ValueError:
        return "#999999"


def status_chips(table: pd.DataFrame, columns: tuple[str, ...] = ("status",)) -> pd.DataFrame:
    """A copy of ``table`` whose ``columns`` (status values) are one-value lists, for
    ``status_column``: Streamlit draws them as coloured chips natively (a pandas Styler would
    style every cell of the table, slowly, and refuses past 262,144 cells). An empty value
    (no verdict) is an empty list."""
    shown = table.copy(deep=False)  # the other columns are shared, never written
    for column in columns:
        shown[column] = [[value] if value else [] for value in table[column].tolist()]
    return shown


def compact(table: pd.DataFrame, share: float = 0.1) -> pd.DataFrame:
    """A copy of ``table`` in which each text column with few distinct values (at most
    ``share`` of its rows) is categorical: ``st.dataframe`` then sends each value once and a
    small number per row (Arrow's dictionary encoding), not the text of every cell, so a
    50,000-host table is a fraction of the bytes to build, hold and send. The cells read and
    sort the same (categories are the values, sorted)."""
    shown = table.copy(deep=False)
    limit = max(1, int(len(table) * share))
    for column in table.columns:
        values = table[column]
        if isinstance(values.dtype, pd.StringDtype) and values.nunique(dropna=False) <= limit:
            shown[column] = values.astype("category")
    return shown


def status_column(label: str = COLUMN_LABELS["status"], **options: Any) -> Any:
    """The ``st.dataframe`` column of ``status_chips``: each status by its label on its
    colour (a value no writer of this tool makes is shown as it is, uncoloured)."""
    import streamlit as st

    return st.column_config.MultiselectColumn(
        label, options=[s.value for s in STATUS_ORDER],
        color=[STATUS_COLORS[s] for s in STATUS_ORDER], format_func=status_label, **options)


def deadline_columns() -> dict[str, Any]:
    """The ``st.dataframe`` columns ``due`` (a UTC time) and ``overdue`` (a tick)."""
    import streamlit as st

    return {
        "due": st.column_config.DatetimeColumn(
            COLUMN_LABELS["due"], format="YYYY-MM-DD HH:mm", timezone="UTC",
            help="By when the host must be fixed under the [deadlines] policy; empty when it "
                 "needs nothing"),
        "overdue": st.column_config.CheckboxColumn(COLUMN_LABELS["overdue"]),
    }

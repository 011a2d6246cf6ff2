"""How the dashboard names and colours things: one mapping for every page, chart and table.

Status colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies), and a status is never shown by colour alone: its label is always beside it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from compliance.models import Flag, Status

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
    "before": "Before", "after": "After", "detail": "Detail",
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


def status_color(value: str) -> str:
    try:
        return STATUS_COLORS[Status(value)]
    except ValueError:
        return "#999999"


def styled_status(table: pd.DataFrame) -> Any:
    """The table with its ``status`` column shown by label on its status colour (a pandas
    Styler for ``st.dataframe``); the other columns as they are."""
    shown = table.copy()
    shown["status"] = shown["status"].map(status_label)
    # Text colour for contrast: white on the blue, black on the lighter colours.
    css = {STATUS_LABELS[s]: f"background-color: {STATUS_COLORS[s]}; color: "
                             f"{'white' if s is Status.PATCHED else 'black'}" for s in Status}
    return shown.style.map(lambda label: css.get(label, "background-color: #999999"),
                           subset=["status"])

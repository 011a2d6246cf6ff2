"""One mapping of labels and colours: every status and flag named, colours distinct, the
pages' words the same everywhere."""

from __future__ import annotations

import pandas as pd

from compliance.models import Flag, Status
from views import labels
from views.summary import kpis


def test_every_status_and_flag_has_one_label_and_statuses_distinct_colours():
    assert set(labels.STATUS_LABELS) == set(Status) == set(labels.STATUS_COLORS)
    assert set(labels.STATUS_ORDER) == set(Status)
    assert len(set(labels.STATUS_LABELS.values())) == len(Status)
    assert len(set(labels.STATUS_COLORS.values())) == len(Status)
    assert set(labels.FLAG_LABELS) == set(Flag)
    assert labels.status_label("mitigated") == "Mitigated only"
    assert labels.status_label("not_applicable") == "Not affected"
    assert labels.status_label("forged") == "forged"  # shown as it is, never as another
    assert labels.flag_label("indicators_found") == "Compromise indicators"


def test_the_kpis_use_the_same_status_words():
    named = {k.key: k.label for k in kpis({"mitigated": 1, "vulnerable": 1, "unknown": 1})}
    for status in (Status.MITIGATED, Status.VULNERABLE, Status.UNKNOWN):
        assert named[status.value] == labels.STATUS_LABELS[status]


def test_the_status_column_is_shown_by_label_on_its_colour():
    table = pd.DataFrame({"host": ["A", "B"], "status": ["vulnerable", "patched"]})
    shown = labels.status_chips(table)
    assert list(shown["status"]) == [["vulnerable"], ["patched"]]
    assert list(table["status"]) == ["vulnerable", "patched"]  # the caller's table unchanged
    column = labels.status_column()
    assert column["type_config"]["options"] == [
        {"value": s.value, "label": labels.STATUS_LABELS[s], "color": labels.STATUS_COLORS[s]}
        for s in labels.STATUS_ORDER]

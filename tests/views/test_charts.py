"""Chart builders are pure: traces, colours per status, labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from compliance.models import Status
from views.charts import burn_down, plain, status_bars, status_by_group, status_trend
from views.labels import STATUS_COLORS


def test_status_bars_use_fixed_order_colours_and_skip_empty_statuses():
    fig = status_bars({"vulnerable": 3, "patched": 5, "unknown": 0, "mitigated": 2})
    bars = fig.data[0]
    assert list(bars.y) == ["Patched", "Mitigated only", "Vulnerable"]
    assert list(bars.x) == [5, 2, 3]
    assert list(bars.marker.color) == [STATUS_COLORS[Status.PATCHED],
                                       STATUS_COLORS[Status.MITIGATED],
                                       STATUS_COLORS[Status.VULNERABLE]]
    # the KPI's definition: patched of affected (no host here is "not affected")
    assert fig.layout.title.text.endswith("50% patched (5 of 10 affected)")
    assert [list(c) for c in bars.customdata] == [["patched"], ["mitigated"], ["vulnerable"]]
    with_na = status_bars({"patched": 3, "not_applicable": 2, "vulnerable": 1})
    assert with_na.layout.title.text.endswith("75% patched (3 of 4 affected)")


def test_group_bars_stack_statuses_per_group_in_natural_order():
    rows = [
        {"g": "2016 CU19", "status": "patched"},
        {"g": "2016 CU19", "status": "vulnerable"},
        {"g": "2016 CU9", "status": "vulnerable"},
        {"g": "", "status": "unknown"},
    ]
    fig = status_by_group(rows, "g", "By CU")
    names = [trace.name for trace in fig.data]
    assert names == ["Patched", "Vulnerable", "Unknown"]
    vulnerable = fig.data[1]
    assert list(vulnerable.y) == ["2016 CU9", "2016 CU19", "(none)"]
    assert list(vulnerable.x) == [1, 1, 0]
    assert vulnerable.marker.color == STATUS_COLORS[Status.VULNERABLE]
    assert fig.layout.barmode == "stack"
    assert fig.layout.title.text == "By CU"


def test_trend_has_one_stacked_series_per_present_status():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    fig = status_trend([t0, t0 + timedelta(weeks=1)],
                       [{"patched": 1, "vulnerable": 4}, {"patched": 4, "vulnerable": 1}])
    assert [t.name for t in fig.data] == ["Patched", "Vulnerable", "Patched % of affected"]
    assert list(fig.data[0].y) == [1, 4]
    assert all(t.stackgroup == "status" for t in fig.data[:2])
    assert list(fig.data[2].y) == [20.0, 80.0] and fig.data[2].yaxis == "y2"


def test_burn_down_draws_the_projection_to_zero():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    fig = burn_down([t0, t0 + timedelta(weeks=1)], [20, 10], t0 + timedelta(weeks=2))
    assert list(fig.data[0].y) == [20, 10]
    assert list(fig.data[1].y) == [10, 0] and "2026-11-15" in fig.data[1].name
    assert len(burn_down([t0], [5], None).data) == 1


def test_group_labels_from_ad_are_shown_as_text_not_markup():
    hostile = '<a href="https://evil.example">Site</a><b>x</b>'
    fig = status_by_group([{"g": hostile, "status": "patched"}, {"g": "S&P", "status": "patched"}],
                          "g", "By site")
    labels = list(fig.data[0].y)
    assert "<" not in "".join(labels) and plain(hostile) in labels
    assert "S&amp;P" in labels  # plotly shows the entity as "&": the text comes out unchanged


def _every_chart() -> list[object]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [{"g": "S1", "status": "patched", "hosts": 3}, {"g": "", "status": "vulnerable"},
            {"g": "S2", "status": "indicators"}]
    return [status_bars({"patched": 5, "vulnerable": 2, "not_applicable": 1}),
            status_by_group(rows, "g", "By site"),
            status_trend([t0, t0 + timedelta(weeks=1)], [{"patched": 1, "unknown": 4}, {"patched": 5}]),
            status_trend([], []),
            burn_down([t0, t0 + timedelta(weeks=1)], [20, 10], t0 + timedelta(weeks=2)),
            burn_down([], [], None)]


def test_charts_built_without_validation_are_what_plotly_validates_them_to():
    """The builders skip plotly's per-property validation (its cost is most of a page's chart
    time); plotly building each figure again from its JSON, validating every property
    (an unknown or ill-typed one raises), must give back the very same figure."""
    import json

    import plotly.graph_objects as go

    for fig in _every_chart():
        assert isinstance(fig, go.Figure)
        spec = fig.to_plotly_json()
        validated = go.Figure(spec)  # raises on an invalid property
        assert json.loads(validated.to_json()) == json.loads(fig.to_json())
        assert spec["layout"]["template"]["layout"]["plot_bgcolor"] == "white"  # plotly_white


def test_an_invalid_spec_is_refused_when_validated():
    """The round trip above can fail: a misspelt property is refused by the validating build."""
    import plotly.graph_objects as go
    import pytest

    with pytest.raises(ValueError):
        go.Figure({"data": [{"type": "bar", "orientaton": "h"}]})

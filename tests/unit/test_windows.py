"""Windowing arithmetic, metric derivations and expectation gaps (pure, no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.core.cem_metrics import COUNTS, RATIOS, derive_scores, gap, window_start
from services.scoring.windows import granularities, window_label


def test_window_start_aligns_to_utc_epoch_multiples() -> None:
    moment = datetime(2026, 11, 23, 10, 7, 59, 999000, tzinfo=UTC)
    assert window_start(moment, 60) == datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
    assert window_start(moment, 300) == datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    assert window_start(moment, 86400) == datetime(2026, 11, 23, tzinfo=UTC)
    shanghai = moment.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert window_start(shanghai, 60) == window_start(moment, 60)


def test_boundary_event_belongs_to_the_next_window() -> None:
    edge = datetime(2026, 11, 23, 10, 8, 0, tzinfo=UTC)
    assert window_start(edge, 60) == edge
    assert window_start(edge - timedelta(microseconds=1), 60) == edge - timedelta(minutes=1)


def test_levels_chain_from_the_base_window() -> None:
    assert granularities(60) == (60, 300, 3600, 86400)
    assert granularities(300) == (300, 3600, 86400)
    assert [window_label(s) for s in granularities(30)] == ["30s", "5m", "1h", "1d"]


def test_ratios_from_counts_and_empty_survey_metrics() -> None:
    counts = {c.name: 0 for c in COUNTS} | {
        "volume": 4, "positive_count": 1, "negative_count": 3, "sentiment_sum": -2.0,
        "csat_responses": 2, "csat_satisfied": 1, "ces_responses": 1, "ces_sum": 5.0,
        "complaint_count": 1}
    derived = derive_scores(counts)
    assert derived.keys() == {r.name for r in RATIOS}, "every ratio of the catalogue"
    assert {name: derived[name] for name in (
        "mean_sentiment", "net_sentiment", "negative_share", "nps", "csat", "ces",
        "complaint_rate")} == {"mean_sentiment": -0.5, "net_sentiment": -50.0,
                               "negative_share": 0.75, "nps": None, "csat": 50.0, "ces": 5.0,
                               "complaint_rate": 0.25}


@pytest.mark.parametrize(("metric", "value", "target", "expected"), [
    ("nps", 20.0, 30.0, -10.0),            # below target: negative
    ("csat", 90.0, 80.0, 10.0),
    ("negative_share", 0.3, 0.15, -0.15),  # lower is better: more negative than target
    ("ces", 2.0, 3.0, 1.0),                # lower is easier: beating the target is positive
    ("complaint_rate", 0.1, 0.1, 0.0),
    ("nps", None, 30.0, None),             # no responses, no gap
])
def test_gap_is_negative_when_worse_than_expected(metric: str, value: float | None,
                                                   target: float, expected: float | None
                                                   ) -> None:
    assert gap(metric, value, target) == (pytest.approx(expected) if expected is not None
                                          else None)

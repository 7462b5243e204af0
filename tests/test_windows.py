"""Windowing arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scoring.windows import score_from_counts, window_start
from tests.test_events_schema import ENRICHED


def test_window_start_aligns_to_utc_epoch_multiples() -> None:
    moment = datetime(2026, 11, 23, 10, 7, 59, 999000, tzinfo=UTC)
    assert window_start(moment, 60) == datetime(2026, 11, 23, 10, 7, tzinfo=UTC)
    assert window_start(moment, 300) == datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    shanghai = moment.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert window_start(shanghai, 60) == window_start(moment, 60)


def test_boundary_event_belongs_to_the_next_window() -> None:
    edge = datetime(2026, 11, 23, 10, 8, 0, tzinfo=UTC)
    assert window_start(edge, 60) == edge
    assert window_start(edge - timedelta(microseconds=1), 60) == edge - timedelta(minutes=1)


def test_score_from_counts() -> None:
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    row = {"touchpoint": "d", "window_epoch": int(start.timestamp()), "volume": 4,
           "positive_count": 1, "neutral_count": 0, "negative_count": 3, "mean_sentiment": -0.5}
    score = score_from_counts(row, 60, start)
    assert score.window_start == start and score.window_end == start + timedelta(minutes=1)
    assert score.negative_share == 0.75 and score.volume == 4


def test_affected_windows_of_a_batch() -> None:
    from services.scoring.windows import affected_windows

    later = ENRICHED.model_copy(update={"occurred_at": ENRICHED.occurred_at + timedelta(minutes=1),
                                        "touchpoint": "other"})
    assert affected_windows([ENRICHED, ENRICHED, later], 60) == {
        ("delivery", window_start(ENRICHED.occurred_at, 60)),
        ("other", window_start(later.occurred_at, 60)),
    }

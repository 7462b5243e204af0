"""Rule evaluation and the rules file, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.alerting.rules import Rule, evaluate, load_rules, lookback

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RULE = Rule(id="neg", metric="negative_share", operator=">", threshold=0.4, lookback_s=300,
            min_volume=20, cooldown_s=600, severity="critical")


def window(minute: int, volume: int, negatives: int, mean: float = 0.0) -> dict:
    return {"window_start": T0 + timedelta(minutes=minute), "window_seconds": 60,
            "volume": volume, "negative_count": negatives, "mean_sentiment": mean}


def test_lookback_sums_only_windows_inside_it() -> None:
    rows = [window(-1, 100, 100), window(0, 10, 5), window(4, 10, 5), window(5, 50, 50)]
    figures = lookback(RULE, rows, T0 + timedelta(minutes=5))
    assert (figures.volume, figures.negative_count) == (20, 10)
    assert figures.start == T0 and figures.end == T0 + timedelta(minutes=5)


def test_fires_above_threshold_with_enough_volume() -> None:
    figures = lookback(RULE, [window(0, 15, 9), window(1, 10, 4)], T0 + timedelta(minutes=2))
    alert = evaluate(RULE, "delivery", figures, None, T0)
    assert alert is not None
    assert alert.value == pytest.approx(13 / 25)
    assert alert.volume == 25 and alert.dedupe_key == "neg:delivery"
    assert alert.touchpoint == "delivery" and alert.severity == "critical"


@pytest.mark.parametrize(("volume", "negatives"), [(19, 19), (40, 16), (0, 0)])
def test_does_not_fire_on_thin_or_healthy_samples(volume: int, negatives: int) -> None:
    figures = lookback(RULE, [window(0, volume, negatives)], T0 + timedelta(minutes=1))
    assert evaluate(RULE, "delivery", figures, None, T0) is None


def test_cooldown_in_event_time() -> None:
    end = T0 + timedelta(minutes=1)
    bad = [window(0, 30, 30), window(5, 30, 30), window(10, 30, 30)]
    first = evaluate(RULE, "d", lookback(RULE, bad, end), None, T0)
    assert first is not None
    within = lookback(RULE, bad, end + timedelta(minutes=5))
    assert evaluate(RULE, "d", within, first.window_end, T0) is None
    after = lookback(RULE, bad, end + timedelta(minutes=10))
    second = evaluate(RULE, "d", after, first.window_end, T0)
    assert second is not None and second.alert_id != first.alert_id


def test_alert_id_is_deterministic_for_the_same_breach() -> None:
    figures = lookback(RULE, [window(0, 30, 30)], T0 + timedelta(minutes=1))
    assert evaluate(RULE, "d", figures, None, T0).alert_id == \
        evaluate(RULE, "d", figures, None, T0 + timedelta(hours=1)).alert_id


def test_scoping_and_other_metrics() -> None:
    scoped = RULE.model_copy(update={"touchpoints": ["hotline"]})
    figures = lookback(scoped, [window(0, 30, 30)], T0 + timedelta(minutes=1))
    assert evaluate(scoped, "delivery", figures, None, T0) is None
    assert evaluate(scoped, "hotline", figures, None, T0) is not None
    low_mean = Rule(id="m", metric="mean_sentiment", operator="<=", threshold=-0.5,
                    lookback_s=60, min_volume=1)
    f2 = lookback(low_mean, [window(0, 4, 0, mean=-0.6)], T0 + timedelta(minutes=1))
    assert evaluate(low_mean, "x", f2, None, T0).value == pytest.approx(-0.6)


def test_shipped_rules_load() -> None:
    rules = load_rules()
    assert [r.id for r in rules.rules] == ["negative-share-high"]
    assert rules.rules[0].threshold == 0.4 and rules.rules[0].min_volume == 20


@pytest.mark.parametrize(("body", "message"), [
    ("rules: []", "at least 1"),
    ("rules:\n  - {id: a, metric: nps, operator: '>', threshold: 1, lookback_s: 60}", "metric"),
    ("rules:\n  - {id: a, metric: volume, operator: '>', threshold: 1, lookback_s: 60}\n"
     "  - {id: a, metric: volume, operator: '>', threshold: 2, lookback_s: 60}", "duplicate"),
    ("rules: [", "cannot load"),
])
def test_bad_rules_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)

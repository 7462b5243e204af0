"""Rule types, scoping, hysteresis, cooldown, flap control and the lifecycle, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

import schemas
from services.alerting import rulebase
from services.alerting import rules as rules_module
from services.alerting.engine import KeyState, aggregate, in_scope, step, topic_row
from services.alerting.evaluation import lifecycle_alert
from services.alerting.kinds.event import event_alert, event_key
from services.alerting.kinds.figures import baseline_z, measure_metric
from services.alerting.kinds.topic_spike import TopicCounts, measure_topic
from services.alerting.rules import AnomalyRule, RuleSet, load_rules, topic_metrics
from services.core.cem_metrics import TOPIC_SCORE_METRICS, derive_scores, score_counts
from services.core.events import (
    AspectSentiment,
    EnrichedFeedback,
    Sentiment,
    TopicTag,
    UrgencyFlag,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALERT_SCHEMA = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)


def rule(**fields: object):
    """One rule validated exactly as the rules file validates it."""
    base = {"id": "r", "type": "threshold", "metric": "negative_share", "operator": ">",
            "threshold": 0.4, "lookback_s": 300, "min_volume": 20, "cooldown_s": 600,
            "severity": "critical"}
    merged = {**base, **fields}
    if merged["type"] not in ("threshold", "rate_of_change"):
        for name in ("operator", "threshold", "metric" if merged["type"] == "topic_spike" else ""):
            if name not in fields:
                merged.pop(name, None)
    if merged["type"] == "topic_spike":
        merged.pop("min_volume", None)
    return RuleSet.model_validate({"rules": [merged]}).rules[0]


def window(minute: float, volume: int, negatives: int, mean: float = 0.0, **extra: object) -> dict:
    return {"window_start": T0 + timedelta(minutes=minute), "window_seconds": 60,
            "volume": volume, "negative_count": negatives, "positive_count": volume - negatives,
            "neutral_count": 0, "mean_sentiment": mean,
            "negative_share": negatives / volume if volume else 0.0, **extra}


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


# --- the rules file ---------------------------------------------------------------------------

def test_shipped_rules_load_with_every_type_they_use() -> None:
    shipped = load_rules()
    assert [r.id for r in shipped.rules] == ["negative-share-high", "escalation-threat",
                                             "vip-strongly-negative", "detractor-callback",
                                             "churn-risk"]
    first = shipped.rules[0]
    assert (first.threshold, first.clear_threshold, first.min_volume) == (0.4, 0.3, 20)


def test_metrics_come_from_the_score_schema() -> None:
    metrics = rules_module.score_metrics()
    properties = schemas.topic_schema(rules_module.score_schema_name())["properties"]
    assert set(metrics) <= set(properties)
    assert {"volume", "negative_share", "mean_sentiment"} <= set(metrics)
    assert "window_seconds" not in metrics and "touchpoint" not in metrics


@pytest.mark.parametrize(("body", "message"), [
    ("rules: []", "at least 1"),
    ("rules:\n  - {id: a, type: threshold, metric: no_such_metric, operator: '>', threshold: 1,"
     " lookback_s: 60}", "no_such_metric.*choose from"),
    ("rules:\n  - {id: a, type: threshold, metric: volume, operator: '>', threshold: 1, lookback_s: 60}\n"
     "  - {id: a, type: threshold, metric: volume, operator: '>', threshold: 2, lookback_s: 60}",
     "duplicate"),
    ("rules:\n  - {id: a, type: bogus, metric: volume}", "bogus"),
    ("rules:\n  - {id: a, type: threshold, metric: volume, operator: '>', threshold: 5,"
     " clear_threshold: 9, lookback_s: 60}", "healthy side"),
    ("rules:\n  - {id: a, type: threshold, metric: volume, operator: '<', threshold: 5,"
     " clear_threshold: 1, lookback_s: 60}", "healthy side"),
    ("rules:\n  - {id: a, type: anomaly, metric: volume, lookback_s: 600, baseline_s: 1200}",
     "min_baseline_points"),
    ("rules:\n  - {id: a, type: event, match: {}}", "at least one condition"),
    ("rules:\n  - {id: a, type: event, match: {urgency: [on_fire]}}", "on_fire"),
    ("rules:\n  - {id: a, type: threshold, metric: urgent_count, operator: '>', threshold: 1,"
     " lookback_s: 60, scope: {topics: [x]}}", "'urgent_count' is not kept per topic.*"
     "'negative_share'"),
    ("rules:\n  - {id: a, type: anomaly, metric: ces, lookback_s: 60, scope: {topics: [x]}}",
     "'ces' is not kept per topic"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}, route: {notify: [nope]}}",
     "unknown webhooks"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}}\nwebhooks:\n"
     "  w: {url: 'http://x', secret_env: VOC_TEST_SURELY_UNSET_SECRET}", "not set"),
    ("rules:\n  - {id: a, type: topic_spike, topic: t, factor: 0.5, lookback_s: 60}", "factor"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}, unknown_option: 1}",
     "unknown_option"),
    ("rules: [", "cannot load"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}}\n"
     "teams:\n  ops: {notify: [nope]}", "team 'ops' notifies unknown webhooks"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}}\n"
     "teams:\n  ops: {case_actions: [paged]}", "paged"),
    ("rules:\n  - {id: a, type: event, match: {segments: [VIP]}}\n"
     "sla:\n  critical: {ack_minutes: 5, resolve_hours: 1, escalation: [ops-l2, ops-l3]}\n"
     "teams:\n  ops-l2: {}", r"sla.critical.escalation names teams \['ops-l3'\]"),
])
def test_bad_rules_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message) as info:
        load_rules(path)
    assert str(path) in str(info.value)


VALID_RULES = """\
rules:
  - id: fine
    type: event
    match: {segments: [VIP]}
  - id: typo
    type: threshold
    metric: negative_share
    operator: ">"
    threshold: 0.4
    lookback_s: 300
    route: {team: ops, notify: []}
  - id: wrong-side
    type: threshold
    metric: negative_share
    operator: ">"
    threshold: 0.4
    clear_threshold: 0.3
    lookback_s: 300
"""


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("notify: []", "notfy: [room]",
     ":11: rule 'typo' (rules[1]), field route.notfy: Extra inputs are not permitted"),
    ("notify: []", "notify: [room]", ":11: rule 'typo' (rules[1]), field route.notify: rule "
                                     "'typo' notifies unknown webhooks ['room']"),
    ("clear_threshold: 0.3", "clear_threshold: 0.5", ":17: rule 'wrong-side' (rules[2]), field "
     "clear_threshold: clear_threshold 0.5 must be on the healthy side"),
    ('operator: ">"', "operator: '!'", ":8: rule 'typo' (rules[1]), field operator: Input "
                                       "should be '>', '>=', '<' or '<=' (got '!')"),
    ("    metric: negative_share\n", "", ":5: rule 'typo' (rules[1]), field metric: Field "
                                       "required"),
    ("type: event", "type: evnt", ":3: rule 'fine' (rules[0]), field type: Input tag 'evnt'"),
    ("id: fine", "id: typo", ":5: rule 'typo' (rules[1]), field id: duplicate rule id 'typo'"),
    ("match: {segments: [VIP]}", "match: {segments: [VIP]", ":5:3: not valid YAML"),
    (VALID_RULES, "", ": file: the file is empty; it needs a `rules:` list"),
])
def test_errors_name_the_file_line_rule_and_field(tmp_path: Path, old: str, new: str,
                                                  expected: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(VALID_RULES)
    assert [r.id for r in load_rules(path).rules] == ["fine", "typo", "wrong-side"]
    path.write_text(VALID_RULES.replace(old, new, 1))
    with pytest.raises(ValueError) as info:
        load_rules(path)
    assert f"{path}{expected}" in str(info.value)


def test_topic_scoped_metric_errors_name_the_line_and_the_allowed_metrics(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    body = ("rules:\n  - id: fine\n    type: event\n    match: {segments: [VIP]}\n"
            "  - id: logistics-negative\n    type: threshold\n    metric: negative_share\n"
            "    operator: '>'\n    threshold: 0.4\n    lookback_s: 900\n"
            "    scope: {topics: [logistics_delivery]}\n")
    path.write_text(body)
    assert load_rules(path).rules[1].scope.topics == ["logistics_delivery"]
    path.write_text(body.replace("metric: negative_share", "metric: urgent_count"))
    with pytest.raises(ValueError) as info:
        load_rules(path)
    assert (f"{path}:7: rule 'logistics-negative' (rules[1]), field metric: metric "
            "'urgent_count' is not kept per topic, so a rule with scope.topics cannot use it; "
            f"with topics choose from {list(topic_metrics())}") in str(info.value)


def test_topic_metrics_are_score_metrics_a_topic_row_yields() -> None:
    allowed = topic_metrics()
    assert set(allowed) <= set(rules_module.score_metrics())
    assert {"volume", "negative_share", "mean_sentiment", "net_sentiment", "nps", "csat",
            "complaint_rate", "complaint_count"} <= set(allowed)
    assert not {"ces", "ces_responses", "urgent_count", "neutral_count"} & set(allowed)
    assert set(TOPIC_SCORE_METRICS) - set(allowed) == set(), "every derivable figure is a metric"
    shaped = topic_row(topic_window(0, "t", 10, 4, nps_responses=2, csat_responses=1))
    assert all(shaped[name] is not None for name in allowed)


def test_channel_scope_needs_scores_split_by_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    """score.v1 was not split by channel; the check follows whatever the schema says."""
    monkeypatch.setattr(rulebase, "score_has_dimension", lambda name: False)
    with pytest.raises(ValueError, match="scope by channel"):
        rule(scope={"channels": ["app"]})
    monkeypatch.setattr(rulebase, "score_has_dimension", lambda name: True)
    assert rule(scope={"channels": ["app"]}).scope.channels == ["app"]


# --- figures and scope ------------------------------------------------------------------------

def test_aggregate_sums_counts_and_weights_means_inside_the_lookback() -> None:
    rows = [window(-1, 100, 100), window(0, 10, 5, mean=-0.5), window(4, 30, 3, mean=0.5),
            window(5, 50, 50)]
    figures = aggregate(rows, at(0), at(5))
    assert figures.volume == 40
    assert figures.metric("negative_count") == 8
    assert figures.metric("negative_share") == pytest.approx(8 / 40)
    assert figures.metric("mean_sentiment") == pytest.approx((10 * -0.5 + 30 * 0.5) / 40)
    assert aggregate([], at(0), at(5)).metric("mean_sentiment") is None


def test_scope_takes_one_slice_of_the_score_cube() -> None:
    unscoped = rule().scope
    v1_row = window(0, 1, 1)
    total = window(0, 1, 1, channel="", stage="")
    app_all_stages = window(0, 1, 1, channel="app", stage="")
    app_after_sales = window(0, 1, 1, channel="app", stage="售后")
    all_channels_presales = window(0, 1, 1, channel="", stage="售前")
    assert in_scope(unscoped, v1_row) and in_scope(unscoped, total)
    assert not any(in_scope(unscoped, r) for r in (app_all_stages, app_after_sales,
                                                   all_channels_presales))
    by_channel = rules_module.Scope(channels=["app"])
    assert [in_scope(by_channel, r) for r in (total, app_all_stages, app_after_sales)] == [
        False, True, False]
    assert not in_scope(by_channel, window(0, 1, 1, channel="call", stage=""))
    by_stage = rules_module.Scope(stages=["售前"])
    assert in_scope(by_stage, all_channels_presales) and not in_scope(by_stage, app_after_sales)
    both = rules_module.Scope(channels=["app"], stages=["售后"])
    assert in_scope(both, app_after_sales) and not in_scope(both, app_all_stages)


@pytest.mark.parametrize(("scope", "value", "volume"), [
    ({"channels": ["app"]}, 9 / 20, 20),
    ({"channels": ["app", "call"]}, 19 / 30, 30),
    ({"channels": ["app"], "stages": ["售后"]}, 9 / 10, 10),
    ({"stages": ["售后"]}, 12 / 40, 40),
])
def test_scoped_rules_sum_their_slice(monkeypatch: pytest.MonkeyPatch, scope: dict,
                                      value: float, volume: int) -> None:
    monkeypatch.setattr(rulebase, "score_has_dimension", lambda name: True)
    scoped = rule(scope=scope, min_volume=1)
    rows = [window(0, 100, 10, channel="", stage=""), window(0, 40, 12, channel="", stage="售后"),
            window(0, 20, 9, channel="app", stage=""), window(0, 10, 9, channel="app", stage="售后"),
            window(0, 10, 10, channel="call", stage="")]
    m = measure_metric(scoped, rows, at(1))
    assert m.value == pytest.approx(value) and m.volume == volume


def test_survey_figures_are_weighted_by_their_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = {**rules_module.score_metrics(), "nps": "number", "nps_responses": "integer"}
    monkeypatch.setattr("services.alerting.engine.score_metrics", lambda: kinds)
    rows = [window(0, 100, 0, nps=50.0, nps_responses=2), window(1, 10, 0, nps=-20.0,
                                                                nps_responses=8),
            window(2, 50, 0, nps=None, nps_responses=0)]
    figures = aggregate(rows, at(0), at(3))
    assert figures.metric("nps") == pytest.approx((50 * 2 - 20 * 8) / 10)
    assert figures.metric("nps_responses") == 10 and figures.volume == 160


def topic_window(minute: float, topic: str, mentions: int, negatives: int,
                 channel: str = "", stage: str = "", **extra: object) -> dict:
    """A stored ``topic_scores`` row (counts only, as scoring writes them)."""
    return {"touchpoint": "delivery", "channel": channel, "stage": stage, "topic": topic,
            "window_seconds": 60, "window_start": T0 + timedelta(minutes=minute),
            "mentions": mentions, "topic_sentiment_sum": -0.5 * negatives,
            "mean_topic_sentiment": 0.0, "sentiment_sum": -0.8 * negatives + 0.5 * (
                mentions - negatives), "positive_count": mentions - negatives,
            "negative_count": negatives, "nps_responses": 0, "nps_promoters": 0,
            "nps_detractors": 0, "csat_responses": 0, "csat_satisfied": 0,
            "complaint_count": negatives, "computed_ms": 1, **extra}


def test_topic_rows_derive_figures_as_scoring_does() -> None:
    stored = topic_window(0, "logistics_delivery", 20, 9, nps_responses=4, nps_promoters=1,
                          nps_detractors=3, csat_responses=5, csat_satisfied=2)
    shaped = topic_row(stored)
    counts = score_counts(stored, "mentions")
    derived = derive_scores(counts)
    assert shaped["volume"] == 20 and shaped["negative_count"] == 9
    for name in ("negative_share", "mean_sentiment", "net_sentiment", "nps", "csat",
                 "complaint_rate"):
        assert shaped[name] == derived[name]
    assert (shaped["negative_share"], shaped["nps"], shaped["csat"]) == (0.45, -50.0, 40.0)
    assert shaped["topic"] == "logistics_delivery" and "ces" not in shaped


def test_topic_scope_takes_the_topic_rows_and_sums_several_topics() -> None:
    rows = [window(0, 100, 10, channel="", stage=""),
            topic_row(topic_window(0, "logistics_delivery", 20, 12)),
            topic_row(topic_window(0, "logistics_speed", 10, 8)),
            topic_row(topic_window(0, "after_sales_returns", 30, 1)),
            topic_row(topic_window(0, "logistics_delivery", 5, 5, channel="app"))]
    unscoped = rule(min_volume=1)
    m = measure_metric(unscoped, rows, at(1))
    assert (m.value, m.volume) == (0.1, 100), "topic rows never feed an unscoped rule"
    one = rule(min_volume=1, scope={"topics": ["logistics_delivery"]})
    m = measure_metric(one, rows, at(1))
    assert (m.value, m.volume) == (pytest.approx(12 / 20), 20)
    assert m.breached
    several = rule(min_volume=1, scope={"topics": ["logistics_delivery", "logistics_speed"]})
    m = measure_metric(several, rows, at(1))
    assert (m.value, m.volume) == (pytest.approx(20 / 30), 30)
    by_channel = rule(min_volume=1, scope={"topics": ["logistics_delivery"], "channels": ["app"]})
    assert measure_metric(by_channel, rows, at(1)).value == 1.0
    assert measure_metric(rule(min_volume=1, scope={"topics": ["after_sales_returns"]}), rows,
                          at(1)).breached is False


def test_topic_scoped_min_volume_counts_mentions() -> None:
    scoped = rule(min_volume=20, scope={"topics": ["logistics_delivery"]})
    rows = [window(0, 500, 400), topic_row(topic_window(0, "logistics_delivery", 19, 19))]
    assert measure_metric(scoped, rows, at(1)) is None, "19 mentions, however many events"
    rows.append(topic_row(topic_window(1, "logistics_delivery", 1, 1)))
    m = measure_metric(scoped, rows, at(2))
    assert (m.volume, m.value) == (20, 1.0)


def test_topic_scoped_rate_of_change_and_its_alert() -> None:
    doubled = rule(type="rate_of_change", metric="complaint_rate", operator=">=", threshold=2,
                   lookback_s=120, min_volume=5, compare_to="previous",
                   scope={"topics": ["after_sales_returns"]})
    rows = [topic_row(topic_window(m, "after_sales_returns", 10, n))
            for m, n in ((0, 1), (1, 2), (2, 3), (3, 4))]
    rows += [window(m, 100, 0) for m in range(4)]
    m = measure_metric(doubled, rows, at(4))
    assert m.value == pytest.approx((7 / 20) / (3 / 20)) and m.breached
    state, transition = step(KeyState(), m, at(4), cooldown_s=0, resolve_after_s=0, key="k",
                             now=T0)
    alert = lifecycle_alert(doubled, "delivery", state, transition, m, T0)
    assert alert.topic == "after_sales_returns" and alert.metric == "complaint_rate_ratio"
    assert "over 20 mentions of after_sales_returns" in alert.message
    ALERT_SCHEMA.validate(json.loads(alert.to_bytes()))


# --- measurements -----------------------------------------------------------------------------

def test_threshold_fires_above_and_clears_below_the_clear_threshold() -> None:
    r = rule(clear_threshold=0.3)
    high = measure_metric(r, [window(0, 15, 9), window(1, 10, 4)], at(2))
    assert high.breached and not high.cleared and high.value == pytest.approx(13 / 25)
    band = measure_metric(r, [window(0, 30, 10)], at(1))
    assert not band.breached and not band.cleared
    low = measure_metric(r, [window(0, 30, 5)], at(1))
    assert low.cleared and not low.breached


@pytest.mark.parametrize(("volume", "negatives"), [(19, 19), (0, 0)])
def test_thin_samples_decide_nothing(volume: int, negatives: int) -> None:
    assert measure_metric(rule(), [window(0, volume, negatives)], at(1)) is None


def test_lower_bound_rules() -> None:
    r = rule(metric="mean_sentiment", operator="<=", threshold=-0.5, min_volume=1, lookback_s=60)
    m = measure_metric(r, [window(0, 4, 0, mean=-0.6)], at(1))
    assert m.breached and m.value == pytest.approx(-0.6)
    assert measure_metric(r, [window(0, 4, 0, mean=-0.4)], at(1)).cleared


def test_rate_of_change_against_the_previous_lookback() -> None:
    r = rule(type="rate_of_change", metric="negative_count", operator=">=", threshold=3.0,
             lookback_s=120, min_volume=5)
    rows = [window(0, 20, 2), window(1, 20, 2), window(2, 20, 6), window(3, 20, 6)]
    m = measure_metric(r, rows, at(4))
    assert m.value == pytest.approx(3.0) and m.baseline == 4 and m.breached
    delta = rule(type="rate_of_change", metric="negative_share", operator=">", threshold=0.1,
                 change="delta", lookback_s=120, min_volume=5)
    assert measure_metric(delta, rows, at(4)).value == pytest.approx(0.3 - 0.1)
    assert measure_metric(r, [window(2, 20, 6), window(3, 20, 6)], at(4)) is None, \
        "no previous volume: nothing to compare"
    zero = [window(0, 20, 0), window(1, 20, 0), window(2, 20, 6), window(3, 20, 6)]
    assert measure_metric(r, zero, at(4)) is None, "a ratio to zero is undefined"


def test_rate_of_change_against_the_same_time_last_week() -> None:
    r = rule(type="rate_of_change", metric="volume", operator=">=", threshold=2.0,
             compare_to="last_week", lookback_s=60, min_volume=1)
    week = 7 * 24 * 60
    m = measure_metric(r, [window(-week, 10, 0), window(-1, 99, 0), window(0, 30, 0)], at(1))
    assert m.value == pytest.approx(3.0) and m.baseline == 10


def history_rows(values: list[int], volume: int = 100) -> list[dict]:
    """One 1-minute window per value, oldest first, ending at minute 0."""
    return [window(i - len(values), volume, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("method", ["zscore", "ewma"])
def test_anomaly_fires_on_a_jump_off_a_noisy_baseline(method: str) -> None:
    r = rule(type="anomaly", method=method, metric="negative_share", lookback_s=60,
             baseline_s=600, min_baseline_points=5, sensitivity=3, direction="up", min_volume=10)
    baseline = history_rows([10, 12, 9, 11, 10, 13, 8, 10, 11, 12])
    spike = measure_metric(r, baseline + [window(0, 100, 40)], at(1))
    assert spike.breached and spike.value > 3 and spike.baseline == pytest.approx(0.106, abs=0.01)
    normal = measure_metric(r, baseline + [window(0, 100, 11)], at(1))
    assert not normal.breached and normal.cleared
    down = measure_metric(r, baseline + [window(0, 100, 0)], at(1))
    assert not down.breached, "direction up ignores drops"
    both = r.model_copy(update={"direction": "both"})
    assert measure_metric(both, baseline + [window(0, 100, 0)], at(1)).breached


def test_anomaly_needs_enough_baseline_points_and_survives_a_flat_history() -> None:
    r = rule(type="anomaly", metric="negative_share", lookback_s=60, baseline_s=600,
             min_baseline_points=5, min_volume=10)
    assert measure_metric(r, history_rows([10, 10, 10]) + [window(0, 100, 90)], at(1)) is None
    flat = history_rows([0] * 10) + [window(0, 100, 1)]
    assert not measure_metric(r, flat, at(1)).breached, "a flat zero line must not page at 1%"


def test_ewma_baseline_tracks_recent_values() -> None:
    r = AnomalyRule(id="a", type="anomaly", metric="volume", lookback_s=60, baseline_s=600,
                    method="ewma", alpha=0.5)
    assert baseline_z(r, 10.0, [10.0] * 6) == 0
    rising = baseline_z(r, 20.0, [1, 2, 4, 8, 12, 16])
    assert 0 < rising < baseline_z(r.model_copy(update={"method": "zscore"}), 20.0,
                                   [1, 2, 4, 8, 12, 16]) + 5


def test_topic_spike_by_count_and_share() -> None:
    r = rule(type="topic_spike", topic="after_sales_returns", factor=3, min_count=5,
             lookback_s=300)
    tripled = measure_topic(r, TopicCounts(count=15, volume=100, previous_count=5,
                                           previous_volume=100), at(5))
    assert tripled.breached and tripled.value == 3 and tripled.baseline == 5
    assert measure_topic(r, TopicCounts(4, 100, 0, 100), at(5)) is None, "below min_count"
    from_nothing = measure_topic(r, TopicCounts(6, 100, 0, 100), at(5))
    assert from_nothing.breached and from_nothing.value == 6
    share = r.model_copy(update={"measure": "share"})
    diluted = measure_topic(share, TopicCounts(15, 300, 5, 100), at(5))
    assert diluted.value == pytest.approx(1.0) and not diluted.breached


# --- lifecycle --------------------------------------------------------------------------------

def run_lifecycle(r, shares: list[float], volume: int = 100) -> list[tuple[int, str]]:
    """Evaluate minute by minute with one window per minute; returns (minute, transition)."""
    state = KeyState()
    rows = []
    out = []
    for minute, share in enumerate(shares):
        rows.append(window(minute, volume, round(share * volume)))
        m = measure_metric(r, rows, at(minute + 1))
        state, transition = step(state, m, at(minute + 1), cooldown_s=r.cooldown_s,
                                 resolve_after_s=r.resolve_after_s, key="k", now=T0)
        if transition:
            out.append((minute, transition))
    return out


def test_fires_once_while_breached_and_resolves_after_staying_clear() -> None:
    r = rule(lookback_s=60, clear_threshold=0.3, resolve_after_s=120, cooldown_s=0)
    shares = [0.1, 0.8, 0.8, 0.8, 0.2, 0.2, 0.2, 0.2]
    assert run_lifecycle(r, shares) == [(1, "fire"), (6, "resolve")]


def test_hysteresis_band_neither_fires_nor_resolves() -> None:
    r = rule(lookback_s=60, clear_threshold=0.3, cooldown_s=0)
    assert run_lifecycle(r, [0.35, 0.35]) == []
    assert run_lifecycle(r, [0.5, 0.35, 0.35, 0.5, 0.2]) == [(0, "fire"), (4, "resolve")]


def test_flapping_metric_does_not_spam() -> None:
    """A share bouncing across the threshold every minute for an hour pages once."""
    r = rule(lookback_s=60, clear_threshold=0.3, resolve_after_s=120, cooldown_s=1800)
    shares = [0.45 if i % 2 else 0.25 for i in range(60)]
    assert run_lifecycle(r, shares) == [(1, "fire")]
    without_flap_control = rule(lookback_s=60, cooldown_s=0)
    assert [t for _, t in run_lifecycle(without_flap_control, shares)].count("fire") == 30, \
        "the same series without hysteresis, resolve delay and cooldown would page 30 times"


def test_cooldown_suppresses_a_refire_after_a_resolve() -> None:
    r = rule(lookback_s=60, cooldown_s=300)
    shares = [0.8, 0.1, 0.8, 0.8, 0.8, 0.8, 0.8]
    assert run_lifecycle(r, shares) == [(0, "fire"), (1, "resolve"), (5, "fire")]


def test_late_and_thin_evaluations_change_nothing() -> None:
    r = rule(lookback_s=60, cooldown_s=0)
    m = measure_metric(r, [window(5, 100, 90)], at(6))
    firing, transition = step(KeyState(), m, at(6), cooldown_s=0, resolve_after_s=0, key="k",
                              now=T0)
    assert transition == "fire"
    healthy = measure_metric(r, [window(3, 100, 0)], at(4))
    assert step(firing, healthy, at(4), cooldown_s=0, resolve_after_s=0, key="k",
                now=T0) == (firing, None), "a late window must not resolve a newer breach"
    same, transition = step(firing, None, at(7), cooldown_s=0, resolve_after_s=0, key="k", now=T0)
    assert transition is None and same.status == "firing"


def test_alert_ids_are_deterministic_and_shared_by_fire_and_resolve() -> None:
    r = rule(lookback_s=60, cooldown_s=0)
    m = measure_metric(r, [window(0, 100, 90)], at(1))
    a, _ = step(KeyState(), m, at(1), cooldown_s=0, resolve_after_s=0, key="k", now=T0)
    b, _ = step(KeyState(), m, at(1), cooldown_s=0, resolve_after_s=0, key="k",
                now=T0 + timedelta(hours=1))
    assert a.alert_id == b.alert_id
    clear = measure_metric(r, [window(0, 100, 90), window(1, 100, 0)], at(2))
    resolved_state, transition = step(a, clear, at(2), cooldown_s=0, resolve_after_s=0,
                                      key="k", now=T0)
    assert transition == "resolve"
    fired = lifecycle_alert(r, "delivery", a, "fire", m, T0)
    resolved = lifecycle_alert(r, "delivery", a, "resolve", clear, T0 + timedelta(minutes=2))
    assert fired.alert_id == resolved.alert_id
    assert (fired.status, resolved.status) == ("firing", "resolved")
    assert resolved.resolved_at == T0 + timedelta(minutes=2) and resolved.fired_at == T0
    for alert in (fired, resolved):
        ALERT_SCHEMA.validate(json.loads(alert.to_bytes()))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=80),
       st.integers(min_value=0, max_value=1200), st.integers(min_value=0, max_value=300))
def test_lifecycle_invariants(shares: list[float], cooldown_s: int, resolve_after_s: int) -> None:
    """Whatever the series: fire and resolve alternate starting with fire, and two fires are
    never closer than the cooldown."""
    r = rule(lookback_s=60, clear_threshold=0.3, cooldown_s=cooldown_s,
             resolve_after_s=resolve_after_s)
    transitions = run_lifecycle(r, shares)
    kinds = [t for _, t in transitions]
    assert kinds == ["fire", "resolve"] * (len(kinds) // 2) + ["fire"] * (len(kinds) % 2)
    fires = [minute for minute, t in transitions if t == "fire"]
    assert all(b - a >= cooldown_s / 60 for a, b in zip(fires, fires[1:]))


# --- single-event rules -----------------------------------------------------------------------

def enriched(text: str = "再不处理我就打12315投诉", *, score: float = -0.9, segment: str | None = None,
             urgency: tuple[str, ...] = ("escalation_threat",), customer: str | None = "c1",
             event_id: str = "e1", channel: str = "call", minute: float = 0,
             topics: tuple[str, ...] = ("after_sales_returns",)) -> EnrichedFeedback:
    return EnrichedFeedback(
        event_id=event_id, source="s", channel=channel, touchpoint="hotline", text=text,
        occurred_at=at(minute), received_at=at(minute), customer_id=customer, segment=segment,
        stage="售后", sentiment=Sentiment(score=score, label="negative", model="m"),
        topics=[TopicTag(id=t, name=t, sentiment=AspectSentiment(score=score, label="negative"),
                         evidence=[(0, 1)]) for t in topics],
        intent="complaint",
        urgency=[UrgencyFlag(flag=f, term="12315", evidence=[(7, 12)]) for f in urgency],
        keywords=[], tokens=[], enriched_at=at(minute))


def event_rule(**fields: object):
    base = {"id": "ev", "type": "event", "match": {"urgency": ["escalation_threat"]},
            "route": {"team": "hotline-l1", "open_case": True}}
    return RuleSet.model_validate({"rules": [{**base, **fields}]}).rules[0]


def test_urgent_flag_fires_one_alert_per_customer_within_the_cooldown() -> None:
    r = event_rule(cooldown_s=3600)
    first = event_alert(r, enriched(), None, T0)
    assert first is not None and first.event_ids == ["e1"] and first.team == "hotline-l1"
    assert first.open_case and first.rule_type == "event" and "escalation_threat" in first.message
    ALERT_SCHEMA.validate(json.loads(first.to_bytes()))
    again = enriched(event_id="e2", minute=10)
    assert event_alert(r, again, first.window_end, T0) is None
    assert event_alert(r, enriched(event_id="e3", minute=61), first.window_end, T0) is not None
    assert event_key(r, again) == "ev:hotline:customer=c1"
    assert event_key(r, enriched(customer=None)) == "ev:hotline:event=e1"


def test_vip_strongly_negative() -> None:
    r = event_rule(match={"segments": ["VIP"], "sentiment_at_most": -0.6})
    assert event_alert(r, enriched(segment="VIP", urgency=()), None, T0) is not None
    assert event_alert(r, enriched(segment="VIP", score=-0.3, urgency=()), None, T0) is None
    assert event_alert(r, enriched(segment=None, urgency=()), None, T0) is None


@pytest.mark.parametrize(("scope", "fires"), [
    ({"touchpoints": ["hotline"]}, True), ({"touchpoints": ["delivery"]}, False),
    ({"channels": ["call"]}, True), ({"channels": ["app"]}, False),
    ({"stages": ["售后"]}, True), ({"stages": ["售前"]}, False),
    ({"topics": ["after_sales_returns"]}, True), ({"topics": ["price_fees"]}, False),
])
def test_event_rules_are_scoped(scope: dict, fires: bool) -> None:
    assert (event_alert(event_rule(scope=scope), enriched(), None, T0) is not None) is fires


def test_event_rules_need_every_condition() -> None:
    r = event_rule(match={"urgency": ["churn_intent"], "intents": ["complaint"]})
    assert event_alert(r, enriched(), None, T0) is None
    assert event_alert(r, enriched(urgency=("churn_intent",)), None, T0) is not None


# --- hot reload -------------------------------------------------------------------------------

def test_rules_file_reloads_on_change_and_keeps_the_old_rules_on_a_broken_edit(
        tmp_path: Path) -> None:
    import os

    from services.alerting.worker import RulesFile

    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {id: a, type: event, match: {segments: [VIP]}}\n")
    rules = RulesFile(path)
    assert not rules.reload_if_changed(), "unchanged file"
    path.write_text("rules:\n  - {id: b, type: event, match: {segments: [VIP]}}\n")
    os.utime(path, (1, 1))
    assert rules.reload_if_changed() and [r.id for r in rules.rules.rules] == ["b"]
    path.write_text("rules:\n  - {id: c, type: threshold, metric: nope}\n")
    os.utime(path, (2, 2))
    assert not rules.reload_if_changed() and [r.id for r in rules.rules.rules] == ["b"]
    topical = ("rules:\n  - {id: t, type: threshold, metric: negative_share, operator: '>',"
               " threshold: 0.4, lookback_s: 900, scope: {topics: [logistics_delivery]}}\n")
    path.write_text(topical.replace("negative_share", "ces"))
    os.utime(path, (3, 3))
    assert not rules.reload_if_changed() and [r.id for r in rules.rules.rules] == ["b"]
    path.write_text(topical)
    os.utime(path, (4, 4))
    assert rules.reload_if_changed() and rules.rules.rules[0].scope.topics == ["logistics_delivery"]
    assert not RulesFile(None).reload_if_changed(), "the built-in file never changes"


def test_the_documented_complete_rules_file_loads_and_uses_every_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"### A complete file with every option\n\n```yaml\n(.*?)```", docs,
                      re.DOTALL)[1]
    for name in ("DINGTALK_SECRET", "DINGTALK_L2_SECRET", "FEISHU_SECRET", "AUDIT_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "x")
    path = tmp_path / "rules.yaml"
    path.write_text(block, encoding="utf-8")
    loaded = load_rules(path)
    assert {r.type for r in loaded.rules} == {"threshold", "rate_of_change", "anomaly",
                                              "topic_spike", "event"}
    assert {r.type for r in loaded.metric_rules() if r.scope.topics} >= {
        "threshold", "rate_of_change"}, "figure rules scoped by topic are documented"
    import yaml

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    documented = keys(yaml.safe_load(block)) | set(re.findall(r"#\s*([a-z_]+):", block))
    for model in (rules_module.ThresholdRule, rules_module.RateOfChangeRule,
                  rules_module.AnomalyRule, rules_module.TopicSpikeRule, rules_module.EventRule,
                  rules_module.Scope, rules_module.Route, rules_module.EventMatch,
                  rules_module.Webhook, rules_module.Sla, rules_module.Team):
        missing = set(model.model_fields) - documented
        assert not missing, f"{model.__name__} options missing from docs/alerting.md: {missing}"
    assert {f.format for f in loaded.webhooks.values()} == {"generic", "dingtalk", "wecom",
                                                            "feishu"}
    assert set(loaded.sla) == {"critical", "warning", "info"}
    assert set(loaded.teams["ops-l2"].case_actions) == {"opened", "escalated", "reopened"}

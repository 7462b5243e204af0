"""The figure kinds: a score metric over a lookback against a fixed threshold (``threshold``),
against an earlier period (``rate_of_change``) or against a rolling baseline (``anomaly``).

All three read base-window score rows (``cem_scores``; ``topic_scores`` when scoped by topic)
through one loader, and aggregate them the same way (engine.aggregate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from services.alerting.engine import WEEK, Figures, Measurement, Row, aggregate, in_scope
from services.alerting.kinds.base import Described, Explained, Span, WindowKind, lookback
from services.alerting.kinds.loaders import score_windows
from services.alerting.rulebase import (
    Problem,
    Strict,
    WindowRuleBase,
    scope_dimensions_exist,
    score_metrics,
    score_schema_name,
    topic_metrics,
)
from services.core.events import Operator


class MetricRuleBase(WindowRuleBase):
    """A rule over a score metric aggregated across ``lookback_s`` of event time.

    With ``scope.topics`` the figure is over the events mentioning those topics (the
    ``topic_scores`` rows of the topics, summed: an event naming two of them counts twice), so
    only metrics derivable from a topic row's counts are allowed.
    """

    metric: str
    lookback_s: int = Field(ge=1)
    min_volume: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _known_metric_and_scope(self) -> MetricRuleBase:
        metrics = score_metrics()
        if self.metric not in metrics:
            raise Problem(("metric",), f"metric {self.metric!r} is not a numeric field of "
                          f"{score_schema_name()}; choose from {sorted(metrics)}")
        scope_dimensions_exist(self.scope)
        if self.scope.topics:
            allowed = topic_metrics()
            if self.metric not in allowed:
                raise Problem(("metric",), f"metric {self.metric!r} is not kept per topic, so "
                              f"a rule with scope.topics cannot use it; with topics choose from "
                              f"{list(allowed)} (from the topic_scores counts)")
        return self


class Compared(Strict):
    operator: Operator
    threshold: float
    clear_threshold: float | None = Field(
        default=None, description="hysteresis: resolve only once the value is past this "
        "(default: the threshold itself)")

    @model_validator(mode="after")
    def _clear_on_the_healthy_side(self) -> Compared:
        clear = self.clear_threshold
        if clear is not None:
            upward = self.operator in (">", ">=")
            if (upward and clear > self.threshold) or (not upward and clear < self.threshold):
                raise Problem(("clear_threshold",),
                              f"clear_threshold {clear} must be on the healthy side of "
                              f"threshold {self.threshold} for operator {self.operator!r}")
        return self


class ThresholdRule(MetricRuleBase, Compared):
    """Metric over the lookback compared with a fixed threshold."""

    type: Literal["threshold"]


class RateOfChangeRule(MetricRuleBase, Compared):
    """Metric over the lookback against the previous lookback or the same time last week."""

    type: Literal["rate_of_change"]
    compare_to: Literal["previous", "last_week"] = "previous"
    change: Literal["ratio", "delta"] = "ratio"


class AnomalyRule(MetricRuleBase):
    """Metric over the lookback against a rolling baseline of earlier lookback-sized buckets."""

    type: Literal["anomaly"]
    method: Literal["zscore", "ewma"] = "zscore"
    direction: Literal["up", "down", "both"] = "both"
    sensitivity: float = Field(default=3.0, gt=0, description="deviations that fire")
    clear_sensitivity: float | None = Field(default=None, gt=0)
    baseline_s: int = Field(default=3600, ge=1)
    min_baseline_points: int = Field(default=5, ge=2)
    alpha: float = Field(default=0.3, gt=0, le=1, description="EWMA smoothing factor")

    @model_validator(mode="after")
    def _baseline_holds_buckets(self) -> AnomalyRule:
        if self.baseline_s < self.lookback_s * self.min_baseline_points:
            raise Problem(("baseline_s",), f"baseline_s {self.baseline_s} holds fewer than "
                          f"min_baseline_points={self.min_baseline_points} buckets of "
                          f"lookback_s={self.lookback_s}")
        if self.clear_sensitivity is not None and self.clear_sensitivity > self.sensitivity:
            raise Problem(("clear_sensitivity",), "clear_sensitivity must not exceed sensitivity")
        return self


MetricRule = ThresholdRule | RateOfChangeRule | AnomalyRule


def _compare(operator: str, value: float, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold,
            "<": value < threshold, "<=": value <= threshold}[operator]


def _past_clear(operator: str, value: float, clear: float) -> bool:
    """Healthy again: strictly back on the good side of the clear threshold."""
    return value < clear if operator in (">", ">=") else value > clear


def measure_threshold(rule: ThresholdRule | RateOfChangeRule, value: float,
                      baseline: float | None, figures: Figures) -> Measurement:
    clear = rule.threshold if rule.clear_threshold is None else rule.clear_threshold
    return Measurement(value, baseline, figures.volume,
                       _compare(rule.operator, value, rule.threshold),
                       _past_clear(rule.operator, value, clear), figures.start, figures.end)


def _change(rule: RateOfChangeRule, current: float, before: float) -> float | None:
    if rule.change == "delta":
        return current - before
    return None if before == 0 else current / before


def _directed(direction: str, z: float) -> float:
    return {"up": z, "down": -z, "both": abs(z)}[direction]


def baseline_z(rule: AnomalyRule, current: float, history: Sequence[float]) -> float | None:
    """Deviations of ``current`` from the history (oldest first), by z-score or EWMA.

    A flat history (no spread) has no scale, so any move off it is 1 deviation per unit
    rather than infinite: flat series are common (a share pinned at 0) and must not page.
    """
    if len(history) < rule.min_baseline_points:
        return None
    if rule.method == "zscore":
        mean = sum(history) / len(history)
        variance = sum((x - mean) ** 2 for x in history) / (len(history) - 1)
    else:
        mean, variance = history[0], 0.0
        for x in history[1:]:
            diff = x - mean
            increment = rule.alpha * diff
            mean += increment
            variance = (1 - rule.alpha) * (variance + diff * increment)
    spread = math.sqrt(variance)
    return (current - mean) / spread if spread > 1e-12 else current - mean


def measure_metric(rule: MetricRule, rows: Sequence[Row], end: datetime) -> Measurement | None:
    """Evaluate a figure rule over one touchpoint's score rows ending at ``end``.

    None means there is nothing to decide on: too little volume, or no baseline yet. Such an
    evaluation neither fires nor clears (silence is not evidence of health).
    """
    rows = [r for r in rows if in_scope(rule.scope, r)]
    start = end - timedelta(seconds=rule.lookback_s)
    figures = aggregate(rows, start, end)
    current = figures.metric(rule.metric)
    if figures.volume < rule.min_volume or current is None:
        return None
    if isinstance(rule, ThresholdRule):
        return measure_threshold(rule, current, None, figures)
    if isinstance(rule, RateOfChangeRule):
        return _measure_change(rule, rows, current, figures)
    return _measure_anomaly(rule, rows, current, figures)


def _measure_change(rule: RateOfChangeRule, rows: Sequence[Row], current: float,
                    figures: Figures) -> Measurement | None:
    shift = WEEK if rule.compare_to == "last_week" else timedelta(seconds=rule.lookback_s)
    before = aggregate(rows, figures.start - shift, figures.end - shift)
    earlier = before.metric(rule.metric)
    if before.volume < rule.min_volume or earlier is None:
        return None
    change = _change(rule, current, earlier)
    if change is None:
        return None
    return measure_threshold(rule, change, earlier, figures)


def _measure_anomaly(rule: AnomalyRule, rows: Sequence[Row], current: float,
                     figures: Figures) -> Measurement | None:
    start = figures.start
    step = timedelta(seconds=rule.lookback_s)
    history = []
    bucket_end = start
    while bucket_end - step >= start - timedelta(seconds=rule.baseline_s):
        bucket = aggregate(rows, bucket_end - step, bucket_end)
        value = bucket.metric(rule.metric)
        if bucket.volume >= rule.min_volume and value is not None:
            history.append(value)
        bucket_end -= step
    history.reverse()
    z = baseline_z(rule, current, history)
    if z is None:
        return None
    directed = _directed(rule.direction, z)
    clear = rule.clear_sensitivity or rule.sensitivity
    return Measurement(z, sum(history) / len(history), figures.volume,
                       directed >= rule.sensitivity, directed < clear, figures.start, figures.end)


def _topics(rule: MetricRule, metric: str, operator: Operator, threshold: float,
            what: str) -> Described:
    """A figure rule's alert names the topics it is scoped by, and counts their mentions."""
    topics = rule.scope.topics
    if not topics:
        return Described(metric, operator, threshold, what)
    joined = ",".join(topics)
    return Described(metric, operator, threshold, what, joined, f"mentions of {joined}")


def _describe_compared(rule: ThresholdRule | RateOfChangeRule, m: Measurement) -> Described:
    metric = rule.metric if isinstance(rule, ThresholdRule) else f"{rule.metric}_{rule.change}"
    return _topics(rule, metric, rule.operator, rule.threshold,
                   f"{metric} {m.value:.3f} {rule.operator} {rule.threshold}")


def _describe_anomaly(rule: AnomalyRule, m: Measurement) -> Described:
    return _topics(rule, f"{rule.metric}_deviation", ">=", rule.sensitivity,
                   f"{rule.metric} {m.value:+.2f} deviations from baseline {m.baseline:.3f}")


def _change_history(rule: RateOfChangeRule) -> tuple[Span, ...]:
    if rule.compare_to == "last_week":
        week = timedelta(seconds=rule.lookback_s) + WEEK
        return (lookback(rule.lookback_s), (week, WEEK))
    return (lookback(2 * rule.lookback_s),)


def _explained(rule: MetricRule, m: Measurement) -> Explained:
    """A figure alert is explained on its own metric, against the window it was compared
    with: the previous lookback (threshold), the compared period (rate of change), or the
    baseline the deviation was measured from (anomaly)."""
    span = m.end - m.start
    if isinstance(rule, AnomalyRule):
        up = rule.direction == "up" or (rule.direction == "both" and m.value >= 0)
        return Explained(rule.metric, "up" if up else "down",
                         (m.start - timedelta(seconds=rule.baseline_s), m.start))
    direction: Literal["up", "down"] = "up" if rule.operator in (">", ">=") else "down"
    if isinstance(rule, RateOfChangeRule) and rule.compare_to == "last_week":
        return Explained(rule.metric, direction, (m.start - WEEK, m.end - WEEK))
    return Explained(rule.metric, direction, (m.start - span, m.start))


THRESHOLD = WindowKind(
    model=ThresholdRule, loader=score_windows,
    history=lambda rule: (lookback(rule.lookback_s),),
    measure=measure_metric, describe=_describe_compared, explain=_explained)

RATE_OF_CHANGE = WindowKind(
    model=RateOfChangeRule, loader=score_windows, history=_change_history,
    measure=measure_metric, describe=_describe_compared, explain=_explained)

ANOMALY = WindowKind(
    model=AnomalyRule, loader=score_windows,
    history=lambda rule: (lookback(rule.lookback_s + rule.baseline_s),),
    measure=measure_metric, describe=_describe_anomaly, explain=_explained)

"""Rule evaluation without I/O: figures from score rows, breach tests, and the alert lifecycle.

Every decision is a pure function of rows, rule and state, so the behaviour ops teams rely on
(hysteresis, cooldown, flap control, dedupe) is unit-tested exhaustively, and the worker and
the backtest share exactly the same logic: the worker fetches rows and publishes, nothing more.

Times are event time (window ends), so replaying history (backtest, re-delivery after a crash)
makes the same decisions as live evaluation did.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from services.alerting.rules import (
    AnomalyRule,
    EventRule,
    MetricRule,
    RateOfChangeRule,
    Scope,
    ThresholdRule,
    TopicSpikeRule,
    score_metrics,
)
from services.core.cem_metrics import topic_score_figures
from services.core.events import Alert, EnrichedFeedback
from services.core.pii import snippet

_ALERT_NAMESPACE = uuid.UUID("3b0f1d8a-94c3-4f1e-8b59-2f4a4b7de6a1")
WEEK = timedelta(days=7)
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Figures:
    """Score rows aggregated over ``[start, end)``: counts summed, per-event figures averaged
    weighted by what they are a share or mean of (volume, or their responses), which
    reproduces shares, means, NPS and CSAT exactly."""

    start: datetime
    end: datetime
    volume: int
    values: Mapping[str, float | None]

    def metric(self, name: str) -> float | None:
        return self.values.get(name)


def in_scope(scope: Scope, row: Row) -> bool:
    """Whether a score row feeds a rule of this scope.

    Score rows form a cube: ``channel = ''`` is "all channels" and ``stage = ''`` "all stages"
    (every score.v1 row is both). A rule takes, per dimension, the '' rows when unscoped and
    the rows of its listed values otherwise, so the rows it sums are disjoint and nothing is
    counted twice. Topic rows (``topic_row``) are a further dimension whose '' is the score
    row itself; a rule scoped by several topics sums their rows, i.e. counts mentions.
    """
    channel, stage = row.get("channel") or "", row.get("stage") or ""
    channel_ok = channel in scope.channels if scope.channels else channel == ""
    stage_ok = stage in scope.stages if scope.stages else stage == ""
    topic = row.get("topic") or ""
    topic_ok = topic in scope.topics if scope.topics else topic == ""
    return channel_ok and stage_ok and topic_ok


def topic_row(row: Row) -> dict[str, Any]:
    """A ``topic_scores`` row as a score row of the events mentioning its topic (volume =
    mentions, ratios derived from its counts as scoring derives them), so topic-scoped rules
    go through the same aggregation and measurement as every figure rule."""
    figures = topic_score_figures(row)
    return {"touchpoint": row["touchpoint"], "channel": row["channel"], "stage": row["stage"],
            "topic": row["topic"], "window_start": row["window_start"],
            "window_seconds": row["window_seconds"], **figures}


def aggregate(rows: Iterable[Row], start: datetime, end: datetime) -> Figures:
    """Figures of the rows whose window lies wholly inside ``[start, end)``.

    A per-event figure that has a ``<name>_responses`` count (nps, csat, ces) is weighted by
    it, since only responding events make the figure; the others are weighted by volume.
    """
    kinds = score_metrics()
    volume = 0
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for row in rows:
        w_start = row["window_start"]
        if not (w_start >= start and w_start + timedelta(seconds=int(row["window_seconds"])) <= end):
            continue
        row_volume = int(row["volume"])
        volume += row_volume
        for name, kind in kinds.items():
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if kind == "integer":
                weight = 1
            elif f"{name}_responses" in kinds:
                weight = int(row.get(f"{name}_responses") or 0)
            else:
                weight = row_volume
            sums[name] = sums.get(name, 0.0) + float(value) * weight
            weights[name] = weights.get(name, 0.0) + weight
    values: dict[str, float | None] = {}
    for name, kind in kinds.items():
        if kind == "integer":
            values[name] = sums.get(name, 0.0)
        else:
            values[name] = sums[name] / weights[name] if weights.get(name) else None
    values["volume"] = float(volume)
    return Figures(start, end, volume, values)


@dataclass(frozen=True)
class Measurement:
    """One evaluation: the value compared, its baseline, and which side of the rule it is on.

    ``breached`` and ``cleared`` are separate because of hysteresis: between the fire and the
    clear threshold a value is neither, and the alert keeps its current status.
    """

    value: float
    baseline: float | None
    volume: int
    breached: bool
    cleared: bool
    start: datetime
    end: datetime


def _compare(operator: str, value: float, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold,
            "<": value < threshold, "<=": value <= threshold}[operator]


def _past_clear(operator: str, value: float, clear: float) -> bool:
    """Healthy again: strictly back on the good side of the clear threshold."""
    return value < clear if operator in (">", ">=") else value > clear


def measure_threshold(rule: ThresholdRule | RateOfChangeRule, value: float,
                      baseline: float | None, figures: Figures) -> Measurement:
    clear = rule.threshold if rule.clear_threshold is None else rule.clear_threshold
    return Measurement(value, baseline, figures.volume, _compare(rule.operator, value, rule.threshold),
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
    """Evaluate a metric rule over one touchpoint's score rows ending at ``end``.

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
        shift = WEEK if rule.compare_to == "last_week" else timedelta(seconds=rule.lookback_s)
        before = aggregate(rows, start - shift, end - shift)
        earlier = before.metric(rule.metric)
        if before.volume < rule.min_volume or earlier is None:
            return None
        change = _change(rule, current, earlier)
        if change is None:
            return None
        return measure_threshold(rule, change, earlier, figures)
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


@dataclass(frozen=True)
class TopicCounts:
    """A topic's mentions and all events, in the lookback and the one before it."""

    count: int
    volume: int
    previous_count: int
    previous_volume: int


def measure_topic(rule: TopicSpikeRule, counts: TopicCounts, end: datetime) -> Measurement | None:
    """Growth of a topic's count (or share) against the previous lookback.

    The previous figure is floored at one mention so a topic appearing from nothing can still
    spike (by its count), instead of dividing by zero.
    """
    if counts.count < rule.min_count:
        return None
    if rule.measure == "count":
        current, before = float(counts.count), float(max(counts.previous_count, 1))
    else:
        current = counts.count / counts.volume
        before = max(counts.previous_count, 1) / max(counts.previous_volume, 1)
    ratio = current / before
    clear = rule.clear_factor or rule.factor
    start = end - timedelta(seconds=rule.lookback_s)
    return Measurement(ratio, before, counts.volume, ratio >= rule.factor, ratio < clear,
                       start, end)


@dataclass(frozen=True)
class KeyState:
    """Lifecycle of one dedupe key: the open alert (if any) and what cooldown needs."""

    status: Literal["ok", "firing"] = "ok"
    alert_id: str | None = None
    fired_end: datetime | None = None
    fired_at: datetime | None = None
    clear_since: datetime | None = None
    last_end: datetime | None = None


Transition = Literal["fire", "resolve"]


def alert_id_for(dedupe_key: str, at: datetime) -> str:
    """Deterministic per breach, so a re-evaluation after a crash re-emits the same alert."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{dedupe_key}@{at.isoformat()}"))


def step(state: KeyState, measurement: Measurement | None, end: datetime, *, cooldown_s: int,
         resolve_after_s: int, key: str, now: datetime) -> tuple[KeyState, Transition | None]:
    """Advance one key's lifecycle by an evaluation at event time ``end``.

    - ok -> firing when breached, unless the last fire was less than ``cooldown_s`` ago
      (suppression: a metric that keeps crossing does not page again and again);
    - firing -> ok (resolved) once cleared (past the clear threshold: hysteresis) continuously
      for ``resolve_after_s`` (flap control: a dip does not resolve and then re-fire);
    - evaluations older than the newest one seen (late windows) change nothing.
    """
    if state.last_end is not None and end < state.last_end:
        return state, None
    state = replace(state, last_end=end)
    if measurement is None:
        return state, None
    if state.status == "ok":
        cooling = (state.fired_end is not None
                   and end < state.fired_end + timedelta(seconds=cooldown_s))
        if measurement.breached and not cooling:
            return KeyState("firing", alert_id_for(key, end), end, now, None, end), "fire"
        return state, None
    if not measurement.cleared:
        return replace(state, clear_since=None), None
    since = state.clear_since or end
    if end - since >= timedelta(seconds=resolve_after_s):
        return replace(state, status="ok", clear_since=None), "resolve"
    return replace(state, clear_since=since), None


def metric_key(rule_id: str, touchpoint: str) -> str:
    return f"{rule_id}:{touchpoint}"


def lifecycle_alert(rule: MetricRule | TopicSpikeRule, touchpoint: str, state: KeyState,
                    transition: Transition, m: Measurement, now: datetime,
                    latest_received_at: datetime | None = None) -> Alert:
    """The alert event of a transition (the same alert_id for its firing and its resolution)."""
    if isinstance(rule, TopicSpikeRule):
        metric, operator, threshold = f"topic_{rule.measure}_ratio", ">=", rule.factor
        what = f"topic {rule.topic} {rule.measure} x{m.value:.2f} vs previous {rule.lookback_s}s"
    elif isinstance(rule, AnomalyRule):
        metric, operator = f"{rule.metric}_deviation", ">="
        threshold = rule.sensitivity
        what = f"{rule.metric} {m.value:+.2f} deviations from baseline {m.baseline:.3f}"
    else:
        metric = rule.metric if isinstance(rule, ThresholdRule) else f"{rule.metric}_{rule.change}"
        operator, threshold = rule.operator, rule.threshold
        what = f"{metric} {m.value:.3f} {operator} {threshold}"
    status = "firing" if transition == "fire" else "resolved"
    key = metric_key(rule.id, touchpoint)
    scope = rule.scope
    topic, counted = None, "events"
    if isinstance(rule, TopicSpikeRule):
        topic = rule.topic
    elif scope.topics:
        topic, counted = ",".join(scope.topics), f"mentions of {','.join(scope.topics)}"
    return Alert(
        alert_id=state.alert_id or alert_id_for(key, m.end), dedupe_key=key, rule_id=rule.id,
        rule_type=rule.type, severity=rule.severity, status=status, touchpoint=touchpoint,
        channel=",".join(scope.channels) if scope.channels else None,
        stage=",".join(scope.stages) if scope.stages else None,
        topic=topic,
        metric=metric, operator=operator, threshold=threshold, value=m.value,
        baseline=m.baseline, volume=m.volume, window_start=m.start, window_end=m.end,
        fired_at=state.fired_at or now, resolved_at=now if status == "resolved" else None,
        emitted_at=now, team=rule.route.team, owner=rule.route.owner,
        notify=rule.route.notify, open_case=rule.route.open_case and status == "firing",
        event_ids=[], latest_received_at=latest_received_at,
        message=(f"[{status}] {touchpoint}: {what} over {m.volume} {counted}. "
                 f"{rule.description}").strip(),
    )


def event_matches(rule: EventRule, event: EnrichedFeedback) -> bool:
    """Whether a single enriched event trips an event rule (all given conditions hold)."""
    scope, match = rule.scope, rule.match
    if not scope.has_touchpoint(event.touchpoint):
        return False
    if scope.channels and event.channel not in scope.channels:
        return False
    if scope.stages and event.stage not in scope.stages:
        return False
    if scope.topics and not {t.id for t in event.topics} & set(scope.topics):
        return False
    if match.urgency and not {u.flag for u in event.urgency} & set(match.urgency):
        return False
    if match.segments and event.segment not in match.segments:
        return False
    if match.sentiment_at_most is not None and event.sentiment.score > match.sentiment_at_most:
        return False
    return not (match.intents and event.intent not in match.intents)


def event_key(rule: EventRule, event: EnrichedFeedback) -> str:
    """Dedupe key of an event alert: per customer by default (one angry VIP writing five
    times is one alert), per event, or per touchpoint."""
    if rule.dedupe_by == "touchpoint":
        subject = event.touchpoint
    elif rule.dedupe_by == "customer" and event.customer_id:
        subject = f"customer={event.customer_id}"
    else:
        subject = f"event={event.event_id}"
    return f"{rule.id}:{event.touchpoint}:{subject}"


CUSTOMER_TEXT = " 原文 text: "
"""Where the customer's own words start in an event alert's message: everything after it is
the matched cue terms and a redacted snippet of the feedback, which webhooks leave out when
``VOC_ALERT_CUSTOMER_TEXT=none``."""


def event_alert(rule: EventRule, event: EnrichedFeedback, last_fired: datetime | None,
                now: datetime) -> Alert | None:
    """The alert for an event that matches, unless its key fired within the cooldown.

    Single-event alerts only fire: the problem is one customer, and it is closed by the case
    (or the team) rather than by a figure returning to normal.
    """
    if not event_matches(rule, event):
        return None
    if last_fired is not None and event.occurred_at < last_fired + timedelta(seconds=rule.cooldown_s):
        return None
    key = event_key(rule, event)
    flags = sorted({u.flag for u in event.urgency})
    terms = ", ".join(sorted({u.term for u in event.urgency}))
    return Alert(
        alert_id=str(uuid.uuid5(_ALERT_NAMESPACE, f"{rule.id}@{event.event_id}")), dedupe_key=key,
        rule_id=rule.id, rule_type="event", severity=rule.severity, status="firing",
        touchpoint=event.touchpoint, channel=event.channel, stage=event.stage,
        topic=event.topics[0].id if event.topics else None, metric="event_sentiment",
        operator=None, threshold=rule.match.sentiment_at_most, value=event.sentiment.score,
        baseline=None, volume=1, window_start=event.occurred_at, window_end=event.occurred_at,
        fired_at=now, resolved_at=None, emitted_at=now, team=rule.route.team,
        owner=rule.route.owner, notify=rule.route.notify, open_case=rule.route.open_case,
        event_ids=[event.event_id], latest_received_at=event.received_at,
        message=(f"[firing] {event.touchpoint}/{event.channel}: "
                 f"{'flags ' + ','.join(flags) + ', ' if flags else ''}"
                 f"segment {event.segment or '-'}, sentiment {event.sentiment.score:+.2f}. "
                 f"{rule.description}").strip()
                + f"{CUSTOMER_TEXT}{'(' + snippet(terms, 60) + ') ' if terms else ''}"
                  f"「{snippet(event.text)}」",
    )

"""Replays stored history through a rules file and reports what would have fired and resolved.

The replay uses the same engine functions as the live stage (measure, step, event matching),
evaluated at every window end of the period in event time, so a rule tuned here behaves the
same live. Nothing is published or stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.alerting.engine import (
    WEEK,
    KeyState,
    TopicCounts,
    event_alert,
    event_key,
    lifecycle_alert,
    measure_metric,
    measure_topic,
    metric_key,
    step,
    topic_row,
)
from services.alerting.rules import RateOfChangeRule, RuleSet, TopicSpikeRule
from services.alerting.worker import history_span
from services.core.cem_metrics import window_start
from services.core.events import Alert, EnrichedFeedback
from services.core.store import Store

_SCORES_SQL = """
SELECT * FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s AND window_start >= %(lo)s AND window_start < %(hi)s
"""
_TOPIC_SCORES_SQL = """
SELECT * FROM topic_scores FINAL
WHERE window_seconds = %(seconds)s AND topic IN %(topics)s
  AND window_start >= %(lo)s AND window_start < %(hi)s
"""
_TOPIC_SQL = """
SELECT touchpoint, channel, stage, intDiv(toUInt32(occurred_at), %(seconds)s) * %(seconds)s AS w,
       count() AS volume, countIf(has(topics, %(topic)s)) AS count
FROM feedback FINAL
WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s
GROUP BY touchpoint, channel, stage, w
"""
_EVENTS_SQL = """
SELECT enriched_json FROM feedback FINAL
WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s ORDER BY occurred_at
"""


def window_ends(start: datetime, end: datetime, seconds: int) -> list[datetime]:
    """Every window end in ``(start, end]``: the evaluation points of the replay."""
    first = window_start(start, seconds) + timedelta(seconds=seconds)
    ends = []
    while first <= end:
        ends.append(first)
        first += timedelta(seconds=seconds)
    return ends


def replay_figures(rules: RuleSet, score_rows: Sequence[dict], topic_rows: dict[str, list[dict]],
                   ends: Sequence[datetime]) -> list[Alert]:
    """Lifecycle events of the figure and topic rules, evaluated at each of ``ends``.

    ``score_rows`` holds the score rows and, for figure rules scoped by topic, the topic rows
    as ``engine.topic_row`` shapes them (each rule picks its own slice, engine.in_scope)."""
    by_touchpoint: dict[str, list[dict]] = {}
    for row in score_rows:
        by_touchpoint.setdefault(row["touchpoint"], []).append(row)
    states: dict[str, KeyState] = {}
    out = []
    for end in ends:
        for touchpoint in sorted(by_touchpoint):
            for rule in rules.metric_rules():
                if not rule.scope.has_touchpoint(touchpoint):
                    continue
                m = measure_metric(rule, by_touchpoint[touchpoint], end)
                out += _advance(states, rule, touchpoint, m, end)
        for rule in rules.topic_rules():
            for touchpoint, counts in _topic_counts(rule, topic_rows.get(rule.id, []), end).items():
                if rule.scope.has_touchpoint(touchpoint):
                    out += _advance(states, rule, touchpoint, measure_topic(rule, counts, end), end)
    return out


def _advance(states: dict[str, KeyState], rule: Any, touchpoint: str, m: Any,
             end: datetime) -> list[Alert]:
    key = metric_key(rule.id, touchpoint)
    before = states.get(key, KeyState())
    state, transition = step(before, m, end, cooldown_s=rule.cooldown_s,
                             resolve_after_s=rule.resolve_after_s, key=key, now=end)
    states[key] = state
    if transition is None or m is None:
        return []
    return [lifecycle_alert(rule, touchpoint, state if transition == "fire" else before,
                            transition, m, end)]


def _topic_counts(rule: TopicSpikeRule, rows: Iterable[dict], end: datetime) -> dict[str, TopicCounts]:
    """Per touchpoint: the topic's mentions in the lookback ending at ``end`` and the one before."""
    lookback = timedelta(seconds=rule.lookback_s)
    found: dict[str, list[int]] = {}
    for row in rows:
        if rule.scope.channels and row["channel"] not in rule.scope.channels:
            continue
        if rule.scope.stages and row["stage"] not in rule.scope.stages:
            continue
        moment = datetime.fromtimestamp(int(row["w"]), end.tzinfo)
        figures = found.setdefault(row["touchpoint"], [0, 0, 0, 0])
        if end - lookback <= moment < end:
            figures[0] += int(row["count"])
            figures[1] += int(row["volume"])
        elif end - 2 * lookback <= moment < end - lookback:
            figures[2] += int(row["count"])
            figures[3] += int(row["volume"])
    return {tp: TopicCounts(*f) for tp, f in found.items()}


def replay_events(rules: RuleSet, events: Iterable[EnrichedFeedback]) -> list[Alert]:
    """Single-event alerts over events in occurred_at order, with per-key cooldowns."""
    last: dict[str, datetime] = {}
    out = []
    for event in events:
        for rule in rules.event_rules():
            key = event_key(rule, event)
            alert = event_alert(rule, event, last.get(key), event.occurred_at)
            if alert is not None:
                last[key] = event.occurred_at
                out.append(alert)
    return out


async def backtest(store: Store, rules: RuleSet, start: datetime, end: datetime,
                   window_seconds: int) -> list[Alert]:
    """Every alert event the rules would have produced over ``[start, end]``, in time order."""
    ends = window_ends(start, end, window_seconds)
    alerts: list[Alert] = []
    metric_rules = rules.metric_rules()
    if metric_rules and ends:
        span = timedelta(seconds=max(history_span(r) for r in metric_rules))
        periods = [(start - span, end)]
        if any(isinstance(r, RateOfChangeRule) and r.compare_to == "last_week"
               for r in metric_rules):
            periods.append((start - span - WEEK, end - WEEK))
        topics = tuple(sorted({t for r in metric_rules for t in r.scope.topics or ()}))
        rows = []
        for lo, hi in periods:
            params = {"seconds": window_seconds, "lo": lo, "hi": hi}
            rows += await store.query(_SCORES_SQL, params)
            if topics:
                stored = await store.query(_TOPIC_SCORES_SQL, {**params, "topics": topics})
                rows += [topic_row(r) for r in stored]
        alerts += replay_figures(rules, rows, {}, ends)
    for rule in rules.topic_rules():
        rows = await store.query(_TOPIC_SQL, {
            "seconds": window_seconds, "topic": rule.topic, "hi": end,
            "lo": start - timedelta(seconds=2 * rule.lookback_s)})
        alerts += replay_figures(rules.model_copy(update={"rules": [rule]}), [],
                                 {rule.id: rows}, ends)
    if rules.event_rules():
        rows = await store.query(_EVENTS_SQL, {"lo": start, "hi": end})
        alerts += replay_events(rules, (EnrichedFeedback.model_validate_json(r["enriched_json"])
                                        for r in rows))
    return sorted(alerts, key=lambda a: (a.window_end, a.rule_id, a.touchpoint))


def report(alerts: Sequence[Alert]) -> str:
    """A human-readable table of the replayed alert events and a per-rule summary."""
    lines = [f"{'event time (UTC)':<20} {'status':<9} {'rule':<28} {'touchpoint':<18} "
             f"{'value':>9}  message"]
    for a in alerts:
        lines.append(f"{a.window_end:%Y-%m-%d %H:%M:%S} {a.status:<9} {a.rule_id:<28} "
                     f"{a.touchpoint:<18} {a.value:>9.3f}  {a.message[:80]}")
    lines.append("")
    summary: dict[str, list[int]] = {}
    for a in alerts:
        counts = summary.setdefault(a.rule_id, [0, 0])
        counts[0 if a.status == "firing" else 1] += 1
    for rule_id, (fired, resolved) in sorted(summary.items()):
        lines.append(f"{rule_id}: {fired} fired, {resolved} resolved")
    if not alerts:
        lines.append("no alert would have fired")
    return "\n".join(lines)

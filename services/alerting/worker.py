"""The alerting stage: score updates and enriched events -> alert lifecycle events.

Two consumers feed one set of rules:
- score updates (``scores`` topic): for each touchpoint in a batch, every figure rule is
  measured over its lookback ending at the touchpoint's newest updated window, from the stored
  window rows (``topic_scores`` rows for rules scoped by topic), and topic-spike rules from the stored feedback rows; each rule and touchpoint
  (the dedupe key) then steps through its lifecycle (engine.step).
- enriched events (``feedback.enriched``, its own consumer group): single-event rules.

An alert event is published first and recorded second: if the process dies in between, the
re-delivered input re-emits the same deterministic ``alert_id`` rather than losing it. The
lifecycle state is rebuilt from the ``alerts`` table on start, so a restart neither re-pages
anyone nor forgets an open alert. Alerts that ask for it then open cases, and webhooks
deliver them, each from the alerts topic in their own consumer group (cases.py, delivery.py).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from aiokafka import ConsumerRecord

from services.alerting.engine import (
    WEEK,
    KeyState,
    Measurement,
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
from services.alerting.rules import (
    MetricRule,
    RateOfChangeRule,
    AnomalyRule,
    RuleSet,
    TopicSpikeRule,
    load_rules,
)
from services.core.events import Alert, EnrichedFeedback, Score, utc_now
from services.core.kafka import BatchConsumer, Producer, parse_or_dead_letter, parse_or_reason
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)

_WINDOWS_SQL = """
SELECT * FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s AND touchpoint IN %(touchpoints)s
  AND window_start >= %(lo)s AND window_start < %(hi)s
"""
_TOPIC_WINDOWS_SQL = """
SELECT * FROM topic_scores FINAL
WHERE window_seconds = %(seconds)s AND touchpoint IN %(touchpoints)s AND topic IN %(topics)s
  AND window_start >= %(lo)s AND window_start < %(hi)s
"""
_TOTALS_ONLY = " AND channel = '' AND stage = ''"

_TOPIC_SQL = """
SELECT touchpoint,
    countIf(occurred_at >= %(mid)s) AS volume,
    countIf(occurred_at >= %(mid)s AND has(topics, %(topic)s)) AS count,
    countIf(occurred_at < %(mid)s) AS previous_volume,
    countIf(occurred_at < %(mid)s AND has(topics, %(topic)s)) AS previous_count
FROM feedback FINAL
WHERE touchpoint IN %(touchpoints)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
"""
_TOPIC_CHANNELS = " AND channel IN %(channels)s"
_TOPIC_STAGES = " AND stage IN %(stages)s"

_RECEIVED_SQL = """
SELECT max(received_at) AS latest FROM feedback
WHERE touchpoint = %(touchpoint)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
"""

_STATE_SQL = """
SELECT dedupe_key, argMax(alert_id, fired_window_end) AS alert_id,
       argMax(status, fired_window_end) AS status, max(fired_window_end) AS fired_end,
       argMax(fired_at, fired_window_end) AS fired_at
FROM alerts FINAL GROUP BY dedupe_key
"""


def alert_row(alert: Alert, fired_end: datetime, inserted_ms: int) -> dict:
    """The ``alerts`` table row of an alert event (the current status of its alert)."""
    latency = (None if alert.latest_received_at is None else
               int((alert.emitted_at - alert.latest_received_at).total_seconds() * 1000))
    row = alert.model_dump(exclude={"schema_", "notify", "open_case"})
    for name in ("channel", "stage", "topic", "team", "owner", "operator"):
        row[name] = row[name] or ""
    row["threshold"] = alert.threshold if alert.threshold is not None else 0.0
    row.update(fired_window_end=fired_end, latency_ms=latency, inserted_ms=inserted_ms)
    return row


class RulesFile:
    """The current rule set, reloaded when the file's mtime changes.

    A broken edit is logged and the previous rules stay in force: a typo must not silence
    every alert, nor crash the stage.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rules = load_rules(path)
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def reload_if_changed(self) -> bool:
        """True when a changed file was loaded."""
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            self.rules = load_rules(self.path)
        except ValueError as exc:
            log.error("alert rules NOT reloaded; the previous rules stay in force", error=str(exc))
            return False
        log.info("alert rules reloaded", path=str(self.path), rules=[r.id for r in self.rules.rules])
        return True


class LatencyStats:
    """Recent alert latencies (ingest of the newest breaching event -> alert emitted)."""

    def __init__(self, size: int = 1000) -> None:
        self.samples: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        return {"count": len(ordered), "p50_ms": statistics.median(ordered), "p95_ms": p95,
                "max_ms": ordered[-1]}


class AlertEvaluator:
    """Evaluates rules on score and event batches and publishes lifecycle events."""

    def __init__(self, settings: Settings, store: Store, producer: Producer,
                 rules: RulesFile) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules_file = rules
        self.states: dict[str, KeyState] = {}
        self.latency = LatencyStats()

    @property
    def rules(self) -> RuleSet:
        return self.rules_file.rules

    async def load_state(self) -> None:
        """Lifecycle state survives restarts: open alerts and cooldowns come from the store."""
        for row in await self.store.query(_STATE_SQL):
            firing = row["status"] == "firing"
            self.states[row["dedupe_key"]] = KeyState(
                status="firing" if firing else "ok", alert_id=row["alert_id"] if firing else None,
                fired_end=row["fired_end"], fired_at=row["fired_at"] if firing else None)

    async def handle_scores(self, records: list[ConsumerRecord]) -> None:
        newest: dict[str, datetime] = {}
        for score in await parse_or_dead_letter(Score, records, "alerting", self.producer,
                                                self.settings):
            if score.window_seconds == self.settings.window_seconds:
                newest[score.touchpoint] = max(newest.get(score.touchpoint, score.window_end),
                                               score.window_end)
        if newest:
            alerts = await self._metric_alerts(newest) + await self._topic_alerts(newest)
            await self.publish(alerts)

    async def handle_events(self, records: list[ConsumerRecord]) -> None:
        rules = self.rules.event_rules()
        if not rules:
            return
        # Invalid records are skipped, not dead-lettered: the scoring stage consumes the same
        # topic and already dead-letters them, once.
        events = [e for e, _ in (parse_or_reason(EnrichedFeedback, r.value, self.settings)
                                            for r in records)
                  if e is not None]
        now = utc_now()
        alerts = []
        for event in events:
            for rule in rules:
                key = event_key(rule, event)
                state = self.states.get(key, KeyState())
                alert = event_alert(rule, event, state.fired_end, now)
                if alert is not None:
                    self.states[key] = KeyState("ok", None, event.occurred_at, now)
                    alerts.append((alert, event.occurred_at))
        await self.publish(alerts)

    async def _metric_alerts(self, newest: dict[str, datetime]) -> list[tuple[Alert, datetime]]:
        rules = self.rules.metric_rules()
        if not rules:
            return []
        span = max(history_span(rule) for rule in rules)
        rows = await self._score_rows(rules, newest, span, timedelta(0))
        if any(isinstance(r, RateOfChangeRule) and r.compare_to == "last_week" for r in rules):
            rows += await self._score_rows(rules, newest, max(r.lookback_s for r in rules), WEEK)
        by_touchpoint: dict[str, list[dict]] = {}
        for row in rows:
            by_touchpoint.setdefault(row["touchpoint"], []).append(row)
        out = []
        for touchpoint, end in newest.items():
            for rule in rules:
                if rule.scope.has_touchpoint(touchpoint):
                    m = measure_metric(rule, by_touchpoint.get(touchpoint, []), end)
                    out += await self._step(rule, touchpoint, m, end)
        return out

    async def _score_rows(self, rules: list[MetricRule], newest: dict[str, datetime],
                          span_s: int, shift: timedelta) -> list[dict]:
        """Score rows of the touchpoints, plus the topic rows (as score rows, engine.topic_row)
        of the topics rules are scoped by; only the all-channel, all-stage rows of a table when
        no rule reading it is scoped by channel or stage (one row per window instead of the
        whole cube)."""
        ends = list(newest.values())
        params = {"seconds": self.settings.window_seconds, "touchpoints": tuple(newest),
                  "lo": min(ends) - shift - timedelta(seconds=span_s), "hi": max(ends) - shift}
        rows: list[dict] = []
        plain = [r for r in rules if not r.scope.topics]
        if plain:
            rows += await self.store.query(_WINDOWS_SQL + _slices(plain), params)
        topical = [r for r in rules if r.scope.topics]
        if topical:
            topics = tuple(sorted({t for r in topical for t in r.scope.topics or ()}))
            stored = await self.store.query(_TOPIC_WINDOWS_SQL + _slices(topical),
                                            {**params, "topics": topics})
            rows += [topic_row(r) for r in stored]
        return rows

    async def _topic_alerts(self, newest: dict[str, datetime]) -> list[tuple[Alert, datetime]]:
        out = []
        for rule in self.rules.topic_rules():
            touchpoints = [t for t in newest if rule.scope.has_touchpoint(t)]
            for end in sorted({newest[t] for t in touchpoints}):
                at_end = tuple(t for t in touchpoints if newest[t] == end)
                counts = await self._topic_counts(rule, at_end, end)
                for touchpoint in at_end:
                    m = measure_topic(rule, counts.get(touchpoint, TopicCounts(0, 0, 0, 0)), end)
                    out += await self._step(rule, touchpoint, m, end)
        return out

    async def _topic_counts(self, rule: TopicSpikeRule, touchpoints: tuple[str, ...],
                            end: datetime) -> dict[str, TopicCounts]:
        lookback = timedelta(seconds=rule.lookback_s)
        sql = _TOPIC_SQL
        params: dict = {"topic": rule.topic, "touchpoints": touchpoints, "mid": end - lookback,
                        "lo": end - 2 * lookback, "hi": end}
        if rule.scope.channels:
            sql += _TOPIC_CHANNELS
            params["channels"] = tuple(rule.scope.channels)
        if rule.scope.stages:
            sql += _TOPIC_STAGES
            params["stages"] = tuple(rule.scope.stages)
        rows = await self.store.query(sql + " GROUP BY touchpoint", params)
        return {r["touchpoint"]: TopicCounts(int(r["count"]), int(r["volume"]),
                                             int(r["previous_count"]), int(r["previous_volume"]))
                for r in rows}

    async def _step(self, rule: MetricRule | TopicSpikeRule, touchpoint: str,
                    m: Measurement | None, end: datetime) -> list[tuple[Alert, datetime]]:
        key = metric_key(rule.id, touchpoint)
        before = self.states.get(key, KeyState())
        now = utc_now()
        state, transition = step(before, m, end, cooldown_s=rule.cooldown_s,
                                 resolve_after_s=rule.resolve_after_s, key=key, now=now)
        self.states[key] = state
        if transition is None or m is None:
            return []
        received = None
        if transition == "fire":
            rows = await self.store.query(_RECEIVED_SQL, {"touchpoint": touchpoint,
                                                          "lo": m.start, "hi": m.end})
            received = rows[0]["latest"] if rows and rows[0]["latest"].year > 1970 else None
        alert = lifecycle_alert(rule, touchpoint, state if transition == "fire" else before,
                                transition, m, utc_now(), received)
        return [(alert, state.fired_end or end)]

    async def publish(self, alerts: Sequence[tuple[Alert, datetime]]) -> None:
        """Alerts topic first (the contract), then the table (current status per alert)."""
        if not alerts:
            return
        await self.producer.send_many(self.settings.topic("alerts"),
                                      [(a.dedupe_key.encode(), a.to_bytes()) for a, _ in alerts])
        inserted_ms = int(time.time() * 1000)
        await self.store.insert("alerts", [alert_row(a, end, inserted_ms) for a, end in alerts])
        for alert, _ in alerts:
            latency_ms = None
            if alert.latest_received_at is not None and alert.status == "firing":
                latency_ms = (alert.emitted_at - alert.latest_received_at).total_seconds() * 1000
                self.latency.add(latency_ms)
            log.warning("ALERT fired" if alert.status == "firing" else "ALERT resolved",
                        touchpoint=alert.touchpoint, rule=alert.rule_id, severity=alert.severity,
                        metric=alert.metric, value=round(alert.value, 3), volume=alert.volume,
                        alert_id=alert.alert_id, latency_ms=latency_ms,
                        latency_summary=self.latency.summary() if latency_ms else None)


def _slices(rules: list[MetricRule]) -> str:
    """The filter to the all-channel, all-stage rows, unless a rule is scoped by either."""
    return "" if any(r.scope.channels or r.scope.stages for r in rules) else _TOTALS_ONLY


def history_span(rule: MetricRule) -> int:
    """Seconds of score history a rule reads before its evaluation point."""
    if isinstance(rule, AnomalyRule):
        return rule.lookback_s + rule.baseline_s
    if isinstance(rule, RateOfChangeRule) and rule.compare_to == "previous":
        return 2 * rule.lookback_s
    return rule.lookback_s


async def _poll_rules(rules: RulesFile, every_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            rules.reload_if_changed()


async def run(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event) -> None:
    """Run the alerting stage until ``stop`` is set."""
    from services.alerting.cases import run_cases
    from services.alerting.delivery import run_delivery

    rules = RulesFile(settings.alert_rules_path)
    producer = Producer(bootstrap, client_id=settings.group("alerting"))
    await producer.start()
    try:
        evaluator = AlertEvaluator(settings, store, producer, rules)
        await evaluator.load_state()
        log.info("alerting stage started", rules=[r.id for r in rules.rules.rules])
        scores = BatchConsumer(bootstrap, settings.topic("scores"), settings.group("alerting"),
                               evaluator.handle_scores, max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        events = BatchConsumer(bootstrap, settings.topic("feedback.enriched"),
                               settings.group("alerting-events"), evaluator.handle_events,
                               max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        await asyncio.gather(scores.run(stop), events.run(stop),
                             _poll_rules(rules, settings.alert_rules_poll_s, stop),
                             run_delivery(settings, bootstrap, store, producer, rules, stop),
                             run_cases(settings, bootstrap, store, producer, rules, stop))
    finally:
        await producer.stop()

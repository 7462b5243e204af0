"""The alerting stage: score updates and enriched events -> alert lifecycle events.

Two consumers feed one set of rules:
- score updates (``scores`` topic): for each touchpoint in a batch, every figure rule is
  measured over its lookback ending at the touchpoint's newest updated window, from the stored
  window rows (``topic_scores`` rows for rules scoped by topic), and topic-spike rules from the stored feedback rows; each rule and touchpoint
  (the dedupe key) then steps through its lifecycle (engine.step).
- enriched events (``feedback.enriched``, its own consumer group): single-event rules.

An alert event is published first and recorded second, and the lifecycle state that led to it
changes only after both: if either fails, or the process dies in between, the retried or
re-delivered input re-emits the same deterministic ``alert_id`` rather than losing it. The
lifecycle state (bounded, caps.KeyStates) is rebuilt from the ``alerts`` table on start, so a
restart neither re-pages anyone nor forgets an open alert. At most VOC_ALERT_MAX_PER_RULE
alerts per rule fire per period; the excess is summarised in one alert (caps.AlertCaps).
Alerts that ask for it then open cases, and webhooks deliver them, each from the alerts topic
in their own consumer group (cases.py, delivery.py).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter

from services.alerting.caps import (
    CAP_KEY_SUFFIX,
    AlertCaps,
    KeyStates,
    Owner,
    Pending,
    RuleCap,
)
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

SUPPRESSED = Counter("voc_alerts_suppressed_total",
                     "Firing alerts the per-rule cap (VOC_ALERT_MAX_PER_RULE) kept from paging; "
                     "each rule's cap summary alert counts them too.", ["rule"])

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

# Keys with an open alert, and the most recent others that may still be cooling down: the
# state a restarted evaluator needs, bounded like the in-memory map (caps.KeyStates).
_STATE_SQL = """
SELECT dedupe_key, alert_id, state AS status, fired_end, fired_at FROM (
    SELECT dedupe_key, argMax(alert_id, fired_window_end) AS alert_id,
           argMax(status, fired_window_end) AS state, max(fired_window_end) AS fired_end,
           argMax(fired_at, fired_window_end) AS fired_at
    FROM alerts FINAL GROUP BY dedupe_key
)
WHERE state = 'firing' OR fired_end >= %(since)s
ORDER BY state = 'firing' DESC, fired_end DESC
LIMIT %(limit)s
"""

# Firing alerts per rule in the current cap period, and open cap summaries: what the caps
# (caps.AlertCaps) counted before a restart.
_CAP_COUNT_SQL = """
SELECT rule_id, count() AS fired FROM alerts FINAL
WHERE fired_at >= %(since)s AND dedupe_key NOT LIKE %(summary_keys)s
GROUP BY rule_id
"""
_CAP_SUMMARY_SQL = """
SELECT * FROM alerts FINAL WHERE status = 'firing' AND dedupe_key LIKE %(summary_keys)s
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
    """Evaluates rules on score and event batches and publishes lifecycle events.

    Each handler stages the lifecycle states its evaluation leads to, and they (and the cap
    counts) become the evaluator's only once the alerts were published and recorded: a publish
    that fails leaves the evaluator as it was, so the retried batch publishes the same alerts
    again (same deterministic ids) instead of none. The two consumers evaluate disjoint keys
    (figure and topic rules on scores, event rules on events); the caps they share are
    planned, published and committed under one lock.
    """

    def __init__(self, settings: Settings, store: Store, producer: Producer,
                 rules: RulesFile) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules_file = rules
        self.states = KeyStates(settings.alert_max_keys)
        self.caps = AlertCaps(settings.alert_max_per_rule, settings.alert_cap_period_s)
        self.latency = LatencyStats()
        self._publishing = asyncio.Lock()

    @property
    def rules(self) -> RuleSet:
        return self.rules_file.rules

    async def load_state(self) -> None:
        """Lifecycle state survives restarts: open alerts, cooldowns still running, and the
        caps' counts of the current period come from the store."""
        longest = max((r.cooldown_s for r in self.rules.rules), default=0)
        rows = await self.store.query(_STATE_SQL, {
            "since": utc_now() - timedelta(seconds=longest),
            "limit": self.settings.alert_max_keys})
        loaded = {}
        for row in rows:
            firing = row["status"] == "firing"
            loaded[row["dedupe_key"]] = KeyState(
                status="firing" if firing else "ok", alert_id=row["alert_id"] if firing else None,
                fired_end=row["fired_end"], fired_at=row["fired_at"] if firing else None)
        self.states.update(loaded)
        await self._load_caps()

    async def _load_caps(self) -> None:
        period = self.caps.period_of(utc_now())
        pattern = {"summary_keys": "%" + CAP_KEY_SUFFIX, "since": period}
        fired = {r["rule_id"]: int(r["fired"])
                 for r in await self.store.query(_CAP_COUNT_SQL, pattern)}
        summaries = {}
        for row in await self.store.query(_CAP_SUMMARY_SQL, pattern):
            summaries[row["rule_id"]] = row
        for rule_id in fired.keys() | summaries.keys():
            rule = self.rules.by_id(rule_id)
            owner = Owner.of(rule) if rule is not None else None
            row = summaries.get(rule_id)
            if row is None:
                cap = RuleCap(period, fired[rule_id])
            else:
                # A summary of an earlier period resolves at the next evaluation; the current
                # period's count then starts from nothing.
                cap = RuleCap(row["window_start"], fired.get(rule_id, 0), int(row["volume"]),
                              _summary_from_row(row, owner))
            self.caps.restore(rule_id, cap, owner)

    def _owners(self) -> dict[str, Owner]:
        return {rule.id: Owner.of(rule) for rule in self.rules.rules}

    async def handle_scores(self, records: list[ConsumerRecord]) -> None:
        newest: dict[str, datetime] = {}
        for score in await parse_or_dead_letter(Score, records, "alerting", self.producer,
                                                self.settings):
            if score.window_seconds == self.settings.window_seconds:
                newest[score.touchpoint] = max(newest.get(score.touchpoint, score.window_end),
                                               score.window_end)
        if newest:
            staged: dict[str, KeyState] = {}
            pending = (await self._metric_alerts(newest, staged)
                       + await self._topic_alerts(newest, staged))
            await self._publish_and_commit(pending, staged)

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
        staged: dict[str, KeyState] = {}
        pending = []
        for event in events:
            for rule in rules:
                key = event_key(rule, event)
                state = staged.get(key) or self.states.get(key)
                alert = event_alert(rule, event, state.fired_end, now)
                if alert is not None:
                    staged[key] = KeyState("ok", None, event.occurred_at, now)
                    pending.append(Pending(alert, event.occurred_at, key, staged[key],
                                           staged[key]))
        await self._publish_and_commit(pending, staged)

    async def flush_caps(self) -> None:
        """Resolve the cap summaries of periods that ended, without waiting for a batch."""
        await self._publish_and_commit([], {})

    async def _publish_and_commit(self, pending: list[Pending],
                                  staged: dict[str, KeyState]) -> None:
        async with self._publishing:
            owners = self._owners()
            plan = self.caps.plan(pending, owners, utc_now())
            for item in plan.suppressed:
                staged[item.key] = item.suppressed
            await self.publish(plan.alerts, plan.table_only)
            self.states.update(staged)
            self.caps.commit(plan, owners)
        for item in plan.suppressed:
            SUPPRESSED.labels(item.alert.rule_id).inc()
        if plan.suppressed:
            log.warning("alerts suppressed by the per-rule cap", count=len(plan.suppressed),
                        rules=sorted({i.alert.rule_id for i in plan.suppressed}),
                        max_per_rule=self.caps.max_per_rule, period_s=self.caps.period_s)

    async def _metric_alerts(self, newest: dict[str, datetime],
                             staged: dict[str, KeyState]) -> list[Pending]:
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
                    out += await self._step(rule, touchpoint, m, end, staged)
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

    async def _topic_alerts(self, newest: dict[str, datetime],
                            staged: dict[str, KeyState]) -> list[Pending]:
        out = []
        for rule in self.rules.topic_rules():
            touchpoints = [t for t in newest if rule.scope.has_touchpoint(t)]
            for end in sorted({newest[t] for t in touchpoints}):
                at_end = tuple(t for t in touchpoints if newest[t] == end)
                counts = await self._topic_counts(rule, at_end, end)
                for touchpoint in at_end:
                    m = measure_topic(rule, counts.get(touchpoint, TopicCounts(0, 0, 0, 0)), end)
                    out += await self._step(rule, touchpoint, m, end, staged)
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
                    m: Measurement | None, end: datetime,
                    staged: dict[str, KeyState]) -> list[Pending]:
        """Step one key's lifecycle into ``staged``; the alert of its transition, if any."""
        key = metric_key(rule.id, touchpoint)
        before = staged.get(key) or self.states.get(key)
        now = utc_now()
        state, transition = step(before, m, end, cooldown_s=rule.cooldown_s,
                                 resolve_after_s=rule.resolve_after_s, key=key, now=now)
        staged[key] = state
        if transition is None or m is None:
            return []
        received = None
        if transition == "fire":
            rows = await self.store.query(_RECEIVED_SQL, {"touchpoint": touchpoint,
                                                          "lo": m.start, "hi": m.end})
            received = rows[0]["latest"] if rows and rows[0]["latest"].year > 1970 else None
        alert = lifecycle_alert(rule, touchpoint, state if transition == "fire" else before,
                                transition, m, utc_now(), received)
        suppressed = replace(before, last_end=end, fired_end=end, clear_since=None)
        return [Pending(alert, state.fired_end or end, key, state, suppressed)]

    async def publish(self, alerts: Sequence[tuple[Alert, datetime]],
                      table_only: Sequence[tuple[Alert, datetime]] = ()) -> None:
        """Alerts topic first (the contract), then the table (current status per alert)."""
        if not alerts and not table_only:
            return
        if alerts:
            await self.producer.send_many(
                self.settings.topic("alerts"),
                [(a.dedupe_key.encode(), a.to_bytes()) for a, _ in alerts])
        inserted_ms = int(time.time() * 1000)
        # The running counts last: of equal inserted_ms the table keeps the last row.
        await self.store.insert("alerts", [alert_row(a, end, inserted_ms)
                                           for a, end in [*alerts, *table_only]],
                                month_column="window_start")
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


def _summary_from_row(row: dict, owner: Owner | None) -> Alert:
    """The open cap summary a previous process stored (its notify list is the rule's now)."""
    fields = {k: v for k, v in row.items() if k in Alert.model_fields}
    for name in ("channel", "stage", "topic", "team", "owner"):
        fields[name] = fields.get(name) or None
    return Alert.model_validate({
        **fields, "schema": "alert.v2", "operator": ">",
        "notify": list(owner.notify) if owner else [], "open_case": False, "event_ids": [],
        "latest_received_at": None, "resolved_at": None})


async def _poll_rules(rules: RulesFile, evaluator: AlertEvaluator, every_s: float,
                      stop: asyncio.Event) -> None:
    """Reload changed rules, and close the cap summaries of ended periods, every ``every_s``."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            rules.reload_if_changed()
            try:
                await evaluator.flush_caps()
            except Exception as exc:  # broker or store away: the next tick tries again
                log.warning("closing alert cap summaries failed; retrying next tick",
                            error=str(exc)[:300])


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
        scores = BatchConsumer(settings, bootstrap, settings.topic("scores"),
                               settings.group("alerting"), evaluator.handle_scores,
                               stage="alerting", producer=producer,
                               max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        events = BatchConsumer(settings, bootstrap, settings.topic("feedback.enriched"),
                               settings.group("alerting-events"), evaluator.handle_events,
                               stage="alerting", producer=producer,
                               max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        await asyncio.gather(scores.run(stop), events.run(stop),
                             _poll_rules(rules, evaluator, settings.alert_rules_poll_s, stop),
                             run_delivery(settings, bootstrap, store, producer, rules, stop),
                             run_cases(settings, bootstrap, store, producer, rules, stop))
    finally:
        await producer.stop()

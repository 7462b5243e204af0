"""The alerting stage: score updates -> rule evaluation -> ``alerts`` topic and table.

For every touchpoint in a batch of score updates, each rule is evaluated over its lookback
ending at the newest updated window, from the stored (latest) window rows. An alert is
published first and recorded second: if the process dies in between, the re-delivered score
re-fires the same deterministic ``alert_id`` rather than losing the alert. The cooldown state
is rebuilt from the ``alerts`` table on start, so a restart does not re-page anyone.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import structlog
from aiokafka import ConsumerRecord

from services.alerting.rules import RuleSet, evaluate, load_rules, lookback
from services.core.events import Alert, Score, utc_now
from services.core.kafka import BatchConsumer, Producer, parse_or_dead_letter
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)

_WINDOWS_SQL = """
SELECT touchpoint, window_start, window_seconds, volume, negative_count, mean_sentiment
FROM scores FINAL
WHERE window_seconds = %(seconds)s AND touchpoint IN %(touchpoints)s
  AND window_start >= %(lo)s AND window_start < %(hi)s
"""


class AlertEvaluator:
    """Handles batches of score-topic records."""

    def __init__(self, settings: Settings, store: Store, producer: Producer, rules: RuleSet) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules = rules
        self.last_fired: dict[str, datetime] = {}

    async def load_state(self) -> None:
        """Cooldowns survive restarts: the newest fire per dedupe key comes from the store."""
        rows = await self.store.query(
            "SELECT dedupe_key, max(window_end) AS last_end FROM alerts GROUP BY dedupe_key")
        self.last_fired = {row["dedupe_key"]: row["last_end"] for row in rows}

    async def handle(self, records: list[ConsumerRecord]) -> None:
        newest: dict[str, Score] = {}
        for score in await parse_or_dead_letter(Score, records, "alerting", self.producer,
                                                self.settings):
            if (score.touchpoint not in newest
                    or score.window_end > newest[score.touchpoint].window_end):
                newest[score.touchpoint] = score
        if newest:
            alerts = await self._evaluate(newest)
            await self._fire(alerts)

    async def _evaluate(self, newest: dict[str, Score]) -> list[Alert]:
        longest = max(rule.lookback_s for rule in self.rules.rules)
        ends = [s.window_end for s in newest.values()]
        rows = await self.store.query(_WINDOWS_SQL, {
            "seconds": self.settings.window_seconds,
            "touchpoints": tuple(newest),
            "lo": min(ends) - timedelta(seconds=longest),
            "hi": max(ends),
        })
        by_touchpoint: dict[str, list[dict]] = {}
        for row in rows:
            by_touchpoint.setdefault(row["touchpoint"], []).append(row)
        now = utc_now()
        alerts = []
        for touchpoint, score in newest.items():
            for rule in self.rules.rules:
                figures = lookback(rule, by_touchpoint.get(touchpoint, []), score.window_end)
                alert = evaluate(rule, touchpoint, figures,
                                 self.last_fired.get(rule.dedupe_key(touchpoint)), now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    async def _fire(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        await self.producer.send_many(self.settings.topic("alerts"),
                                      [(a.dedupe_key.encode(), a.to_bytes()) for a in alerts])
        inserted_ms = int(time.time() * 1000)
        await self.store.insert("alerts", [
            {**a.model_dump(exclude={"schema_"}), "inserted_ms": inserted_ms} for a in alerts
        ])
        for alert in alerts:
            self.last_fired[alert.dedupe_key] = alert.window_end
            log.warning("ALERT fired", touchpoint=alert.touchpoint, rule=alert.rule_id,
                        severity=alert.severity, metric=alert.metric,
                        value=round(alert.value, 3), volume=alert.volume, alert_id=alert.alert_id)


async def run(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event) -> None:
    """Run the alerting stage until ``stop`` is set."""
    rules = load_rules(settings.alert_rules_path)
    producer = Producer(bootstrap, client_id=settings.group("alerting"))
    await producer.start()
    try:
        evaluator = AlertEvaluator(settings, store, producer, rules)
        await evaluator.load_state()
        log.info("alerting stage started", rules=[r.id for r in rules.rules])
        consumer = BatchConsumer(bootstrap, settings.topic("scores"), settings.group("alerting"),
                                 evaluator.handle, max_records=settings.sink_batch_size,
                                 wait_s=settings.sink_batch_wait_s)
        await consumer.run(stop)
    finally:
        await producer.stop()

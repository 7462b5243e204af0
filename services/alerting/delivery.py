"""Delivers alert events from the alerts topic to the webhooks their rule routes them to.

A separate consumer group of the alerts topic, so a slow or failing receiver delays neither
evaluation nor other consumers of alerts, and a crash re-delivers (at-least-once: receivers
dedupe on alert_id + status). Every final outcome is a row in ``alert_deliveries``; a delivery
that failed after all retries is also written to the dead-letter topic with the alert bytes,
like any record a stage could not process.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import structlog
from aiokafka import ConsumerRecord

from services.alerting.webhooks import Outcome, deliver
from services.core.events import Alert, utc_now
from services.core.kafka import BatchConsumer, Producer, dead_letter, parse_or_reason
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)


class WebhookDispatcher:
    """Handles batches of alerts-topic records: all deliveries of a batch run concurrently."""

    def __init__(self, settings: Settings, store: Store, producer: Producer, rules: object,
                 client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules_file = rules
        self.client = client

    async def handle(self, records: list[ConsumerRecord]) -> None:
        jobs = []
        for record in records:
            alert, _ = parse_or_reason(Alert, record.value)
            if alert is None:
                continue  # the evaluator wrote it; a foreign record is not ours to dead-letter
            hooks = self.rules_file.rules.webhooks
            for name in alert.notify:
                hook = hooks.get(name)
                if hook is None:
                    log.warning("webhook no longer defined; alert not delivered there",
                                webhook=name, alert_id=alert.alert_id)
                elif alert.status in hook.statuses:
                    jobs.append((record, alert, name, hook))
        if not jobs:
            return
        outcomes = await asyncio.gather(*(
            deliver(self.client, hook, alert, max_attempts=self.settings.webhook_max_attempts,
                    backoff_s=self.settings.webhook_backoff_s)
            for _, alert, _, hook in jobs))
        await self._record(jobs, outcomes)

    async def _record(self, jobs: list, outcomes: list[Outcome]) -> None:
        letters = []
        now = utc_now()
        inserted_ms = int(time.time() * 1000)
        rows = []
        for (record, alert, name, hook), outcome in zip(jobs, outcomes):
            rows.append({
                "alert_id": alert.alert_id, "status": alert.status, "webhook": name,
                "url": hook.url.split("?")[0], "format": hook.format,
                "outcome": "delivered" if outcome.delivered else "dead_letter",
                "attempts": outcome.attempts, "http_status": outcome.status_code or 0,
                "error": outcome.error, "finished_at": now, "inserted_ms": inserted_ms})
            if outcome.delivered:
                log.info("webhook delivered", webhook=name, alert_id=alert.alert_id,
                         status=alert.status, attempts=outcome.attempts)
            else:
                log.error("webhook failed after retries; dead-lettered", webhook=name,
                          alert_id=alert.alert_id, attempts=outcome.attempts, error=outcome.error)
                letters.append(dead_letter(
                    "alerting", record.topic, record.partition, record.offset, record.value,
                    f"webhook {name} failed after {outcome.attempts} attempts: {outcome.error}"))
        if letters:
            await self.producer.send_many(self.settings.topic("deadletter"), letters)
        await self.store.insert("alert_deliveries", rows)


async def run_delivery(settings: Settings, bootstrap: str, store: Store, producer: Producer,
                       rules: object, stop: asyncio.Event) -> None:
    """Deliver alerts to webhooks until ``stop`` is set."""
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client:
        dispatcher = WebhookDispatcher(settings, store, producer, rules, client)
        consumer = BatchConsumer(bootstrap, settings.topic("alerts"),
                                 settings.group("alerting-webhooks"), dispatcher.handle,
                                 max_records=settings.sink_batch_size,
                                 wait_s=settings.sink_batch_wait_s)
        await consumer.run(stop)

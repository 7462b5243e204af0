"""Delivers alert and case events to the webhooks they are routed to.

Alerts go to the webhooks of their rule's ``route.notify``; case transitions go to the webhooks
of the team that owns the case afterwards (``teams`` in the rules file), so an SLA escalation
pages the level it moves the case to. Each is a separate consumer group (of the alerts and the
cases topic), so a slow or failing receiver delays neither evaluation, cases nor the other
kind, and a crash re-delivers (at-least-once: receivers dedupe on alert_id + status, or on the
case event_id). Every final outcome is a row in ``alert_deliveries`` or ``case_deliveries``; a
delivery that failed after all retries is also written to the dead-letter topic with the event
bytes, like any record a stage could not process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog
from aiokafka import ConsumerRecord
from cachetools import LRUCache

from services.alerting import queries
from services.alerting.rules import RuleSet, Webhook
from services.alerting.webhooks import Outcome, deliver, event_ref, redact_url
from services.core.events import Alert, CaseEvent, utc_now
from services.core.kafka import BatchConsumer, Producer, dead_letter, parse_or_reason
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Job:
    """One event to one webhook."""

    record: ConsumerRecord
    event: Alert | CaseEvent
    name: str
    hook: Webhook


class WebhookDispatcher:
    """Handles batches of alerts-topic records: all deliveries of a batch run concurrently."""

    table: Literal["alert_deliveries", "case_deliveries"] = "alert_deliveries"

    def __init__(self, settings: Settings, store: Store, producer: Producer, rules: Any,
                 client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules_file = rules
        self.client = client
        # Outcomes of deliveries made but not recorded yet (the store failed after the
        # webhook answered): a retry of the batch records them instead of paging again.
        # Bounded: beyond it the oldest are forgotten and would be delivered again (receivers
        # dedupe on alert_id + status, or on the case event_id).
        self._unrecorded: LRUCache[tuple[str, int, int, str], Outcome] = LRUCache(
            maxsize=max(1000, 4 * settings.sink_batch_size))

    def jobs(self, records: list[ConsumerRecord], rules: RuleSet) -> list[Job]:
        jobs = []
        for record in records:
            alert, _ = parse_or_reason(Alert, record.value)
            if alert is None:
                continue  # the evaluator wrote it; a foreign record is not ours to dead-letter
            for name in alert.notify:
                hook = rules.webhooks.get(name)
                if hook is None:
                    log.warning("webhook no longer defined; alert not delivered there",
                                webhook=name, alert_id=alert.alert_id)
                elif alert.status in hook.statuses:
                    jobs.append(Job(record, alert, name, hook))
        return jobs

    def row(self, event: Any) -> dict[str, Any]:
        """The columns naming what was delivered (the rest describe the outcome)."""
        return {"alert_id": event.alert_id, "status": event.status}

    async def handle(self, records: list[ConsumerRecord]) -> None:
        jobs = self.jobs(records, self.rules_file.rules)
        if not jobs:
            return
        keys = [(job.record.topic, job.record.partition, job.record.offset, job.name)
                for job in jobs]
        todo = [(key, job) for key, job in zip(keys, jobs) if key not in self._unrecorded]
        delivered = await asyncio.gather(*(
            deliver(self.client, job.hook, job.event,
                    max_attempts=self.settings.webhook_max_attempts,
                    backoff_s=self.settings.webhook_backoff_s,
                    customer_text=self.settings.alert_customer_text)
            for _, job in todo))
        for (key, _), outcome in zip(todo, delivered):
            self._unrecorded[key] = outcome
        await self._record(jobs, [self._unrecorded[key] for key in keys])
        for key in keys:
            self._unrecorded.pop(key, None)

    async def _record(self, jobs: list[Job], outcomes: list[Outcome]) -> None:
        letters = []
        now = utc_now()
        inserted_ms = int(time.time() * 1000)
        rows = []
        for job, outcome in zip(jobs, outcomes):
            rows.append({
                **self.row(job.event), "webhook": job.name, "url": redact_url(job.hook.url),
                "format": job.hook.format,
                "outcome": "delivered" if outcome.delivered else "dead_letter",
                "attempts": outcome.attempts, "http_status": outcome.status_code or 0,
                "error": outcome.error, "finished_at": now, "inserted_ms": inserted_ms})
            if outcome.delivered:
                log.info("webhook delivered", webhook=job.name, ref=event_ref(job.event),
                         table=self.table, attempts=outcome.attempts)
            else:
                log.error("webhook failed after retries; dead-lettered", webhook=job.name,
                          ref=event_ref(job.event), table=self.table,
                          attempts=outcome.attempts, error=outcome.error)
                record = job.record
                letters.append(dead_letter(
                    "alerting", record.topic, record.partition, record.offset, record.value,
                    f"webhook {job.name} failed after {outcome.attempts} attempts: "
                    f"{outcome.error}"))
        if letters:
            await self.producer.send_many(self.settings.topic("deadletter"), letters)
        await queries.record_deliveries(self.store, self.table, rows)


class CaseNotifier(WebhookDispatcher):
    """Handles batches of cases-topic records: pages the team owning each case afterwards.

    A case an alert opened skips the webhooks that already got that alert's firing event (its
    rule's ``route.notify``), so one problem does not page the same room twice. Events older
    than ``case_page_max_age_s`` are skipped: the group starts at the topic's beginning, and
    paging a team about last month's escalation helps nobody.
    """

    table = "case_deliveries"

    def jobs(self, records: list[ConsumerRecord], rules: RuleSet) -> list[Job]:
        jobs = []
        now = utc_now()
        for record in records:
            case, _ = parse_or_reason(CaseEvent, record.value)
            if case is None:
                continue  # the case service wrote it; a foreign record is not ours
            age_s = (now - case.at).total_seconds()
            if age_s > self.settings.case_page_max_age_s:
                log.info("case event too old to page anyone", case_id=case.case_id,
                         action=case.action, age_s=round(age_s))
                continue
            team = rules.teams.get(case.team) if case.team else None
            if team is None:
                if case.action == "escalated":
                    log.warning("case escalated to a team without webhooks under `teams`; "
                                "nobody is paged", case_id=case.case_id, team=case.team,
                                level=case.escalation_level)
                continue
            if case.action not in team.case_actions:
                continue
            skip = already_paged(rules, case.rule_id) if case.action == "opened" else set()
            for name in team.notify:
                hook = rules.webhooks.get(name)
                if hook is not None and name not in skip:
                    jobs.append(Job(record, case, name, hook))
        return jobs

    def row(self, event: Any) -> dict[str, Any]:
        return {"case_id": event.case_id, "seq": event.seq, "event_id": event.event_id,
                "action": event.action, "team": event.team or ""}


def already_paged(rules: RuleSet, rule_id: str) -> set[str]:
    """Webhooks that received the firing alert of ``rule_id`` (as the rules stand now)."""
    rule = rules.by_id(rule_id)
    if rule is None:
        return set()
    return {name for name in rule.route.notify
            if name in rules.webhooks and "firing" in rules.webhooks[name].statuses}


async def run_delivery(settings: Settings, bootstrap: str, store: Store, producer: Producer,
                       rules: Any, stop: asyncio.Event) -> None:
    """Deliver alerts and case transitions to webhooks until ``stop`` is set."""
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as client:
        alerts = BatchConsumer(
            settings, bootstrap, settings.topic("alerts"), settings.group("alerting-webhooks"),
            WebhookDispatcher(settings, store, producer, rules, client).handle,
            stage="alerting", producer=producer,
            max_records=settings.sink_batch_size, wait_s=settings.sink_batch_wait_s)
        cases = BatchConsumer(
            settings, bootstrap, settings.topic("cases"), settings.group("alerting-case-webhooks"),
            CaseNotifier(settings, store, producer, rules, client).handle,
            stage="alerting", producer=producer,
            max_records=settings.sink_batch_size, wait_s=settings.sink_batch_wait_s)
        await asyncio.gather(alerts.run(stop), cases.run(stop))

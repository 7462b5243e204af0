"""Cases: the closed loop from an alert to a resolved, followed-up customer problem.

A case moves open -> acknowledged -> in_progress -> resolved -> closed (reopen allowed), with
assignment, comments, SLA escalations and a customer follow-up on the way. Every transition is
a ``case.v1`` event on the cases topic (first) and an append-only row in ``case_events``
(second); each carries the whole case afterwards, so the newest row is the current state and
MTTA / MTTR are plain aggregates. The transition rules are pure (``transition``); the service
around them only reads the current row and writes the next one.

Every read and write goes through queries.py; ``case_row`` and ``event_from_row`` (a case's
row in the store) are re-exported from there for the web feed and the tests.

Writers are not serialised across processes: two people acting on one case at the same instant
can both succeed, and the later row (higher seq, or the later insert of an equal seq) wins.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from aiokafka import ConsumerRecord

from services.alerting import queries
from services.alerting.queries import case_row as case_row
from services.alerting.queries import event_from_row as event_from_row
from services.alerting.rules import RuleSet, Sla
from services.core.events import (
    Alert,
    CaseAction,
    CaseEvent,
    CaseKind,
    CaseStatus,
    Ratings,
    RawFeedback,
    Severity,
    stable_event_id,
    utc_now,
)
from services.core.kafka import BatchConsumer, Producer, parse_or_reason
from services.core.pii import redact, redact_optional
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)

_CASE_NAMESPACE = uuid.UUID("5d2e8a61-0c3b-4d7e-9f41-6a2b8c9d0e13")
DEFAULT_SLA: dict[Severity, Sla] = {"critical": Sla(ack_minutes=15, resolve_hours=4),
               "warning": Sla(ack_minutes=60, resolve_hours=24),
               "info": Sla(ack_minutes=240, resolve_hours=72)}

# action -> (statuses it is allowed from, status afterwards; None keeps the status)
_MOVES: dict[str, tuple[frozenset[str], CaseStatus | None]] = {
    "acknowledged": (frozenset({"open"}), "acknowledged"),
    "started": (frozenset({"open", "acknowledged"}), "in_progress"),
    "resolved": (frozenset({"open", "acknowledged", "in_progress"}), "resolved"),
    "closed": (frozenset({"resolved"}), "closed"),
    "reopened": (frozenset({"resolved", "closed"}), "open"),
    "assigned": (frozenset({"open", "acknowledged", "in_progress", "resolved"}), None),
    "commented": (frozenset({"open", "acknowledged", "in_progress", "resolved", "closed"}), None),
    "escalated": (frozenset({"open", "acknowledged", "in_progress"}), None),
    "followed_up": (frozenset({"resolved", "closed"}), None),
}


class CaseError(ValueError):
    """A transition the case's current status does not allow (HTTP 409)."""


class CaseNotFound(KeyError):
    """No case with that id (HTTP 404)."""


def allowed_actions(status: str) -> list[str]:
    return sorted(a for a, (sources, _) in _MOVES.items() if status in sources)


def sla_for(rules: RuleSet, severity: Severity) -> Sla:
    return rules.sla.get(severity, DEFAULT_SLA[severity])


CASE_KINDS: dict[str, CaseKind] = {"rating": "callback", "customer_history": "churn_risk"}
"""The case a customer rule's alert opens, by the rule's type."""


def case_id_for(alert_id: str) -> str:
    """One case per alert, so a re-delivered alert never opens a second one."""
    return str(uuid.uuid5(_CASE_NAMESPACE, alert_id))


def _event_id(case_id: str, seq: int) -> str:
    return str(uuid.uuid5(_CASE_NAMESPACE, f"{case_id}#{seq}"))


def open_case(alert: Alert, sla: Sla, now: datetime) -> CaseEvent:
    """The first event of the case an alert opens."""
    case_id = case_id_for(alert.alert_id)
    return CaseEvent(
        event_id=_event_id(case_id, 1), case_id=case_id, seq=1, action="opened", status="open",
        at=now, actor="alerting", comment=redact(alert.message)[:4000], severity=alert.severity,
        team=alert.team, assignee=alert.owner, escalation_level=0, touchpoint=alert.touchpoint,
        rule_id=alert.rule_id, alert_ids=[alert.alert_id], feedback_event_ids=alert.event_ids,
        opened_at=now, acknowledged_at=None, resolved_at=None, closed_at=None,
        ack_due_at=now + timedelta(minutes=sla.ack_minutes),
        resolve_due_at=now + timedelta(hours=sla.resolve_hours),
        followup_outcome=None, followup_rating=None, kind=CASE_KINDS.get(alert.rule_type),
        customer_id=redact_optional(alert.customer_id) or None,
        channels=alert.channels or ([alert.channel] if alert.customer_id and alert.channel
                                    else []))


def _redacted_comment(comment: str | None) -> str | None:
    """A placeholder can be longer than what it replaced; the column holds 4000 characters."""
    return None if comment is None else redact(comment)[:4000]


def transition(case: CaseEvent, action: CaseAction, actor: str, now: datetime,
               **changes: Any) -> CaseEvent:
    """The next event of ``case``; raises CaseError when the current status forbids it.

    The comment is redacted here, so no caller (API, SLA loop, follow-up) can put PII on the
    cases topic, into ``case_events``, a team's webhook or the live stream.
    """
    if action not in _MOVES:
        raise CaseError(f"{action!r} is not a case action; use one of {sorted(_MOVES)}")
    sources, target = _MOVES[action]
    if case.status not in sources:
        raise CaseError(f"case {case.case_id} is {case.status}: cannot {action}; allowed now: "
                        f"{allowed_actions(case.status)}")
    update: dict[str, Any] = {"seq": case.seq + 1, "event_id": _event_id(case.case_id, case.seq + 1),
                              "action": action, "actor": actor, "at": now,
                              "comment": _redacted_comment(changes.pop("comment", None))}
    if target is not None:
        update["status"] = target
    if action == "acknowledged" or (action in ("started", "resolved")
                                    and case.acknowledged_at is None):
        update["acknowledged_at"] = case.acknowledged_at or now
    if action == "resolved":
        update["resolved_at"] = now
    if action == "closed":
        update["closed_at"] = now
    if action == "reopened":
        update.update(resolved_at=None, closed_at=None)
    update.update(changes)
    return case.model_copy(update=update)


def escalation(case: CaseEvent, sla: Sla, now: datetime) -> CaseEvent | None:
    """The escalation event due for ``case`` at ``now``, if any.

    An unacknowledged case past ``ack_due_at``, or an unresolved one past ``resolve_due_at``,
    moves one level up: the owning team becomes the SLA chain's next team (if there is one)
    and the missed deadline is re-armed, so it escalates again if the next level is silent too.
    Escalation stops at the end of the chain (after one level when there is no chain).
    """
    if case.status not in ("open", "acknowledged", "in_progress"):
        return None
    if case.escalation_level >= max(1, len(sla.escalation)):
        return None
    ack_missed = case.status == "open" and now >= case.ack_due_at
    resolve_missed = now >= case.resolve_due_at
    if not (ack_missed or resolve_missed):
        return None
    level = case.escalation_level + 1
    team = sla.escalation[level - 1] if len(sla.escalation) >= level else case.team
    what = "acknowledge" if ack_missed else "resolve"
    changes: dict[str, Any] = {"escalation_level": level, "team": team,
                               "comment": f"{what} SLA missed; escalated to level {level}"
                                          + (f" ({team})" if team else "")}
    if ack_missed:
        changes["ack_due_at"] = now + timedelta(minutes=sla.ack_minutes)
    if resolve_missed:
        changes["resolve_due_at"] = now + timedelta(hours=sla.resolve_hours)
    return transition(case, "escalated", "sla", now, **changes)


def followup_feedback(case: CaseEvent, outcome: str, rating: int | None, text: str | None,
                      customer_id: str | None, now: datetime, operator: str = "") -> RawFeedback:
    """The follow-up as feedback (channel survey, rating as CSAT), so the loop closes in the
    data too: the callback's rating flows through NLP and scoring like any other feedback.
    Text and customer id are redacted like ingest's, since this skips ingest; ``operator``
    (the principal who recorded it) travels in the metadata."""
    external_id = f"case-{case.case_id}-followup-{case.seq + 1}"
    return RawFeedback(
        event_id=stable_event_id("tingjian-cases", external_id), source="tingjian-cases",
        external_id=external_id, channel="survey", touchpoint=case.touchpoint,
        text=redact(text) if text else f"回访结果: {outcome}" + (f", 评分 {rating}" if rating else ""),
        occurred_at=now, received_at=now, customer_id=redact_optional(customer_id), stage="售后",
        ratings=Ratings(csat=rating),
        metadata={"case_id": case.case_id, "followup_outcome": outcome, "rule_id": case.rule_id,
                  **({"operator": operator} if operator else {})})


@dataclass
class CaseService:
    """Reads current cases and writes transitions (topic first, then the table)."""

    settings: Settings
    store: Store
    producer: Producer

    async def current(self, case_id: str) -> CaseEvent:
        case = await queries.current_case(self.store, case_id)
        if case is None:
            raise CaseNotFound(case_id)
        return case

    async def history(self, case_id: str) -> builtins.list[CaseEvent]:
        events = await queries.case_history(self.store, case_id)
        if not events:
            raise CaseNotFound(case_id)
        return events

    async def list(self, *, status: CaseStatus | None = None, team: str | None = None,
                   touchpoint: str | None = None, limit: int = 100,
                   touchpoints: Collection[str] | None = None,
                   teams: Collection[str] | None = None) -> builtins.list[CaseEvent]:
        """The newest-opened cases matching the filters, at most ``limit``; ``touchpoints``
        and ``teams`` bound what the caller may see (None: everything)."""
        return await queries.cases(self.store, status=status, team=team, touchpoint=touchpoint,
                                   touchpoints=touchpoints, teams=teams, limit=limit)

    async def metrics(self, since: datetime) -> builtins.list[queries.CaseFigures]:
        return await queries.case_figures(self.store, since)

    async def write(self, events: builtins.list[CaseEvent]) -> None:
        if not events:
            return
        await self.producer.send_many(self.settings.topic("cases"),
                                      [(e.case_id.encode(), e.to_bytes()) for e in events])
        await queries.record_case_events(self.store, events, int(time.time() * 1000))
        for event in events:
            log.info("case " + event.action, case_id=event.case_id, status=event.status,
                     team=event.team, actor=event.actor, level=event.escalation_level)

    async def act(self, case_id: str, action: CaseAction, actor: str,
                  guard: Callable[[CaseEvent], None] = lambda _: None,
                  **changes: Any) -> CaseEvent:
        """Apply ``action``; ``guard`` may refuse (raise) after seeing the current case."""
        current = await self.current(case_id)
        guard(current)
        event = transition(current, action, actor, utc_now(), **changes)
        await self.write([event])
        return event

    async def follow_up(self, case_id: str, actor: str, outcome: str, rating: int | None,
                        text: str | None, customer_id: str | None,
                        guard: Callable[[CaseEvent], None] = lambda _: None,
                        ) -> tuple[CaseEvent, RawFeedback]:
        """Record the callback on the case and produce it as feedback to the raw topic."""
        case = await self.current(case_id)
        guard(case)
        now = utc_now()
        event = transition(case, "followed_up", actor, now, comment=text,
                           followup_outcome=outcome, followup_rating=rating)
        feedback = followup_feedback(case, outcome, rating, text,
                                     customer_id or case.customer_id, now, operator=actor)
        await self.producer.send_many(self.settings.topic("feedback.raw"),
                                      [(feedback.touchpoint.encode(), feedback.to_bytes())])
        await self.write([event])
        return event, feedback


class CaseOpener:
    """Opens a case for every firing alert that asks for one (alerts topic, own group).

    Safe to run again on any part of a batch, as the failure policy may: a case that is
    stored already is not opened again, and one whose event reached the cases topic but not
    the table is written again with the same event id (receivers dedupe on it).
    """

    def __init__(self, service: CaseService, rules: Any) -> None:
        self.service = service
        self.rules_file = rules

    async def handle(self, records: list[ConsumerRecord]) -> None:
        alerts = [a for a, _ in (parse_or_reason(Alert, r.value) for r in records)
                  if a is not None and a.open_case and a.status == "firing"]
        if not alerts:
            return
        existing = await queries.stored_case_ids(self.service.store,
                                                 {case_id_for(a.alert_id) for a in alerts})
        now = utc_now()
        fresh = {case_id_for(a.alert_id): open_case(a, sla_for(self.rules_file.rules, a.severity),
                                                    now)
                 for a in alerts if case_id_for(a.alert_id) not in existing}
        await self.service.write(list(fresh.values()))


async def escalate_due(service: CaseService, rules: RuleSet, now: datetime) -> list[CaseEvent]:
    """Escalate every unresolved case whose SLA deadline has passed.

    Runs every VOC_CASE_SLA_CHECK_S, so it reads only the cases that can still escalate
    (unresolved, below the longest escalation chain), not every case ever written.
    """
    levels = max([1, *(len(sla.escalation) for sla in (*DEFAULT_SLA.values(),
                                                        *rules.sla.values()))])
    due = []
    for case in await queries.escalatable_cases(service.store, levels=levels):
        if case.status in ("open", "acknowledged", "in_progress"):
            event = escalation(case, sla_for(rules, case.severity), now)
            if event is not None:
                due.append(event)
    await service.write(due)
    return due


async def run_cases(settings: Settings, bootstrap: str, store: Store, producer: Producer,
                    rules: Any, stop: asyncio.Event) -> None:
    """Open cases from alerts and check SLAs every ``case_sla_check_s`` until ``stop``."""
    service = CaseService(settings, store, producer)
    opener = CaseOpener(service, rules)
    consumer = BatchConsumer(settings, bootstrap, settings.topic("alerts"),
                             settings.group("alerting-cases"), opener.handle, stage="alerting",
                             producer=producer, max_records=settings.sink_batch_size,
                             wait_s=settings.sink_batch_wait_s)

    async def sla_loop() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.case_sla_check_s)
            except TimeoutError:
                try:
                    await escalate_due(service, rules.rules, utc_now())
                except Exception as exc:  # the store may be briefly down; the next tick retries
                    log.warning("SLA check failed; retrying next tick", error=str(exc))

    await asyncio.gather(consumer.run(stop), sla_loop())

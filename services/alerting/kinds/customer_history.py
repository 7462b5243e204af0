"""``customer_history``: the same customer's negative contacts piling up (two or more within
N days, both in the rule) fire an alert whose case is a **churn risk**.

A contact is negative when its sentiment is at or below ``sentiment_at_most``, or its NPS /
CSAT at or below the rule's thresholds. The customer's earlier contacts are read from the
``feedback`` table, once per batch of events for every customer in it (``recall``), and the
batch's own events are added, so the per-customer state lives in ClickHouse: it is bounded
there, survives restarts and replicas, and a re-delivered event sees the same history (and
makes the same alert id, hence no second case). A contact counts once the scoring stage has
stored it (seconds after it arrives) or when it is in the same batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from services.alerting import queries
from services.alerting.kinds.base import EventKind
from services.alerting.kinds.rating import customer_alert, customer_key, in_scope, low_rating
from services.alerting.rulebase import RuleBase
from services.core.events import MAX_CASE_FEEDBACK, Alert, EnrichedFeedback
from services.core.store import Store


class CustomerHistoryRule(RuleBase):
    """Fires when a customer's negative contacts within ``within_days`` reach
    ``min_contacts`` (the contact that reaches it trips the rule)."""

    type: Literal["customer_history"]
    min_contacts: int = Field(default=2, ge=2, le=20)
    within_days: float = Field(default=7, gt=0, le=90)
    sentiment_at_most: float = Field(default=-0.3, ge=-1, le=1)
    nps_at_most: int | None = Field(default=None, ge=0, le=10)
    csat_at_most: int | None = Field(default=None, ge=1, le=5)
    cooldown_s: int = Field(default=7 * 86400, ge=0)


@dataclass(frozen=True)
class Contact:
    """One negative contact of a customer."""

    event_id: str
    occurred_at: datetime
    channel: str


Recalled = Mapping[str, Mapping[str, Sequence[Contact]]]
"""rule id -> customer id -> that customer's negative contacts (stored and in the batch)."""


def negative(rule: CustomerHistoryRule, event: EnrichedFeedback) -> bool:
    return (event.sentiment.score <= rule.sentiment_at_most
            or low_rating(rule.nps_at_most, rule.csat_at_most, event) is not None)


async def recall(store: Store, rules: Sequence[CustomerHistoryRule],
                 events: Sequence[EnrichedFeedback]) -> Recalled:
    """Every rule's negative contacts of the customers whose negative contact is in the batch,
    within the rule's ``within_days`` before the batch's newest event (at most
    MAX_CASE_FEEDBACK per customer, the newest)."""
    out: dict[str, dict[str, list[Contact]]] = {}
    for rule in rules:
        tripping = [e for e in events if e.customer_id and in_scope(rule, e) and negative(rule, e)]
        found: dict[str, dict[str, Contact]] = {}
        if tripping:
            scope = rule.scope
            rows = await queries.negative_contacts(
                store, customers={e.customer_id or "" for e in tripping},
                lo=min(e.occurred_at for e in tripping) - timedelta(days=rule.within_days),
                hi=max(e.occurred_at for e in tripping),
                sentiment_at_most=rule.sentiment_at_most, nps_at_most=rule.nps_at_most,
                csat_at_most=rule.csat_at_most, touchpoints=scope.touchpoints,
                channels=scope.channels, stages=scope.stages, topics=scope.topics,
                per_customer=MAX_CASE_FEEDBACK)
            for row in rows:
                found.setdefault(row["customer_id"], {})[row["event_id"]] = Contact(
                    row["event_id"], row["occurred_at"], row["channel"])
            for e in tripping:
                found.setdefault(e.customer_id or "", {})[e.event_id] = Contact(
                    e.event_id, e.occurred_at, e.channel)
        out[rule.id] = {c: sorted(v.values(), key=lambda x: (x.occurred_at, x.event_id))
                        for c, v in found.items()}
    return out


def history_key(rule: CustomerHistoryRule, event: EnrichedFeedback) -> str:
    return customer_key(rule.id, event)


def history_alert(rule: CustomerHistoryRule, event: EnrichedFeedback,
                  last_fired: datetime | None, now: datetime,
                  recalled: Recalled | None) -> Alert | None:
    """The churn-risk alert when ``event`` is a negative contact that brings its customer's
    count within the window to ``min_contacts``, unless the key fired within the cooldown."""
    if not (event.customer_id and in_scope(rule, event) and negative(rule, event)):
        return None
    if last_fired is not None and event.occurred_at < last_fired + timedelta(
            seconds=rule.cooldown_s):
        return None
    since = event.occurred_at - timedelta(days=rule.within_days)
    contacts = [c for c in (recalled or {}).get(rule.id, {}).get(event.customer_id, ())
                if since <= c.occurred_at <= event.occurred_at]
    if len(contacts) < rule.min_contacts:
        return None
    contacts = contacts[-MAX_CASE_FEEDBACK:]
    return customer_alert(
        rule, "customer_history", event, now, history_key(rule, event),
        metric="negative_contacts", value=len(contacts), threshold=rule.min_contacts, operator=">=",
        volume=len(contacts),
        event_ids=[c.event_id for c in contacts],
        channels=sorted({c.channel for c in contacts}),
        account=f"{len(contacts)} negative contacts within {rule.within_days:g} days")


CUSTOMER_HISTORY = EventKind(model=CustomerHistoryRule, key=history_key, alert=history_alert,
                             recall=recall)

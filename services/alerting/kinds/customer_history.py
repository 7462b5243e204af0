"""``customer_history``: the same customer's negative contacts piling up (two or more within
N days, both in the rule) fire an alert whose case is a **churn risk**.

The contacts counted for an event are those within N days of it on either side, so the order
they arrive in does not matter: an older contact arriving after a newer one (a late channel, a
replay) still raises the case, on the contact that arrived last. The dedupe key is the customer,
so the cooldown keeps it to one case per customer.

A contact is negative when its sentiment is at or below ``sentiment_at_most``, or its NPS /
CSAT at or below the rule's thresholds. A customer's other contacts come from two sources, and
either suffices (their union, deduplicated by event id, is what counts):

- the ``feedback`` table, read once per batch of events for every customer in it (``recall``):
  bounded there, it survives restarts and is shared by every alerting worker (they are
  partitioned by touchpoint, so a customer's contacts at two touchpoints meet only there). A
  contact is there once the scoring stage stored it;
- an in-process memory of the recent negative contacts this worker evaluated
  (``RecentContacts``), so that two contacts in different batches still meet while the scoring
  stage lags or is down. It is bounded (customers per rule, least recently seen forgotten and
  counted; contacts older than the rule's window dropped) and lost on restart, where the store
  takes over.

A re-delivered event sees the same contacts and makes the same alert id, hence no second case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from cachetools import LRUCache
from prometheus_client import Counter
from pydantic import Field

from services.alerting import queries
from services.alerting.kinds.base import EventKind, cooling
from services.alerting.kinds.rating import customer_alert, customer_key, low_rating
from services.alerting.rulebase import RuleBase
from services.core.events import MAX_CASE_FEEDBACK, Alert, EnrichedFeedback, utc_now
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)

EVICTED = Counter("voc_alert_customer_memory_evicted_total",
                  "Customers whose recent negative contacts the alerting stage forgot because "
                  "VOC_ALERT_CUSTOMER_MEMORY was reached (their history is then the store's).")


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


class _Customers(LRUCache[tuple[str, str], dict[str, Contact]]):
    """Contacts by (rule id, customer id), counting what the size cap evicts."""

    evicted = 0

    def popitem(self) -> tuple[tuple[str, str], dict[str, Contact]]:
        item = super().popitem()
        self.evicted += 1
        return item


class RecentContacts:
    """The negative contacts this worker evaluated recently, per rule and customer: what two
    contacts of one customer in different batches meet by while the store lags. At most
    ``max_customers`` (rule, customer) entries, the least recently seen forgotten (counted in
    ``voc_alert_customer_memory_evicted_total`` and logged), each with at most
    MAX_CASE_FEEDBACK contacts (the newest); contacts older than the rule's window before the
    newest event time seen (never later than the clock, so a made-up future time cannot wipe
    the memory) are dropped when their customer is next touched."""

    def __init__(self, max_customers: int) -> None:
        self._customers = _Customers(maxsize=max_customers)
        self._newest: dict[str, datetime] = {}
        """Per rule id: the newest event time seen (rules are few: bounded by the rules file)."""

    def __len__(self) -> int:
        return len(self._customers)

    def remember(self, rule: CustomerHistoryRule, events: Iterable[EnrichedFeedback],
                 now: datetime) -> None:
        """Adds ``events`` (negative contacts in the rule's scope, with a customer id)."""
        before = self._customers.evicted
        for e in events:
            newest = max(self._newest.get(rule.id, e.occurred_at), e.occurred_at)
            self._newest[rule.id] = min(newest, now)
            key = (rule.id, e.customer_id or "")
            contacts = self._customers.get(key) or {}
            contacts[e.event_id] = Contact(e.event_id, e.occurred_at, e.channel)
            self._customers[key] = self._pruned(rule, contacts)
        if evicted := self._customers.evicted - before:
            EVICTED.inc(evicted)
            log.warning("customer memory full: least recently seen customers forgotten",
                        rule=rule.id, evicted=evicted, max_customers=self._customers.maxsize,
                        setting="VOC_ALERT_CUSTOMER_MEMORY")

    def between(self, rule: CustomerHistoryRule, customer: str, lo: datetime,
                hi: datetime) -> list[Contact]:
        """The remembered contacts of ``customer`` that occurred in ``[lo, hi]``."""
        key = (rule.id, customer)
        contacts = self._customers.get(key)
        if contacts is None:
            return []
        contacts = self._pruned(rule, contacts)
        if not contacts:
            del self._customers[key]
            return []
        self._customers[key] = contacts
        return [c for c in contacts.values() if lo <= c.occurred_at <= hi]

    def _pruned(self, rule: CustomerHistoryRule, contacts: dict[str, Contact]
                ) -> dict[str, Contact]:
        newest = self._newest.get(rule.id)
        oldest = newest - timedelta(days=rule.within_days) if newest else None
        kept = sorted((c for c in contacts.values() if oldest is None or c.occurred_at >= oldest),
                      key=lambda c: (c.occurred_at, c.event_id))[-MAX_CASE_FEEDBACK:]
        return {c.event_id: c for c in kept}


def memory(settings: Settings) -> RecentContacts:
    return RecentContacts(settings.alert_customer_memory)


def negative(rule: CustomerHistoryRule, event: EnrichedFeedback) -> bool:
    return (event.sentiment.score <= rule.sentiment_at_most
            or low_rating(rule.nps_at_most, rule.csat_at_most, event) is not None)


async def recall(store: Store, rules: Sequence[CustomerHistoryRule],
                 events: Sequence[EnrichedFeedback],
                 remembered: RecentContacts | None = None) -> Recalled:
    """Every rule's negative contacts of the customers whose negative contact is in the batch,
    within the rule's ``within_days`` of the batch's events, either side: the store's (at most
    MAX_CASE_FEEDBACK per customer, the newest), the memory's (which learns the batch's) and
    the batch's own, deduplicated by event id."""
    out: dict[str, dict[str, list[Contact]]] = {}
    now = utc_now()
    for rule in rules:
        tripping = [e for e in events if e.customer_id and rule.scope.holds(e) and negative(rule, e)]
        found: dict[str, dict[str, Contact]] = {}
        if tripping:
            scope = rule.scope
            customers = {e.customer_id or "" for e in tripping}
            lo = min(e.occurred_at for e in tripping) - timedelta(days=rule.within_days)
            hi = max(e.occurred_at for e in tripping) + timedelta(days=rule.within_days)
            rows = await queries.negative_contacts(
                store, customers=customers, lo=lo, hi=hi,
                sentiment_at_most=rule.sentiment_at_most, nps_at_most=rule.nps_at_most,
                csat_at_most=rule.csat_at_most, touchpoints=scope.touchpoints,
                channels=scope.channels, stages=scope.stages, topics=scope.topics,
                per_customer=MAX_CASE_FEEDBACK)
            for row in rows:
                found.setdefault(row["customer_id"], {})[row["event_id"]] = Contact(
                    row["event_id"], row["occurred_at"], row["channel"])
            if remembered is not None:
                remembered.remember(rule, tripping, now)
                for customer in customers:
                    for c in remembered.between(rule, customer, lo, hi):
                        found.setdefault(customer, {})[c.event_id] = c
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
    count within ``within_days`` of it (either side) to ``min_contacts``, unless the key fired
    within the cooldown."""
    if not (event.customer_id and rule.scope.holds(event) and negative(rule, event)):
        return None
    if cooling(last_fired, rule.cooldown_s, event):
        return None
    within = timedelta(days=rule.within_days)
    contacts = [c for c in (recalled or {}).get(rule.id, {}).get(event.customer_id, ())
                if abs(c.occurred_at - event.occurred_at) <= within]
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
                             recall=recall, memory=memory)

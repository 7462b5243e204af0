"""``rating``: a detractor's survey rating (NPS <= 6, CSAT <= 2: thresholds in the rule) fires
an alert whose case is a **callback**: someone calls the customer back.

Evaluated on the enriched topic like ``event`` rules. The alert carries the customer (the
pseudonymous id as stored) and the rated feedback, and the case it opens carries both
(cases.py), so the callback's outcome and the customer's next rating can be measured
(docs/metrics.md, callback KPIs). One customer rating low twice within the cooldown is one
callback (``dedupe_by: customer``, the default); a re-delivered event is the same alert
(its id is derived from the rule and the event), hence the same case.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from services.alerting.engine import ALERT_NAMESPACE
from services.alerting.kinds.base import EventKind, cooling
from services.alerting.kinds.event import CUSTOMER_TEXT
from services.alerting.rulebase import RuleBase
from services.core.events import Alert, AlertRuleType, EnrichedFeedback, Operator
from services.core.pii import redact_optional, snippet


class RatingRule(RuleBase):
    """Fires on a feedback whose NPS or CSAT rating is at or below the rule's thresholds."""

    type: Literal["rating"]
    nps_at_most: int | None = Field(default=None, ge=0, le=10)
    csat_at_most: int | None = Field(default=None, ge=1, le=5)
    dedupe_by: Literal["customer", "event"] = "customer"
    cooldown_s: int = Field(default=86400, ge=0)

    @model_validator(mode="after")
    def _something(self) -> RatingRule:
        if self.nps_at_most is None and self.csat_at_most is None:
            raise ValueError("a rating rule needs nps_at_most or csat_at_most (or both)")
        return self


def low_rating(nps_at_most: int | None, csat_at_most: int | None,
               event: EnrichedFeedback) -> tuple[str, int, int] | None:
    """The rating at or below its threshold (metric, value, threshold), NPS first; None when
    neither is given or low."""
    nps, csat = event.ratings.nps, event.ratings.csat
    if nps_at_most is not None and nps is not None and nps <= nps_at_most:
        return "nps", nps, nps_at_most
    if csat_at_most is not None and csat is not None and csat <= csat_at_most:
        return "csat", csat, csat_at_most
    return None


def customer_key(rule_id: str, event: EnrichedFeedback, by_customer: bool = True) -> str:
    """Dedupe key of a customer rule: the customer across touchpoints (a customer is called
    back once, wherever they rated), or the event when it has no customer id."""
    if by_customer and event.customer_id:
        return f"{rule_id}:customer={redact_optional(event.customer_id)}"
    return f"{rule_id}:event={event.event_id}"


def rating_key(rule: RatingRule, event: EnrichedFeedback) -> str:
    return customer_key(rule.id, event, rule.dedupe_by == "customer")


def customer_alert(rule: RuleBase, rule_type: AlertRuleType, event: EnrichedFeedback,
                   now: datetime, key: str, *, metric: str, value: float,
                   threshold: float, operator: Operator, volume: int, event_ids: list[str],
                   channels: list[str], account: str) -> Alert:
    """The firing alert of a customer rule on ``event`` (the one that tripped it)."""
    return Alert(
        alert_id=str(uuid.uuid5(ALERT_NAMESPACE, f"{rule.id}@{event.event_id}")), dedupe_key=key,
        rule_id=rule.id, rule_type=rule_type, severity=rule.severity, status="firing",
        touchpoint=event.touchpoint, channel=event.channel, stage=event.stage,
        topic=event.topics[0].id if event.topics else None, metric=metric,
        operator=operator, threshold=threshold, value=value,
        baseline=None, volume=volume, window_start=event.occurred_at,
        window_end=event.occurred_at, fired_at=now, resolved_at=None, emitted_at=now,
        team=rule.route.team, owner=rule.route.owner, notify=rule.route.notify,
        open_case=rule.route.open_case, event_ids=event_ids,
        latest_received_at=event.received_at, customer_id=redact_optional(event.customer_id) or None,
        channels=channels,
        message=(f"[firing] {event.touchpoint}/{event.channel}: {account}. "
                 f"{rule.description}").strip()
                + f"{CUSTOMER_TEXT}「{snippet(event.text)}」")


def rating_alert(rule: RatingRule, event: EnrichedFeedback, last_fired: datetime | None,
                 now: datetime, recalled: object = None) -> Alert | None:
    """The callback alert for a low rating, unless its key fired within the cooldown."""
    if not rule.scope.holds(event):
        return None
    low = low_rating(rule.nps_at_most, rule.csat_at_most, event)
    if low is None:
        return None
    if cooling(last_fired, rule.cooldown_s, event):
        return None
    metric, value, threshold = low
    return customer_alert(rule, "rating", event, now, rating_key(rule, event), metric=metric,
                          value=value, threshold=threshold, operator="<=", volume=1,
                          event_ids=[event.event_id], channels=[event.channel],
                          account=f"{metric.upper()} {value} <= {threshold}")


RATING = EventKind(model=RatingRule, key=rating_key, alert=rating_alert)

"""``event``: a single enriched event that trips a rule (urgency flags such as 12315, a VIP
strongly negative). Evaluated on the enriched topic as events arrive; such alerts only fire.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from services.alerting.engine import ALERT_NAMESPACE
from services.alerting.kinds.base import EventKind, cooling
from services.alerting.rulebase import RuleBase, Strict
from services.core.events import Alert, EnrichedFeedback, UrgencyFlagName
from services.core.pii import snippet


class EventMatch(Strict):
    """Conditions on one enriched event; all given ones must hold."""

    urgency: list[UrgencyFlagName] | None = None
    segments: list[str] | None = None
    sentiment_at_most: float | None = Field(default=None, ge=-1, le=1)
    intents: list[Literal["complaint", "inquiry", "praise", "suggestion", "other"]] | None = None

    @model_validator(mode="after")
    def _something(self) -> EventMatch:
        if not any(v is not None for v in
                   (self.urgency, self.segments, self.sentiment_at_most, self.intents)):
            raise ValueError("an event rule needs at least one condition under `match`")
        return self


class EventRule(RuleBase):
    """Fires on a single enriched event (urgent flags, a VIP strongly negative, ...)."""

    type: Literal["event"]
    match: EventMatch
    dedupe_by: Literal["customer", "event", "touchpoint"] = "customer"
    cooldown_s: int = Field(default=3600, ge=0)


def event_matches(rule: EventRule, event: EnrichedFeedback) -> bool:
    """Whether a single enriched event trips an event rule (all given conditions hold)."""
    match = rule.match
    if not rule.scope.holds(event):
        return False
    if match.urgency and not {u.flag for u in event.urgency} & set(match.urgency):
        return False
    if match.segments and event.segment not in match.segments:
        return False
    if match.sentiment_at_most is not None and event.sentiment.score > match.sentiment_at_most:
        return False
    return not (match.intents and event.intent not in match.intents)


def event_key(rule: EventRule, event: EnrichedFeedback) -> str:
    """Dedupe key of an event alert: per customer by default (one angry VIP writing five
    times is one alert), per event, or per touchpoint."""
    if rule.dedupe_by == "touchpoint":
        subject = event.touchpoint
    elif rule.dedupe_by == "customer" and event.customer_id:
        subject = f"customer={event.customer_id}"
    else:
        subject = f"event={event.event_id}"
    return f"{rule.id}:{event.touchpoint}:{subject}"


CUSTOMER_TEXT = " 原文 text: "
"""Where the customer's own words start in an event alert's message: everything after it is
the matched cue terms and a redacted snippet of the feedback, which webhooks leave out when
``VOC_ALERT_CUSTOMER_TEXT=none``."""


def event_alert(rule: EventRule, event: EnrichedFeedback, last_fired: datetime | None,
                now: datetime, recalled: object = None) -> Alert | None:
    """The alert for an event that matches, unless its key fired within the cooldown.

    Single-event alerts only fire: the problem is one customer, and it is closed by the case
    (or the team) rather than by a figure returning to normal.
    """
    if not event_matches(rule, event):
        return None
    if cooling(last_fired, rule.cooldown_s, event):
        return None
    key = event_key(rule, event)
    flags = sorted({u.flag for u in event.urgency})
    terms = ", ".join(sorted({u.term for u in event.urgency}))
    return Alert(
        alert_id=str(uuid.uuid5(ALERT_NAMESPACE, f"{rule.id}@{event.event_id}")), dedupe_key=key,
        rule_id=rule.id, rule_type="event", severity=rule.severity, status="firing",
        touchpoint=event.touchpoint, channel=event.channel, stage=event.stage,
        topic=event.topics[0].id if event.topics else None, metric="event_sentiment",
        operator=None, threshold=rule.match.sentiment_at_most, value=event.sentiment.score,
        baseline=None, volume=1, window_start=event.occurred_at, window_end=event.occurred_at,
        fired_at=now, resolved_at=None, emitted_at=now, team=rule.route.team,
        owner=rule.route.owner, notify=rule.route.notify, open_case=rule.route.open_case,
        event_ids=[event.event_id], latest_received_at=event.received_at,
        message=(f"[firing] {event.touchpoint}/{event.channel}: "
                 f"{'flags ' + ','.join(flags) + ', ' if flags else ''}"
                 f"segment {event.segment or '-'}, sentiment {event.sentiment.score:+.2f}. "
                 f"{rule.description}").strip()
                + f"{CUSTOMER_TEXT}{'(' + snippet(terms, 60) + ') ' if terms else ''}"
                  f"「{snippet(event.text)}」",
    )


EVENT = EventKind(model=EventRule, key=event_key, alert=event_alert)

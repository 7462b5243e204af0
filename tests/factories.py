"""Test events with sensible defaults: each factory builds a valid event of one topic, and a
test names only the fields its check is about (``alert(severity="warning")``).

Defaults are one plausible delivery complaint on 2026-11-23 10:00 UTC. Every keyword is a
field of the model and replaces the default as is, so a test reads like the event it needs.
Builders whose point is a special shape (scoring_fixtures.event with hand-computed figures,
the hostile-input documents) stay where they are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import (
    Alert,
    AspectSentiment,
    CaseEvent,
    EnrichedFeedback,
    RawFeedback,
    Score,
    Sentiment,
    TopicTag,
    UrgencyFlag,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def raw(**fields: Any) -> RawFeedback:
    """A raw feedback event (feedback.raw)."""
    at = fields.get("occurred_at", T0)
    return RawFeedback(**{
        "event_id": "e1", "source": "test", "channel": "app", "touchpoint": "delivery",
        "text": "配送太慢了", "occurred_at": at, "received_at": at, **fields})


def label_of(score: float) -> str:
    """The label the analyzer gives a sentiment score with the default neutral band."""
    return "negative" if score <= -0.2 else "positive" if score >= 0.2 else "neutral"


def topic_tag(topic: str = "logistics_delivery", name: str = "物流/配送",
              score: float = -0.8) -> TopicTag:
    return TopicTag(id=topic, name=name, evidence=[(0, 2)],
                    sentiment=AspectSentiment(score=score, label=label_of(score)))


def enriched(**fields: Any) -> EnrichedFeedback:
    """An enriched event (feedback.enriched): a negative delivery complaint with one topic.
    ``score`` (the sentiment score) sets the sentiment, its label and the topic's sentiment."""
    score = fields.pop("score", -0.8)
    label = label_of(score)
    at = fields.get("occurred_at", T0)
    return EnrichedFeedback(**{
        "event_id": "e1", "source": "test", "channel": "app", "touchpoint": "delivery",
        "text": "配送太慢了，我要打12315投诉", "occurred_at": at, "received_at": at,
        "sentiment": Sentiment(score=score, label=label, model="test"),
        "topics": [topic_tag(score=score)],
        "intent": "complaint" if label == "negative" else "other",
        "urgency": [], "keywords": [], "tokens": [], "enriched_at": at, **fields})


def urgency(flag: str = "escalation_threat", term: str = "12315",
            at: tuple[int, int] = (8, 13)) -> UrgencyFlag:
    return UrgencyFlag(flag=flag, term=term, evidence=[at])


def score(**fields: Any) -> Score:
    """A score update (scores) for one 1-minute window of one touchpoint: one negative event.
    ``window_end`` moves the window; its start follows."""
    end = fields.pop("window_end", T0 + timedelta(minutes=1))
    return Score.model_validate({
        "touchpoint": "delivery", "channel": "", "stage": "", "window": "1m",
        "window_start": end - timedelta(minutes=1), "window_end": end, "window_seconds": 60,
        "volume": 1, "positive_count": 0, "neutral_count": 0, "negative_count": 1,
        "mean_sentiment": -0.5, "net_sentiment": -100, "negative_share": 1, "nps": None,
        "nps_responses": 0, "nps_promoters": 0, "nps_detractors": 0, "csat": None,
        "csat_responses": 0, "csat_satisfied": 0, "ces": None, "ces_responses": 0,
        "complaint_count": 0, "complaint_rate": 0, "urgent_count": 0,
        "urgent_flags": {"escalation_threat": 0, "churn_intent": 0, "repeat_contact": 0,
                         "safety": 0},
        "topics": [], "expectations": [], "computed_at": end, **fields})


def alert(**fields: Any) -> Alert:
    """A firing threshold alert (alerts): negative share at delivery above 0.4.
    ``at`` sets every time stamp at once."""
    at = fields.pop("at", T0)
    return Alert(**{
        "alert_id": "a-1", "dedupe_key": "r:delivery", "rule_id": "r",
        "rule_type": "threshold", "severity": "critical", "status": "firing",
        "touchpoint": "delivery", "channel": None, "stage": None, "topic": None,
        "metric": "negative_share", "operator": ">", "threshold": 0.4, "value": 0.8,
        "baseline": None, "volume": 30, "window_start": at, "window_end": at, "fired_at": at,
        "resolved_at": None, "emitted_at": at, "team": "ops", "owner": None, "notify": [],
        "open_case": True, "event_ids": [], "latest_received_at": None, "message": "m",
        **fields})


def case_event(**fields: Any) -> CaseEvent:
    """A case opened by an alert (cases). ``at`` sets the event time, the opening time and,
    with a 4 h resolve due, the deadlines."""
    at = fields.pop("at", T0)
    return CaseEvent(**{
        "event_id": "ce-1", "case_id": "c-1", "seq": 1, "action": "opened", "status": "open",
        "at": at, "actor": "alerting", "comment": None, "severity": "critical", "team": "ops",
        "assignee": None, "escalation_level": 0, "touchpoint": "delivery", "rule_id": "r",
        "alert_ids": ["a-1"], "feedback_event_ids": [], "opened_at": at,
        "acknowledged_at": None, "resolved_at": None, "closed_at": None, "ack_due_at": at,
        "resolve_due_at": at + timedelta(hours=4), "followup_outcome": None,
        "followup_rating": None, **fields})

"""A small fixture set of enriched events with every CEM figure computed by hand.

Used by the scoring and query API tests on both store backends. The hand computations are
written out next to the expectations so a reader can check them with pencil and paper.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord

from services.core.events import (
    AspectSentiment,
    Effort,
    EffortCue,
    EnrichedFeedback,
    Ratings,
    Sentiment,
    TopicTag,
    UrgencyFlag,
)
from services.core.kafka import Producer, create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import Store, open_store
from services.scoring.expectations import Expectations
from services.scoring.worker import Scorer

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

EXPECTATIONS_DOC = {
    "defaults": {"targets": {"mean_sentiment": 0.3}, "factor_expectation": 7},
    "touchpoints": {"delivery": {
        "targets": {"nps": 30, "negative_share": 0.15, "ces": 3, "csat": 60},
        "importance": {"logistics_delivery": 9}}},
}
EXPECTATIONS = Expectations.model_validate(EXPECTATIONS_DOC)


def event(event_id: str, at: datetime, *, touchpoint: str = "delivery", channel: str = "app",
          stage: str | None = "售中", score: float = 0.0, nps: int | None = None,
          csat: int | None = None, ces: int | None = None, intent: str = "other",
          topics: Sequence[tuple[str, float]] = (), flags: Sequence[str] = (),
          text: str = "配送很快", effort: Effort | None = None) -> EnrichedFeedback:
    label = "negative" if score <= -0.2 else "positive" if score >= 0.2 else "neutral"
    return EnrichedFeedback(
        event_id=event_id, source="test", external_id=event_id, channel=channel,
        touchpoint=touchpoint, text=text, occurred_at=at, received_at=at, stage=stage,
        ratings=Ratings(nps=nps, csat=csat, ces=ces),
        sentiment=Sentiment(score=score, label=label, model="m"),
        topics=[TopicTag(id=t, name=t, evidence=[(0, 1)], sentiment=AspectSentiment(
            score=s, label="negative" if s <= -0.2 else "positive" if s >= 0.2 else "neutral"))
            for t, s in topics],
        intent=intent, urgency=[UrgencyFlag(flag=f, term="x", evidence=[(0, 1)]) for f in flags],
        keywords=[], tokens=[], enriched_at=at, effort=effort)


# Minute 10:00 (e1-e4) and minute 10:03 (e5): one 5-minute window, one hour, one day.
E1 = event("e1", T0 + timedelta(seconds=5), score=0.8, nps=10, csat=5, ces=2, intent="praise",
           topics=[("logistics_delivery", 0.9)], text="配送很快，骑手很好")
E2 = event("e2", T0 + timedelta(seconds=20), score=-0.6, nps=3, csat=2, ces=6,
           intent="complaint", topics=[("logistics_delivery", -0.8), ("waiting_time", -0.7)],
           flags=["escalation_threat"], text="配送太慢，打了两次电话，要打12315",
           effort=Effort(score=0.5, cues=[EffortCue(kind="calls", term="打了两次电话", count=2,
                                                    evidence=[(5, 11)])]))
E3 = event("e3", T0 + timedelta(seconds=40), channel="social", stage="售后", score=-0.9,
           intent="complaint", topics=[("service_attitude", -0.9)],
           flags=["churn_intent", "escalation_threat", "repeat_contact"],
           text="客服态度差，第三次投诉了，再也不买了")
E4 = event("e4", T0 + timedelta(seconds=59), channel="social", stage=None, score=0.0, nps=8,
           csat=4, intent="inquiry", text="请问几点送到？")
E5 = event("e5", T0 + timedelta(minutes=3, seconds=10), score=0.5, nps=9, csat=3, ces=3,
           intent="praise", topics=[("logistics_delivery", 0.6)], text="今天送得挺准时")
FIXTURE = [E1, E2, E3, E4, E5]

# Minute 10:00, all channels x all stages (e1-e4):
#   volume 4; positive 1 (e1), neutral 1 (e4), negative 2 (e2, e3)
#   sentiment sum 0.8 - 0.6 - 0.9 + 0.0 = -0.7 -> mean -0.175
#   net sentiment 100 x (1 - 2) / 4 = -25; negative share 2 / 4 = 0.5
#   NPS responses 10, 3, 8 -> 3; promoters 1 (10), detractors 1 (3) -> NPS 100 x 0 / 3 = 0
#   CSAT responses 5, 2, 4 -> 3; satisfied (4-5) 2 -> 66.67
#   CES responses 2, 6 -> mean 4.0; complaints 2 (e2, e3) -> 0.5
#   urgent events 2 (e2, e3); escalation_threat 2, churn_intent 1, repeat_contact 1 (e3)
#   -> repeat contact rate 1 / 4 = 0.25
#   effort: e2 only (打了两次电话, score 0.5) -> effort_count 1, flag rate 1 / 4 = 0.25, text
#   effort 0.5 / 4 = 0.125
#   gaps (delivery targets): nps 0 - 30 = -30; negative_share 0.15 - 0.5 = -0.35 (lower is
#   better); ces 3 - 4 = -1 (lower is better); csat 66.67 - 60 = 6.67; mean_sentiment
#   (default target 0.3) -0.175 - 0.3 = -0.475
MINUTE_ALL = {
    "volume": 4, "positive_count": 1, "neutral_count": 1, "negative_count": 2,
    "mean_sentiment": -0.175, "net_sentiment": -25.0, "negative_share": 0.5,
    "nps": 0.0, "nps_responses": 3, "nps_promoters": 1, "nps_detractors": 1,
    "csat": 200 / 3, "csat_responses": 3, "csat_satisfied": 2,
    "ces": 4.0, "ces_responses": 2, "complaint_count": 2, "complaint_rate": 0.5,
    "urgent_count": 2, "escalation_threat_count": 2, "churn_intent_count": 1,
    "repeat_contact_count": 1, "safety_count": 0, "repeat_contact_rate": 0.25,
    "effort_count": 1, "effort_score_sum": 0.5, "effort_flag_rate": 0.25, "text_effort": 0.125,
    # No calls in this set: the call figures are worked out in tests/e2e/test_contact_center.py.
    "call_count": 0, "tone_worsened_share": None, "tone_improved_share": None,
    "mean_hold_s": None, "mean_silence_s": None, "transfers_per_call": None,
}
MINUTE_GAPS = {"mean_sentiment": -0.475, "negative_share": -0.35, "nps": -30.0,
               "csat": 200 / 3 - 60, "ces": -1.0}
# Minute 10:00 per topic (all x all): logistics_delivery e1 0.9, e2 -0.8 -> 2 mentions, mean
# 0.05; waiting_time e2 -> 1, -0.7; service_attitude e3 -> 1, -0.9.
MINUTE_TOPICS = {"logistics_delivery": (2, 0.05), "waiting_time": (1, -0.7),
                 "service_attitude": (1, -0.9)}
# Minute 10:00, channel app x stage 售中 (e1, e2): volume 2, mean 0.1, NPS 100 x (1-1)/2 = 0,
# CSAT 1 of 2 = 50, CES (2 + 6) / 2 = 4.
MINUTE_APP_MIDSALE = {"volume": 2, "mean_sentiment": 0.1, "nps": 0.0, "nps_responses": 2,
                      "csat": 50.0, "ces": 4.0, "complaint_rate": 0.5}
# Minute 10:00, channel social x unknown stage (e4 only): volume 1, neutral, NPS 8 is passive
# -> 0 with 1 response, no CES responses -> null.
MINUTE_SOCIAL_UNKNOWN = {"volume": 1, "neutral_count": 1, "nps": 0.0, "nps_responses": 1,
                         "ces": None, "ces_responses": 0}
# 5 minutes / 1 hour / 1 day from 10:00, all x all (e1-e5):
#   volume 5; positive 2, neutral 1, negative 2; sentiment sum -0.7 + 0.5 = -0.2 -> mean -0.04
#   net 100 x 0 / 5 = 0; negative share 0.4
#   NPS responses 10, 3, 8, 9 -> promoters 2, detractors 1 -> 100 x 1 / 4 = 25
#   CSAT 5, 2, 4, 3 -> 2 of 4 = 50; CES 2, 6, 3 -> 11 / 3; complaint rate 2 / 5 = 0.4
#   repeat contact rate 1 (e3) / 5 = 0.2; effort flag rate 1 (e2) / 5 = 0.2, text effort
#   0.5 / 5 = 0.1
ROLLUP_ALL = {"volume": 5, "positive_count": 2, "neutral_count": 1, "negative_count": 2,
              "mean_sentiment": -0.04, "net_sentiment": 0.0, "negative_share": 0.4,
              "nps": 25.0, "nps_responses": 4, "csat": 50.0, "csat_responses": 4,
              "ces": 11 / 3, "ces_responses": 3, "complaint_rate": 0.4, "urgent_count": 2,
              "repeat_contact_rate": 0.2, "effort_count": 1, "effort_flag_rate": 0.2,
              "text_effort": 0.1}
# logistics_delivery over the rollup: e1 0.9, e2 -0.8, e5 0.6 -> 3 mentions, mean 0.7 / 3.
ROLLUP_TOPICS = {"logistics_delivery": (3, 0.7 / 3), "waiting_time": (1, -0.7),
                 "service_attitude": (1, -0.9)}


def records(events: Sequence[EnrichedFeedback], topic: str = "t.feedback.enriched"
            ) -> list[ConsumerRecord]:
    """The consumer records a batch of these events arrives as."""
    offsets = itertools.count()
    return [ConsumerRecord(topic=topic, partition=0, offset=next(offsets), timestamp=0,
                           timestamp_type=0, key=e.touchpoint.encode(), value=e.to_bytes(),
                           checksum=None, serialized_key_size=0, serialized_value_size=0,
                           headers=()) for e in events]


@dataclass
class Rig:
    """A real store and a scorer with a real producer on the test broker."""

    store: Store
    scorer: Scorer
    producer: Producer
    settings: Settings

    def new_scorer(self) -> Scorer:
        """A fresh scorer on the same store: what a restarted process starts with."""
        return Scorer(self.settings, self.store, self.producer, EXPECTATIONS)


@asynccontextmanager
async def scoring_rig(store_url: str, settings: Settings, bootstrap: str) -> AsyncIterator[Rig]:
    await asyncio.to_thread(create_topics, settings, bootstrap)
    store = await open_store(store_url)
    producer = Producer(bootstrap, client_id="scoring-test")
    await producer.start()
    try:
        await migrate(store)
        yield Rig(store, Scorer(settings, store, producer, EXPECTATIONS), producer, settings)
    finally:
        await producer.stop()
        await store.close()


async def score_row(store: Store, *, seconds: int, start: datetime, channel: str = "",
                    stage: str = "", touchpoint: str = "delivery") -> dict | None:
    rows = await store.query(
        "SELECT * FROM cem_scores FINAL WHERE touchpoint = %(tp)s AND window_seconds = %(s)s "
        "AND channel = %(ch)s AND stage = %(st)s AND window_start = %(start)s",
        {"tp": touchpoint, "s": seconds, "ch": channel, "st": stage, "start": start})
    assert len(rows) <= 1
    return rows[0] if rows else None


async def snapshot(store: Store) -> dict[str, list[dict]]:
    """Every stored figure (row versions left out), to compare two states exactly."""
    out = {}
    for table, key in (("cem_scores", "touchpoint, window_seconds, channel, stage, window_start"),
                       ("topic_scores", "touchpoint, window_seconds, channel, stage, topic, "
                                        "window_start")):
        rows = await store.query(f"SELECT * FROM {table} FINAL ORDER BY {key}")
        out[table] = [{k: v for k, v in r.items() if k != "computed_ms"} for r in rows]
    out["feedback"] = await store.query(
        "SELECT event_id, too_late FROM feedback FINAL ORDER BY event_id")
    return out

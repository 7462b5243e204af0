"""What the demo feed (``voc up --demo``) sends fills every view within a minute: calls with
agents and queues whose tone goes both ways, segments and the deployment's dimension keys,
survey ratings, effort phrasing, and recurring detractors (issue 19). Each body is checked
against the ingest route's own input model, and the texts through the real analyzer."""

from __future__ import annotations

from collections import Counter

import pytest

from services.ingest.call_transcript import CallIn
from services.ingest.channels.calls import call_event
from services.ingest.channels.generic import BatchIn, FeedbackIn
from services.ingest.demo_feed import (
    AGENTS,
    BATCH_ROUTE,
    CALLS_ROUTE,
    DETRACTORS,
    QUEUES,
    STAGES,
    DemoFeed,
)
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.effort import read_effort
from services.nlp.taxonomy import load_taxonomy

MINUTE = 480
"""Pieces of feedback in the demo's first minute at the default 8 per second."""


@pytest.fixture(scope="module")
def minute() -> list[tuple[str, dict]]:
    feed = DemoFeed(dimensions=["city", "campaign", "product_line", "store"])
    return [feed.next(elapsed_s=i / 8) for i in range(MINUTE)]


def test_every_body_is_what_its_route_accepts(minute: list[tuple[str, dict]]) -> None:
    routes = Counter(route for route, _ in minute)
    assert set(routes) == {BATCH_ROUTE, CALLS_ROUTE} and routes[CALLS_ROUTE] >= 30
    BatchIn.model_validate({"events": [body for route, body in minute if route == BATCH_ROUTE]})
    for route, body in minute:
        if route == CALLS_ROUTE:
            CallIn.model_validate(body)
        else:
            FeedbackIn.model_validate(body)


def test_calls_carry_agents_and_queues(minute: list[tuple[str, dict]]) -> None:
    events = [call_event("demo", CallIn.model_validate(body))
              for route, body in minute if route == CALLS_ROUTE]
    assert {e.call.agent_id for e in events if e.call} == set(AGENTS)
    assert {e.call.queue for e in events if e.call} == set(QUEUES)
    assert any(e.call and e.call.transfers for e in events)


def test_every_item_and_call_names_a_journey_stage(minute: list[tuple[str, dict]]) -> None:
    """The journey map is drawn by stage: without one the demo's map stays empty."""
    per_touchpoint: dict[str, set[str]] = {}
    for _, body in minute:
        per_touchpoint.setdefault(str(body["touchpoint"]), set()).add(str(body["stage"]))
    assert len(per_touchpoint) == 4
    assert all(stages == set(STAGES) for stages in per_touchpoint.values()), per_touchpoint
    calls = [call_event("demo", CallIn.model_validate(body))
             for route, body in minute if route == CALLS_ROUTE]
    assert {e.stage for e in calls} == set(STAGES)


def test_items_carry_a_segment_and_every_dimension_key(minute: list[tuple[str, dict]]) -> None:
    bodies = [body for _, body in minute]
    assert {b["segment"] for b in bodies} == {"VIP", "新客", "老客", "企业客户"}
    assert all(set(b["metadata"]) == {"city", "campaign", "product_line", "store"}
               for b in bodies)
    assert {b["metadata"]["store"] for b in bodies} == {"store-A", "store-B", "store-C"}


def test_only_recurring_customers_rate_nps_six_or_less(minute: list[tuple[str, dict]]) -> None:
    """So a callback rule opens a case for each of a few detractors, on the degrading
    touchpoint, rather than one per complaint all over the demo."""
    surveys = [b for route, b in minute if route == BATCH_ROUTE and b["channel"] == "survey"]
    assert all({"nps", "csat", "ces"} <= set(b["ratings"]) for b in surveys)
    low = [b for b in surveys if b["ratings"]["nps"] <= 6 or b["ratings"]["csat"] <= 2]
    assert {b["customer_id"] for b in low} <= set(DETRACTORS)
    assert {b["touchpoint"] for b in low} == {"delivery"}
    assert max(Counter(b["customer_id"] for b in low).values()) >= 2, "recurring"


def test_vip_customers_are_never_unhappy(minute: list[tuple[str, dict]]) -> None:
    """The VIP-strongly-negative rule must stay quiet: the demo's first alert is delivery's."""
    feed = DemoFeed()
    for _ in range(MINUTE):
        item, negative = feed._draw(elapsed_s=30)
        assert not (negative and item["segment"] == "VIP")


def test_the_analyzer_finds_effort_and_both_tone_trends(minute: list[tuple[str, dict]]) -> None:
    analyzer = Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(),
                        neutral_band=0.2)
    calls = [call_event("demo", CallIn.model_validate(body))
             for route, body in minute if route == CALLS_ROUTE]
    enriched = analyzer.analyze(calls)
    assert {e.call_tone.trend for e in enriched if e.call_tone} >= {"worsened", "improved"}
    texts = {b["text"] for route, b in minute if route == BATCH_ROUTE}
    kinds = {c.kind for t in texts for effort in [read_effort(t)] if effort for c in effort.cues}
    assert kinds >= {"calls", "transfers", "visits", "resubmission", "waiting"}, kinds

"""Click-through in a real browser (issue 17): an alert, a journey heat-map cell, a topic bar,
a driver row and a trend point each open the comment list filtered to what was clicked, with
the evidence highlighted on the characters the spans index.

The ingest API (which serves the dashboard and the query API) and the scoring stage run on
the real broker over chdb; enriched events are produced to the enriched topic, so the store's
feedback, scores and topic scores are the scorer's own. The alert is stored as the alerting
stage stores it (its explanation quoting two of the events). Chromium runs headless through
Playwright; docs/screenshots/drill.png and journey-range.png are copies of this test's pictures
(build/screenshots/).

The journey map over a chosen range (GET /v1/journey) shows the touchpoints in the configured
order (VOC_JOURNEY_ORDER), offers CES and complaint rate, and its cells click through too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from services.alerting import queries as alert_queries
from services.core.broker import LocalBroker
from services.core.events import (
    Alert,
    AspectSentiment,
    EnrichedFeedback,
    Sentiment,
    TopicTag,
    utc_now,
)
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import Store
from tests.conftest import run
from tests.e2e.browsing import SHOTS, dashboard, needs_chromium
from tests.pipeline_harness import store_and_producer
from tests.unit.test_events_schema import ALERT_V3, EXPLANATION
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOUCHPOINT = "delivery"
# (text, topic, evidence word, sentiment): the evidence is where the word is.
NAMES = {"logistics_delivery": "物流/配送", "service_attitude": "服务/态度"}
COMMENTS = [
    ("😡配送太慢了，等了两个小时", "logistics_delivery", "配送", -0.8),
    ("客服态度很差，一直推脱", "service_attitude", "客服态度", -0.7),
    ("骑手很准时，配送很快", "logistics_delivery", "配送", 0.7),
]


def enriched(i: int, stage: str) -> EnrichedFeedback:
    text, topic, word, score = COMMENTS[i % len(COMMENTS)]
    at = utc_now() - timedelta(seconds=5 + i)
    start = text.index(word)  # 😡 is one code point and one str character
    label = "negative" if score <= -0.2 else "positive"
    return EnrichedFeedback(
        event_id=f"drill-{i}", source="drill", external_id=f"drill-{i}", channel="app",
        touchpoint=TOUCHPOINT, stage=stage, text=text, occurred_at=at, received_at=at,
        sentiment=Sentiment(score=score, label=label, model="t"),
        topics=[TopicTag(id=topic, name=NAMES[topic], evidence=[(start, start + len(word))],
                         sentiment=AspectSentiment(score=score, label=label))],
        intent="complaint" if score < 0 else "praise", urgency=[], keywords=[word],
        tokens=[], enriched_at=at)


def recent_events() -> list[EnrichedFeedback]:
    """Events of the last few seconds, made when the test runs (not at collection, which in
    the whole suite is half an hour earlier: they would fall outside the alert's window)."""
    return [enriched(i, stage) for i, stage in enumerate(["售前", "售中", "售后"] * 4)]


def alert_with_comments(events: list[EnrichedFeedback]) -> tuple[Alert, list[EnrichedFeedback]]:
    now = utc_now().replace(microsecond=0)
    quoted = [e for e in events if e.sentiment.label == "negative"][:2]
    comments = [EXPLANATION.comments[0].model_copy(update={
        "event_id": e.event_id, "channel": e.channel, "text": e.text,
        "evidence": e.topics[0].evidence}) for e in quoted]
    return ALERT_V3.model_copy(update={
        "alert_id": "drill", "dedupe_key": "drill", "rule_id": "negative-share-high",
        "touchpoint": TOUCHPOINT, "channel": "app", "stage": None, "topic": None,
        "metric": "negative_share", "window_start": now - timedelta(minutes=5),
        "window_end": now + timedelta(seconds=1), "fired_at": now, "emitted_at": now,
        "explanation": EXPLANATION.model_copy(update={"comments": comments})}), quoted


async def count(store: Store, sql: str) -> int:
    return int((await store.query(sql))[0]["n"])


async def drilled(page: Any) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The filter the comment list shows (from the URL it was opened with, checked against
    the filter chips) and its highlighted spans as (topic, text)."""
    await page.wait_for_selector("#drill-list li[data-event-id]", timeout=20000)
    url = await page.evaluate("() => location.hash")
    assert url.startswith("#/feedback/"), url
    query = parse_qs(unquote(url.removeprefix("#/feedback/")))
    chips = {await c.get_attribute("data-filter"): await c.get_attribute("data-value")
             for c in await page.query_selector_all("#drill-filter [data-filter]")}
    assert chips == {k: ",".join(v) for k, v in query.items()}, (chips, query)
    marks = [(await m.get_attribute("data-topic"), await m.inner_text())
             for m in await page.query_selector_all("#drill-list mark")]
    return query, marks


async def click_at(page: Any, selector: str, fx: float, fy: float) -> None:
    """Click inside ``selector`` at the fractions ``fx``, ``fy`` of its box."""
    box = await page.locator(selector).bounding_box()
    await page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])


@needs_chromium
def test_every_figure_opens_its_comments(broker: LocalBroker, settings: Settings,
                                         tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    settings = settings.model_copy(update={"journey_order": ["app_checkout", TOUCHPOINT]})
    events = recent_events()
    alert, quoted = alert_with_comments(events)

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, producer):
            await alert_queries.record_alerts(store, [(alert, alert.window_end)], 1)
            async with dashboard(settings, ("ingest", "scoring"), broker.bootstrap,
                                 store) as shown:
                page, api = shown.page, shown.api
                await producer.send_many(settings.topic("feedback.enriched"), [
                    (e.touchpoint.encode(), e.to_bytes()) for e in events])

                async def scored() -> bool:
                    return (await count(store, "SELECT count() AS n FROM feedback FINAL")
                            == len(events)
                            and await count(store, "SELECT count() AS n FROM topic_scores")
                            > 0)

                await eventually(scored, 60, "the events stored and scored")

                # An alert: the comments its explanation quotes, then its window and subject.
                await page.goto(f"{api}/dashboard/#/alerts")
                row = '#alert-feed tr[data-alert-id="drill"]'
                await page.wait_for_selector(row, timeout=20000)
                await page.click(f"{row} a.drill-quoted")
                query, marks = await drilled(page)
                assert sorted(query["event_id"]) == sorted(e.event_id for e in quoted)
                ids = [await li.get_attribute("data-event-id")
                       for li in await page.query_selector_all("#drill-list li")]
                assert sorted(ids) == sorted(e.event_id for e in quoted)
                assert ("logistics_delivery", "配送") in marks, "after 😡: code points"
                assert ("service_attitude", "客服态度") in marks
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.locator("main").screenshot(path=str(SHOTS / "drill.png"))
                await page.go_back()
                await page.click(f"{row} a.drill-window")
                query, marks = await drilled(page)
                assert query["touchpoint"] == [TOUCHPOINT] and query["channel"] == ["app"]
                assert query["sentiment"] == ["negative"], "a negative share is its negatives"
                assert {"from", "to"} <= set(query) and marks

                # A journey cell: 售中 of the one touchpoint.
                await page.goto(f"{api}/dashboard/#/journey")
                await page.wait_for_selector("#journey-chart canvas", timeout=20000)
                await page.wait_for_timeout(800)  # the heat map draws its cells
                box = await page.locator("#journey-chart").bounding_box()
                grid_h = box["height"] - 90
                await click_at(page, "#journey-chart", (70 + (box["width"] - 90) / 2)
                               / box["width"], (10 + grid_h * 1.5 / 3) / box["height"])
                query, marks = await drilled(page)
                assert query["touchpoint"] == [TOUCHPOINT] and query["stage"] == ["售中"]
                stages = {await m.inner_text() for m in
                          await page.query_selector_all("#drill-list .meta")}
                assert all("售中" in s for s in stages) and marks

                # A driver row.
                await page.goto(f"{api}/dashboard/#/touchpoint/{TOUCHPOINT}")
                driver = '#drivers th[data-topic="service_attitude"] a'
                await page.wait_for_selector(driver, timeout=20000)
                await page.click(driver)
                query, marks = await drilled(page)
                assert query["topic"] == ["service_attitude"]
                assert marks and {t for t, _ in marks} == {"service_attitude"}
                assert {w for _, w in marks} == {"客服态度"}

                # The importance x performance quadrant: a click on a topic's point.
                await page.go_back()
                await page.wait_for_selector('#quadrant-chart[data-points="2"]',
                                             state="attached", timeout=20000)
                drivers = await page.evaluate(
                    "async (tp) => (await (await fetch(`/v1/drivers?touchpoint=${tp}`))"
                    ".json()).touchpoints[0]", TOUCHPOINT)
                placed = {k["topic"]: k for k in drivers["key_experiences"]}
                assert {k["quadrant"] for k in placed.values()} <= {
                    "concentrate", "keep_up", "low_priority", "overkill"}
                attitude = placed["service_attitude"]
                await page.wait_for_timeout(800)
                await page.locator("#quadrant-chart").screenshot(
                    path=str(SHOTS / "quadrant.png"))
                box = await page.locator("#quadrant-chart").bounding_box()
                # QUADRANT_GRID in web/src/quadrant.js, both axes 0-10.
                left, right, top, bottom = 50, 20, 20, 45
                await click_at(
                    page, "#quadrant-chart",
                    (left + attitude["experience"] / 10 * (box["width"] - left - right))
                    / box["width"],
                    (top + (1 - attitude["importance"] / 10) * (box["height"] - top - bottom))
                    / box["height"])
                query, marks = await drilled(page)
                assert query["topic"] == ["service_attitude"]
                assert query["touchpoint"] == [TOUCHPOINT] and {"from", "to"} <= set(query)
                assert marks and {t for t, _ in marks} == {"service_attitude"}

                # A topic bar: the row clicked names the topic the list is filtered by.
                await page.go_back()
                await page.wait_for_selector("#drivers table", timeout=20000)
                await page.wait_for_timeout(800)
                await click_at(page, "#topics-chart", 0.5, 0.25)
                query, marks = await drilled(page)
                (topic,) = query["topic"]
                assert marks and {t for t, _ in marks} == {topic}

                # A trend point: the window of the column clicked.
                await page.go_back()
                await page.wait_for_selector("#trend-note[data-rows]", state="attached",
                                            timeout=20000)
                await page.wait_for_timeout(800)
                await click_at(page, "#trend-sentiment", 0.5, 0.5)
                query, marks = await drilled(page)
                assert query["touchpoint"] == [TOUCHPOINT] and marks
                span = (datetime.fromisoformat(query["to"][0])
                        - datetime.fromisoformat(query["from"][0]))
                assert span == timedelta(seconds=settings.window_seconds)
                # The journey map over the last 7 days, in journey order, by complaint rate.
                await page.goto(f"{api}/dashboard/#/journey")
                await page.select_option("#journey-range", "7d")
                await page.wait_for_selector('#journey-chart[data-range="7d"]', timeout=20000)
                assert await page.get_attribute("#journey-chart", "data-touchpoints") == \
                    f"app_checkout,{TOUCHPOINT}", "configured order, listed ones without data"
                options = await page.eval_on_selector_all(
                    "#journey-metric option", "els => els.map((e) => e.value)")
                assert {"experience", "ces", "complaint_rate", "nps"} <= set(options)
                await page.select_option("#journey-metric", "complaint_rate")
                assert await page.get_attribute("#journey-chart", "data-cells") == "3"
                await page.wait_for_timeout(800)
                await page.locator("main").screenshot(path=str(SHOTS / "journey-range.png"))
                box = await page.locator("#journey-chart").bounding_box()
                await click_at(page, "#journey-chart",
                               (70 + (box["width"] - 90) * 0.75) / box["width"],
                               (10 + (box["height"] - 90) * 0.5 / 3) / box["height"])
                query, marks = await drilled(page)
                assert query["touchpoint"] == [TOUCHPOINT] and query["stage"] == ["售前"]
                assert query["intent"] == ["complaint"], "a complaint rate is its complaints"
                span = (datetime.fromisoformat(query["to"][0])
                        - datetime.fromisoformat(query["from"][0]))
                assert span == timedelta(days=7) and marks
                assert shown.errors == [], shown.errors

    run(main())

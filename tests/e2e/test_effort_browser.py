"""Effort beside CES in a real browser (issue 19): the touchpoint page's effort panel shows CES,
the effort flag rate and text effort of the live windows, and its link opens the
effort-flagged comments with their effort cues highlighted on the analysed text.

The real analyzer enriches the comments; the ingest API (dashboard and query API) and the
scoring stage run on the real broker over chdb, so every figure is the scorer's own.
Chromium runs headless through Playwright; its picture goes to build/screenshots/effort.png
(docs/screenshots/effort.png and effort-drill.png come from `make screenshots`, a `voc up --demo` run).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.core.broker import LocalBroker
from services.core.channels import prepare_raw
from services.core.events import Ratings, RawFeedback, utc_now
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import load_taxonomy
from tests.conftest import run
from tests.e2e.browsing import SHOTS, dashboard, needs_chromium
from tests.pipeline_harness import store_and_producer
from tests.waiting import eventually

pytestmark = pytest.mark.slow

TOUCHPOINT = "store_pickup"
# (text, CES): 2 of 4 say what effort it took; CES (6 + 2 + 3) / 3 = 3.7
COMMENTS = [("取个货排了两个小时队，还让我来回折腾", 6), ("店员很热情，取货很快", 2),
            ("为了换货我打了三次电话，转了好几个人", None), ("门店环境干净，很方便", 3)]


@needs_chromium
def test_effort_panel_shows_the_figures_and_opens_the_comments(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    analyzer = Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(),
                        neutral_band=0.2)
    now = utc_now()
    events = analyzer.analyze([prepare_raw(RawFeedback(
        event_id=f"effort-{i}", source="t", external_id=f"effort-{i}", channel="survey",
        touchpoint=TOUCHPOINT, text=text, occurred_at=now - timedelta(seconds=5 + i),
        received_at=now, ratings=Ratings(ces=ces))) for i, (text, ces) in enumerate(COMMENTS)])

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, producer), dashboard(settings, ("ingest", "scoring"), broker.bootstrap,
                                            store) as shown:
            page = shown.page
            await producer.send_many(settings.topic("feedback.enriched"), [
                (e.touchpoint.encode(), e.to_bytes()) for e in events])

            async def scored() -> bool:
                rows = await store.query(
                    "SELECT sum(effort_count) AS n FROM cem_scores FINAL WHERE "
                    "touchpoint = %(tp)s AND channel = '' AND stage = '' AND "
                    "window_seconds = %(s)s", {"tp": TOUCHPOINT, "s": settings.window_seconds})
                return int(rows[0]["n"] or 0) == 2

            await eventually(scored, 60, "the events stored and scored")
            await page.goto(f"{shown.api}/dashboard/#/touchpoint/{TOUCHPOINT}")
            rate = '#effort [data-metric="effort_flag_rate"] dd'
            await page.wait_for_function(
                f"() => document.querySelector('{rate}')?.textContent === '50%'",
                timeout=20000)
            figures = {await d.get_attribute("data-metric"): await d.inner_text()
                       for d in await page.query_selector_all("#effort [data-metric]")}
            # text effort: waiting 0.5 + runaround 0.5 = 1.0; calls 0.75 + transfers 0.75
            # capped at 1.0; two without -> 2.0 / 4 = 0.50
            assert figures["ces"].endswith("3.7"), figures
            assert figures["text_effort"].endswith("0.50"), figures
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.locator("main").screenshot(path=str(SHOTS / "effort.png"))
            await page.click("#effort a.drill-effort")
            await page.wait_for_selector("#drill-list li[data-event-id]", timeout=20000)
            ids = sorted([await li.get_attribute("data-event-id")
                          for li in await page.query_selector_all("#drill-list li")])
            marks = sorted([(await m.get_attribute("data-topic"), await m.inner_text())
                            for m in await page.query_selector_all("#drill-list mark")])
            assert ids == ["effort-0", "effort-2"]
            assert marks == [("effort:calls", "打了三次电话"), ("effort:runaround", "来回折腾"),
                             ("effort:transfers", "转了好几个人"),
                             ("effort:waiting", "排了两个小时队")], marks
            assert shown.errors == []

    run(main())

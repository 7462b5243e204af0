"""The dashboard's customer timeline (issue 19) in Chromium, on a running API over chdb: the
alerts view shows the callback KPIs (one detractor, not called back yet); a callback case there
links its customer; the link opens every feedback of that
customer across channels, newest first, with the linked case, and a customer's markup is shown
as text. Saves docs' screenshot (build/screenshots/customer.png)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from services.alerting.cases import open_case
from services.alerting.kinds.rating import rating_alert
from services.alerting.queries import case_row
from services.alerting.rules import RuleSet, Sla
from services.core.broker import LocalBroker
from services.core.events import Ratings, utc_now
from services.core.settings import Settings
from services.scoring.sink import feedback_row
from tests.conftest import run
from tests.e2e.browsing import dashboard, needs_chromium, shoot
from tests.factories import enriched, topic_tag
from tests.pipeline_harness import store_and_producer

PWN = "<img src=x onerror=window.__pwned=1>"


@pytest.mark.slow
@needs_chromium
def test_a_callback_case_opens_its_customers_timeline(broker: LocalBroker, settings: Settings,
                                                      tmp_path: Path) -> None:
    now = utc_now().replace(microsecond=0) - timedelta(hours=1)
    feedback = [
        enriched(event_id="f-call", customer_id="c-42", channel="call", touchpoint="hotline",
                 occurred_at=now - timedelta(days=3), score=-0.6,
                 text="打了三次电话都没人处理退款"),
        enriched(event_id="f-mail", customer_id="c-42", channel="email", touchpoint="after_sales",
                 occurred_at=now - timedelta(days=1), score=-0.4,
                 text=f"退款还没到账{PWN}",
                 topics=[topic_tag("after_sales_returns", "售后/退换", -0.4)]),
        enriched(event_id="f-survey", customer_id="c-42", channel="survey", touchpoint="delivery",
                 occurred_at=now, score=-0.2, ratings=Ratings(nps=2), text="不会再推荐了"),
        enriched(event_id="f-other", customer_id="c-7", occurred_at=now, text="别人的反馈"),
    ]
    rule = RuleSet.model_validate({"rules": [{
        "id": "detractor-callback", "type": "rating", "nps_at_most": 6,
        "route": {"team": "cx-callback", "open_case": True}}]}).rules[0]
    alert = rating_alert(rule, feedback[2], None, now)  # type: ignore[arg-type]
    assert alert is not None
    case = open_case(alert, Sla(ack_minutes=30, resolve_hours=24), now)

    async def scenario() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, _):
            await store.insert("feedback", [feedback_row(e, 1) for e in feedback])
            await store.insert("case_events", [case_row(case, int(time.time() * 1000))])
            async with dashboard(settings, ("ingest",), broker.bootstrap, store,
                                 height=800) as shown:
                page = shown.page
                await page.goto(f"{shown.api}/dashboard/#/alerts")
                await page.wait_for_selector('#callback-kpis[data-loaded="true"]')
                kpis = await page.evaluate(
                    "() => Object.fromEntries([...document.querySelectorAll('#callback-kpis "
                    "[data-figure]')].map((n) => [n.dataset.figure, "
                    "n.querySelector('.kpi-value').textContent]))")
                assert kpis == {"detractors": "1", "callback_sla_share": "0%",
                                "recovery_rate": "—"}, kpis
                link = f'#cases tr[data-case-id="{case.case_id}"] a.customer-link'
                await page.wait_for_selector(link)
                await page.click(link)
                await page.wait_for_selector('#timeline li[data-event-id="f-call"]')
                order = await page.evaluate(
                    "() => [...document.querySelectorAll('#timeline li')]"
                    ".map((li) => li.dataset.eventId)")
                assert order == ["f-survey", "f-mail", "f-call"], order
                survey = await page.inner_text('#timeline li[data-event-id="f-survey"]')
                assert "survey" in survey and "NPS 2" in survey, survey
                badge = await page.get_attribute(
                    '#timeline li[data-event-id="f-survey"] .case-badge', "data-case-id")
                assert badge == case.case_id
                assert await page.get_attribute("#customer-cases li", "data-kind") == "callback"
                mail = await page.inner_text('#timeline li[data-event-id="f-mail"] .text')
                assert mail == f"退款还没到账{PWN}"
                assert await page.evaluate(
                    "() => [document.querySelectorAll('img').length, window.__pwned ?? null]"
                ) == [0, None]
                await shoot(page, "customer")
                assert shown.errors == [], shown.errors

    run(scenario())

"""Stored markup cannot run in the dashboard: Chromium over every view, with hostile names.

A compromised upstream (a direct producer, or an old row from before ingest restricted names)
can put markup into touchpoint, topic, segment and text. Those rows go straight into the store
(real chdb rows), the API runs in open mode on loopback as ``make run`` does, and the page is
driven through every view with the mouse swept over each chart so that ECharts renders its
tooltips. No element from the markup may appear in the DOM (escaping works, independently of
the CSP) and no injected script may run; the page must carry the Content-Security-Policy, the
browser must enforce it on a handler planted on purpose, and nothing the app itself does may
violate it.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.alerting.cases import case_row, open_case
from services.alerting.rules import Sla
from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import Store
from tests.conftest import run
from tests.e2e.browsing import dashboard, needs_chromium
from tests.e2e.test_access_scopes import alert, alert_row
from tests.pipeline_harness import store_and_producer

pytestmark = pytest.mark.slow

MARK = "data-pwned"
TOUCHPOINT = f'<img src=x {MARK} onerror="window.__pwned=1">'
TOPIC = f'<svg {MARK} onload="window.__pwned=2">'
SEGMENT = f'<iframe {MARK} srcdoc="<script>parent.__pwned=3</script>">'
TEXT = f'<script>window.__pwned=4</script><b {MARK}>配送太慢了</b><img src=y {MARK} onerror="window.__pwned=5">'

WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


async def fill(store: Store) -> None:
    """Score, topic, feedback, alert and case rows that carry markup in every name."""
    from services.core.events import utc_now

    now = utc_now().replace(microsecond=0)
    minute = now.replace(second=0)
    ms = int(time.time() * 1000)
    scores, topics = [], []
    for back in range(3):
        for stage in ("", "售前", "售中", "售后"):
            for touchpoint in (TOUCHPOINT, "delivery"):
                scores.append({
                    "touchpoint": touchpoint, "channel": "", "stage": stage,
                    "window_seconds": 60, "window_start": minute - timedelta(minutes=back),
                    "volume": 10, "positive_count": 4, "neutral_count": 2, "negative_count": 4,
                    "mean_sentiment": -0.2, "negative_share": 0.4, "nps_responses": 2,
                    "nps_promoters": 1, "nps_detractors": 1, "nps": 0.0,
                    "gap_metrics": ["mean_sentiment"], "gap_targets": [0.3], "gaps": [-0.5],
                    "computed_ms": ms})
                for window in (60, 300, 3600, 86400):
                    topics.append({
                        "touchpoint": touchpoint, "channel": "", "stage": stage,
                        "window_seconds": window, "topic": TOPIC,
                        "window_start": minute - timedelta(minutes=back), "mentions": 3,
                        "topic_sentiment_sum": -1.2, "computed_ms": ms})
    for window in (300, 3600, 86400):
        scores += [{**row, "window_seconds": window} for row in scores
                   if row["window_seconds"] == 60]
    await store.insert("cem_scores", scores)
    await store.insert("topic_scores", topics)
    enriched = {"topics": [{"id": TOPIC, "name": TOPIC, "evidence": [[30, 35]]}]}
    await store.insert("feedback", [{
        "event_id": f"x-{i}", "source": "compromised", "external_id": f"x-{i}",
        "channel": "app", "touchpoint": TOUCHPOINT, "customer_id": "", "text": TEXT,
        "occurred_at": now - timedelta(minutes=i), "received_at": now, "enriched_at": now,
        "sentiment": -0.6, "sentiment_label": "negative", "sentiment_model": "m",
        "topics": [TOPIC], "topic_sentiments": [-0.6], "metadata": "{}", "stage": "售后",
        "segment": SEGMENT, "intent": "complaint", "enriched_json": json.dumps(enriched),
        "inserted_ms": ms} for i in range(3)])
    # The wire models refuse markup in names, so the rows are built from valid models with the
    # names swapped in afterwards (model_copy does not validate), as a compromised writer would.
    valid = alert("hostile", "delivery", "cx-ops")
    hostile = valid.model_copy(update={"touchpoint": TOUCHPOINT, "rule_id": TOUCHPOINT,
                                       "message": TEXT})
    await store.insert("alerts", [alert_row(hostile)])
    case = open_case(valid, Sla(ack_minutes=30, resolve_hours=4), now)
    await store.insert("case_events", [case_row(case.model_copy(update={
        "touchpoint": TOUCHPOINT, "assignee": SEGMENT, "comment": TEXT}), ms)])


async def sweep(page: Any) -> str:
    """Move the mouse across every chart on the page, so ECharts draws its tooltips; returns
    the text of every tooltip shown on the way."""
    shown: list[str] = []
    for box in await page.query_selector_all(".chart"):
        area = await box.bounding_box()
        if not area:
            continue
        for fx in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85):
            for fy in (0.2, 0.4, 0.6, 0.8):
                await page.mouse.move(area["x"] + area["width"] * fx,
                                      area["y"] + area["height"] * fy)
                await page.wait_for_timeout(60)
                shown.append(await page.evaluate(
                    "() => [...document.querySelectorAll('.chart div')]"
                    ".map((d) => d.textContent).join(' ')"))
    return " ".join(shown)


async def harmless(page: Any, where: str) -> None:
    found = await page.evaluate(f"""() => ({{
        marked: document.querySelectorAll('[{MARK}]').length,
        pwned: window.__pwned ?? null, csp: window.__csp }})""")
    assert found == {"marked": 0, "pwned": None, "csp": []}, f"{where}: {found}"


@needs_chromium
def test_markup_in_names_and_texts_never_runs(broker: LocalBroker, settings: Settings,
                                              tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, _):
            await fill(store)
            async with dashboard(settings, ("ingest",), broker.bootstrap, store) as shown:
                page, api = shown.page, shown.api
                page.on("dialog", lambda d: shown.errors.append(f"dialog: {d.message}"))
                await page.add_init_script(WATCH)
                answer = await page.goto(f"{api}/dashboard/")
                policy = answer.headers["content-security-policy"]
                assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
                assert answer.headers["x-content-type-options"] == "nosniff"
                await page.wait_for_selector(".tile h3", timeout=20000)
                await page.wait_for_selector("#firing li")
                await harmless(page, "overview")
                names = {await h.inner_text() for h in await page.query_selector_all(".tile h3")}
                assert TOUCHPOINT in names, "the hostile name is shown, as text"

                await page.click('nav a[data-route="journey"]')
                await page.wait_for_selector("#journey-chart canvas")
                tips = await sweep(page)
                await harmless(page, "journey map")
                assert TOUCHPOINT in tips, "the tooltip showed the hostile name, as text"

                await page.goto(f"{api}/dashboard/#/touchpoint/"
                                + await page.evaluate("(n) => encodeURIComponent(n)", TOUCHPOINT))
                await page.wait_for_selector("#verbatims li.verbatim")
                await page.wait_for_selector("#drivers table tbody tr")
                await page.wait_for_function(
                    "() => Number(document.querySelector('#trend-note').dataset.rows) > 0")
                text = await page.inner_text("#verbatims")
                assert "<script>window.__pwned=4</script>" in text
                tips = await sweep(page)
                await harmless(page, "touchpoint detail")
                assert TOPIC in tips, "the topic chart's tooltip named the topic, as text"

                await page.click('nav a[data-route="alerts"]')
                await page.wait_for_selector("#cases tr[data-case-id]")
                await page.wait_for_selector("#alert-feed tr[data-alert-id]")
                assert TEXT in await page.inner_text("#alert-feed")
                await harmless(page, "alerts and cases")

                for path in ("/docs", "/openapi.json", "/v1/touchpoints"):
                    other = await page.request.get(f"{api}{path}")
                    assert other.headers["content-security-policy"] == policy, path
                docs = await page.context.browser.new_page()
                await docs.add_init_script(WATCH)
                await docs.goto(f"{api}/docs")
                await docs.wait_for_selector(".swagger-ui .opblock", timeout=20000)
                assert await docs.evaluate("window.__csp") == [], "Swagger UI runs under the CSP"

                await page.evaluate("""() => {
                    const planted = document.createElement('div');
                    planted.innerHTML = '<img src=x onerror="window.__planted=1">';
                    document.body.append(planted);
                }""")
                await page.wait_for_function("() => window.__csp.length > 0")
                assert await page.evaluate("window.__planted ?? null") is None, \
                    "the browser enforces the policy: no inline handler runs"
                assert shown.errors == [], shown.errors

    run(main())

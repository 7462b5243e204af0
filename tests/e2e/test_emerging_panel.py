"""The 新话题 panel (web/src/emerging.js) in Chromium on the running API over chdb: the injected
phrase is listed overall and at its touchpoint with its figures, the usual touchpoint shows
none, clicking the phrase opens its comments, the untagged negative comments are grouped in
clusters (the injected one among them, opening its comments), and the operator's 加入分类 previews how many
comments it would tag and adds it to the taxonomy file as a new topic. Its screenshots go to
build/screenshots/."""

from __future__ import annotations

import re

from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.nlp.taxonomy import load_taxonomy
from services.scoring.sink import feedback_row
from tests.conftest import run
from tests.e2e.browsing import dashboard, needs_chromium, shoot
from tests.integration.test_emerging_detector import stream
from tests.integration.test_taxonomy_action import TAXONOMY
from tests.pipeline_harness import store_and_producer


@needs_chromium
def test_the_panel_lists_rising_phrases_and_opens_their_comments(
        broker: LocalBroker, settings: Settings, tmp_path) -> None:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY, encoding="utf-8")
    settings = settings.model_copy(update={"emerging_window_s": 300,
                                           "emerging_baseline_s": 3600,
                                           "taxonomy_path": taxonomy})
    create_topics(settings, broker.bootstrap)

    async def main() -> dict:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, _):
            await store.insert("feedback", [feedback_row(e, 1) for e in stream()])
            async with dashboard(settings, ("ingest",), broker.bootstrap, store) as shown:
                page = shown.page
                await page.goto(f"{shown.api}/dashboard/#/emerging/2026-11-23T11:05:00Z")
                row = '.emerging-group[data-touchpoint="checkout"] tr[data-phrase]'
                await page.wait_for_selector(row, timeout=20000)
                seen = {
                    "nav": await page.get_attribute('nav a[data-route="emerging"]',
                                                    "aria-current"),
                    "overall": await page.inner_text('.emerging-group[data-touchpoint=""]'),
                    "checkout": await page.inner_text(row),
                    "delivery": await page.inner_text(
                        '.emerging-group[data-touchpoint="delivery"]'),
                }
                await page.click(f"{row} button.phrase")
                await page.wait_for_selector("#emerging-comments li.verbatim")
                seen["comments"] = await page.eval_on_selector_all(
                    "#emerging-comments li .text", "(nodes) => nodes.map((n) => n.textContent)")
                qr = '.emerging-cluster[data-size="12"]'
                await page.wait_for_selector(qr, timeout=20000)
                seen["cluster"] = await page.inner_text(f"{qr} h4")
                await page.click(f"{qr} button.open-cluster")
                await page.wait_for_selector("#cluster-comments li.verbatim")
                seen["cluster_comments"] = await page.eval_on_selector_all(
                    "#cluster-comments li .text", "(nodes) => nodes.map((n) => n.textContent)")
                await shoot(page, "emerging")
                await page.click(f"{row} button.add-topic")
                await page.fill("#taxonomy-topic", "qr_code_scan")
                await page.fill("#taxonomy-name", "二维码扫码")
                await page.click("#taxonomy-preview")
                await page.wait_for_function(
                    "() => document.querySelector('#taxonomy-note').textContent.includes('将标注')")
                seen["preview"] = await page.inner_text("#taxonomy-note")
                await page.click("#taxonomy-confirm")
                await page.wait_for_selector('#taxonomy-note[data-state="done"]')
                seen["done"] = await page.inner_text("#taxonomy-note")
                await shoot(page, "emerging-add-topic")
                seen["errors"] = shown.errors
                return seen

    seen = run(main())
    assert seen["errors"] == []
    assert seen["nav"] == "page"
    assert "二维码扫不出" in seen["overall"]
    cells = seen["checkout"].split("\t")
    assert cells[0].startswith("二维码扫不出") and cells[1:3] == ["12", "8"], cells
    assert "暂无上升的说法" in seen["delivery"]
    assert len(seen["comments"]) == 12
    assert all("二维码扫不出" in text for text in seen["comments"])
    assert "二维码" in seen["cluster"] and "12" in seen["cluster"]
    assert len(seen["cluster_comments"]) == 12
    assert all("二维码扫不出" in text for text in seen["cluster_comments"])
    assert re.search(r"将标注 \d+ 条反馈", seen["preview"]), seen["preview"]
    assert "qr_code_scan" in seen["done"] and "二维码扫不出" in seen["done"]
    spec = load_taxonomy(taxonomy).spec
    assert [(t.id, t.name, t.keywords) for t in spec.topics][-1] == (
        "qr_code_scan", "二维码扫码", ["二维码扫不出"])

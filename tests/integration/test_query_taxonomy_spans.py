"""Names and spans in the query API (issue 17): ``GET /v1/taxonomy`` serves every topic's
display name from the taxonomy the NLP stage uses (VOC_TAXONOMY_PATH), and ``/v1/feedback``
returns both the text as received and the analysed text that evidence spans index, saying
which one they index. The real app (services.api.create_app) over a real store, both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import AspectSentiment, EnrichedFeedback, Sentiment, TopicTag
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from services.nlp.taxonomy import load_taxonomy_spec
from services.scoring.sink import feedback_row
from tests.conftest import run

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CALL = "坐席：您好，请问有什么可以帮您？\n客户：配送太慢了，等了两个小时"
SPOKEN = "配送太慢了，等了两个小时"

TAXONOMY = """
version: 3
topics:
  - {id: logistics_delivery, name: 物流/配送, keywords: [配送]}
  - {id: late_delivery, name: 配送延误, keywords: [太慢], parent: logistics_delivery, stage: 售后}
"""


def call_event() -> EnrichedFeedback:
    return EnrichedFeedback(
        event_id="call-1", source="test", channel="call", touchpoint="hotline", text=CALL,
        analysis_text=SPOKEN, occurred_at=AT, received_at=AT,
        sentiment=Sentiment(score=-0.8, label="negative", model="t"),
        topics=[TopicTag(id="logistics_delivery", name="物流/配送",
                         sentiment=AspectSentiment(score=-0.8, label="negative"),
                         evidence=[(0, 2)])],
        intent="complaint", urgency=[], keywords=["配送"], tokens=[], enriched_at=AT)


def test_feedback_says_which_text_spans_index_and_taxonomy_names_topics(
        store_url: str, settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(TAXONOMY, encoding="utf-8")
    settings = settings.model_copy(update={"taxonomy_path": path})

    async def main() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            plain = call_event().model_copy(update={
                "event_id": "web-1", "channel": "web", "text": SPOKEN, "analysis_text": None,
                "occurred_at": AT - timedelta(minutes=1)})
            await store.insert("feedback", [feedback_row(call_event(), 1),
                                            feedback_row(plain, 1)])
            app = create_app(settings, broker.bootstrap, store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                answer = await client.get("/v1/feedback", params={
                    "from": (AT - timedelta(hours=1)).isoformat(),
                    "to": (AT + timedelta(hours=1)).isoformat()})
                assert answer.status_code == 200, answer.text
                call, web = answer.json()["items"]
                taxonomy = (await client.get("/v1/taxonomy")).json()
        finally:
            await store.close()
        assert call["text"] == CALL and call["analysis_text"] == SPOKEN
        assert call["spans_index"] == "analysis_text"
        (start, end), = call["topics"][0]["evidence"]
        assert call[call["spans_index"]][start:end] == "配送"
        assert call["text"][start:end] != "配送", "the spans do not index the received text"
        assert web["analysis_text"] == web["text"] == SPOKEN, "no analysis_text: text analysed"
        assert taxonomy == {"version": 3, "topics": [
            {"id": "logistics_delivery", "name": "物流/配送", "parent": None, "stage": None},
            {"id": "late_delivery", "name": "配送延误", "parent": "logistics_delivery",
             "stage": "售后"}]}

    run(main())


def test_the_shipped_taxonomy_names_every_topic() -> None:
    spec = load_taxonomy_spec()
    assert len(spec.topics) >= 9 and all(t.name and t.name != t.id for t in spec.topics)

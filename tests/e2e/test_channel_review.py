"""The review channel: stars become CSAT, product facts travel with the event, the merchant's
reply stays out of the analysed text, a follow-up (追评) is an event of its own; through the
API on the real broker, and through the whole pipeline on a real store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.broker import LocalBroker
from services.core.channels import prepare_raw, review_analysis
from services.core.events import EnrichedFeedback, RawFeedback, ReviewFacts, stable_event_id
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import open_store
from services.pipeline import SERVICES
from tests.conftest import run
from tests.pipeline_harness import read_topic, running
from tests.unit.test_events_schema import ENRICHED, RAW, _agree, _set
from tests.waiting import eventually

# 4532015112830366 passes Luhn: as a phone-like or card-like number in text it is redacted, as
# the platform's review id it must stay as it is (threads and re-sends need it).
LUHN_ID = "4532015112830366"
REVIEW = {"platform": "jd", "review_id": LUHN_ID, "stars": 2, "touchpoint": "delivery",
          "product_id": "100012043978", "sku_id": "100012043978-黑色",
          "product_name": "小熊电煮锅 售后13700001111", "customer_id": "c-2001",
          "text": "快递太慢了，外箱都压扁了，电话13812345678一直没人接",
          "reply": "亲，给您带来不便非常抱歉，请拨打13912345678"}
TRADITIONAL = {"platform": "tmall", "review_id": "t-77", "stars": 5, "touchpoint": "delivery",
               "text": "物流很快，包裝完好，非常滿意"}
FOLLOW_UP = {"platform": "jd", "review_id": LUHN_ID, "follow_up": True, "touchpoint": "delivery",
             "text": "用了一週就不加熱了，聯繫客服也沒人管"}
PII = ["13812345678", "13912345678", "13700001111"]


def test_the_analysed_text_is_the_customers_own_words() -> None:
    text = ("锅还行，快递太慢了\n商家回覆：感謝支持，歡迎再次光臨\n有問題聯繫客服\n"
            "追評：用了一週就壞了，很失望\n掌柜回复: 已为您安排换货")
    assert review_analysis(text) == "锅还行，快递太慢了\n用了一周就坏了，很失望"
    assert review_analysis("追加评论:  还行 ") == "还行"
    assert review_analysis("没问题：挺好的") == "没问题：挺好的", "only known labels count"


def test_review_analysis_is_linear_in_the_text() -> None:
    """Customer text is hostile: lines of labels, colons and nothing else stay cheap."""
    for unit in ("商家回复：\n", "追评：", "：" * 50 + "\n", "a:"):
        text = (unit * 1_000_000)[:1_000_000]
        started = time.process_time()
        review_analysis(text)
        assert time.process_time() - started < 2.0, unit


def test_a_direct_producers_review_is_treated_like_one_from_ingest() -> None:
    now = datetime.now(UTC)
    facts = ReviewFacts(platform="jd", review_id=LUHN_ID, product_name="电煮锅 13700001111")
    event = prepare_raw(RawFeedback(
        event_id="e-1", source="shop-export", external_id=f"jd:{LUHN_ID}", channel="review",
        touchpoint="delivery", text="太慢了 13812345678\n商家回复：抱歉", occurred_at=now,
        received_at=now, ratings={"csat": 1}, review=facts))
    assert event.analysis_text == "太慢了 <PHONE>"
    assert event.external_id == f"jd:{LUHN_ID}", "the id the review facts vouch for is kept"
    assert event.review is not None and event.review.product_name == "电煮锅 <PHONE>"
    assert prepare_raw(event) == event, "idempotent"
    other = prepare_raw(event.model_copy(update={"external_id": LUHN_ID}))
    assert other.external_id == "<BANK_CARD>", "an id the facts do not vouch for is redacted"


REVIEW_FACTS = {"platform": "jd", "review_id": "r1", "follow_up": False, "product_id": "p",
                "sku_id": "s", "product_name": "锅"}


@pytest.mark.parametrize(("path", "value", "ok"), [
    ("review.platform", "tmall", True), ("review.platform", "amazon", False),
    ("review.review_id", "", False), ("review.review_id", "r" * 128, True),
    ("review.review_id", "r" * 129, False), ("review.sku_id", "s" * 129, False),
    ("review.product_name", "n" * 1024, True), ("review.product_name", "n" * 1025, False),
    ("review.follow_up", "yes", False), ("review.follow_up", True, True),
    ("channel", "review", True),
])
def test_review_facts_are_bounded_alike_in_models_and_schemas(path: str, value: object,
                                                              ok: bool) -> None:
    for name, model, sample in (("feedback.raw.v2", RawFeedback, RAW),
                                ("feedback.enriched.v2", EnrichedFeedback, ENRICHED)):
        document = {**json.loads(sample.to_bytes()), "review": REVIEW_FACTS}
        _agree(name, model, _set(document, path, value), ok)


def raw_events(broker: LocalBroker, settings: Settings) -> list[dict]:
    return [value for _, value in read_topic(broker.bootstrap, settings.topic("feedback.raw"))]


def test_reviews_land_on_the_raw_topic_with_csat_and_facts(broker: LocalBroker,
                                                           settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)

    async def scenario() -> list[dict]:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            path = "/v1/sources/jd-shop/reviews"
            first = await client.post(path, json={"reviews": [REVIEW, TRADITIONAL]})
            again = await client.post(path, json={"reviews": [REVIEW, FOLLOW_UP]})
            return [first.json(), again.json()]

    first, again = run(scenario())
    assert (first["accepted"], first["duplicates"]) == (2, 0), first
    assert (again["accepted"], again["duplicates"]) == (2, 1), "the review is not counted twice"
    assert again["event_ids"][0] == first["event_ids"][0]
    assert again["event_ids"][1] == stable_event_id("jd-shop", f"jd:{LUHN_ID}:follow_up")

    events = {e["external_id"]: e for e in raw_events(broker, settings)}
    assert sorted(events) == sorted([f"jd:{LUHN_ID}", "tmall:t-77", f"jd:{LUHN_ID}:follow_up"])
    validator = Draft202012Validator(schemas.topic_schema("feedback.raw.v2"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    for event in events.values():
        validator.validate(event)
        for value in PII:
            assert value not in json.dumps(event, ensure_ascii=False), value
    review = events[f"jd:{LUHN_ID}"]
    assert (review["channel"], review["touchpoint"], review["ratings"]["csat"]) == \
        ("review", "delivery", 2)
    assert review["review"] == {"platform": "jd", "review_id": LUHN_ID, "follow_up": False,
                                "product_id": "100012043978", "sku_id": "100012043978-黑色",
                                "product_name": "小熊电煮锅 售后<PHONE>"}
    assert review["text"] == ("快递太慢了，外箱都压扁了，电话<PHONE>一直没人接\n"
                              "商家回复：亲，给您带来不便非常抱歉，请拨打<PHONE>")
    assert review["analysis_text"] == "快递太慢了，外箱都压扁了，电话<PHONE>一直没人接"
    assert events["tmall:t-77"]["analysis_text"] == "物流很快，包装完好，非常满意"
    follow_up = events[f"jd:{LUHN_ID}:follow_up"]
    assert follow_up["ratings"]["csat"] is None and follow_up["review"]["follow_up"] is True
    assert follow_up["analysis_text"] == "用了一周就不加热了，联系客服也没人管"


@pytest.mark.parametrize(("item", "where", "words"), [
    ({k: v for k, v in REVIEW.items() if k != "stars"}, ["body", "reviews", 0], "needs its stars"),
    ({**FOLLOW_UP, "stars": 1}, ["body", "reviews", 0], "carries no stars"),
    ({**REVIEW, "stars": 6}, ["body", "reviews", 0, "stars"], "less than or equal to 5"),
    ({**REVIEW, "platform": "amazon"}, ["body", "reviews", 0, "platform"], "'tmall'"),
    ({**REVIEW, "product_name": "锅" * 1025}, ["body", "reviews", 0, "product_name"], "1024"),
    ({**REVIEW, "reviewed_at": "2026-11-23T20:15:00"}, ["body", "reviews", 0, "reviewed_at"],
     "timezone"),
    ({**REVIEW, "reviewed_at": "2001-01-01T00:00:00Z"}, ["body", "reviews", 0, "reviewed_at"],
     "VOC_MAX_EVENT_AGE_S"),
])
def test_bad_reviews_are_refused_naming_the_field(broker: LocalBroker, settings: Settings,
                                                  item: dict, where: list, words: str) -> None:
    create_topics(settings, broker.bootstrap)

    async def scenario() -> httpx.Response:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await client.post("/v1/sources/jd-shop/reviews", json={"reviews": [item]})

    answer = run(scenario())
    assert answer.status_code == 422, answer.text
    found = [e for e in answer.json()["detail"] if e["loc"] == where]
    assert found and words in found[0]["msg"], answer.text
    assert raw_events(broker, settings) == []


@pytest.mark.slow
def test_reviews_through_the_pipeline_are_stored_and_scored_as_csat(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    """Ingest, NLP and scoring on the real broker and chdb: the stored rows keep the facts,
    the query API's CSAT counts the reviews' stars (not the follow-up)."""
    create_topics(settings, broker.bootstrap)
    at = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=10, microsecond=0)
    stamp = {"touchpoint": "review-e2e", "reviewed_at": at.isoformat()}
    items = [{**REVIEW, **stamp}, {**TRADITIONAL, **stamp}, {**FOLLOW_UP, **stamp},
             {**TRADITIONAL, **stamp, "review_id": "t-78", "stars": 4, "text": "还不错"}]

    async def scenario() -> tuple[list[dict], dict]:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            async with running(settings, SERVICES, broker.bootstrap, store=store) as url, \
                    httpx.AsyncClient(base_url=url, timeout=30) as client:
                answer = await client.post("/v1/sources/jd-shop/reviews", json={"reviews": items})
                assert answer.status_code == 202, answer.text

                async def scored() -> bool:
                    rows = (await client.get("/v1/scores", params={
                        "touchpoint": "review-e2e", "channel": "review", "metric": "csat",
                        "window": "1m", "from": (at - timedelta(minutes=1)).isoformat()})
                    ).json()["rows"]
                    return bool(rows) and rows[-1]["responses"] == 3

                await eventually(scored, 180, "a CSAT score over the three reviews")
                rows = await store.query(
                    "SELECT * FROM feedback FINAL WHERE touchpoint = 'review-e2e'")
                score = (await client.get("/v1/scores", params={
                    "touchpoint": "review-e2e", "channel": "review", "metric": "csat",
                    "window": "1m", "from": (at - timedelta(minutes=1)).isoformat()})
                ).json()["rows"][-1]
                return rows, score
        finally:
            await store.close()

    rows, score = run(scenario())
    assert len(rows) == 4 and {r["channel"] for r in rows} == {"review"}
    by_id = {r["external_id"]: r for r in rows}
    review = by_id[f"jd:{LUHN_ID}"]
    assert review["csat"] == 2 and review["sentiment_label"] == "negative"
    assert "商家回复" in review["text"] and "商家回复" not in review["analysis_text"]
    stored = json.loads(review["enriched_json"])["review"]
    assert (stored["sku_id"], stored["product_name"]) == ("100012043978-黑色",
                                                          "小熊电煮锅 售后<PHONE>")
    assert by_id[f"jd:{LUHN_ID}:follow_up"]["csat"] is None
    assert by_id[f"jd:{LUHN_ID}:follow_up"]["sentiment_label"] == "negative"
    # Stars 2, 5 and 4: two of three satisfied (4 or 5).
    assert score["value"] == pytest.approx(200 / 3) and score["responses"] == 3

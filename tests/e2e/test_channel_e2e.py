"""Every channel end to end on the real broker and both stores: native input over HTTP (and a
direct producer) to rows in ClickHouse, redacted, normalised, with the channel facts, one row
per message however often it is sent, and a 1 MB two-hour transcript passing every stage."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import httpx
import pytest
from kafka import KafkaProducer

from services.core.broker import LocalBroker
from services.core.events import RawFeedback, stable_event_id
from services.core.kafka import create_topics
from services.core.normalize import to_simplified
from services.core.settings import Settings
from services.core.store import Store, open_store
from services.pipeline import SERVICES
from tests.conftest import run
from tests.integration.test_channel_api import RAW_PII, assert_no_pii, fixture
from tests.pipeline_harness import group_lag, read_topic, running
from tests.waiting import eventually

pytestmark = pytest.mark.slow

JSON = {"content-type": "application/json"}
MAIL = {"content-type": "message/rfc822"}
DIRECT_PII = "客服電話13600002222一直佔線，退款也沒到賬"


def long_call() -> bytes:
    """A two-hour call whose transcript JSON is about 1 MB."""
    lines = ["我的订单到现在还没有发货，你们到底什么时候处理？", "好的，我帮您查询一下，请稍等。",
             "上次也是这样说的，已经拖了一个星期了，我很不满意。", "非常抱歉，我们会尽快给您加急处理。"]
    turns = []
    for i in range(2400):
        start = i * 3000
        turns.append({"speaker": "customer" if i % 2 == 0 else "agent", "start_ms": start,
                      "end_ms": start + 2500, "text": lines[i % 4] * 5})
    body = json.dumps({"call_id": "CALL-LONG-1", "touchpoint": "hotline",
                       "started_at": "2026-11-23T08:00:00+08:00",
                       "ended_at": "2026-11-23T10:00:00+08:00", "turns": turns},
                      ensure_ascii=False).encode()
    assert 900_000 < len(body) < 1_100_000
    return body


async def post_everything(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        requests = [
            ("/v1/sources/survey-tool/surveys", fixture("survey_batch.json"), JSON),
            ("/v1/sources/survey-tool/surveys", fixture("survey_batch.json"), JSON),
            ("/v1/sources/callcenter-sh/calls", fixture("call_20min_hold_transfer.json"), JSON),
            ("/v1/sources/social-listening/social", fixture("weibo_thread_traditional.json"),
             JSON),
            ("/v1/sources/mail-gw/emails?touchpoint=after_sales",
             fixture("gbk_multipart_reply.eml"), MAIL),
            ("/v1/sources/mail-gw/emails?touchpoint=after_sales",
             fixture("gbk_multipart_reply.eml"), MAIL),
            ("/v1/sources/mail-gw/emails", fixture("big5_lying_header.eml"), MAIL),
            ("/v1/sources/mail-gw/emails", fixture("html_only_qp.eml"), MAIL),
            ("/v1/sources/callcenter-sh/calls", long_call(), JSON),
        ]
        for path, body, headers in requests:
            answer = await client.post(path, content=body, headers=headers)
            assert answer.status_code == 202, (path, answer.text)


def produce_directly(settings: Settings, bootstrap: str) -> RawFeedback:
    """A valid event with PII and traditional text, and an invalid one, straight to the topic."""
    now = datetime.now(UTC)
    event = RawFeedback(event_id=stable_event_id("crm-export", "t-1"), source="crm-export",
                        external_id="t-1", channel="chat", touchpoint="hotline",
                        text=DIRECT_PII, occurred_at=now, received_at=now,
                        customer_id="13600002222")
    poison = event.to_bytes().replace(b'"chat"', b'"pager"')
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in (event.to_bytes(), poison):
        producer.send(settings.topic("feedback.raw"), key=b"hotline", value=value)
    producer.flush()
    producer.close()
    return event


EXPECTED_ROWS = 4 + 1 + 3 + 3 + 1 + 1


async def caught_up(store: Store, settings: Settings, bootstrap: str) -> bool:
    rows = await store.query("SELECT count() AS n FROM feedback")
    if rows[0]["n"] < EXPECTED_ROWS:
        return False
    lags = await asyncio.to_thread(lambda: [
        group_lag(bootstrap, settings.group("nlp"), settings.topic("feedback.raw")),
        group_lag(bootstrap, settings.group("scoring"), settings.topic("feedback.enriched"))])
    return lags == [0, 0]


async def check_rows(store: Store) -> None:
    rows = await store.query("SELECT * FROM feedback FINAL")
    assert len(rows) == EXPECTED_ROWS == len({r["event_id"] for r in rows})
    everything = [dict(r) for r in rows]
    assert_no_pii(json.loads(json.dumps(everything, default=str, ensure_ascii=False)))
    assert "13600002222" not in json.dumps(everything, default=str)
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)

    surveys = sorted(by_source["survey-tool"], key=lambda r: r["external_id"])
    assert len(surveys) == 4
    vip = next(r for r in surveys if r["segment"] == "VIP")
    assert (vip["nps"], vip["csat"], vip["ces"], vip["stage"]) == (2, 1, 6, "售后")
    assert "<PHONE>" in vip["text"] and vip["sentiment_label"] == "negative"

    calls = {r["external_id"]: r for r in by_source["callcenter-sh"]}
    call = calls["CALL-20261123-000187"]
    assert (call["call_duration_s"], call["call_hold_count"], call["call_transfers"]) == \
        (1200.0, 1, 1)
    assert call["call_hold_s"] == 282.0
    assert call["call_tone"] == "improved" and call["call_tone_change"] > 0
    assert "坐席" in call["text"] and "坐席" not in call["analysis_text"]
    assert "<ID_CARD>" in call["analysis_text"] and (call["stage"], call["segment"]) == ("售后",
                                                                                         "VIP")
    long = calls["CALL-LONG-1"]
    assert len(long["text"]) > 250_000 and long["call_duration_s"] == 7200.0
    assert long["call_tone"] == "steady"

    posts = {r["external_id"]: r for r in by_source["social-listening"]}
    root = posts["weibo:5032117745603301"]
    assert root["social_platform"] == "weibo"
    assert (root["social_followers"], root["social_likes"], root["social_reposts"]) == \
        (18342, 256, 87)
    assert root["hashtags"] == ["優選商城配送延誤"]
    assert "😡" in root["text"] and "t.cn" in root["text"], "the original is kept"
    for post in posts.values():
        assert post["analysis_text"] == to_simplified(post["analysis_text"])
        assert "http" not in post["analysis_text"] and "@" not in post["analysis_text"]
    assert root["sentiment_label"] == "negative"
    assert posts["weibo:5032123390015570"]["thread_id"] == "5032117745603301"
    assert posts["weibo:5032123390015570"]["parent_id"] == "5032119981102233"

    mails = {r["touchpoint"] + str(len(r["attachments"])): r for r in by_source["mail-gw"]}
    gbk = mails["after_sales1"]
    assert gbk["attachments"] == ["滤网破损照片.jpg"]
    assert gbk["thread_id"].startswith("h:") and gbk["parent_id"].startswith("h:")
    assert "尊敬的客户" in gbk["text"] and "尊敬的客户" not in gbk["analysis_text"]
    assert "<PHONE>" in gbk["text"] and "<EMAIL>" in gbk["text"]
    assert gbk["sentiment_label"] == "negative"
    email_rows = by_source["mail-gw"]
    assert len(email_rows) == 3
    big5 = next(r for r in email_rows if "筆記型電腦" in r["text"])
    assert "笔记型电脑" in big5["analysis_text"] and big5["sentiment_label"] == "negative"

    direct = by_source["crm-export"][0]
    assert direct["text"] == "客服電話<PHONE>一直佔線，退款也沒到賬"
    assert direct["analysis_text"] == "客服电话<PHONE>一直占线，退款也没到账"
    assert direct["customer_id"] == "<PHONE>"


def scenario_in(store_url: str, broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        store = await open_store(store_url)
        try:
            async with running(settings, SERVICES, broker.bootstrap, store=store) as url:
                await post_everything(url)
                await asyncio.to_thread(produce_directly, settings, broker.bootstrap)
                await eventually(lambda: caught_up(store, settings, broker.bootstrap), 240,
                                 f"{EXPECTED_ROWS} feedback rows and no consumer lag")
                await check_rows(store)
        finally:
            await store.close()

    run(main())
    letters = [v for _, v in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert len(letters) == 1 and "channel" in letters[0]["reason"]
    original = base64.b64decode(letters[0]["original_base64"])
    assert b'"pager"' in original and b"<PHONE>" in original
    for value in RAW_PII + ["13600002222"]:
        assert value.encode() not in original and value not in letters[0]["reason"]
    for _, enriched in read_topic(broker.bootstrap, settings.topic("feedback.enriched")):
        assert_no_pii(enriched)
        assert "13600002222" not in json.dumps(enriched, ensure_ascii=False)


def test_channels_end_to_end(broker: LocalBroker, settings: Settings, store_url: str,
                             capfd: pytest.CaptureFixture[str]) -> None:
    scenario_in(store_url, broker, settings)
    logs = "".join(capfd.readouterr())
    assert "dead-lettered" in logs, "the logs were captured"
    for value in RAW_PII + ["13600002222"]:
        assert value not in logs, f"{value} leaked into the logs"

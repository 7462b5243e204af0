"""The PII forms customers really type (full-width digits, 86 prefixes, dots, dashes and
ideographic spaces between groups, full-width ID and card numbers) are redacted wherever text
can surface: the functions (properties), then through the real broker and store: the enriched
topic (evidence spans still point at their words), the ``feedback`` table, dead letters, the
cases topic and ``case_events``, webhook bodies received over HTTP, and ``/v1/stream``."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaProducer

from services.alerting.cases import CaseService, followup_feedback, open_case, transition
from services.alerting.kinds.event import event_alert
from services.alerting.rules import Sla, Webhook
from services.alerting.webhooks import build_request, deliver, redact_url
from services.core.access import Access
from services.core.broker import LocalBroker, free_port
from services.core.events import RawFeedback, stable_event_id
from services.core.http import harden
from services.core.kafka import create_topics
from services.core.pii import (
    BANK_CARD,
    EMAIL,
    ID_CARD,
    PHONE,
    SNIPPET_CHARS,
    fold,
    redact,
    redact_bytes,
    snippet,
)
from services.core.settings import Settings
from services.nlp.taxonomy import load_taxonomy
from services.web import router as web_router
from services.web.feed import LiveFeed
from tests.conftest import run
from tests.integration.test_webhooks import ALERT, Receiver
from tests.pipeline_harness import group_lag, read_topic, running, store_and_producer
from tests.unit.test_channel_pii import with_check_digit, with_luhn_digit
from tests.unit.test_rules import enriched, event_rule
from tests.waiting import eventually

FULL_WIDTH = str.maketrans("0123456789+X@.", "０１２３４５６７８９＋Ｘ＠．")
SEPARATORS = ["", " ", ".", "-", "．", "－", "—", "\u3000", "\xa0", " - "]
PREFIXES = ["", "+86", "86", "0086", "+86 ", "86-"]


@st.composite
def phones(draw: st.DrawFn) -> str:
    number = draw(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
    sep = draw(st.sampled_from(SEPARATORS))
    shown = draw(st.sampled_from(PREFIXES)) + sep.join((number[:3], number[3:7], number[7:]))
    return shown.translate(FULL_WIDTH) if draw(st.booleans()) else shown


@st.composite
def id_cards(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["110105", "310115", "440305", "510104"]))
    born = draw(st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31)))
    number = with_check_digit(f"{region}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}")
    return number.translate(FULL_WIDTH) if draw(st.booleans()) else number


@st.composite
def bank_cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(16, 19))
    body = draw(st.sampled_from(["622202", "621700", "436742"])) + "".join(
        str(draw(st.integers(0, 9))) for _ in range(length - 7))
    number = with_luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-", "\u3000", "－"]))
    shown = sep.join(number[i:i + 4] for i in range(0, len(number), 4))
    return shown.translate(FULL_WIDTH) if draw(st.booleans()) else shown


emails = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z0-9]{1,8}\.(com|cn|net)", fullmatch=True).map(
    lambda e: e.translate(str.maketrans("@", "＠")) if len(e) % 2 else e)
PII = st.one_of(phones().map(lambda v: (v, PHONE)), id_cards().map(lambda v: (v, ID_CARD)),
                bank_cards().map(lambda v: (v, BANK_CARD)), emails.map(lambda v: (v, EMAIL)))
BEFORE = st.sampled_from(["", "我的电话", "中", "联系：", "😡", "身份证号", "卡号"])
AFTER = st.sampled_from(["", "，谢谢", "中", "。", "😡"])


def digits_of(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z@]", "", fold(value))


def leaked(document: str, value: str) -> bool:
    """Whether ``value`` is in the document as typed or, once folded and without separators,
    as its digits (or address)."""
    flat = re.sub(r"[ .\-]", "", fold(document))
    return value in document or digits_of(value) in flat


# --- the functions --------------------------------------------------------------------------

@given(PII, BEFORE, AFTER)
def test_every_form_is_replaced_in_place(found: tuple[str, str], before: str, after: str) -> None:
    value, placeholder = found
    assert redact(before + value + after) == before + placeholder + after


@given(PII)
def test_dead_letter_bytes_are_redacted_after_an_escaped_chinese_character(
        found: tuple[str, str]) -> None:
    value, placeholder = found
    raw = json.dumps({"text": f"中{value}", "ok": [1, None]}).encode()  # "\u4e2d..." escapes
    cleaned = redact_bytes(raw)
    assert json.loads(cleaned) == {"text": f"中{placeholder}", "ok": [1, None]}
    assert not leaked(cleaned.decode(), value)
    gbk = f"手机{value}".encode("gb18030") + b"\xff"
    assert not leaked(redact_bytes(gbk).decode("gb18030", "replace"), value)
    assert redact_bytes(b'{"text": "nothing here"}') == b'{"text": "nothing here"}'


@given(PII)
def test_cases_redact_comments_follow_up_text_and_customer_id(found: tuple[str, str]) -> None:
    value, placeholder = found
    opened = open_case(ALERT.model_copy(update={"message": f"VIP {value}"}), SLA, NOW)
    assert opened.comment == f"VIP {placeholder}"
    commented = transition(opened, "commented", "王五", NOW, comment=f"回电{value}")
    assert commented.comment == f"回电{placeholder}"
    feedback = followup_feedback(commented, "reached", 5, f"满意{value}", value, NOW)
    assert feedback.text == f"满意{placeholder}" and feedback.customer_id == placeholder


MARKUP = st.lists(st.sampled_from([*"[]()!<>*_#`|~\\@&:/.w ", "中", "://", "www.", "\n", "\u202e",
                                    "[x](http://evil.example)", "![](http://x/i.png)",
                                    "<at user_id=\"all\">", "<font color=red>"]),
                 max_size=20).map("".join).map(lambda s: s[:SNIPPET_CHARS - 20])


@given(PII, MARKUP)
def test_webhook_bodies_carry_redacted_inert_snippets(found: tuple[str, str], markup: str) -> None:
    """The markup is cut to leave room for the redacted value within the snippet's limit: a
    longer prefix pushes the placeholder out of the message, which proves nothing."""
    value, placeholder = found
    alert = event_alert(event_rule(), enriched(f"{markup}，{value}"), None, NOW)
    assert alert is not None and placeholder in alert.message
    for format_ in ("dingtalk", "wecom", "feishu", "generic"):
        body = build_request(Webhook(url="http://x/h", format=format_), alert).body.decode()
        assert not leaked(body, value), format_
        if format_ in ("dingtalk", "wecom"):
            text = json.loads(body)["markdown"]["text" if format_ == "dingtalk" else "content"]
            assert not re.search(r"\]\(|!\[|<|>|\*|#|://|\\|`|\u202e", text), text
        if format_ == "feishu":
            assert not re.search(r"<|>|://", json.loads(body)["content"]["text"])
        none = build_request(Webhook(url="http://x/h", format=format_), alert,
                             customer_text="none").body.decode()
        assert placeholder not in none and "12315" not in none and "escalation_threat" in none


def test_snippets_are_one_bounded_line_without_format_characters() -> None:
    text = "快递\n\n员\u202e态度\u200b差 " + "很" * 500
    assert snippet(text) == "快递 员态度差 " + "很" * 111 + "…" and len(snippet(text)) == 120


@pytest.mark.parametrize(("url", "shown"), [
    ("https://open.feishu.cn/open-apis/bot/v2/hook/2f7a9c1e-55b1-4d6b-9c1a-0e5f3b2a7c91",
     "https://open.feishu.cn/open-apis/bot/v2/hook/***"),
    ("https://oapi.dingtalk.com/robot/send?access_token=9f2c1e77aa&timestamp=1&sign=a%2Bb",
     "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=***"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7c1d",
     "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    ("https://ops:pa55@hooks.example.com:8443/in/a1b2c3d4e5f6g7h8i9#x",
     "https://hooks.example.com:8443/in/***#***"),
    ("http://127.0.0.1:9000/alerts", "http://127.0.0.1:9000/alerts"),
])
def test_webhook_urls_lose_their_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- through the real broker and store --------------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SLA = Sla(ack_minutes=15, resolve_hours=4)


def examples(seed: int = 15) -> list[tuple[str, str]]:
    """One of each form and option, deterministic (a seeded draw of the strategies above)."""
    rnd = random.Random(seed)
    out = []
    for sep in SEPARATORS:
        number = f"1{rnd.choice('3456789')}{rnd.randrange(10**9):09d}"
        prefix = rnd.choice(PREFIXES)
        shown = prefix + sep.join((number[:3], number[3:7], number[7:]))
        out.append((shown, PHONE))
        out.append((shown.translate(FULL_WIDTH), PHONE))
    out.append((with_check_digit("11010519491231002").translate(FULL_WIDTH), ID_CARD))
    out.append((with_luhn_digit("622202123456789012").translate(FULL_WIDTH), BANK_CARD))
    out.append(("zhang.wei＠qq.com", EMAIL))
    return out


def raw_events(now: datetime) -> list[tuple[RawFeedback, str, str]]:
    events = []
    for i, (value, placeholder) in enumerate(examples()):
        external_id = f"ext-{i}-{value}"
        event = RawFeedback(
            event_id=stable_event_id("pii-direct", external_id), source="pii-direct",
            external_id=external_id, channel="social", touchpoint="delivery",
            text=f"😡快递员态度很差，电话{value}，物流太慢了", occurred_at=now, received_at=now,
            customer_id=value, metadata={"note": f"回拨{value}"},
            social={"platform": "weibo", "post_id": f"p{i}", "mentions": [f"客服{value}"],
                    "hashtags": [f"投诉{value}"]})
        events.append((event, value, placeholder))
    return events


@pytest.mark.slow
def test_pii_forms_never_surface_downstream(broker: LocalBroker, settings: Settings,
                                            store_url: str, tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    now = datetime.now(UTC)
    events = raw_events(now)
    values = [value for _, value, _ in events]
    phone = values[0]
    poison = json.dumps({"schema": "feedback.raw.v2", "text": f"中{phone}"}).encode()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for event, _, _ in events:
        producer.send(settings.topic("feedback.raw"), key=b"delivery", value=event.to_bytes())
    producer.send(settings.topic("feedback.raw"), key=b"delivery", value=poison)
    producer.flush()
    producer.close()
    phrases = {p for t in load_taxonomy().spec.topics for p in (*t.keywords, *t.synonyms)}

    async def scenario() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, kafka):
            async with running(settings, ["nlp", "scoring"], broker.bootstrap, store=store):
                async def stored() -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback")
                    lag = await asyncio.to_thread(group_lag, broker.bootstrap,
                                                  settings.group("nlp"), settings.topic("feedback.raw"))
                    return rows[0]["n"] >= len(events) and lag == 0
                await eventually(stored, 120, f"{len(events)} feedback rows")
            rows = await store.query("SELECT * FROM feedback FINAL ORDER BY external_id")
            table = json.dumps(rows, default=str, ensure_ascii=False)
            for value in values:
                assert not leaked(table, value), value
            for row in rows:
                assert row["text"].count("<") == 1 and "快递员态度很差，电话<" in row["text"]
                assert row["hashtags"][0].startswith("投诉<")

            # Cases: the opened case carries an alert message with the customer's words, an
            # operator comments, the customer is called back; topic, table and live stream.
            service = CaseService(settings, store, kafka)
            alert = ALERT.model_copy(update={"alert_id": "a-pii", "message": f"VIP {phone}"})
            case_id = open_case(alert, SLA, now).case_id

            async def act() -> None:
                await service.write([open_case(alert, SLA, now)])
                await service.act(case_id, "commented", "王五", comment=f"已回电 {values[1]}")
                await service.act(case_id, "resolved", "王五")
                await service.follow_up(case_id, "王五", "reached", 5, f"满意 {values[2]}",
                                        values[3])

            frames = await watch_stream(store, settings, act, until="followed_up")
            assert "<PHONE>" in frames and case_id in frames
            history = json.dumps([c.model_dump(mode="json") for c in await service.history(case_id)],
                                 ensure_ascii=False)
            assert history.count("<PHONE>") >= 3
            stored_rows = json.dumps(await store.query("SELECT * FROM case_events"), default=str,
                                     ensure_ascii=False)
            for value in values[:4]:
                assert not leaked(history, value) and not leaked(stored_rows, value), value
                assert not leaked(frames, value), value

            async with httpx.AsyncClient(timeout=5) as client:
                with Receiver([200]) as receiver:
                    for event in await service.history(case_id):
                        for format_ in ("generic", "dingtalk", "wecom", "feishu"):
                            outcome = await deliver(client, Webhook(url=receiver.url, format=format_),
                                                    event, max_attempts=1, backoff_s=0)
                            assert outcome.delivered
                bodies = "".join(body.decode() for _, _, body in receiver.requests)
            assert "<PHONE>" in bodies or "＜PHONE＞" in bodies
            for value in values[:4]:
                assert not leaked(bodies, value), value

    run(scenario())

    enriched_events = [v for _, v in read_topic(broker.bootstrap, settings.topic("feedback.enriched"))]
    assert len({e["event_id"] for e in enriched_events}) == len(events)
    for event in enriched_events:
        for value in values:
            assert not leaked(json.dumps(event, ensure_ascii=False), value), value
        assert any(t["id"] == "logistics_delivery" for t in event["topics"])
        for topic in event["topics"]:
            for start, end in topic["evidence"]:
                assert event["analysis_text"][start:end] in phrases, (event["analysis_text"], topic)
        assert event["customer_id"].startswith("<") and "<" in event["social"]["mentions"][0]
    letters = [v for _, v in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert len(letters) == 1
    original = base64.b64decode(letters[0]["original_base64"]).decode()
    assert "<PHONE>" in original and not leaked(original + letters[0]["reason"], phone)
    cases = json.dumps([v for _, v in read_topic(broker.bootstrap, settings.topic("cases"))],
                       ensure_ascii=False)
    followups = [v for _, v in read_topic(broker.bootstrap, settings.topic("feedback.raw"))
                 if v.get("source") == "tingjian-cases"]
    assert len(followups) == 1 and followups[0]["customer_id"] == PHONE
    for value in values[:4]:
        assert not leaked(cases, value) and not leaked(json.dumps(followups, ensure_ascii=False), value)


async def watch_stream(store, settings: Settings, act, until: str) -> str:  # noqa: ANN001
    """The data frames a dashboard page receives on /v1/stream while ``act`` runs, up to the
    first frame holding ``until``."""
    feed = LiveFeed(store, 60, interval_s=0.2)
    app = FastAPI()
    # No credentials configured: the stream is open to this machine, as on `make run`.
    access = Access.from_settings(settings)
    app.include_router(web_router.build_router(feed, access))
    harden(app, settings, access)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None,
                                           timeout_graceful_shutdown=1))
    serving = asyncio.create_task(server.serve())
    frames: list[str] = []
    try:
        await eventually(lambda: server.started, 30, "the server to start", interval_s=0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            async with client.stream("GET", "/v1/stream") as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    frames.append(line)
                    if len(frames) == 1:
                        await act()
                    elif until in line:
                        break
        return "\n".join(frames)
    finally:
        server.should_exit = True
        await serving

"""Explanations of figure alerts (services/alerting/explain.py).

- the arithmetic (impact, contribution, ranking, lift of terms, excerpts and their spans) as
  pure functions;
- each figure kind says which metric, direction and baseline its alerts are explained on;
- an explanation is stored with its alert and read back, on both store backends, and its
  resolution finds it;
- end to end on the real broker and both stores: scoring and alerting run as in ``voc up``;
  a background stream with a steady complaint topic, then one new negative topic on one
  channel: the alert published on the topic is alert.v3 and names that topic first, that
  channel, its keyword and three of its comments with the evidence on the right characters.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.alerting import queries
from services.alerting.engine import Measurement
from services.alerting.explain import (
    carried,
    excerpt,
    explain_firing,
    metric_value,
    part,
    pick_comments,
    rank_splits,
    rank_terms,
    rank_topics,
)
from services.alerting.kinds import window_kind
from services.alerting.rules import Webhook, load_rules
from services.alerting.webhooks import build_request
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
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from tests.conftest import run
from tests.e2e.browsing import SHOTS, dashboard, needs_chromium
from tests.integration.test_webhooks import Receiver
from tests.pipeline_harness import read_topic, running, store_and_producer
from tests.unit.test_events_schema import ALERT, ALERT_V2, ALERT_V3, EXPLANATION
from tests.waiting import eventually

V3 = Draft202012Validator(schemas.topic_schema("alert.v3"),
                          format_checker=Draft202012Validator.FORMAT_CHECKER)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def counts(volume: int, negative: int) -> dict[str, int]:
    return {"volume": volume, "negative_count": negative}


# ------------------------------------------------------------------------------ arithmetic

def test_contribution_is_the_change_a_part_carries() -> None:
    # Window: 70 events, 42 negative; the part: 30 events, all negative, absent before.
    impact, contribution = part("negative_share", counts(70, 42), counts(30, 30),
                                counts(40, 12), {})
    assert impact == pytest.approx(42 / 70 - 12 / 40)
    assert contribution == pytest.approx(impact)
    # A part that was as bad before carries none of the change.
    impact, contribution = part("negative_share", counts(70, 42), counts(12, 12),
                                counts(40, 12), counts(12, 12))
    assert impact == pytest.approx(42 / 70 - 30 / 58)
    assert contribution == pytest.approx(impact - (12 / 40 - 0))
    assert contribution < 0


def test_a_part_holding_every_event_carries_the_whole_change() -> None:
    impact, contribution = part("negative_share", counts(10, 8), counts(10, 8),
                                counts(10, 2), counts(10, 2))
    assert impact is None and contribution == pytest.approx(0.6)
    assert part("negative_share", counts(0, 0), {}, counts(0, 0), {}) == (None, None)


def test_survey_metrics_without_responses_are_unknown_not_zero() -> None:
    assert metric_value("nps", {"volume": 5, "nps_promoters": 0, "nps_detractors": 0,
                                "nps_responses": 0}) is None
    assert metric_value("urgent_count", {"volume": 5, "urgent_count": 3}) == 3.0


def topic(name: str, current: bool, mentions: int, negative: int,
          sentiment: float = -0.5) -> queries.TopicCounts:
    return queries.TopicCounts(name, current, mentions, sentiment * mentions,
                               counts(mentions, negative))


def test_topics_rank_by_contribution_in_the_breach_direction() -> None:
    rows = [topic("logistics", True, 12, 12), topic("logistics", False, 12, 12),
            topic("billing", True, 30, 30), topic("price", True, 28, 0, 0.6),
            topic("price", False, 28, 0, 0.6)]
    up = rank_topics("negative_share", "up", rows, counts(70, 42), counts(40, 12))
    assert [d.topic for d in up] == ["billing", "price", "logistics"]
    billing = up[0]
    assert billing.share == pytest.approx(30 / 70) and billing.baseline_share == 0
    assert billing.lift is None and billing.sentiment == -0.5
    logistics = up[2]
    assert logistics.lift == pytest.approx((12 / 70) / (12 / 40))
    down = rank_topics("negative_share", "down", rows, counts(70, 42), counts(40, 12))
    assert down[0].topic == "logistics"


def test_the_breaching_channel_is_the_one_that_moved() -> None:
    cells = [queries.CellCounts("app", "", True, counts(40, 12)),
             queries.CellCounts("app", "", False, counts(40, 12)),
             queries.CellCounts("call", "售后", True, counts(30, 30))]
    channels = rank_splits("negative_share", "up", cells, "channel", counts(70, 42),
                           counts(40, 12))
    assert [c.value for c in channels] == ["call", "app"]
    assert channels[0].metric_value == 1.0 and channels[0].baseline_value is None
    stages = rank_splits("negative_share", "up", cells, "stage", counts(70, 42), counts(40, 12))
    assert stages[0].value == "售后"


def test_terms_are_over_represented_keywords_and_need_a_baseline() -> None:
    terms = [queries.TermCount("扣费", 30, 0), queries.TermCount("配送", 12, 12),
             queries.TermCount("偶然", 1, 0), queries.TermCount("价格", 28, 28)]
    ranked = rank_terms(terms, 70, 40)
    assert [t.term for t in ranked] == ["扣费"]
    assert ranked[0].lift == pytest.approx((30 / 70) / (0.5 / 40.5))
    assert rank_terms(terms, 70, 0) == []
    many = [queries.TermCount(f"词{i}", 5 + i, 0) for i in range(50)]
    assert len(rank_terms(many, 100, 100)) == 10


def test_excerpts_keep_spans_on_their_characters() -> None:
    text = "前面" * 100 + "账单\n重复扣费，\t电话打不通" + "后面" * 100
    start = text.index("扣费")
    shown, spans = excerpt(text, [(start, start + 2)])
    assert len(shown) <= 160 and "\n" not in shown and "\t" not in shown
    assert shown.startswith("…") and shown.endswith("…")
    assert [shown[s:e] for s, e in spans] == ["扣费"]
    # Spans outside the text (a hostile producer) are ignored, not raised on.
    assert excerpt("短", [(5, 9), (1, 0)]) == ("短", [])


def test_excerpts_that_redaction_would_change_lose_their_spans() -> None:
    shown, spans = excerpt("电话 13812345678 打不通", [(0, 2)])
    assert "13812345678" not in shown and spans == []


def comment_row(event_id: str, text: str, sentiment: float) -> queries.CommentRow:
    document = {"text": "原始" + text, "analysis_text": text,
                "topics": [{"id": "billing", "evidence": [[text.index("扣费"),
                                                           text.index("扣费") + 2]]}]}
    return queries.CommentRow(event_id, "call", "售后", sentiment, json.dumps(document))


def test_comments_are_distinct_bounded_and_index_the_analysed_text() -> None:
    rows = [comment_row("e1", "重复扣费", -0.9), comment_row("e2", "重复扣费", -0.8),
            queries.CommentRow("bad", "call", "", -0.8, "{not json"),
            comment_row("e3", "又扣费了", -0.7), comment_row("e4", "扣费两次", -0.6),
            comment_row("e5", "乱扣费", -0.5)]
    picked = pick_comments(rows, "billing")
    assert [c.event_id for c in picked] == ["e1", "e3", "e4"]
    assert all(c.text[s:e] == "扣费" for c in picked for s, e in c.evidence)


# ------------------------------------------------------------------------------ rule kinds

KIND_RULES_YAML = """
rules:
  - {id: t, type: threshold, metric: complaint_rate, operator: ">", threshold: 0.3,
     lookback_s: 300}
  - {id: r, type: rate_of_change, metric: nps, change: delta, operator: "<", threshold: -10,
     lookback_s: 3600, compare_to: last_week}
  - {id: a, type: anomaly, metric: mean_sentiment, direction: down, sensitivity: 3,
     lookback_s: 300, baseline_s: 3000}
  - {id: s, type: topic_spike, topic: billing, factor: 3, lookback_s: 600}
  - {id: v, type: volume_drop, share: 0.2, lookback_s: 600, baseline_s: 6000}
"""


@pytest.fixture
def kind_rules(tmp_path: Path) -> dict:
    path = tmp_path / "kinds.yaml"
    path.write_text(KIND_RULES_YAML, encoding="utf-8")
    return {r.id: r for r in load_rules(path).rules}


def test_each_figure_kind_names_metric_direction_and_baseline(kind_rules: dict) -> None:
    m = Measurement(1.0, None, 30, True, False, NOW - timedelta(seconds=300), NOW)
    by_id = kind_rules
    explained = {rid: window_kind(r).explain for rid, r in by_id.items()}
    assert explained["v"] is None
    t = explained["t"](by_id["t"], m)
    assert (t.metric, t.direction, t.baseline) == ("complaint_rate", "up",
                                                   (NOW - timedelta(seconds=600), m.start))
    r = explained["r"](by_id["r"], m)
    assert (r.metric, r.direction) == ("nps", "down")
    assert r.baseline == (m.start - timedelta(days=7), NOW - timedelta(days=7))
    a = explained["a"](by_id["a"], m)
    assert (a.direction, a.baseline) == ("down", (m.start - timedelta(seconds=3000), m.start))
    s = explained["s"](by_id["s"], m)
    assert (s.metric, s.focus_topic) == ("negative_share", "billing")


class FailingStore:
    """A store whose every query fails with ``error`` (pure logic: what explain does with it)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, _: str) -> object:
        async def fail(*_args: object, **_kwargs: object) -> None:
            raise self.error
        return fail


def test_an_unreachable_store_retries_the_batch_a_broken_explanation_does_not(
        kind_rules: dict) -> None:
    m = Measurement(1.0, None, 30, True, False, NOW - timedelta(seconds=300), NOW)
    rule = kind_rules["t"]
    with pytest.raises(ConnectionRefusedError):
        run(explain_firing(FailingStore(ConnectionRefusedError("store down")), rule, "app", m))
    with pytest.raises(ConnectionRefusedError):
        run(carried(FailingStore(ConnectionRefusedError("store down")), rule, "alert-1"))
    assert run(explain_firing(FailingStore(ValueError("a bug")), rule, "app", m)) is None
    assert run(carried(FailingStore(ValueError("a bug")), rule, "alert-1")) is None


# ------------------------------------------------------------------------------ webhooks

def test_generic_webhooks_leave_out_the_customers_words_under_none() -> None:
    hook = Webhook(url="http://x/g")
    kept = json.loads(build_request(hook, ALERT_V3).body)
    assert kept["explanation"]["comments"][0]["text"] == "配送太慢了"
    dropped = json.loads(build_request(hook, ALERT_V3, customer_text="none").body)
    comment = dropped["explanation"]["comments"][0]
    assert comment["text"] == "" and comment["evidence"] == [] and comment["event_id"] == "e1"
    assert dropped["explanation"]["terms"] == []
    V3.validate(dropped)


def chat_text(format_: str, alert: Alert, customer_text: str = "snippet") -> str:
    body = json.loads(build_request(Webhook(url="http://x/y", format=format_), alert,
                                    customer_text=customer_text).body)
    if format_ == "dingtalk":
        return body["markdown"]["text"]
    if format_ == "wecom":
        return body["markdown"]["content"]
    return body["content"]["text"]


HOSTILE = ALERT_V3.model_copy(update={"explanation": EXPLANATION.model_copy(update={
    "topics": [EXPLANATION.topics[0].model_copy(update={"topic": "[点我](http://evil.cn)"}),
               *(EXPLANATION.topics[0].model_copy(update={"topic": f"t{i}", "lift": None})
                 for i in range(4))],
    "breaching_channel": "app", "breaching_stage": None,
    "comments": [EXPLANATION.comments[0].model_copy(update={
        "text": '<at user_id="all">所有人</at> **快看** ![x](http://evil.cn/a.png) ' + "长" * 100,
        "evidence": []})]})})


@pytest.mark.parametrize("format_", ["dingtalk", "wecom", "feishu"])
def test_chat_messages_carry_a_short_explanation(format_: str) -> None:
    text = chat_text(format_, ALERT_V3)
    assert "主要话题 top topics: logistics_delivery 40% (基线 10%, ×4.0)" in text
    assert "集中在 breach in: 渠道 channel app, 阶段 stage 售后" in text
    assert "例 example: 「配送太慢了」" in text
    assert "例 example" not in chat_text(format_, ALERT_V3, "none")
    resolved = ALERT_V3.model_copy(update={"status": "resolved"})
    assert "主要话题" not in chat_text(format_, resolved)


@pytest.mark.parametrize("format_", ["dingtalk", "wecom", "feishu"])
def test_chat_explanations_are_inert_and_short(format_: str) -> None:
    text = chat_text(format_, HOSTILE)
    topics_line = next(line for line in text.splitlines() if line.startswith("主要话题"))
    assert topics_line.count(";") == 2, "three topics at most"
    assert "t1 40% (基线 10%, 新 new)" in topics_line and "t2" not in topics_line
    assert "http://" not in text and "<at" not in text
    if format_ != "feishu":
        assert "[点我]" not in text and "**" not in text and "![" not in text
    example = next(line for line in text.splitlines() if line.startswith("例 example"))
    assert len(example) < 100 and "……" not in example


# ------------------------------------------------------------------------------ the store

def test_explanations_are_stored_with_the_alert_and_carried_to_its_resolution(
        store_url: str, kind_rules: dict) -> None:
    rule = kind_rules["t"]

    async def main() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await queries.record_alerts(store, [(ALERT_V3, NOW)], 1)
            rows = await store.query("SELECT * FROM alerts FINAL")
            assert queries.alert_from_row(rows[0]).explanation == EXPLANATION
            assert await carried(store, rule, ALERT_V3.alert_id) == EXPLANATION
            assert await carried(store, rule, "unknown") is None
            # Rows without an explanation (every row stored before alert.v3) read as None.
            await queries.record_alerts(store, [(ALERT.model_copy(
                update={"alert_id": "old", "dedupe_key": "old"}), NOW)], 2)
            rows = await store.query("SELECT * FROM alerts FINAL WHERE alert_id = 'old'")
            assert queries.alert_from_row(rows[0]).explanation is None
        finally:
            await store.close()

    run(main())


SCOPED = """
rules:
  - {id: scoped, type: threshold, metric: complaint_rate, operator: ">", threshold: 0.3,
     lookback_s: 300, scope: {channels: [call], stages: [售后], topics: [billing]}}
"""


def test_an_explanation_reads_only_the_rules_scope(store_url: str, tmp_path: Path) -> None:
    """Channel, stage and topic scope filter the events explained (SQL on both backends)."""
    from services.alerting.explain import explanation
    from services.scoring.sink import feedback_row

    path = tmp_path / "scoped.yaml"
    path.write_text(SCOPED, encoding="utf-8")
    rule = load_rules(path).rules[0]
    end = NOW
    inside = [feedback("x1", "billing", "call", end - timedelta(seconds=10)),
              feedback("x2", "billing", "call", end - timedelta(seconds=20), 1)]
    outside = [feedback("o1", "billing", "app", end - timedelta(seconds=10)),
               feedback("o2", "logistics_delivery", "call", end - timedelta(seconds=10)),
               feedback("o3", "billing", "call", end - timedelta(seconds=10)).model_copy(
                   update={"stage": "售前"}),
               feedback("o4", "billing", "call", end - timedelta(seconds=700))]
    before = [feedback("b1", "price_value", "call", end - timedelta(seconds=310)).model_copy(
        update={"topics": [feedback("t", "billing", "call", end).topics[0].model_copy(
            update={"sentiment": AspectSentiment(score=0.7, label="positive")})]})]
    m = Measurement(1.0, None, 2, True, False, end - timedelta(seconds=300), end)

    async def main() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", [feedback_row(e, 1)
                                            for e in inside + outside + before])
            return await explanation(store, rule, window_kind(rule).explain(rule, m),
                                     "hotline", m)
        finally:
            await store.close()

    found = run(main())
    assert (found.metric, found.volume, found.baseline_volume) == ("complaint_rate", 2, 1)
    assert (found.value, found.baseline_value) == (1.0, 0.0)
    assert [c.event_id for c in found.comments] == ["x1", "x2"]
    assert [(s.value, s.volume) for s in found.channels] == [("call", 2)]
    assert found.topics[0].topic == "billing" and found.topics[0].contribution == 1.0


# ------------------------------------------------------------------------------ end to end

RULES = """
rules:
  - {id: hotline-negative, type: threshold, metric: negative_share, operator: ">",
     threshold: 0.4, lookback_s: 300, min_volume: 20, cooldown_s: 3600}
"""
NAMES = {"logistics_delivery": "物流/配送", "price_value": "价格", "billing": "账单"}
TEXTS = {"logistics_delivery": ["快递\n配送太慢了"], "price_value": ["价格合理，很满意"],
         "billing": ["账单上重复扣费，电话也一直打不通", "又被扣费了两次", "乱扣费，退款也没到"]}
KEYWORDS = {"logistics_delivery": ["配送", "太慢"], "price_value": ["价格", "满意"],
            "billing": ["扣费", "重复", "电话"]}


def feedback(event_id: str, topic_id: str, channel: str, at: datetime,
             variant: int = 0) -> EnrichedFeedback:
    negative = topic_id != "price_value"
    score, label = (-0.8, "negative") if negative else (0.7, "positive")
    texts = TEXTS[topic_id]
    text = texts[variant % len(texts)]
    word = KEYWORDS[topic_id][0]
    start = text.index(word)
    return EnrichedFeedback(
        event_id=event_id, source="test", channel=channel, touchpoint="hotline",
        text="【转写】" + text, analysis_text=text, occurred_at=at, received_at=utc_now(),
        stage="售后", sentiment=Sentiment(score=score, label=label, model="test"),
        topics=[TopicTag(id=topic_id, name=NAMES[topic_id],
                         sentiment=AspectSentiment(score=score, label=label),
                         evidence=[(start, start + len(word))])],
        intent="complaint" if negative else "praise", urgency=[],
        keywords=KEYWORDS[topic_id], tokens=[], enriched_at=utc_now())


def background(prefix: str, around: datetime) -> list[EnrichedFeedback]:
    """40 events over three minutes: 12 negative about delivery, 28 happy about prices."""
    return [feedback(f"{prefix}{i}", "logistics_delivery" if i % 10 < 3 else "price_value",
                     "app" if i % 2 else "web", around - timedelta(seconds=(i * 4) % 180))
            for i in range(40)]


@pytest.mark.slow
def test_a_new_negative_topic_is_explained_end_to_end(broker: LocalBroker, store_url: str,
                                                      settings: Settings,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    settings = settings.model_copy(update={"alert_rules_path": path, "sink_batch_wait_s": 0.2})
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):
                now = utc_now()
                earlier = background("b", now - timedelta(minutes=6))
                steady = background("w", now - timedelta(seconds=5))
                injected = [feedback(f"x{i}", "billing", "call", now - timedelta(seconds=i), i)
                            for i in range(30)]
                topic = settings.topic("feedback.enriched")
                await producer.send_many(topic, [(b"hotline", e.to_bytes()) for e in earlier])

                async def stored(n: int) -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback FINAL")
                    return rows[0]["n"] >= n

                await eventually(lambda: stored(40), 60, "the baseline's 40 events stored")
                await producer.send_many(
                    topic, [(b"hotline", e.to_bytes()) for e in steady + injected])

                async def fired() -> bool:
                    rows = await store.query("SELECT count() AS n FROM alerts FINAL")
                    return rows[0]["n"] >= 1

                await eventually(fired, 60, "the hotline alert")
                rows = await store.query("SELECT * FROM alerts FINAL")
            published = [v for _, v in await asyncio.to_thread(
                read_topic, broker.bootstrap, settings.topic("alerts"))]
        assert [a["status"] for a in published] == ["firing"]
        alert = published[0]
        V3.validate(alert)
        explanation = alert["explanation"]
        print("explanation computed in", explanation["computed_ms"], "ms")
        assert explanation["topics"][0]["topic"] == "billing"
        assert explanation["topics"][0]["baseline_share"] == 0
        delivery = next(t for t in explanation["topics"] if t["topic"] == "logistics_delivery")
        assert delivery["contribution"] < 0 < explanation["topics"][0]["contribution"]
        assert explanation["breaching_channel"] == "call"
        assert explanation["baseline_volume"] == 40 and explanation["volume"] == 70
        assert explanation["terms"][0]["term"] in ("扣费", "重复", "电话")
        comments = explanation["comments"]
        assert len(comments) == 3, "three distinct texts (30 comments, 3 texts)"
        assert len({c["text"] for c in comments}) == 3
        assert all(c["event_id"].startswith("x") for c in comments)
        assert all([c["text"][s:e] for s, e in c["evidence"]] == ["扣费"] for c in comments)
        assert queries.alert_from_row(rows[0]).explanation == Alert.model_validate(
            alert).explanation

    run(main())


V2_RULES = """
rules:
  - {{id: r, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     lookback_s: 300}}
webhooks:
  g: {{url: '{url}'}}
"""


@pytest.mark.slow
def test_alert_v2_messages_are_still_read_by_every_consumer(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """Alerts written before alert.v3 (still on the topic after an upgrade) open their case,
    reach their webhook as alert.v3 without an explanation, and print in `voc alerts tail`."""
    old = ALERT_V2.model_copy(update={"notify": ["g"], "open_case": True,
                                      "fired_at": utc_now(), "emitted_at": utc_now()})
    with Receiver([200]) as hook:
        path = tmp_path / "rules.yaml"
        path.write_text(V2_RULES.format(url=hook.url), encoding="utf-8")
        settings = settings.model_copy(update={"alert_rules_path": path})
        create_topics(settings, broker.bootstrap)

        async def main() -> None:
            async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
                async with running(settings, ("alerting",), broker.bootstrap, store=store):
                    await producer.send_many(settings.topic("alerts"),
                                             [(old.dedupe_key.encode(), old.to_bytes())])

                    async def handled() -> bool:
                        rows = await store.query("SELECT alert_ids FROM case_events")
                        return bool(rows) and bool(hook.requests)

                    await eventually(handled, 60, "the v2 alert's case and webhook")
                    rows = await store.query("SELECT alert_ids FROM case_events")
            assert rows[0]["alert_ids"] == [old.alert_id]

        run(main())
        delivered = json.loads(hook.requests[0][2])
    V3.validate(delivered)
    assert delivered["schema"] == "alert.v3" and delivered["explanation"] is None
    assert delivered["alert_id"] == old.alert_id
    env = {**os.environ, "VOC_KAFKA_BOOTSTRAP": broker.bootstrap,
           "VOC_TOPIC_PREFIX": settings.topic_prefix}
    done = subprocess.run([str(Path(sys.executable).with_name("voc")), "alerts", "tail",
                           "--from-beginning", "--no-follow"], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    (line,) = done.stdout.splitlines()
    V3.validate(json.loads(line))


# ------------------------------------------------------------------------------ dashboard

PWN = '<img src=x data-pwned onerror="window.__pwned=1">'


def shown_alert() -> Alert:
    """A firing alert as the dashboard gets it: a realistic explanation, one comment of which
    carries markup, and spans past an astral character (code points, not UTF-16 units)."""
    now = utc_now().replace(microsecond=0)
    billing = EXPLANATION.topics[0].model_copy(update={
        "topic": "billing", "mentions": 30, "share": 30 / 70, "baseline_share": 0.0,
        "lift": None, "sentiment": -0.8, "impact": 0.3, "contribution": 0.3})
    delivery = EXPLANATION.topics[0].model_copy(update={
        "topic": "logistics_delivery", "mentions": 12, "share": 12 / 70, "baseline_share": 0.3,
        "lift": 0.571, "sentiment": -0.8, "impact": 0.083, "contribution": -0.217})
    comments = [
        EXPLANATION.comments[0].model_copy(update={
            "event_id": "x1", "channel": "call", "text": "账单上重复扣费，电话也一直打不通",
            "evidence": [(5, 7)]}),
        EXPLANATION.comments[0].model_copy(update={
            "event_id": "x2", "channel": "call", "text": "😡又被扣费了两次", "evidence": [(3, 5)]}),
        EXPLANATION.comments[0].model_copy(update={
            "event_id": "x3", "channel": "call", "text": PWN + "乱扣费", "evidence": []}),
    ]
    explanation = EXPLANATION.model_copy(update={
        "value": 0.6, "baseline_value": 0.3, "volume": 70, "baseline_volume": 40,
        "topics": [billing, delivery], "breaching_channel": "call", "breaching_stage": "售后",
        "comments": comments,
        "terms": [EXPLANATION.terms[0].model_copy(update={"term": "扣费", "count": 30})]})
    return ALERT_V3.model_copy(update={
        "alert_id": "explained", "dedupe_key": "hotline-negative:hotline",
        "rule_id": "hotline-negative", "touchpoint": "hotline", "value": 0.6,
        "window_start": now - timedelta(minutes=5), "window_end": now, "fired_at": now,
        "emitted_at": now, "explanation": explanation,
        "message": "[firing] hotline: negative_share 0.600 > 0.4 over 70 events."})


@pytest.mark.slow
@needs_chromium
def test_the_alert_panel_shows_the_explanation(broker: LocalBroker, settings: Settings,
                                               tmp_path: Path) -> None:
    """Its picture, build/screenshots/alert-explanation.png, is docs/screenshots' copy."""
    create_topics(settings, broker.bootstrap)
    alert = shown_alert()

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, _):
            old = ALERT.model_copy(update={"alert_id": "old", "dedupe_key": "old",
                                           "fired_at": alert.fired_at - timedelta(minutes=1)})
            await queries.record_alerts(store, [(alert, alert.window_end),
                                                (old, old.window_end)], 1)
            async with dashboard(settings, ("ingest",), broker.bootstrap, store) as shown:
                page = shown.page
                await page.goto(f"{shown.api}/dashboard/#/alerts")
                row = '#alert-feed tr[data-alert-id="explained"]'
                await page.wait_for_selector(row, timeout=20000)
                assert await page.query_selector(
                    '#alert-feed tr[data-alert-id="old"] details.explain') is None
                await page.click(f"{row} details.explain summary")
                topics = [await r.get_attribute("data-topic") for r in
                          await page.query_selector_all(f"{row} .explain-topics tbody tr")]
                assert topics == ["billing", "logistics_delivery"]
                assert await page.inner_text(
                    f'{row} tr[data-topic="logistics_delivery"] td') == "物流/配送", \
                    "display names from GET /v1/taxonomy"
                assert "渠道 call · 阶段 售后" in await page.inner_text(f"{row} .explain-breach")
                assert "扣费" in await page.inner_text(f"{row} .explain-terms")
                marks = [await m.inner_text() for m in
                         await page.query_selector_all(f"{row} .explain-comments mark")]
                assert marks == ["扣费", "扣费"], "spans count code points (😡 is one)"
                hostile = await page.inner_text(f'{row} li[data-event-id="x3"]')
                assert PWN in hostile, "markup is shown as text"
                assert await page.evaluate(
                    "() => [document.querySelectorAll('[data-pwned]').length,"
                    " window.__pwned ?? null]") == [0, None]
                SHOTS.mkdir(parents=True, exist_ok=True)
                await page.locator(row).screenshot(path=str(SHOTS / "alert-explanation.png"))
                assert shown.errors == [], shown.errors

    run(main())


# ------------------------------------------------------------------------------ bench

def test_the_bench_events_are_valid_and_its_summary_checks_the_targets() -> None:
    """bench/explain_bench.py: its events carry evidence on their topic's word, and its
    verdicts follow the measured figures (a short run is `make bench`'s, not a test's)."""
    import argparse
    import random

    from bench.explain_bench import TOPICS, event, summarise

    rng = random.Random(3)
    document = EnrichedFeedback.model_validate_json(
        event(1, "tp", ["price_fees", "waiting_time"], "call", True, rng))
    for tag in document.topics:
        (start, end), = tag.evidence
        assert document.text[start:end] in TOPICS[tag.id][2]
    args = argparse.Namespace(trials=3, rate=10, inject_per_tick=1, seed=1)

    def trial(top1: bool, ms: float) -> dict:
        return {"touchpoint": "tp", "topic": "a", "channel": "app", "fired": True,
                "explained": True, "ranked": ["a" if top1 else "b"], "top1": top1,
                "breaching_channel": "app", "channel_named": True, "computed_ms": ms,
                "latency_s": 1.0}

    good = summarise(args, [trial(True, 40.0)] * 3, 100)
    assert good["targets"] == {"injected_topic_first_share >= 0.95": True,
                               "explanation_ms_p95 <= 200": True}
    bad = summarise(args, [trial(True, 40.0), trial(False, 400.0), trial(True, 50.0)], 100)
    assert bad["targets"] == {"injected_topic_first_share >= 0.95": False,
                              "explanation_ms_p95 <= 200": False}
    assert "**missed**" in bad["markdown"] and "ranked b" in bad["markdown"]

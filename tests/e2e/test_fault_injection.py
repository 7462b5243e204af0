"""Faults injected into the running stages on the real broker (and the real stores): one method
of the real producer, store or analyzer is wrapped to fail, and nothing may be lost or counted
twice.

- a store error during the scoring insert: the batch is retried, every event stored and
  counted once, none judged too late by its own retry;
- a broker error while alerting publishes: the retry publishes the same alert, and its case
  is opened;
- a produce timeout in the NLP agent: the batch is retried inside the agent, every event
  enriched and stored once;
- an analysis that raises for one record: that record is analysed alone and dead-lettered,
  every other record of its batch enriched;
- a record whose row the store cannot take (an integer beyond 64 bits) in a scoring batch:
  only that record is dead-lettered, every other one stored once;
- a store error after a webhook answered: the retry records the outcome, nobody is paged twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import errors as kafka_errors
from prometheus_client import REGISTRY

from services.core.broker import LocalBroker
from services.core.events import (
    EnrichedFeedback,
    RawFeedback,
    SocialFacts,
    stable_event_id,
    utc_now,
)
from services.core.kafka import Producer, create_topics
from services.core.settings import Settings
from services.core.store import Store, StoreError
from services.nlp.analyzer import Analyzer
from tests.conftest import run
from tests.e2e.test_alert_e2e import event
from tests.pipeline_harness import group_lag, read_topic, running, store_and_producer
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def outcomes(stage: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("voc_consumer_outcomes_total",
                                     {"stage": stage, "outcome": outcome}) or 0.0


async def count_stored(store: Store) -> dict:
    rows = await store.query("SELECT count() AS n, uniqExact(event_id) AS ids, "
                             "sum(too_late) AS late FROM feedback FINAL")
    return rows[0]


async def scored_volume(store: Store) -> int:
    rows = await store.query("SELECT sum(volume) AS n FROM cem_scores FINAL WHERE "
                             "window_seconds = 60 AND channel = '' AND stage = ''")
    return int(rows[0]["n"] or 0)


def test_a_store_error_during_the_scoring_insert_loses_and_doubles_nothing(
        broker: LocalBroker, store_url: str, settings: Settings) -> None:
    settings = settings.model_copy(update={"consumer_backoff_s": 0.1})
    create_topics(settings, broker.bootstrap)
    now = utc_now()
    # Two hours of events in one batch: had the retry seen its own newest time, the oldest
    # would be judged too late (lateness 1 h).
    events = [event(f"s{i}", ("delivery", "hotline")[i % 2], i % 3 == 0,
                    now - timedelta(seconds=i * 60)) for i in range(120)]
    group = settings.group("scoring")
    retries = outcomes(group, "transient_retry")

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            real_insert = store.insert
            failed: list[str] = []

            async def readonly_once(table: str, rows: Sequence[dict], **kwargs: Any) -> None:
                await real_insert(table, rows, **kwargs)
                if table == "feedback" and not failed:
                    failed.append(table)
                    raise StoreError("clickhouse failed to insert into feedback") from \
                        ConnectionResetError("connection reset by peer")

            store.insert = readonly_once  # type: ignore[method-assign]
            async with running(settings, ["scoring"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.enriched"),
                                         [(e.touchpoint.encode(), e.to_bytes()) for e in events])

                async def all_scored() -> bool:
                    return await scored_volume(store) == 120
                await eventually(all_scored, 90, "120 events scored")
                await eventually(
                    lambda: asyncio.to_thread(lambda: group_lag(
                        broker.bootstrap, group, settings.topic("feedback.enriched")) == 0),
                    30, "the scoring group to commit")
            assert failed
            assert await count_stored(store) == {"n": 120, "ids": 120, "late": 0}
            assert await scored_volume(store) == 120

    run(main())
    assert outcomes(group, "transient_retry") > retries


ALERT_RULES = """
rules:
  - {id: escalation-threat, type: event, match: {urgency: [escalation_threat]},
     severity: critical, route: {team: ops, open_case: true}}
"""


def test_a_broker_error_during_alert_publish_loses_no_alert_nor_its_case(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ALERT_RULES, encoding="utf-8")
    settings = settings.model_copy(update={"alert_rules_path": rules, "consumer_backoff_s": 0.1,
                                           "sink_batch_wait_s": 0.2})
    create_topics(settings, broker.bootstrap)
    alerts_topic = settings.topic("alerts")
    real_send = Producer.send_many
    failed: list[str] = []

    async def broker_error_once(self: Producer, topic: str, messages: Any) -> None:
        if topic == alerts_topic and not failed:
            failed.append(topic)
            raise kafka_errors.KafkaConnectionError("connection to the broker lost")
        await real_send(self, topic, messages)

    monkeypatch.setattr(Producer, "send_many", broker_error_once)
    threat = event("t1", "hotline", True, utc_now(), urgency="escalation_threat", customer="c1")

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ["scoring", "alerting"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.enriched"),
                                         [(b"hotline", threat.to_bytes())])

                async def case_opened() -> bool:
                    rows = await store.query("SELECT count() AS n FROM case_events FINAL")
                    return rows[0]["n"] == 1
                await eventually(case_opened, 90, "the alert's case")
                stored = await store.query("SELECT rule_id, status FROM alerts FINAL")
            assert stored == [{"rule_id": "escalation-threat", "status": "firing"}]

    run(main())
    assert failed
    published = [v for _, v in read_topic(broker.bootstrap, alerts_topic)]
    assert [a["rule_id"] for a in published] == ["escalation-threat"]


def raw_events(count: int, marker: str = "") -> list[RawFeedback]:
    now = utc_now()
    texts = ["配送太慢了，等了两个小时", "客服很耐心，问题解决了", "支付失败了三次"]
    return [RawFeedback(event_id=stable_event_id("fault", f"{marker}{i}"), source="fault",
                        external_id=f"{marker}{i}", channel="app", touchpoint="checkout",
                        text=texts[i % 3], occurred_at=now - timedelta(seconds=i),
                        received_at=now) for i in range(count)]


def test_a_produce_timeout_in_nlp_is_retried_inside_the_agent(
        broker: LocalBroker, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.model_copy(update={"consumer_backoff_s": 0.1})
    create_topics(settings, broker.bootstrap)
    enriched_topic = settings.topic("feedback.enriched")
    real_send = Producer.send_many
    failed: list[str] = []

    async def timeout_once(self: Producer, topic: str, messages: Any) -> None:
        if topic == enriched_topic and not failed:
            failed.append(topic)
            raise kafka_errors.KafkaTimeoutError("produce request timed out")
        return await real_send(self, topic, messages)

    monkeypatch.setattr(Producer, "send_many", timeout_once)
    events = raw_events(60)
    group = settings.group("nlp")
    retries = outcomes(group, "transient_retry")

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, producer):
            async with running(settings, ["nlp", "scoring"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.raw"),
                                         [(b"checkout", e.to_bytes()) for e in events])

                async def all_stored() -> bool:
                    return (await count_stored(store))["ids"] == 60
                await eventually(all_stored, 120, "60 events through NLP and scoring")
                await eventually(
                    lambda: asyncio.to_thread(lambda: group_lag(
                        broker.bootstrap, group, settings.topic("feedback.raw")) == 0),
                    60, "the NLP group to commit")
            assert await count_stored(store) == {"n": 60, "ids": 60, "late": 0}
            assert await scored_volume(store) == 60

    run(main())
    assert failed and outcomes(group, "transient_retry") > retries
    assert read_topic(broker.bootstrap, settings.topic("deadletter")) == []


def test_a_record_whose_analysis_raises_is_dead_lettered_alone(
        broker: LocalBroker, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    create_topics(settings, broker.bootstrap)
    real_analyze = Analyzer.analyze

    def analyze(self: Analyzer, events: Sequence[RawFeedback]) -> list[EnrichedFeedback]:
        if any("💥" in e.text for e in events):
            raise IndexError("aspect span out of range")
        return real_analyze(self, events)

    monkeypatch.setattr(Analyzer, "analyze", analyze)
    good = raw_events(30)
    bad = raw_events(1, marker="bad")[0].model_copy(update={"text": "炸了💥"})
    batch = [*good[:15], bad, *good[15:]]

    async def main() -> None:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                store, producer):
            async with running(settings, ["nlp", "scoring"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.raw"),
                                         [(b"checkout", e.to_bytes()) for e in batch])

                async def good_stored() -> bool:
                    return (await count_stored(store))["ids"] == 30
                await eventually(good_stored, 120, "the 30 good events stored")
            assert await count_stored(store) == {"n": 30, "ids": 30, "late": 0}

    run(main())
    letters = [v for _, v in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert [(v["stage"], RawFeedback.model_validate_json(
        base64.b64decode(v["original_base64"])).event_id) for v in letters] == [
        ("nlp", bad.event_id)]
    assert "IndexError: aspect span out of range" in letters[0]["reason"]


def test_a_record_the_store_cannot_take_is_dead_lettered_and_the_rest_stored_once(
        broker: LocalBroker, store_url: str, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    now = utc_now()
    good = [event(f"g{i}", "social", i % 2 == 0, now - timedelta(seconds=i)) for i in range(40)]
    # Built past validation: the wire model refuses followers beyond 2**53 since the bounds
    # branch, so the record is what a direct producer would write.
    huge = event("huge", "social", True, now).model_copy(update={
        "channel": "social", "social": SocialFacts.model_construct(
            platform="weibo", post_id="p1", followers=10**20)})
    batch = [*good[:20], huge, *good[20:]]

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ["scoring"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.enriched"),
                                         [(b"social", e.to_bytes()) for e in batch])

                async def dead_lettered() -> bool:
                    letters = await asyncio.to_thread(read_topic, broker.bootstrap,
                                                      settings.topic("deadletter"))
                    return len(letters) >= 1 and await scored_volume(store) == 40
                await eventually(dead_lettered, 90, "the good events scored and one letter")
            assert await count_stored(store) == {"n": 40, "ids": 40, "late": 0}

    run(main())
    letters = [v for _, v in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert {v["stage"] for v in letters} == {"scoring"}
    assert {json.loads(base64.b64decode(v["original_base64"]))["event_id"]
            for v in letters} == {huge.event_id}


def test_a_store_error_after_a_webhook_delivery_does_not_page_again(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """The receiver answered, then recording the outcome failed: the retried batch records
    the outcome it already has instead of delivering (paging) a second time."""
    from services.alerting.delivery import WebhookDispatcher
    from services.alerting.worker import RulesFile
    from tests.integration.test_webhooks import ALERT, Receiver, _consume

    create_topics(settings, broker.bootstrap)
    with Receiver([200]) as receiver:
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules:\n  - {id: neg, type: event, match: {segments: [VIP]}, "
                         "route: {notify: [pager]}}\nwebhooks:\n"
                         f"  pager: {{url: '{receiver.url}'}}\n", encoding="utf-8")
        alert = ALERT.model_copy(update={"notify": ["pager"]})

        async def main() -> list[dict]:
            async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
                await producer.send_many(settings.topic("alerts"), [(b"k", alert.to_bytes())])
                records = await _consume(broker.bootstrap, settings.topic("alerts"), 1)
                real_insert = store.insert
                failed: list[str] = []

                async def down_once(table: str, rows: Sequence[dict], **kwargs: Any) -> None:
                    if table == "alert_deliveries" and not failed:
                        failed.append(table)
                        raise StoreError("clickhouse failed to insert") from \
                            ConnectionResetError("connection reset by peer")
                    await real_insert(table, rows, **kwargs)

                store.insert = down_once  # type: ignore[method-assign]
                async with httpx.AsyncClient(timeout=2) as client:
                    dispatcher = WebhookDispatcher(settings, store, producer, RulesFile(rules),
                                                   client)
                    with pytest.raises(StoreError):
                        await dispatcher.handle(records)
                    await dispatcher.handle(records)
                return await store.query("SELECT webhook, outcome, attempts FROM "
                                         "alert_deliveries FINAL")

        rows = run(main())
    assert rows == [{"webhook": "pager", "outcome": "delivered", "attempts": 1}]
    assert len(receiver.requests) == 1, "paged once"

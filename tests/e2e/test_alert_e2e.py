"""Alerting end to end on the real broker and both store backends: scoring and alerting run as
in ``voc up``, fed enriched events (so the sentiment of each event is known exactly).

- a negative surge fires exactly one alert (plus exactly one per single-event trigger), whose
  latency (emitted_at - newest breaching event's received_at) is printed;
- a metric flapping across the threshold every minute pages once with flap control, while the
  same data under a rule without it pages again and again (so the test can fail);
- a negative surge mentioning one topic fires the rule scoped to that topic once, while a
  same-volume surge on another topic (at another touchpoint) does not, though it fires the
  unscoped control rule there.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.broker import LocalBroker
from services.core.cem_metrics import window_start
from services.core.events import (
    EnrichedFeedback,
    utc_now,
)
from services.core.kafka import Producer, create_topics
from services.core.settings import Settings
from services.core.store import Store
from tests import factories
from tests.conftest import run
from tests.pipeline_harness import read_topic, running, store_and_producer
from tests.waiting import eventually, stays_true

pytestmark = pytest.mark.slow

VALIDATOR = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                 format_checker=Draft202012Validator.FORMAT_CHECKER)


TOPIC_NAMES = {"logistics_delivery": "物流/配送", "after_sales_returns": "售后/退换"}


def event(n: str, touchpoint: str, negative: bool, occurred_at: datetime, *,
          urgency: str | None = None, segment: str | None = None,
          customer: str | None = None, topic: str = "logistics_delivery") -> EnrichedFeedback:
    score = -0.8 if negative else 0.7
    now = utc_now()
    return factories.enriched(
        score=score, event_id=f"{touchpoint}-{n}", touchpoint=touchpoint,
        text="配送太慢了，我要打12315投诉" if negative else "配送很快，很满意",
        occurred_at=occurred_at, received_at=now, customer_id=customer, segment=segment,
        topics=[factories.topic_tag(topic, TOPIC_NAMES[topic], score)],
        intent="complaint" if negative else "praise",
        urgency=[factories.urgency(urgency)] if urgency else [], enriched_at=now)


async def produce(producer: Producer, settings: Settings, events: list[EnrichedFeedback]) -> None:
    await producer.send_many(settings.topic("feedback.enriched"),
                             [(e.touchpoint.encode(), e.to_bytes()) for e in events])


def alerts_on_topic(settings: Settings, bootstrap: str) -> list[dict]:
    return [value for _, value in read_topic(bootstrap, settings.topic("alerts"))]


async def stored_at_least(store: Store, count: int) -> bool:
    return (await store.query("SELECT count() AS n FROM feedback"))[0]["n"] >= count


async def no_new_alerts(store: Store, for_s: float) -> None:
    """No alert is added or changes status for ``for_s`` seconds (a second firing of a rule
    would have a new id, a resolution a new status); distinct pairs, so merges do not count."""
    query = "SELECT uniqExact(alert_id, status) AS n FROM alerts"
    before = (await store.query(query))[0]["n"]

    async def unchanged() -> bool:
        return (await store.query(query))[0]["n"] == before

    await stays_true(unchanged, for_s, f"no alert row beyond the {before} stored")


def tuned(settings: Settings, tmp_path: Path, rules: str) -> Settings:
    path = tmp_path / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    return settings.model_copy(update={"alert_rules_path": path, "sink_batch_wait_s": 0.2})


SURGE_RULES = """
rules:
  - {id: negative-share-high, type: threshold, metric: negative_share, operator: ">",
     threshold: 0.4, clear_threshold: 0.3, resolve_after_s: 120, lookback_s: 300,
     min_volume: 20, cooldown_s: 1800, severity: critical,
     route: {team: delivery-ops, open_case: true}}
  - {id: escalation-threat, type: event, match: {urgency: [escalation_threat]},
     severity: critical}
  - {id: vip-strongly-negative, type: event, match: {segments: [VIP], sentiment_at_most: -0.6}}
"""


def test_negative_surge_fires_exactly_one_alert(broker: LocalBroker, store_url: str,
                                                settings: Settings, tmp_path: Path) -> None:
    settings = tuned(settings, tmp_path, SURGE_RULES)
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):
                now = utc_now()
                healthy = [event(f"h{i}", tp, i % 10 == 0, now - timedelta(seconds=i % 50))
                           for tp in ("delivery", "hotline") for i in range(60)]
                urgent = [event(f"u{i}", "hotline", True, now, urgency="escalation_threat",
                                customer="c-angry") for i in range(3)]
                vip = [event(f"v{i}", "app_checkout", True, now, segment="VIP", customer="c-vip")
                       for i in range(2)]
                await produce(producer, settings, healthy + urgent + vip)
                await eventually(lambda: stored_at_least(store, 125), 60, "the 125 baseline events")
                for burst in range(10):
                    await produce(producer, settings, [
                        event(f"s{burst}-{i}", "delivery", True, utc_now()) for i in range(20)])
                    await asyncio.sleep(0.3)

                async def surge_alerted() -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback")
                    alerts = await store.query("SELECT rule_id FROM alerts FINAL")
                    return rows[0]["n"] >= 325 and "negative-share-high" in {
                        a["rule_id"] for a in alerts}

                await eventually(surge_alerted, 90, "325 stored events and the surge alert")
                await no_new_alerts(store, 3)
            alerts = await asyncio.to_thread(alerts_on_topic, settings, broker.bootstrap)
            stored = await store.query(
                "SELECT rule_id, touchpoint, status, latency_ms FROM alerts FINAL ORDER BY rule_id")
        assert sorted((a["rule_id"], a["touchpoint"], a["status"]) for a in alerts) == [
            ("escalation-threat", "hotline", "firing"),
            ("negative-share-high", "delivery", "firing"),
            ("vip-strongly-negative", "app_checkout", "firing")]
        for alert in alerts:
            VALIDATOR.validate(alert)
        surge = next(a for a in alerts if a["rule_id"] == "negative-share-high")
        assert surge["team"] == "delivery-ops" and surge["open_case"] is True
        assert surge["value"] > 0.4 and surge["volume"] >= 20
        latency = (datetime.fromisoformat(surge["emitted_at"])
                   - datetime.fromisoformat(surge["latest_received_at"])).total_seconds()
        print(f"surge alert latency {latency:.2f}s (received_at has second precision)")
        assert [(r["rule_id"], r["status"]) for r in stored] == [
            ("escalation-threat", "firing"), ("negative-share-high", "firing"),
            ("vip-strongly-negative", "firing")]
        assert all(r["latency_ms"] is not None for r in stored)

    run(main())


FLAP_RULES = """
rules:
  - {id: tuned, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     clear_threshold: 0.3, resolve_after_s: 120, lookback_s: 60, min_volume: 20,
     cooldown_s: 1800}
  - {id: untuned, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     lookback_s: 60, min_volume: 20, cooldown_s: 0}
"""


def test_flapping_metric_does_not_spam(broker: LocalBroker, store_url: str, settings: Settings,
                                       tmp_path: Path) -> None:
    settings = tuned(settings, tmp_path, FLAP_RULES)
    create_topics(settings, broker.bootstrap)
    minutes = 12
    start = window_start(datetime.now(UTC), 60) - timedelta(minutes=minutes + 1)

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):
                for minute in range(minutes):
                    share = 0.5 if minute % 2 == 0 else 0.2
                    moment = start + timedelta(minutes=minute, seconds=10)
                    await produce(producer, settings, [
                        event(f"m{minute}-{i}", "delivery", i < share * 40, moment)
                        for i in range(40)])

                    async def scored(moment: datetime = moment) -> bool:
                        rows = await store.query(
                            "SELECT volume FROM cem_scores FINAL WHERE touchpoint = 'delivery' "
                            "AND window_seconds = 60 AND channel = '' AND stage = '' "
                            "AND window_start = %(w)s", {"w": window_start(moment, 60)})
                        return bool(rows) and rows[0]["volume"] == 40

                    await eventually(scored, 30, f"minute {minute} to be scored")
                    await asyncio.sleep(1.0)
            alerts = await asyncio.to_thread(alerts_on_topic, settings, broker.bootstrap)
        by_rule = {rule: [a["status"] for a in alerts if a["rule_id"] == rule]
                   for rule in ("tuned", "untuned")}
        print(json.dumps(by_rule))
        assert by_rule["tuned"] == ["firing"]
        assert by_rule["untuned"].count("firing") >= 3, "the control rule should have flapped"

    run(main())


TOPIC_RULES = """
rules:
  - {id: logistics-negative, type: threshold, metric: negative_share, operator: ">",
     threshold: 0.4, clear_threshold: 0.3, lookback_s: 300, min_volume: 20, cooldown_s: 1800,
     severity: critical, scope: {topics: [logistics_delivery]},
     route: {team: delivery-ops, open_case: true}}
  - {id: all-negative, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     lookback_s: 300, min_volume: 20, cooldown_s: 1800}
"""


def test_topic_surge_fires_only_the_rule_scoped_to_its_topic(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    settings = tuned(settings, tmp_path, TOPIC_RULES)
    create_topics(settings, broker.bootstrap)
    surge_topic = {"delivery": "logistics_delivery", "hotline": "after_sales_returns"}

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):
                now = utc_now()
                # Both topics at both touchpoints, 20 % negative each: enough mentions of
                # logistics at the hotline for the scoped rule to decide there (and not fire).
                await produce(producer, settings, [
                    event(f"h{i}", tp, i % 10 in (0, 1), now - timedelta(seconds=i % 50),
                          topic="logistics_delivery" if i % 2 == 0 else "after_sales_returns")
                    for tp in surge_topic for i in range(60)])
                await eventually(lambda: stored_at_least(store, 120), 60, "the 120 baseline events")
                for burst in range(10):
                    await produce(producer, settings, [
                        event(f"s{burst}-{i}", tp, True, utc_now(), topic=topic)
                        for tp, topic in surge_topic.items() for i in range(20)])
                    await asyncio.sleep(0.3)

                async def both_alerted() -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback")
                    alerts = await store.query("SELECT rule_id, touchpoint FROM alerts FINAL")
                    return rows[0]["n"] >= 520 and {("logistics-negative", "delivery"),
                                                    ("all-negative", "hotline")} <= {
                        (a["rule_id"], a["touchpoint"]) for a in alerts}

                await eventually(both_alerted, 90, "520 stored events and both surge alerts")
                await no_new_alerts(store, 3)
            alerts = await asyncio.to_thread(alerts_on_topic, settings, broker.bootstrap)
            stored = await store.query(
                "SELECT topic, mentions, negative_count FROM topic_scores FINAL "
                "WHERE touchpoint = 'hotline' AND channel = '' AND stage = '' "
                "AND window_seconds = %(s)s", {"s": settings.window_seconds})
        assert sorted((a["rule_id"], a["touchpoint"], a["status"]) for a in alerts) == [
            ("all-negative", "delivery", "firing"), ("all-negative", "hotline", "firing"),
            ("logistics-negative", "delivery", "firing")]
        for alert in alerts:
            VALIDATOR.validate(alert)
        scoped = next(a for a in alerts if a["rule_id"] == "logistics-negative")
        assert scoped["topic"] == "logistics_delivery" and scoped["open_case"] is True
        assert scoped["value"] > 0.4 and scoped["volume"] >= 20
        assert "mentions of logistics_delivery" in scoped["message"]
        hotline_logistics = [r for r in stored if r["topic"] == "logistics_delivery"]
        assert sum(r["mentions"] for r in hotline_logistics) >= 20, \
            "the scoped rule had enough mentions at the hotline to decide, and did not fire"

    run(main())

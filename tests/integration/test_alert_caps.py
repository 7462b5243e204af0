"""Alerting's bounds and its order of effects.

Pure logic: the lifecycle map never forgets an open alert and keeps at most its bound of the
others; the per-rule cap admits VOC_ALERT_MAX_PER_RULE firing alerts per period, summarises
the rest in one alert that resolves with the count when the period ends, and never caps a
resolution.

On the real broker and both store backends: a broker error while publishing leaves the
evaluator's state as it was, so the retry publishes the same alert; an event rule deduped by
customer, fed random customer ids, fires its cap's worth of alerts plus one summary, which a
restarted evaluator resolves with the full count.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors
from prometheus_client import REGISTRY

from services.alerting import worker as alerting_worker
from services.alerting.caps import AlertCaps, KeyStates, Owner, Pending
from services.alerting.engine import KeyState
from services.alerting.worker import AlertEvaluator, RulesFile
from services.core.broker import LocalBroker
from services.core.events import Alert, utc_now
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests import factories
from tests.conftest import run
from tests.e2e.test_alert_e2e import event
from tests.pipeline_harness import read_topic, store_and_producer
from tests.scoring_fixtures import records

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OWNERS = {"r": Owner("r", "event", "critical", "ops", None, ("pager",))}


def alert(n: int, status: str = "firing", rule: str = "r") -> Alert:
    return factories.alert(at=T0, alert_id=f"a{n}", dedupe_key=f"{rule}:k{n}", rule_id=rule,
                           rule_type="event", status=status, metric="event_sentiment",
                           operator=None, threshold=None, value=-0.9, volume=1,
                           notify=["pager"])


def pending(n: int, status: str = "firing") -> Pending:
    state = KeyState("ok", None, T0, T0)
    return Pending(alert(n, status), T0, f"r:k{n}", state, state)


def test_open_alerts_are_never_forgotten_and_the_others_are_bounded() -> None:
    states = KeyStates(max_keys=100)
    states.update({f"open{i}": KeyState("firing", f"a{i}", T0, T0) for i in range(150)})
    states.update({f"ok{i}": KeyState("ok", None, T0, T0) for i in range(1000)})
    assert len(states) == 250
    assert all(states.get(f"open{i}").status == "firing" for i in range(150))
    assert "ok0" not in states and "ok999" in states, "the least recently used go first"
    states.update({"open3": KeyState("ok", None, T0, T0)})
    assert states.get("open3").status == "ok"
    assert states.get("never-seen") == KeyState()


def test_the_cap_admits_its_share_then_one_summary_that_resolves_with_the_count() -> None:
    caps = AlertCaps(max_per_rule=3, period_s=3600)
    plan = caps.plan([pending(i) for i in range(10)], OWNERS, T0 + timedelta(minutes=5))
    published = [a for a, _ in plan.alerts]
    assert [a.alert_id for a in published[:3]] == ["a0", "a1", "a2"]
    summary = published[3]
    assert len(published) == 4 and summary.dedupe_key == "r:alert-cap"
    assert (summary.status, summary.open_case, summary.notify) == ("firing", False, ["pager"])
    assert summary.window_start == T0 and summary.window_end == T0 + timedelta(hours=1)
    assert [p.alert.alert_id for p in plan.suppressed] == [f"a{i}" for i in range(3, 10)]
    assert [a.value for a, _ in plan.table_only] == [7.0], "the running count goes to the table"
    caps.commit(plan, OWNERS)

    later = caps.plan([pending(10), pending(0, "resolved")], OWNERS, T0 + timedelta(minutes=30))
    assert [a.alert_id for a, _ in later.alerts] == ["a0"], "resolutions are never capped"
    assert [p.alert.alert_id for p in later.suppressed] == ["a10"]
    caps.commit(later, OWNERS)

    ended = caps.plan([], OWNERS, T0 + timedelta(hours=1, seconds=1))
    [closed] = [a for a, _ in ended.alerts]
    assert (closed.alert_id, closed.status, closed.value) == (summary.alert_id, "resolved", 8.0)
    assert "8 more alerts suppressed" in closed.message
    caps.commit(ended, OWNERS)
    fresh = caps.plan([pending(11)], OWNERS, T0 + timedelta(hours=1, minutes=1))
    assert [a.alert_id for a, _ in fresh.alerts] == ["a11"], "a new period has its own count"


def test_an_uncommitted_plan_changes_nothing() -> None:
    caps = AlertCaps(max_per_rule=1, period_s=3600)
    first = caps.plan([pending(1), pending(2)], OWNERS, T0)
    again = caps.plan([pending(1), pending(2)], OWNERS, T0)
    assert [a.alert_id for a, _ in first.alerts] == [a.alert_id for a, _ in again.alerts]


CAP_RULES = """
rules:
  - {id: escalation-threat, type: event, match: {urgency: [escalation_threat]},
     severity: critical, dedupe_by: customer, route: {team: ops, open_case: true}}
"""


def evaluator_rig(settings: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    path = tmp_path / "rules.yaml"
    path.write_text(CAP_RULES, encoding="utf-8")
    return settings.model_copy(update={"alert_rules_path": path}), path


def test_a_failed_publish_changes_no_state_and_the_retry_publishes_the_same_alert(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    settings, path = evaluator_rig(settings, tmp_path)
    create_topics(settings, broker.bootstrap)
    threat = event("t1", "hotline", True, utc_now(), urgency="escalation_threat", customer="c1")

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            evaluator = AlertEvaluator(settings, store, producer, RulesFile(path))
            real_send = producer.send_many
            calls = []

            async def broker_down_once(topic: str, messages: list) -> None:
                calls.append(topic)
                if len(calls) == 1:
                    raise kafka_errors.KafkaConnectionError("broker went away")
                await real_send(topic, messages)

            producer.send_many = broker_down_once  # type: ignore[method-assign]
            with pytest.raises(kafka_errors.KafkaConnectionError):
                await evaluator.handle_events(records([threat]))
            assert len(evaluator.states) == 0, "no state before the alert was published"
            await evaluator.handle_events(records([threat]))
            await evaluator.handle_events(records([threat]))  # cooling down now: nothing new
            stored = await store.query("SELECT alert_id, rule_id FROM alerts FINAL")
            assert [r["rule_id"] for r in stored] == ["escalation-threat"]
        on_topic = await asyncio.to_thread(read_topic, broker.bootstrap, settings.topic("alerts"))
        assert [v["alert_id"] for _, v in on_topic] == [stored[0]["alert_id"]]

    run(main())


def test_random_customer_ids_fire_the_cap_then_one_summary_resolved_after_a_restart(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings, path = evaluator_rig(settings, tmp_path)
    settings = settings.model_copy(update={"alert_max_per_rule": 5})
    create_topics(settings, broker.bootstrap)
    now = utc_now()
    flood = [event(f"f{i}", "hotline", True, now, urgency="escalation_threat",
                   customer=uuid.uuid4().hex) for i in range(40)]
    before = REGISTRY.get_sample_value("voc_alerts_suppressed_total",
                                       {"rule": "escalation-threat"}) or 0

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            evaluator = AlertEvaluator(settings, store, producer, RulesFile(path))
            await evaluator.handle_events(records(flood[:25]))
            await evaluator.handle_events(records(flood[25:]))
            assert REGISTRY.get_sample_value("voc_alerts_suppressed_total",
                                             {"rule": "escalation-threat"}) == before + 35
            summary = await store.query(
                "SELECT status, value FROM alerts FINAL WHERE dedupe_key = "
                "'escalation-threat:alert-cap'")
            assert summary == [{"status": "firing", "value": 35.0}]

            restarted = AlertEvaluator(settings, store, producer, RulesFile(path))
            await restarted.load_state()
            period_end = (evaluator.caps.period_of(now)
                          + timedelta(seconds=settings.alert_cap_period_s))
            monkeypatch.setattr(alerting_worker, "utc_now",
                                lambda: period_end + timedelta(seconds=1))
            await restarted.flush_caps()
            await restarted.flush_caps()  # nothing more to close
            summary = await store.query(
                "SELECT status, value FROM alerts FINAL WHERE dedupe_key = "
                "'escalation-threat:alert-cap'")
            assert summary == [{"status": "resolved", "value": 35.0}]

    run(main())
    alerts = [v for _, v in read_topic(broker.bootstrap, settings.topic("alerts"))]
    fired = [a for a in alerts if a["dedupe_key"] != "escalation-threat:alert-cap"]
    caps = [a for a in alerts if a["dedupe_key"] == "escalation-threat:alert-cap"]
    assert len(fired) == 5 and all(a["open_case"] for a in fired)
    assert [(a["status"], a["open_case"], a["value"]) for a in caps] == [
        ("firing", False, 1.0), ("resolved", False, 35.0)]
    assert len({a["alert_id"] for a in caps}) == 1
    assert "35 more alerts suppressed" in caps[1]["message"]

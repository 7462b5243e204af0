"""Cases end to end on the real broker and both store backends.

The alerting stage runs (as in ``voc up``); an urgent event's alert opens a case, which pages
its team's webhook; nobody acknowledges it, so it escalates after its SLA to the next team,
whose webhook (a local HTTP receiver) is paged, signed, and so on up the chain; then ack,
comment, resolve and follow-up through the HTTP API (as two operators with their own keys)
produce case events, case rows, MTTA/MTTR figures, and the follow-up as survey feedback on the
raw topic.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from jsonschema import Draft202012Validator

import schemas
from services.alerting.api import create_router
from services.alerting.cases import CaseService
from services.alerting.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from services.core.broker import LocalBroker
from services.core.events import EnrichedFeedback, Sentiment, UrgencyFlag, utc_now
from services.core.kafka import Producer, create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from tests.access_fixtures import principals_file, secured
from tests.conftest import run
from tests.integration.test_webhooks import SECRET, Receiver
from tests.pipeline_harness import read_topic, running
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RULES = """
rules:
  - {{id: escalation-threat, type: event, match: {{urgency: [escalation_threat]}},
     severity: critical, route: {{team: hotline-l1, owner: 张三, open_case: true}}}}
sla:
  critical: {{ack_minutes: 0.03, resolve_hours: 1, escalation: [hotline-l2, hotline-lead]}}
webhooks:
  l1: {{url: '{l1}', format: wecom}}
  l2: {{url: '{l2}', secret_env: {secret_env}}}
  lead: {{url: '{lead}', format: dingtalk}}
teams:
  hotline-l1: {{notify: [l1]}}
  hotline-l2: {{notify: [l2]}}
  hotline-lead: {{notify: [lead]}}
"""


def urgent_event() -> EnrichedFeedback:
    now = utc_now()
    return EnrichedFeedback(
        event_id="urgent-1", source="test", channel="call", touchpoint="hotline",
        text="三天了还没退款，再不处理我就打12315投诉", occurred_at=now, received_at=now,
        customer_id="c-42", sentiment=Sentiment(score=-0.9, label="negative", model="t"),
        topics=[], intent="complaint",
        urgency=[UrgencyFlag(flag="escalation_threat", term="12315", evidence=[(14, 19)])],
        keywords=[], tokens=[], enriched_at=now)


def test_alert_to_escalated_case_to_resolution_and_follow_up(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_L2_SECRET", SECRET)
    with Receiver([200]) as l1, Receiver([502, 200]) as l2, Receiver([200]) as lead:
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES.format(l1=l1.url, l2=l2.url, lead=lead.url,
                                      secret_env="TEST_L2_SECRET"), encoding="utf-8")
        deliveries = _lifecycle(broker, store_url, settings, rules)
    assert [(d["action"], d["team"], d["webhook"], d["outcome"]) for d in deliveries] == [
        ("opened", "hotline-l1", "l1", "delivered"),
        ("escalated", "hotline-l2", "l2", "delivered"),
        ("escalated", "hotline-lead", "lead", "delivered")]
    assert deliveries[1]["attempts"] == 2, "the level-2 receiver failed once: retried"
    [(_, _, opened)] = l1.requests
    assert "新案件" in json.loads(opened)["markdown"]["content"]
    for _, headers, body in l2.requests:
        assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    paged = json.loads(l2.requests[-1][2])
    assert (paged["schema"], paged["action"], paged["team"], paged["escalation_level"]) == (
        "case.v1", "escalated", "hotline-l2", 1)
    [(_, _, top)] = lead.requests
    # markdown gets the parentheses of any filled-in value as full-width look-alikes
    assert "escalated to level 2 （hotline-lead）" in json.loads(top)["markdown"]["text"]


def _lifecycle(broker: LocalBroker, store_url: str, settings: Settings,
               rules: Path) -> list[dict]:
    """Runs the case from the urgent event to its follow-up; returns the case deliveries."""
    keys_file, keys = principals_file(rules.parent, {"李四": {"roles": ["operator"]},
                                                     "王五": {"roles": ["operator"]}})
    as_ = {name: {"X-API-Key": key} for name, key in keys.items()}
    settings = settings.model_copy(update={"alert_rules_path": rules, "case_sla_check_s": 0.5,
                                           "sink_batch_wait_s": 0.2, "webhook_backoff_s": 0.1,
                                           "api_keys_file": keys_file})
    create_topics(settings, broker.bootstrap)

    async def main() -> list[dict]:
        store = await open_store(store_url)
        await migrate(store)
        producer = Producer(broker.bootstrap, client_id="test")
        await producer.start()
        app = FastAPI()
        app.include_router(create_router(CaseService(settings, store, producer)))
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=secured(app, settings)),
                                base_url="http://t", headers=as_["李四"])
        try:
            async with running(settings, ("alerting",), broker.bootstrap, store=store):
                event = urgent_event()
                await producer.send_many(settings.topic("feedback.enriched"),
                                         [(b"hotline", event.to_bytes())])

                async def escalated() -> bool:
                    cases = (await api.get("/v1/cases")).json()
                    return bool(cases) and cases[0]["escalation_level"] >= 2

                await eventually(escalated, 60, "the unacknowledged case to escalate twice")
                case = (await api.get("/v1/cases")).json()[0]
                assert (case["status"], case["team"], case["feedback_event_ids"]) == (
                    "open", "hotline-lead", ["urgent-1"])
                case_id = case["case_id"]
                assert (await api.post(f"/v1/cases/{case_id}/close", json={})).status_code == 409
                for actor, path, body in [
                        ("李四", "ack", {}), ("李四", "assign", {"assignee": "王五"}),
                        ("王五", "comment", {"comment": "已致电客户，安排退款"}),
                        ("王五", "resolve", {}),
                        ("王五", "follow-up", {"outcome": "reached", "rating": 4,
                                              "comment": "退款已到账，客户满意",
                                              "customer_id": "c-42"})]:
                    response = await api.post(f"/v1/cases/{case_id}/{path}", json=body,
                                              headers=as_[actor])
                    assert response.status_code == 200, (path, response.text)
                    await asyncio.sleep(1.1)  # whole seconds apart: DateTime has 1 s precision
                assert (await api.post("/v1/cases/nope/ack", json={})).status_code == 404
                detail = (await api.get(f"/v1/cases/{case_id}")).json()
                metrics = (await api.get("/v1/cases/metrics")).json()

                async def paged() -> bool:
                    rows = await store.query("SELECT count() AS n FROM case_deliveries FINAL")
                    return rows[0]["n"] >= 3

                await eventually(paged, 30, "the opened case and both escalations to be paged")
            case_events = read_topic(broker.bootstrap, settings.topic("cases"))
            raw = read_topic(broker.bootstrap, settings.topic("feedback.raw"))
            rows = await store.query("SELECT action, actor FROM case_events FINAL ORDER BY seq")
            deliveries = await store.query(
                "SELECT action, team, webhook, outcome, attempts FROM case_deliveries FINAL "
                "ORDER BY seq")
        finally:
            await api.aclose()
            await producer.stop()
            await store.close()

        actions = [e["action"] for e in detail["history"]]
        assert actions[:3] == ["opened", "escalated", "escalated"], \
            "ack missed at level 1 too: escalates to the chain's last team"
        assert actions[3:] == ["acknowledged", "assigned", "commented", "resolved", "followed_up"]
        assert detail["case"]["team"] == "hotline-lead" and detail["case"]["assignee"] == "王五"
        assert [r["action"] for r in rows] == actions
        assert [r["actor"] for r in rows[3:]] == ["李四", "李四", "王五", "王五", "王五"], \
            "each action is recorded as the principal who authenticated it"
        validator = Draft202012Validator(schemas.topic_schema("case.v1"),
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert [e["action"] for _, e in case_events] == actions
        for _, payload in case_events:
            validator.validate(payload)
        assert len(metrics) == 1
        figures = metrics[0]
        assert (figures["team"], figures["touchpoint"], figures["cases"],
                figures["unresolved"]) == ("hotline-lead", "hotline", 1, 0)
        assert 0 < figures["mtta_s"] < figures["mttr_s"]
        assert figures["max_escalation_level"] == 2
        [(_, feedback)] = raw
        assert (feedback["channel"], feedback["ratings"]["csat"], feedback["text"]) == (
            "survey", 4, "退款已到账，客户满意")
        assert feedback["metadata"]["case_id"] == case_id
        return deliveries

    return run(main())


def test_voc_up_serves_the_cases_api_next_to_ingest(broker: LocalBroker, settings: Settings,
                                                     tmp_path: Path) -> None:
    """With a store in the process (as in ``voc up``), the API process also serves /v1/cases."""
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            async with running(settings, ("ingest",), broker.bootstrap, store=store) as url:
                async with httpx.AsyncClient(base_url=url) as client:
                    assert (await client.get("/v1/cases")).json() == []
                    missing = await client.post("/v1/cases/nope/ack", json={})
                    assert missing.status_code == 404
                    metrics = await client.get("/v1/cases/metrics")
                    assert metrics.status_code == 200 and metrics.json() == []
        finally:
            await store.close()

    run(main())

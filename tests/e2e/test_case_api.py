"""The cases API on the real broker and both store backends, for the transitions the end-to-end
escalation test does not walk (start, close, reopen, comment after close, forbidden moves), and
the follow-up closing the loop in the data: its rating goes through NLP and scoring into the
``feedback`` table and the touchpoint's CSAT like any customer's answer. The callers are
operators with their own keys, and each case event records the key's principal as its actor."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.alerting.api import create_router
from services.alerting.cases import CaseService, open_case
from services.alerting.rules import Sla
from services.core.broker import LocalBroker
from services.core.events import Alert, utc_now
from services.core.kafka import Producer, create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import Store, open_store
from tests import factories
from tests.access_fixtures import principals_file, secured
from tests.conftest import run
from tests.pipeline_harness import read_topic, running
from tests.waiting import eventually


def alert() -> Alert:
    now = utc_now() - timedelta(minutes=5)
    return factories.alert(at=now, alert_id="a-api", dedupe_key="vip:hotline:customer=c1",
                           rule_id="vip", rule_type="event", severity="warning",
                           touchpoint="hotline", channel="call", stage="售后",
                           metric="event_sentiment", operator=None, threshold=-0.6, value=-0.9,
                           volume=1, team="vip-care", owner="张三", event_ids=["e-1"],
                           latest_received_at=now, message="VIP 客户强烈不满")


OPERATORS = {"李四": {"roles": ["operator"]}, "王五": {"roles": ["operator"]}}


@asynccontextmanager
async def api(settings: Settings, store_url: str, bootstrap: str, folder: Path
              ) -> AsyncIterator[tuple[httpx.AsyncClient, str, Store, dict[str, dict]]]:
    """The cases API over a real store and producer, with one opened case in it, and the
    request headers of each operator."""
    path, keys = principals_file(folder, OPERATORS)
    settings = settings.model_copy(update={"api_keys_file": path})
    store = await open_store(store_url)
    await migrate(store)
    producer = Producer(bootstrap, client_id="test")
    await producer.start()
    service = CaseService(settings, store, producer)
    opened = open_case(alert(), Sla(ack_minutes=30, resolve_hours=4), utc_now())
    await service.write([opened])
    app = FastAPI()
    app.include_router(create_router(service))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=secured(app, settings)),
                               base_url="http://t")
    headers = {name: {"X-API-Key": key} for name, key in keys.items()}
    try:
        yield client, opened.case_id, store, headers
    finally:
        await client.aclose()
        await producer.stop()
        await store.close()


def test_start_close_reopen_and_forbidden_moves(broker: LocalBroker, store_url: str,
                                                settings: Settings, tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)

    async def main() -> tuple[list, list, list]:
        async with api(settings, store_url, broker.bootstrap, tmp_path) as (
                client, case_id, store, headers):
            async def post(path: str, **body: object) -> httpx.Response:
                return await client.post(f"/v1/cases/{case_id}/{path}", json=body,
                                         headers=headers["李四"])

            answers = [
                ("start", (await post("start")).status_code),
                ("follow-up too early", (await post("follow-up", outcome="reached"))
                 .status_code),
                ("resolve", (await post("resolve", comment="已退款")).status_code),
                ("close", (await post("close")).status_code),
                ("assign when closed", (await post("assign", assignee="王五")).status_code),
                ("comment when closed", (await post("comment", comment="客户来电致谢"))
                 .status_code),
                ("no credentials", (await client.post(f"/v1/cases/{case_id}/reopen", json={}))
                 .status_code),
                ("actor in the body", (await post("reopen", actor="冒名者")).status_code),
            ]
            reopened = await post("reopen", comment="客户再次投诉")
            answers.append(("reopen", reopened.status_code))
            closing_open = await post("close")
            assert "allowed now" in closing_open.json()["detail"]
            answers.append(("close when open", closing_open.status_code))
            case = reopened.json()
            listed = (await client.get("/v1/cases", params={"status": "open",
                                                              "team": "vip-care"},
                                       headers=headers["王五"])).json()
            metrics = (await client.get("/v1/cases/metrics", headers=headers["王五"])).json()
            rows = await store.query(
                "SELECT seq, action, status, actor FROM case_events FINAL WHERE case_id = %(id)s "
                "ORDER BY seq", {"id": case_id})
            assert (case["status"], case["resolved_at"], case["closed_at"]) == ("open", None, None)
            assert case["acknowledged_at"] is not None, "start counted as the acknowledgement"
            assert [c["case_id"] for c in listed] == [case_id]
            assert [(m["cases"], m["unresolved"], m["mttr_s"]) for m in metrics] == [(1, 1, None)]
        topic = read_topic(broker.bootstrap, settings.topic("cases"))
        return answers, rows, topic

    answers, rows, topic = run(main())
    assert answers == [("start", 200), ("follow-up too early", 409), ("resolve", 200),
                       ("close", 200), ("assign when closed", 409), ("comment when closed", 200),
                       ("no credentials", 401), ("actor in the body", 422), ("reopen", 200),
                       ("close when open", 409)]
    expected = [(1, "opened", "open"), (2, "started", "in_progress"), (3, "resolved", "resolved"),
                (4, "closed", "closed"), (5, "commented", "closed"), (6, "reopened", "open")]
    assert [(r["seq"], r["action"], r["status"]) for r in rows] == expected
    assert [r["actor"] for r in rows] == ["alerting"] + ["李四"] * 5
    assert [(e["seq"], e["action"], e["status"]) for _, e in topic] == expected


@pytest.mark.slow
def test_follow_up_rating_flows_through_nlp_and_scoring(broker: LocalBroker, store_url: str,
                                                        settings: Settings,
                                                        tmp_path: Path) -> None:
    """The loop closes in the data: the callback's rating is stored as the CSAT of a survey
    answer on the case's touchpoint and counted in its scores."""
    create_topics(settings, broker.bootstrap)

    async def main() -> tuple[dict, list[dict]]:
        async with api(settings, store_url, broker.bootstrap, tmp_path) as (
                client, case_id, store, headers):
            async with running(settings, ("nlp", "scoring"), broker.bootstrap, store=store):
                assert (await client.post(f"/v1/cases/{case_id}/resolve", json={},
                                          headers=headers["王五"])).status_code == 200
                answer = await client.post(f"/v1/cases/{case_id}/follow-up", json={
                    "outcome": "reached", "rating": 5,
                    "comment": "退款已到账，服务很好", "customer_id": "c1"},
                    headers=headers["王五"])
                assert answer.status_code == 200, answer.text
                event_id = answer.json()["feedback_event_id"]

                async def stored() -> bool:
                    rows = await store.query("SELECT count() AS n FROM cem_scores FINAL "
                                             "WHERE touchpoint = 'hotline' AND csat_responses > 0")
                    return rows[0]["n"] > 0

                await eventually(stored, 90, "the follow-up to be scored")
            [row] = await store.query(
                "SELECT source, channel, stage, csat, customer_id, text, metadata FROM "
                "feedback FINAL WHERE event_id = %(id)s", {"id": event_id})
            scores = await store.query(
                "SELECT csat, csat_responses, csat_satisfied FROM cem_scores FINAL "
                "WHERE touchpoint = 'hotline' AND channel = '' AND stage = '' "
                "AND window_seconds = %(s)s", {"s": settings.window_seconds})
        return row, scores

    row, scores = run(main())
    assert json.loads(row.pop("metadata"))["operator"] == "王五", "recorded by the operator"
    assert row == {"source": "tingjian-cases", "channel": "survey", "stage": "售后", "csat": 5,
                   "customer_id": "c1", "text": "退款已到账，服务很好"}
    assert [(s["csat_responses"], s["csat_satisfied"]) for s in scores] == [(1, 1)]

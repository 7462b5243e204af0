"""Principals limited to touchpoints and teams, on a running API over a real store.

A viewer limited to ``delivery`` and an operator limited to ``delivery`` and team ``cx-ops`` get
403 when they ask for anything else by name, and lists, sums and the live stream (snapshot and
pushes) leave everything else out. Also: the cap on open streams per principal and on the time
range one query may scan.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.alerting.cases import case_row, open_case
from services.alerting.rules import Sla
from services.core.broker import LocalBroker
from services.core.events import Alert, utc_now
from services.core.settings import Settings
from tests import factories
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.pipeline_harness import running
from tests.scoring_fixtures import event, records, scoring_rig
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PRINCIPALS = {
    "viewer-delivery": {"roles": ["viewer"], "touchpoints": ["delivery"]},
    "operator-cx": {"roles": ["operator"], "touchpoints": ["delivery"], "teams": ["cx-ops"]},
    "viewer-all": {"roles": ["viewer"]},
}
CASES = {"delivery/cx-ops": ("delivery", "cx-ops"), "hotline/vip": ("hotline", "vip-care"),
         "delivery/other": ("delivery", "returns")}


def alert(name: str, touchpoint: str, team: str) -> Alert:
    now = utc_now() - timedelta(minutes=5)
    return factories.alert(at=now, alert_id=f"a-{name}", dedupe_key=name, severity="warning",
                           touchpoint=touchpoint, team=team, latest_received_at=now,
                           message=f"{touchpoint} 负面占比过高")


def alert_row(a: Alert) -> dict[str, Any]:
    return {"alert_id": a.alert_id, "dedupe_key": a.dedupe_key, "rule_id": a.rule_id,
            "severity": a.severity, "status": a.status, "touchpoint": a.touchpoint,
            "metric": a.metric, "operator": a.operator, "threshold": a.threshold,
            "value": a.value, "volume": a.volume, "window_start": a.window_start,
            "window_end": a.window_end, "fired_at": a.fired_at, "message": a.message,
            "team": a.team, "inserted_ms": int(time.time() * 1000)}


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of a server-sent event stream."""
    kind = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind:
            yield kind, json.loads(line.removeprefix("data: "))
            kind = None


def test_touchpoint_and_team_limits_apply_to_every_query(
        broker: LocalBroker, settings: Settings, store_url: str, tmp_path: Path) -> None:
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    settings = settings.model_copy(update={"api_keys_file": keys_file,
                                           "stream_max_per_principal": 2})
    as_ = {name: {"X-API-Key": key} for name, key in keys.items()}
    now = utc_now().replace(microsecond=0)
    window = {"from": (now - timedelta(hours=1)).isoformat(),
              "to": (now + timedelta(minutes=1)).isoformat()}
    fixture = [event(f"{tp}-{i}", now - timedelta(minutes=10, seconds=i), touchpoint=tp,
                     score=-0.6 if i % 2 else 0.7, topics=[("logistics_delivery", -0.5)])
               for tp in ("delivery", "hotline") for i in range(4)]

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(fixture))
            alerts = {name: alert(name.replace("/", "-"), tp, team)
                      for name, (tp, team) in CASES.items()}
            await rig.store.insert("alerts", [alert_row(a) for a in alerts.values()])
            opened = {name: open_case(a, Sla(ack_minutes=30, resolve_hours=4), now)
                      for name, a in alerts.items()}
            await rig.store.insert("case_events", [case_row(c, int(time.time() * 1000))
                                                   for c in opened.values()])
            case_ids = {name: c.case_id for name, c in opened.items()}
            async with running(settings, ("ingest",), broker.bootstrap, store=rig.store) as url, \
                    httpx.AsyncClient(base_url=url, timeout=30) as client:
                await check_queries(client, as_, window)
                await check_cases(client, as_, case_ids, rig.store)
                await check_stream(client, as_, rig.store)
                await check_stream_cap(client, as_)
                await check_range_cap(client, as_)

    run(scenario())


async def check_queries(client: httpx.AsyncClient, as_: dict, window: dict) -> None:
    limited, everyone = as_["viewer-delivery"], as_["viewer-all"]

    async def get(path: str, who: dict, **params: str) -> httpx.Response:
        return await client.get(path, params={**window, **params}, headers=who)

    touchpoints = (await client.get("/v1/touchpoints", headers=limited)).json()["touchpoints"]
    assert [t["touchpoint"] for t in touchpoints] == ["delivery"]
    all_touchpoints = (await client.get("/v1/touchpoints", headers=everyone)).json()
    assert [t["touchpoint"] for t in all_touchpoints["touchpoints"]] == ["delivery", "hotline"]
    for path in ("/v1/scores", "/v1/drivers", "/v1/feedback"):
        refused = await get(path, limited, touchpoint="hotline")
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["errors"][0]["loc"] == ["query", "touchpoint"]
        assert (await get(path, limited, touchpoint="delivery")).status_code == 200, path
    scores = (await get("/v1/scores", limited, window="1m")).json()["rows"]
    assert scores and {r["touchpoint"] for r in scores} == {"delivery"}
    assert {r["touchpoint"] for r in (await get("/v1/scores", everyone, window="1m"))
            .json()["rows"]} == {"delivery", "hotline"}
    drivers = (await get("/v1/drivers", limited)).json()["touchpoints"]
    assert [d["touchpoint"] for d in drivers] == ["delivery"]
    feedback = (await get("/v1/feedback", limited)).json()
    assert feedback["total"] == 4 and {i["touchpoint"] for i in feedback["items"]} == {"delivery"}
    assert (await get("/v1/feedback", everyone)).json()["total"] == 8
    journey = (await get("/v1/journey", limited)).json()
    assert journey["touchpoints"] == ["delivery"], "the journey map is within scope"
    assert {c["touchpoint"] for c in journey["cells"]} == {"delivery"}
    assert {c["touchpoint"] for c in (await get("/v1/journey", everyone)).json()["cells"]} \
        == {"delivery", "hotline"}


async def check_cases(client: httpx.AsyncClient, as_: dict, case_ids: dict, store: Any) -> None:
    viewer, operator = as_["viewer-delivery"], as_["operator-cx"]
    listed = (await client.get("/v1/cases", headers=viewer)).json()
    assert sorted(c["case_id"] for c in listed) == sorted(
        [case_ids["delivery/cx-ops"], case_ids["delivery/other"]])
    assert [c["case_id"] for c in (await client.get("/v1/cases", headers=operator)).json()] == \
        [case_ids["delivery/cx-ops"]], "the operator's teams limit it further"
    assert (await client.get("/v1/cases", params={"touchpoint": "hotline"},
                             headers=viewer)).status_code == 403
    assert (await client.get("/v1/cases", params={"team": "vip-care"},
                             headers=operator)).status_code == 403
    assert (await client.get(f"/v1/cases/{case_ids['hotline/vip']}",
                             headers=viewer)).status_code == 403
    assert (await client.get(f"/v1/cases/{case_ids['delivery/other']}",
                             headers=viewer)).status_code == 200
    metrics = (await client.get("/v1/cases/metrics", headers=operator)).json()
    assert [(m["team"], m["touchpoint"]) for m in metrics] == [("cx-ops", "delivery")]
    for name in ("hotline/vip", "delivery/other"):
        refused = await client.post(f"/v1/cases/{case_ids[name]}/ack", json={}, headers=operator)
        assert refused.status_code == 403, (name, refused.text)
    moved = await client.post(f"/v1/cases/{case_ids['delivery/cx-ops']}/assign",
                              json={"assignee": "王五", "team": "vip-care"}, headers=operator)
    assert moved.status_code == 403, "may not hand a case to a team outside its own"
    acked = await client.post(f"/v1/cases/{case_ids['delivery/cx-ops']}/ack", json={},
                              headers=operator)
    assert acked.status_code == 200 and acked.json()["actor"] == "operator-cx"
    rows = await store.query("SELECT case_id, action FROM case_events FINAL WHERE seq > 1")
    assert [(r["case_id"], r["action"]) for r in rows] == [
        (case_ids["delivery/cx-ops"], "acknowledged")], "the refused actions changed nothing"


async def check_stream(client: httpx.AsyncClient, as_: dict, store: Any) -> None:
    async with client.stream("GET", "/v1/stream", headers=as_["viewer-delivery"]) as response:
        assert response.status_code == 200
        events = sse_events(response)
        kind, snapshot = await anext(events)
        assert kind == "snapshot"
        assert snapshot["scores"] and {r["touchpoint"] for r in snapshot["scores"]} == {"delivery"}
        assert {a["touchpoint"] for a in snapshot["alerts"]} == {"delivery"}
        fresh_ms = int(time.time() * 1000) + 1000
        start = utc_now().replace(second=0, microsecond=0)
        await store.insert("cem_scores", [
            {"touchpoint": tp, "channel": "", "stage": "", "window_seconds": 60,
             "window_start": start, "volume": 3, "negative_count": 1, "computed_ms": fresh_ms}
            for tp in ("hotline", "delivery")])
        await store.insert("alerts", [alert_row(alert("late-hotline", "hotline", "vip-care")),
                                      alert_row(alert("late-delivery", "delivery", "cx-ops"))])
        seen: dict[str, set[str]] = {}

        async def pushed() -> None:
            async for kind, data in events:
                seen.setdefault(kind, set()).update(r["touchpoint"] for r in data["rows"])
                if {"scores", "alerts"} <= set(seen):
                    return

        await asyncio.wait_for(pushed(), 30)
        assert seen == {"scores": {"delivery"}, "alerts": {"delivery"}}, seen


async def check_stream_cap(client: httpx.AsyncClient, as_: dict) -> None:
    """Two open streams per principal (the test's setting); a third is refused until one
    closes, and another principal is not affected."""
    me = as_["viewer-all"]
    async with client.stream("GET", "/v1/stream", headers=me) as first, \
            client.stream("GET", "/v1/stream", headers=me) as second:
        assert (first.status_code, second.status_code) == (200, 200)
        third = await client.get("/v1/stream", headers=me)
        assert third.status_code == 429
        assert "VOC_STREAM_MAX_PER_PRINCIPAL" in third.json()["detail"]
        async with client.stream("GET", "/v1/stream", headers=as_["viewer-delivery"]) as other:
            assert other.status_code == 200

    async def reopened() -> bool:
        async with client.stream("GET", "/v1/stream", headers=me) as again:
            return again.status_code == 200

    await eventually(reopened, 30, "a closed stream to give its slot back")


async def check_range_cap(client: httpx.AsyncClient, as_: dict) -> None:
    now = utc_now()
    for path in ("/v1/scores", "/v1/drivers", "/v1/feedback", "/v1/journey"):
        answer = await client.get(path, headers=as_["viewer-all"], params={
            "from": (now - timedelta(days=400)).isoformat(), "to": now.isoformat()})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["errors"][0]["loc"] == ["query", "from"]
        assert "VOC_QUERY_MAX_RANGE_DAYS" in answer.json()["errors"][0]["msg"]
    metrics = await client.get("/v1/cases/metrics", params={"days": 400},
                               headers=as_["viewer-all"])
    assert metrics.status_code == 400 and "VOC_QUERY_MAX_RANGE_DAYS" in metrics.text

"""The query API on both store backends, over the hand-computed fixture set.

The app is the real composition (``services.api.create_app``) over a real store filled by the
real scorer; requests go through httpx's ASGI transport.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.cem_metrics import SCORE_METRICS
from services.core.settings import Settings
from tests.conftest import run
from tests.scoring_fixtures import (
    EXPECTATIONS_DOC,
    FIXTURE,
    MINUTE_ALL,
    T0,
    records,
    scoring_rig,
)

HOUR = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}


def test_query_api(store_url: str, settings: Settings, broker: LocalBroker,
                   tmp_path: Path) -> None:
    targets = tmp_path / "expectations.yaml"
    targets.write_text(yaml.safe_dump(EXPECTATIONS_DOC, allow_unicode=True), encoding="utf-8")
    settings = settings.model_copy(update={"expectations_path": targets,
                                           "journey_order": ["app_checkout", "delivery"]})

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(FIXTURE))
            app = create_app(settings, broker.bootstrap, rig.store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                await check_touchpoints(client)
                await check_scores(client)
                await check_drivers(client)
                await check_feedback(client)
                await check_journey(client)
                await check_bad_parameters(client)
                await check_documented(client)

    run(scenario())


async def get(client: httpx.AsyncClient, path: str, **params: str | list[str]) -> dict:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def check_touchpoints(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/touchpoints")
    assert body["touchpoints"] == [{
        "touchpoint": "delivery", "events": 5, "first_day": "2026-11-23T00:00:00Z",
        "last_day": "2026-11-23T00:00:00Z", "channels": ["app", "social"],
        "stages": sorted(["unknown", "售中", "售后"]), "too_late_events": 0}]


async def check_scores(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/scores", touchpoint="delivery", window="1m",
                     to=(T0 + timedelta(minutes=5)).isoformat(), **{"from": T0.isoformat()})
    assert [r["window_start"] for r in body["rows"]] == ["2026-11-23T10:00:00Z",
                                                         "2026-11-23T10:03:00Z"]
    first = body["rows"][0]
    assert (first["channel"], first["stage"], first["window"]) == ("", "", "1m")
    for metric in SCORE_METRICS:
        assert first[metric] == pytest.approx(MINUTE_ALL[metric]), metric
    assert first["counts"]["nps_responses"] == 3
    assert first["urgent_flags"]["escalation_threat"] == 2
    assert {e["metric"]: e["gap"] for e in first["expectations"]}["nps"] == pytest.approx(-30)

    nps = await get(client, "/v1/scores", touchpoint="delivery", window="5m", metric="nps",
                    **HOUR)
    assert nps["rows"] == [{
        "touchpoint": "delivery", "channel": "", "stage": "", "window": "5m",
        "window_start": "2026-11-23T10:00:00Z", "window_end": "2026-11-23T10:05:00Z",
        "metric": "nps", "value": 25.0, "responses": 4, "target": 30.0, "gap": -5.0}]
    csat = await get(client, "/v1/scores", touchpoint="delivery", window="1h", metric="csat",
                     channel="app", stage="售中", **HOUR)
    # e1 (5), e2 (2), e5 (3): one of three satisfied.
    assert [(r["value"], r["responses"]) for r in csat["rows"]] == [(pytest.approx(100 / 3), 3)]
    day = await get(client, "/v1/scores", window="1d", metric="volume",
                    **{"from": "2026-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z"})
    assert [r["value"] for r in day["rows"]] == [5]
    limited = await get(client, "/v1/scores", window="1m", limit="1", **HOUR)
    assert len(limited["rows"]) == 1 and limited["truncated"] is True


async def check_drivers(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/drivers", touchpoint="delivery", **HOUR)
    assert body["window"] == "1h" and body["impact_metric"] == "mean_sentiment"
    [delivery] = body["touchpoints"]
    assert delivery["volume"] == 5
    ranked = {f["topic"]: f for f in delivery["key_experiences"]}
    # service_attitude (e3): topic sentiment -0.9 -> experience 0.5, gap 0.5 - 7 = -6.5;
    # importance from data: with e3 -0.9, without (-0.2 + 0.9) / 4 = 0.175 -> 5 x 1.075.
    attitude = ranked["service_attitude"]
    assert attitude["gap"] == pytest.approx(-6.5)
    assert attitude["importance"] == pytest.approx(5.375)
    assert attitude["importance_source"] == "data:sentiment"
    assert attitude["importance_sample"] == {"with_topic": 1, "without_topic": 4}
    assert attitude["weighted"] == pytest.approx(-6.5 * 5.375)
    # logistics_delivery: configured importance 9; mean (0.9 - 0.8 + 0.6) / 3 -> experience
    # 5 x (1 + 0.2333) = 6.1667, gap -0.8333, weighted -7.5; impact on mean sentiment:
    # -0.04 overall minus -0.45 without e1, e2, e5 = +0.41.
    logistics = ranked["logistics_delivery"]
    assert (logistics["importance"], logistics["importance_source"]) == (9, "config")
    assert logistics["weighted"] == pytest.approx(-7.5)
    assert logistics["impact"]["impact"] == pytest.approx(0.41)
    # waiting_time (e2): experience 1.5, gap -5.5; importance 5 x |-0.6 - 0.1| = 3.5 -> -19.25.
    assert ranked["waiting_time"]["weighted"] == pytest.approx(-19.25)
    assert [f["topic"] for f in delivery["key_experiences"]] == [
        "service_attitude", "waiting_time", "logistics_delivery"]
    assert [f["rank"] for f in delivery["key_experiences"]] == [1, 2, 3]
    # Quadrant cuts: mean importance (5.375 + 9 + 3.5) / 3 = 5.9583, mean experience
    # (0.5 + 6.1667 + 1.5) / 3 = 2.7222: logistics is important and at par (keep up), the
    # other two below both (low priority).
    assert delivery["quadrant_cuts"]["importance"] == pytest.approx(17.875 / 3)
    assert delivery["quadrant_cuts"]["performance"] == pytest.approx((0.5 + 37 / 6 + 1.5) / 3)
    assert {f["topic"]: f["quadrant"] for f in delivery["key_experiences"]} == {
        "logistics_delivery": "keep_up", "service_attitude": "low_priority",
        "waiting_time": "low_priority"}
    social = await get(client, "/v1/drivers", channel="social", **HOUR)
    # social: e3 (service_attitude, -0.9) and e4 (no topic); attitude's gap -6.5, importance
    # from data 5 x |-0.9 - 0.0| = 4.5.
    [only] = social["touchpoints"][0]["key_experiences"]
    assert (social["channel"], only["topic"], only["mentions"]) == ("social", "service_attitude", 1)
    assert only["importance"] == pytest.approx(4.5)
    assert only["importance_sample"] == {"with_topic": 1, "without_topic": 1}
    by_nps = await get(client, "/v1/drivers", impact_metric="nps", importance="nps", **HOUR)
    logistics = {f["topic"]: f for f in by_nps["touchpoints"][0]["key_experiences"]}[
        "logistics_delivery"]
    # NPS 25 overall; without e1, e2, e5 only e4 (8, passive) remains -> 0; impact +25.
    assert logistics["impact"] == {"metric": "nps", "overall": 25.0, "without_topic": 0.0,
                                   "impact": 25.0}


async def check_feedback(client: httpx.AsyncClient) -> None:
    day = {"from": "2026-11-23T00:00:00+08:00", "to": "2026-11-24T00:00:00+08:00"}

    async def ids(**params: str | list[str]) -> list[str]:
        body = await get(client, "/v1/feedback", **day, **params)
        assert body["total"] >= len(body["items"])
        return [item["event_id"] for item in body["items"]]

    assert await ids() == ["e5", "e4", "e3", "e2", "e1"]
    assert await ids(q="配送") == ["e2", "e1"]
    assert await ids(topic="logistics_delivery") == ["e5", "e2", "e1"]
    assert await ids(sentiment="negative", channel="social") == ["e3"]
    assert await ids(intent="complaint") == ["e3", "e2"]
    assert await ids(stage="unknown") == ["e4"]
    assert await ids(stage="售后", touchpoint="delivery") == ["e3"]
    assert await ids(page="2", page_size="2") == ["e3", "e2"]
    assert await ids(event_id=["e1", "e3", "e1", "nope"]) == ["e3", "e1"], \
        "an alert's quoted comments, by id"
    assert await ids(event_id=["e1", "e2", "e3"], topic="waiting_time") == ["e2"]
    page = await get(client, "/v1/feedback", page="3", page_size="2", **day)
    assert page["total"] == 5 and [i["event_id"] for i in page["items"]] == ["e1"]
    item = (await get(client, "/v1/feedback", q="12315", **day))["items"][0]
    assert item["ratings"] == {"nps": 3, "csat": 2, "ces": 6}
    assert item["topics"] == [
        {"id": "logistics_delivery", "name": "logistics_delivery", "sentiment": -0.8,
         "evidence": [[0, 1]]},
        {"id": "waiting_time", "name": "waiting_time", "sentiment": -0.7, "evidence": [[0, 1]]}]
    assert item["urgent_flags"] == ["escalation_threat"] and item["scored"] is True


async def check_journey(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/journey", **HOUR)
    assert body["window"] == "1h", "an aligned range sums its coarsest windows"
    assert body["touchpoints"] == ["app_checkout", "delivery"], \
        "VOC_JOURNEY_ORDER first, listed ones even without data"
    assert body["stages"] == ["售前", "售中", "售后"]
    cells = {(c["touchpoint"], c["stage"]): c for c in body["cells"]}
    assert set(cells) == {("delivery", "售中"), ("delivery", "售后")}, "e4 has no stage"
    # 售中: e1 0.8, e2 -0.6, e5 0.5 -> mean 0.7 / 3; e2 negative and a complaint; CES 2, 6, 3.
    mid = cells[("delivery", "售中")]
    assert mid["volume"] == 3
    assert mid["metrics"]["mean_sentiment"] == pytest.approx(0.7 / 3)
    assert mid["experience"] == pytest.approx(5 * (0.7 / 3 + 1))
    assert mid["metrics"]["negative_share"] == pytest.approx(1 / 3)
    assert mid["metrics"]["complaint_rate"] == pytest.approx(1 / 3)
    assert mid["metrics"]["ces"] == pytest.approx(11 / 3)
    # 售后: e3 alone, negative, a complaint, no CES answer.
    after = cells[("delivery", "售后")]["metrics"]
    assert after["negative_share"] == 1.0 and after["complaint_rate"] == 1.0
    assert after["ces"] is None
    # Not aligned to an hour: summed from the base windows; 10:00-10:02 holds e1-e4 only.
    minute = await get(client, "/v1/journey", **{
        "from": T0.isoformat(), "to": (T0 + timedelta(minutes=2)).isoformat()})
    assert minute["window"] == "1m"
    assert {(c["stage"], c["volume"]) for c in minute["cells"]} == {("售中", 2), ("售后", 1)}
    only_social = await get(client, "/v1/journey", channel="social", **HOUR)
    assert [(c["stage"], c["volume"]) for c in only_social["cells"]] == [("售后", 1)]


BAD = [
    ("/v1/scores", {"metric": "happiness"}, "metric"),
    ("/v1/scores", {"window": "2m"}, "window"),
    ("/v1/scores", {"from": "2026-11-23T11:00:00Z", "to": "2026-11-23T10:00:00Z"}, "from"),
    ("/v1/scores", {"from": "2026-11-23T10:00:00"}, "from"),
    ("/v1/scores", {"to": "yesterday"}, "to"),
    ("/v1/scores", {"stage": "售后服务"}, "stage"),
    ("/v1/scores", {"limit": "0"}, "limit"),
    ("/v1/drivers", {"impact_metric": "ces"}, "impact_metric"),
    ("/v1/drivers", {"importance": "gut"}, "importance"),
    ("/v1/drivers", {"stage": "after"}, "stage"),
    ("/v1/feedback", {"page_size": "0"}, "page_size"),
    ("/v1/feedback", {"page_size": "500"}, "page_size"),
    ("/v1/feedback", {"page_size": "ten"}, "page_size"),
    ("/v1/feedback", {"page": "0"}, "page"),
    ("/v1/feedback", {"sentiment": "angry"}, "sentiment"),
    ("/v1/feedback", {"intent": "rant"}, "intent"),
    ("/v1/feedback", {"event_id": [f"e{i}" for i in range(51)]}, "event_id"),
    ("/v1/feedback", {"event_id": "e" * 65}, "event_id"),
    ("/v1/journey", {"from": "2026-11-23T11:00:00Z", "to": "2026-11-23T10:00:00Z"}, "from"),
]


async def check_bad_parameters(client: httpx.AsyncClient) -> None:
    for path, params, parameter in BAD:
        response = await client.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        problem = response.json()
        assert problem["status"] == 400 and parameter in problem["detail"], (path, params)
        assert [e["loc"] for e in problem["errors"]] == [["query", parameter]], (path, params)
        assert all(e["msg"] for e in problem["errors"]), (path, params)


async def check_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/feedback", "/v1/feedback/batch", "/v1/touchpoints", "/v1/scores",
            "/v1/drivers"} <= set(spec["paths"]), "ingest and query routes are served by one app"
    scores = {p["name"]: p for p in spec["paths"]["/v1/scores"]["get"]["parameters"]}
    assert {"touchpoint", "channel", "stage", "metric", "window", "from", "to"} <= set(scores)
    assert scores["window"]["description"] and scores["metric"]["schema"]["examples"] == ["nps"]

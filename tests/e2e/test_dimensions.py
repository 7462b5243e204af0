"""Configurable dimensions (issue 19): figures per segment and per listed metadata key, with
the values beyond VOC_DIMENSION_MAX_VALUES folded into ``other``, and the filters of the query
API, on both store backends through the real app, scorer and principals.

The fixture set, with every figure worked out by hand (T0 = 2026-11-23 10:00 UTC):

    id  touchpoint segment city  sentiment  nps
    d1  delivery   VIP     上海    0.8       10
    d2  delivery   VIP     上海   -0.6        3
    d3  delivery   新客    北京   -0.9        2
    d4  delivery   新客    上海    0.4        -
    d5  delivery   老客    广州    0.0        9   (another metadata value quotes '"city": "北京"')
    d6  delivery   -       -       0.2        -
    h1  hotline    VIP     北京   -1.0        -
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import EnrichedFeedback, utc_now
from services.core.settings import Settings, load_settings
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.e2e.browsing import dashboard, needs_chromium, shoot
from tests.scoring_fixtures import T0, event, records, scoring_rig

HOUR = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
PRINCIPALS = {"viewer-all": {"roles": ["viewer"]},
              "viewer-delivery": {"roles": ["viewer"], "touchpoints": ["delivery"]}}


def fed(event_id: str, seconds: int, score: float, *, segment: str | None = None,
        metadata: dict[str, str] | None = None, nps: int | None = None,
        touchpoint: str = "delivery") -> EnrichedFeedback:
    base = event(event_id, T0 + timedelta(seconds=seconds), score=score, nps=nps,
                 touchpoint=touchpoint)
    return base.model_copy(update={"segment": segment, "metadata": metadata or {}})


EVENTS = [
    fed("d1", 1, 0.8, segment="VIP", metadata={"city": "上海"}, nps=10),
    fed("d2", 2, -0.6, segment="VIP", metadata={"city": "上海", "campaign": "双11"}, nps=3),
    fed("d3", 3, -0.9, segment="新客", metadata={"city": "北京"}, nps=2),
    fed("d4", 4, 0.4, segment="新客", metadata={"city": "上海"}),
    fed("d5", 5, 0.0, segment="老客", metadata={"note": '"city": "北京"', "city": "广州"}, nps=9),
    fed("d6", 6, 0.2),
    fed("h1", 7, -1.0, segment="VIP", metadata={"city": "北京"}, touchpoint="hotline"),
]


def test_dimension_settings_are_checked() -> None:
    assert load_settings(dimensions=["city", "产品线"]).dimensions == ["city", "产品线"]
    for bad in (["segment"], ["agent"], ["city", "city"], ["<b>"], ["x" * 65]):
        with pytest.raises(ValidationError, match="VOC_DIMENSIONS"):
            load_settings(dimensions=bad)


def test_dimensions_on_the_query_api(store_url: str, settings: Settings, broker: LocalBroker,
                                     tmp_path: Path) -> None:
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    settings = settings.model_copy(update={"dimensions": ["city", "campaign"],
                                           "dimension_max_values": 2,
                                           "api_keys_file": keys_file})

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(EVENTS))
            app = create_app(settings, broker.bootstrap, rig.store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                client.headers["X-API-Key"] = keys["viewer-all"]
                await check_list(client)
                await check_segments(client)
                await check_metadata(client)
                await check_filters(client)
                await check_bad_parameters(client)
                client.headers["X-API-Key"] = keys["viewer-delivery"]
                await check_scope(client)

    run(scenario())


async def get(client: httpx.AsyncClient, path: str, status: int = 200, **params: object
              ) -> dict:
    response = await client.get(path, params={**HOUR, **params})
    assert response.status_code == status, response.text
    return response.json()


async def check_list(client: httpx.AsyncClient) -> None:
    assert await get(client, "/v1/dimensions") == {
        "dimensions": ["segment", "agent", "queue", "city", "campaign"], "max_values": 2}


async def check_segments(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/dimensions/segment", touchpoint="delivery")
    # VIP and 新客 have 2 events each (ties go by value: 'VIP' sorts before '新客');
    # 老客 and '' (d6, no segment) are folded.
    assert [(v["value"], v["volume"]) for v in body["values"]] == [("VIP", 2), ("新客", 2)]
    vip, new = body["values"]
    # VIP: (0.8 - 0.6) / 2 = 0.1; NPS 10 and 3 -> 100 x (1 - 1) / 2 = 0.
    assert vip["mean_sentiment"] == pytest.approx(0.1)
    assert (vip["nps"], vip["counts"]["nps_responses"]) == (0.0, 2)
    # 新客: (-0.9 + 0.4) / 2 = -0.25; NPS 2 only -> -100; negative share 1 / 2.
    assert new["mean_sentiment"] == pytest.approx(-0.25)
    assert new["nps"] == -100.0 and new["negative_share"] == 0.5
    # other: d5 and d6, sentiment 0.0 + 0.2 -> mean 0.1, NPS 9 -> 100.
    other = body["other"]
    assert (other["folded_values"], other["volume"]) == (2, 2)
    assert other["mean_sentiment"] == pytest.approx(0.1) and other["nps"] == 100.0
    assert body["total"]["distinct_values"] == 4 and body["total"]["volume"] == 6
    # Every principal without a scope sees all touchpoints: h1 adds to VIP.
    everywhere = await get(client, "/v1/dimensions/segment")
    assert everywhere["values"][0]["value"] == "VIP"
    assert everywhere["values"][0]["volume"] == 3


async def check_metadata(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/dimensions/city", touchpoint="delivery")
    # 上海 3 (d1, d2, d4); then volume 1 each: '' (d6), 北京 (d3), 广州 (d5: its note's quoted
    # '"city": "北京"' is not its city). Ties by value: '' first.
    assert [(v["value"], v["volume"]) for v in body["values"]] == [("上海", 3), ("", 1)]
    assert body["other"]["folded_values"] == 2 and body["other"]["volume"] == 2
    assert body["other"]["counts"]["negative_count"] == 1  # d3
    campaign = await get(client, "/v1/dimensions/campaign", touchpoint="delivery")
    assert [(v["value"], v["volume"]) for v in campaign["values"]] == [("", 5), ("双11", 1)]
    assert campaign["other"] is None


async def check_filters(client: httpx.AsyncClient) -> None:
    shanghai = await get(client, "/v1/dimensions/segment", meta="city=上海")
    assert [(v["value"], v["volume"]) for v in shanghai["values"]] == [("VIP", 2), ("新客", 1)]
    assert shanghai["other"] is None
    both = await get(client, "/v1/dimensions/city", segment="VIP",
                     meta=["campaign=双11", "city=上海"])
    assert [(v["value"], v["volume"]) for v in both["values"]] == [("上海", 1)]
    page = await get(client, "/v1/feedback", segment="VIP", meta="city=上海")
    assert sorted(i["event_id"] for i in page["items"]) == ["d1", "d2"]
    assert page["total"] == 2
    beijing = await get(client, "/v1/feedback", meta="city=北京")
    assert sorted(i["event_id"] for i in beijing["items"]) == ["d3", "h1"]


async def check_bad_parameters(client: httpx.AsyncClient) -> None:
    unknown = await get(client, "/v1/dimensions/region", 400)
    assert "segment" in unknown["detail"] and "city" in unknown["detail"]
    for meta in ("region=华东", "city", "segment=VIP"):
        body = await get(client, "/v1/feedback", 400, meta=meta)
        assert body["errors"][0]["loc"] == ["query", "meta"], body
    twice = await get(client, "/v1/dimensions/segment", 400, meta=["city=上海", "city=北京"])
    assert "twice" in twice["detail"]
    long_segment = await get(client, "/v1/dimensions/city", 400, segment="x" * 65)
    assert long_segment["errors"][0]["loc"] == ["query", "segment"], long_segment
    blank = await get(client, "/v1/dimensions/segment", segment="", touchpoint="delivery")
    assert blank["total"]["volume"] == 6


async def check_scope(client: httpx.AsyncClient) -> None:
    """A principal limited to delivery never counts hotline's feedback, and asking for it by
    name is a 403."""
    body = await get(client, "/v1/dimensions/segment")
    assert body["total"]["volume"] == 6 and body["values"][0]["volume"] == 2
    await get(client, "/v1/dimensions/segment", 403, touchpoint="hotline")
    page = await get(client, "/v1/feedback", meta="city=北京")
    assert [i["event_id"] for i in page["items"]] == ["d3"]


PWN = "<img src=x onerror=window.__pwned=1>"


@pytest.mark.slow
@needs_chromium
def test_the_segments_view_filters_and_folds(broker: LocalBroker, settings: Settings,
                                             tmp_path: Path) -> None:
    """The dashboard's 客群与维度 view on a running API: per-segment figures with the folded
    row, a city picker that narrows them, and a hostile value shown as text."""
    settings = settings.model_copy(update={"dimensions": ["city"], "dimension_max_values": 2})
    now = utc_now().replace(microsecond=0) - timedelta(minutes=10)
    recent = [e.model_copy(update={"occurred_at": now + (e.occurred_at - T0),
                                   "received_at": now, "enriched_at": now})
              for e in EVENTS]
    recent += [fed(name, 8, -0.5, segment=segment, metadata={"city": PWN}).model_copy(
        update={"occurred_at": now, "received_at": now, "enriched_at": now})
        for name, segment in (("p1", "VIP"), ("p2", "新客"))]

    async def scenario() -> None:
        async with scoring_rig(f"chdb://{tmp_path / 'chdb'}", settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(recent))
            async with dashboard(settings, ("ingest",), broker.bootstrap, rig.store,
                                 height=800) as shown:
                page = shown.page
                await page.goto(f"{shown.api}/dashboard/#/segments")
                table = "#dimension-figures table"
                await page.wait_for_selector(table, timeout=20000)
                heads = [await c.inner_text() for c in
                         await page.query_selector_all(f"{table} tbody th")]
                # VIP 4 (d1, d2, h1, p1), 新客 3 (d3, d4, p2); 老客 and (未填) folded. The city
                # picker offers the two largest cities: 上海 (3), then the hostile name (2),
                # which sorts before 北京 (2).
                assert heads == ["VIP", "新客", "其他（2 个值）", "合计（4 个值）"], heads
                cities = [await o.inner_text() for o in
                          await page.query_selector_all('select[data-dimension="city"] option')]
                assert cities == ["全部", "上海", PWN], cities
                await page.select_option('select[data-dimension="city"]', "上海")
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#dimension-figures tbody th')]"
                    ".map((e) => e.textContent).join('|') === 'VIP|新客|合计（2 个值）'",
                    timeout=20000)
                assert "city=%E4%B8%8A%E6%B5%B7" in page.url
                await page.select_option("#dimension-by", "city")
                await page.wait_for_selector("#dimension-figures caption >> text=city")
                assert await page.evaluate(
                    "() => [document.querySelectorAll('img').length, window.__pwned ?? null]"
                ) == [0, None]
                await page.select_option('select[data-dimension="city"]', index=0)
                await page.select_option("#dimension-by", "segment")
                await page.wait_for_selector("#dimension-figures tr.other")
                await shoot(page, "segments")
                assert shown.errors == [], shown.errors

    run(scenario())

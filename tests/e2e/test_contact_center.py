"""The contact-center view (issue 19): call figures per agent and queue through the metric
catalogue, first-contact resolution, and the coaching list, on both store backends through the
real scorer and app.

Calls on touchpoint hotline (T0 = 2026-11-23 10:00 UTC), worked out by hand:

    id  agent queue customer topics    sentiment tone      hold silence transfers
    c1  A1    售后  u1       refund    -0.6      worsened  30   10      1   (escalation threat)
    c2  A1    售后  u2       delivery   0.4      improved   0   20      0
    c3  A2    售前  u3       -         -0.2      steady    60    0      2
    c4  A2    售前  u4       refund     0.0      steady     0    0      0   (yesterday)

and later contacts of the same customers on the app: u1 about refund 2 days after c1 (c1 was
not resolved), u2 about billing a day after c2 (another topic: c2 was), u3 about anything 7
days and an hour after c3 (too late to count: c3 was). VOC_FCR_DAYS is 7.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import (
    CallFacts,
    CallTone,
    EnrichedFeedback,
    utc_now,
)
from services.core.settings import Settings
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.e2e.browsing import dashboard, needs_chromium, shoot
from tests.scoring_fixtures import T0, event, records, scoring_rig

HOUR = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
PRINCIPALS = {"viewer-all": {"roles": ["viewer"]},
              "viewer-delivery": {"roles": ["viewer"], "touchpoints": ["delivery"]}}
TRANSCRIPT = "客户：我要退款\n坐席：好的，请稍等\n客户：等了半天了\n还没好，我要投诉"
YESTERDAY = utc_now().replace(microsecond=0) - timedelta(days=1)


def call(event_id: str, agent: str, queue: str, customer: str, score: float, trend: str,
         hold: float, silence: float, transfers: int, *, topics: tuple[str, ...] = (),
         flags: tuple[str, ...] = (), at=None) -> EnrichedFeedback:  # noqa: ANN001
    at = at or T0 + timedelta(minutes=int(event_id[1:]))
    base = event(event_id, at, touchpoint="hotline", channel="call", score=score,
                 topics=[(t, score) for t in topics], flags=flags, text=TRANSCRIPT)
    change = {"worsened": -0.8, "improved": 0.6, "steady": 0.0}[trend]
    return base.model_copy(update={
        "customer_id": customer,
        "call": CallFacts(call_id=event_id, agent_id=agent, queue=queue, started_at=at,
                          ended_at=at + timedelta(minutes=5), duration_s=300, turns=3,
                          silence_s=silence, hold_count=1 if hold else 0, hold_s=hold,
                          longest_gap_s=silence, transfers=transfers),
        "call_tone": CallTone(first=0.2, last=round(0.2 + change, 2), change=change,
                              trend=trend)})


def later(event_id: str, customer: str, after: timedelta, topics: tuple[str, ...]
          ) -> EnrichedFeedback:
    base = event(event_id, T0 + after, touchpoint="delivery", topics=[(t, -0.5) for t in topics])
    return base.model_copy(update={"customer_id": customer})


EVENTS = [
    call("c1", "A1", "售后", "u1", -0.6, "worsened", 30, 10, 1, topics=("refund",),
         flags=("escalation_threat",)),
    call("c2", "A1", "售后", "u2", 0.4, "improved", 0, 20, 0, topics=("delivery",)),
    call("c3", "A2", "售前", "u3", -0.2, "steady", 60, 0, 2),
    call("c4", "A2", "售前", "u4", 0.0, "steady", 0, 0, 0, topics=("refund",), at=YESTERDAY),
    later("f1", "u1", timedelta(days=2), ("refund",)),
    later("f2", "u2", timedelta(days=1), ("billing",)),
    later("f3", "u3", timedelta(days=7, hours=1), ("delivery",)),
]


def test_contact_center_figures(store_url: str, settings: Settings, broker: LocalBroker,
                                tmp_path: Path) -> None:
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    settings = settings.model_copy(update={"dimension_max_values": 1, "fcr_days": 7,
                                           "api_keys_file": keys_file})

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(EVENTS))
            app = create_app(settings, broker.bootstrap, rig.store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                client.headers["X-API-Key"] = keys["viewer-all"]
                await check_scores(client)
                await check_agents(client)
                await check_queues_and_pending(client)
                await check_coaching(client)
                client.headers["X-API-Key"] = keys["viewer-delivery"]
                await check_scope(client)
            # Rows stored before migration 0014 read their agent from the stored event.
            await rig.store.insert("feedback", [{
                "event_id": "old", "touchpoint": "hotline", "occurred_at": T0,
                "enriched_json": EVENTS[0].model_dump_json(by_alias=True)}])
            old = await rig.store.query("SELECT call_agent, call_queue FROM feedback "
                                        "WHERE event_id = 'old'")
            assert old == [{"call_agent": "A1", "call_queue": "售后"}]

    run(scenario())


async def get(client: httpx.AsyncClient, path: str, status: int = 200, **params: object
              ) -> dict:
    response = await client.get(path, params={**HOUR, **params})
    assert response.status_code == status, response.text
    return response.json()


async def check_scores(client: httpx.AsyncClient) -> None:
    """The call figures are catalogue metrics of every score row: hotline's hour holds c1-c3."""
    body = await get(client, "/v1/scores", touchpoint="hotline", window="1h")
    [row] = body["rows"]
    assert row["call_count"] == 3
    assert row["tone_worsened_share"] == pytest.approx(1 / 3)
    assert row["tone_improved_share"] == pytest.approx(1 / 3)
    assert row["mean_hold_s"] == pytest.approx(30.0)  # (30 + 0 + 60) / 3
    assert row["mean_silence_s"] == pytest.approx(10.0)  # (10 + 20 + 0) / 3
    assert row["transfers_per_call"] == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    delivery = await get(client, "/v1/scores", touchpoint="delivery", window="1d",
                         **{"from": "2026-11-25T00:00:00Z", "to": "2026-11-26T00:00:00Z"})
    assert delivery["rows"][0]["call_count"] == 0
    assert delivery["rows"][0]["mean_hold_s"] is None


async def check_agents(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/contact-center/agent", touchpoint="hotline")
    assert body["fcr_days"] == 7
    [a1] = body["values"]
    assert (a1["value"], a1["call_count"], a1["volume"]) == ("A1", 2, 2)
    assert a1["mean_sentiment"] == pytest.approx(-0.1)
    assert (a1["tone_worsened_share"], a1["tone_improved_share"]) == (0.5, 0.5)
    assert a1["mean_hold_s"] == 15.0 and a1["mean_silence_s"] == 15.0
    assert a1["transfers_per_call"] == 0.5
    assert a1["counts"]["escalation_threat_count"] == 1
    # c1: u1 came back about refund within 7 days; c2: u2 came back about billing only.
    assert (a1["fcr_calls"], a1["fcr_resolved"], a1["fcr"], a1["fcr_pending"]) == (2, 1, 0.5, 0)
    # A2 folded (max values 1): c3 has no topics, and u3's next contact came after 7 days.
    other = body["other"]
    assert (other["folded_values"], other["call_count"], other["mean_hold_s"]) == (1, 1, 60.0)
    assert (other["fcr_calls"], other["fcr_resolved"], other["fcr"]) == (1, 1, 1.0)
    total = body["total"]
    assert (total["distinct_values"], total["call_count"]) == (2, 3)
    assert total["fcr"] == pytest.approx(2 / 3)
    # Filters narrow the calls: queue 售前 holds only A2's c3.
    presale = await get(client, "/v1/contact-center/agent", queue="售前")
    assert [(v["value"], v["call_count"], v["fcr"]) for v in presale["values"]] == [
        ("A2", 1, 1.0)]


async def check_queues_and_pending(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/contact-center/queue")
    assert [(v["value"], v["call_count"]) for v in body["values"]] == [("售后", 2)]
    # c4 was yesterday: its 7 days have not passed, so it is pending, not resolved.
    recent = await get(client, "/v1/contact-center/queue", **{
        "from": (YESTERDAY - timedelta(hours=1)).isoformat(),
        "to": (YESTERDAY + timedelta(hours=1)).isoformat()})
    [presale] = recent["values"]
    assert (presale["value"], presale["fcr_calls"], presale["fcr_pending"], presale["fcr"]) == (
        "售前", 0, 1, None)
    await get(client, "/v1/contact-center/team", 400)


async def check_coaching(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/contact-center/coaching")
    [c1] = body["calls"]
    assert (c1["event_id"], c1["agent"], c1["queue"]) == ("c1", "A1", "售后")
    assert c1["tone"] == {"first": 0.2, "last": -0.6, "change": -0.8}
    assert c1["transcript"] == [
        {"speaker": "customer", "text": "我要退款"},
        {"speaker": "agent", "text": "好的，请稍等"},
        {"speaker": "customer", "text": "等了半天了\n还没好，我要投诉"}]
    assert (await get(client, "/v1/contact-center/coaching", agent="A2"))["calls"] == []
    # An empty parameter is "not given", as on every route.
    blank = await get(client, "/v1/contact-center/coaching", agent="", queue="")
    assert [c["event_id"] for c in blank["calls"]] == ["c1"]
    await get(client, "/v1/contact-center/coaching", 400, agent="x" * 129)


async def check_scope(client: httpx.AsyncClient) -> None:
    body = await get(client, "/v1/contact-center/agent")
    assert body["total"]["call_count"] == 0 and body["values"] == []
    assert (await get(client, "/v1/contact-center/coaching"))["calls"] == []
    await get(client, "/v1/contact-center/agent", 403, touchpoint="hotline")


PWN = "<img src=x onerror=window.__pwned=1>"


@pytest.mark.slow
@needs_chromium
def test_the_agent_scorecard_opens_coaching_transcripts(broker: LocalBroker, settings: Settings,
                                                        tmp_path: Path) -> None:
    """The dashboard's 坐席 view on a running API: per-agent figures, the coaching list
    narrowed by clicking an agent, and a transcript whose customer turns are highlighted (a
    customer's markup shown as text)."""
    now = utc_now().replace(microsecond=0) - timedelta(minutes=30)
    hostile = call("c1", "A1", "售后", "u1", -0.6, "worsened", 30, 10, 1, at=now,
                   topics=("refund",)).model_copy(
        update={"text": f"客户：我要退款{PWN}\n坐席：好的，请稍等\n客户：等了半天了，我要投诉"})
    calls = [hostile,
             call("c2", "A1", "售后", "u2", 0.4, "improved", 0, 20, 0,
                  at=now + timedelta(minutes=1)),
             call("c3", "A2", "售前", "u3", -0.2, "worsened", 60, 0, 2,
                  at=now + timedelta(minutes=2))]

    async def scenario() -> None:
        async with scoring_rig(f"chdb://{tmp_path / 'chdb'}", settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(calls))
            async with dashboard(settings, ("ingest",), broker.bootstrap, rig.store,
                                 height=800) as shown:
                page = shown.page
                await page.goto(f"{shown.api}/dashboard/#/agents")
                await page.wait_for_selector("#scorecard table")
                rows = [await r.get_attribute("data-value") for r in
                        await page.query_selector_all("#scorecard tbody tr[data-value]")]
                assert rows == ["A1", "A2"], rows
                a1 = [await c.inner_text() for c in
                      await page.query_selector_all('#scorecard tr[data-value="A1"] td')]
                assert a1[:3] == ["2", "-0.10", "50.0%"], a1  # calls, sentiment, worsened
                await page.wait_for_selector('#coaching li[data-event-id="c3"]')
                await page.click('#scorecard button[data-value="A1"]')
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#coaching li')]"
                    ".map((li) => li.dataset.eventId).join() === 'c1'", timeout=20000)
                await page.click('#coaching li[data-event-id="c1"] summary')
                marks = [await m.inner_text() for m in
                         await page.query_selector_all('#coaching li[data-event-id="c1"] mark')]
                assert marks == [f"我要退款{PWN}", "等了半天了，我要投诉"], marks
                assert await page.evaluate(
                    "() => [document.querySelectorAll('img').length, window.__pwned ?? null]"
                ) == [0, None]
                await shoot(page, "agents")
                assert shown.errors == [], shown.errors

    run(scenario())

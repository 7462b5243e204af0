"""The dashboard's push feed on both store backends: what a page gets on connect and after."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.core.access import Access
from services.core.broker import free_port
from services.core.http import harden
from services.core.migrations import migrate
from services.core.settings import load_settings
from services.core.store import Store, open_store
from services.web import router as web_router
from services.web.feed import SNAPSHOT_WINDOWS, LiveFeed
from services.web.router import sse
from tests.conftest import run
from tests.waiting import eventually, stays_true

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def score(touchpoint: str, minute: int, computed_ms: int, volume: int = 10,
          negative: int = 2, stage: str = "", channel: str = "") -> dict:
    return {"touchpoint": touchpoint, "channel": channel, "stage": stage, "window_seconds": 60,
            "window_start": T0 + timedelta(minutes=minute), "volume": volume,
            "positive_count": volume - negative, "neutral_count": 0, "negative_count": negative,
            "mean_sentiment": 0.1, "negative_share": negative / volume,
            "gap_metrics": ["mean_sentiment"], "gap_targets": [0.3], "gaps": [-0.2],
            "computed_ms": computed_ms}


def alert(alert_id: str, inserted_ms: int) -> dict:
    return {"alert_id": alert_id, "dedupe_key": "r:delivery", "rule_id": "r",
            "severity": "critical", "status": "firing", "touchpoint": "delivery",
            "metric": "negative_share", "operator": ">", "threshold": 0.4, "value": 0.8,
            "volume": 30, "window_start": T0, "window_end": T0 + timedelta(minutes=5),
            "fired_at": T0 + timedelta(minutes=5), "message": "负面占比过高",
            "inserted_ms": inserted_ms}


def case_event(case_id: str, seq: int, status: str, inserted_ms: int) -> dict:
    return {"case_id": case_id, "seq": seq, "event_id": f"{case_id}-{seq}",
            "action": "opened" if seq == 1 else "acknowledged", "status": status,
            "at": T0, "actor": "alerting", "comment": "", "severity": "critical", "team": "ops",
            "assignee": "", "escalation_level": 0, "touchpoint": "delivery", "rule_id": "r",
            "alert_ids": ["a-new"], "feedback_event_ids": [], "opened_at": T0,
            "acknowledged_at": T0 if seq > 1 else None, "resolved_at": None, "closed_at": None,
            "ack_due_at": T0 + timedelta(minutes=15), "resolve_due_at": T0 + timedelta(hours=4),
            "followup_outcome": "", "followup_rating": None, "ack_seconds": None,
            "resolve_seconds": None, "inserted_ms": inserted_ms}


async def next_message(queue: asyncio.Queue, timeout_s: float = 10) -> dict:
    return await asyncio.wait_for(queue.get(), timeout_s)


async def quiet(queue: asyncio.Queue, feed: LiveFeed) -> None:
    """Two more polls pass and nothing was published."""
    for _ in range(2):
        await feed.poll_once()
    assert queue.empty(), queue.get_nowait()


def test_snapshot_then_each_new_row_once_with_one_poller(store_url: str) -> None:
    async def scenario() -> None:
        store: Store = await open_store(store_url)
        try:
            await migrate(store)
            now_ms = int(time.time() * 1000)
            old = [score("delivery", m - 70, now_ms - 60_000) for m in range(SNAPSHOT_WINDOWS + 5)]
            await store.insert("cem_scores", old + [score("delivery", -67, now_ms - 30_000, 20, 15)])
            await store.insert("alerts", [alert("a-old", now_ms - 60_000)])
            feed = LiveFeed(store, 60, interval_s=0.2)

            snapshot = await feed.snapshot()
            windows = [r["window_start"] for r in snapshot["scores"]]
            assert len(windows) == SNAPSHOT_WINDOWS, "only the newest windows are sent"
            assert windows[-1] == T0 + timedelta(minutes=SNAPSHOT_WINDOWS + 4 - 70)
            assert [a["alert_id"] for a in snapshot["alerts"]] == ["a-old"]

            first, second = feed.subscribe(), feed.subscribe()
            assert feed.subscribers == 2
            poller = feed._task
            await stays_true(first.empty, 0.5,
                             "no push of rows stored before connecting (the snapshot has them)",
                             interval_s=0.1)

            await store.insert("cem_scores", [score("delivery", 70, now_ms + 1000, 8, 6)])
            pushed = await next_message(first)
            assert pushed == await next_message(second)
            assert pushed["type"] == "scores"
            assert [(r["touchpoint"], r["window_start"], r["negative_count"])
                    for r in pushed["rows"]] == [("delivery", T0 + timedelta(minutes=70), 6)]
            assert pushed["rows"][0]["expectations"] == [
                {"metric": "mean_sentiment", "target": 0.3, "gap": -0.2}]
            assert feed._task is poller, "one poller however many pages listen"

            # Written later, stamped earlier (another scorer's clock): still pushed, once.
            await store.insert("cem_scores", [score("hotline", 70, now_ms + 500)])
            late = await next_message(first)
            assert [r["touchpoint"] for r in late["rows"]] == ["hotline"]
            await store.insert("cem_scores", [score("hotline", 70, now_ms + 500)])
            # A journey stage's row is pushed; a single channel's row is not (the page shows
            # touchpoints over all channels).
            await store.insert("cem_scores", [score("hotline", 70, now_ms + 600, stage="售后"),
                                              score("hotline", 70, now_ms + 600, channel="app")])
            staged = await next_message(first)
            assert [(r["touchpoint"], r["stage"], r["channel"]) for r in staged["rows"]] == [
                ("hotline", "售后", "")]
            await store.insert("alerts", [alert("a-new", now_ms + 2000)])
            fired = await next_message(first)
            assert fired["type"] == "alerts"
            assert [a["alert_id"] for a in fired["rows"]] == ["a-new"]
            await store.insert("case_events", [case_event("c1", 1, "open", now_ms + 2100)])
            await store.insert("case_events", [case_event("c1", 2, "acknowledged", now_ms + 2200)])
            opened = await next_message(first)
            if len(opened["rows"]) == 1:
                opened["rows"] += (await next_message(first))["rows"]
            assert opened["type"] == "cases"
            assert [(c["case_id"], c["seq"], c["status"], c["assignee"], c["schema"])
                    for c in opened["rows"]] == [("c1", 1, "open", None, "case.v1"),
                                                 ("c1", 2, "acknowledged", None, "case.v1")]
            assert opened["rows"][0]["ack_due_at"] == \
                (T0 + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
            kinds = []
            while not second.empty() or len(kinds) < 4:
                kinds.append((await next_message(second))["type"])
            assert kinds[:3] == ["scores", "scores", "alerts"] and set(kinds[3:]) == {"cases"}
            await quiet(first, feed)

            await feed.unsubscribe(first)
            assert feed._task is poller and not poller.done()
            await feed.unsubscribe(second)
            assert feed._task is None and poller.done(), "nobody listens: polling stops"
        finally:
            await store.close()

    run(scenario())


def test_a_page_that_stops_reading_is_told_to_resync(store_url: str) -> None:
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            feed = LiveFeed(store, 60, queue_size=2)
            queue = feed.subscribe()
            await asyncio.sleep(0.3)
            now_ms = int(time.time() * 1000)
            for i in range(4):
                await store.insert("cem_scores", [score("delivery", i, now_ms + 1000 * (i + 1))])
                await feed.poll_once()
            assert [queue.get_nowait()["type"] for _ in range(queue.qsize())][0] == "resync"
            await feed.unsubscribe(queue)
        finally:
            await store.close()

    run(scenario())


def test_sse_frames_carry_utf8_json_with_iso_times() -> None:
    frame = sse("scores", {"rows": [{"touchpoint": "配送", "window_start": T0}]})
    head, data, end = frame.split("\n", 2)
    assert head == "event: scores" and end == "\n"
    assert json.loads(data.removeprefix("data: ")) == {
        "rows": [{"touchpoint": "配送", "window_start": T0.isoformat()}]}


def test_stream_over_http_snapshot_then_pushes_and_poller_stops_when_page_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_router, "HEARTBEAT_S", 0.2)

    async def scenario() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        await migrate(store)
        feed = LiveFeed(store, 60, interval_s=0.2)
        app = FastAPI()
        settings = load_settings()
        access = Access.from_settings(settings)  # open mode, as on loopback without keys
        app.include_router(web_router.build_router(feed, access))
        harden(app, settings, access)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None,
                                               timeout_graceful_shutdown=1))
        serving = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started, 30, "the server to start", interval_s=0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                page = await client.get("/dashboard/")
                assert page.status_code == 200 and "/dashboard/assets/app-" in page.text
                events: list[tuple[str, dict]] = []
                async with client.stream("GET", "/v1/stream") as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    name = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            name = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            events.append((name, json.loads(line.removeprefix("data: "))))
                            if name == "snapshot":
                                await store.insert("cem_scores", [score(
                                    "delivery", 1, int(time.time() * 1000) + 1000)])
                            else:
                                break
                assert [n for n, _ in events] == ["snapshot", "scores"]
                assert events[0][1]["scores"] == [] and events[1][1]["rows"][0]["volume"] == 10
                await eventually(lambda: feed.subscribers == 0 and feed._task is None, 5,
                                 "the page to leave and the polling to stop", interval_s=0.1)
        finally:
            server.should_exit = True
            await serving
            await store.close()

    run(scenario())

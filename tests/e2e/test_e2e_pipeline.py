"""End to end through HTTP on the real broker and a real store, on both store backends.

300 events over 3 touchpoints, one of them 80% negative: every event lands exactly once, the
window scores equal a recomputation from the stored rows, exactly one alert fires (for the bad
touchpoint), and posting the same 300 again changes nothing.

The chdb variant runs the four services in this process (as ``voc up`` does); the server
variant runs each service as its own ``voc`` process (as a deployment does).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.broker import LocalBroker, free_port
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import Store, open_store
from services.pipeline import SERVICES
from tests.conftest import run, with_database
from tests.pipeline_harness import group_lag, read_topic, running
from tests.waiting import eventually

pytestmark = pytest.mark.slow

POSITIVE = ["配送很快，半小时就送到了，骑手态度也很好", "客服很耐心，问题一次就解决了，非常满意",
            "下单流程很顺畅，支付一次就成功了，体验很好", "包装完好无损，物流速度超出预期，好评"]
NEGATIVE = ["配送太慢了，等了两个小时饭都凉了，非常失望", "客服态度敷衍，问题推来推去，很不满意",
            "支付失败了三次，页面一直转圈，太糟糕了", "包裹被压坏了，东西都碎了，再也不买了"]
TOUCHPOINTS = {"delivery": 0.8, "hotline": 0.1, "app_checkout": 0.1}


def feedback_events() -> list[dict]:
    """100 events per touchpoint over the last four minutes of event time."""
    now = datetime.now(UTC)
    events = []
    for touchpoint, bad_share in TOUCHPOINTS.items():
        negatives = int(100 * bad_share)
        for i in range(100):
            negative = i % 100 < negatives if bad_share > 0.5 else i % 10 == 0
            texts = NEGATIVE if negative else POSITIVE
            events.append({
                "source": "e2e", "external_id": f"{touchpoint}-{i}", "channel": "app",
                "touchpoint": touchpoint, "text": texts[i % len(texts)],
                "occurred_at": (now - timedelta(minutes=i % 4, seconds=i % 7)).isoformat(),
            })
    random.Random(7).shuffle(events)
    return events


async def post_all(api_url: str, events: list[dict]) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        for start in range(0, len(events), 50):
            response = await client.post("/v1/feedback/batch",
                                         json={"events": events[start:start + 50]})
            assert response.status_code == 202, response.text


async def caught_up(settings: Settings, bootstrap: str) -> bool:
    lags = await asyncio.to_thread(lambda: [
        group_lag(bootstrap, settings.group("nlp"), settings.topic("feedback.raw")),
        group_lag(bootstrap, settings.group("scoring"), settings.topic("feedback.enriched")),
        group_lag(bootstrap, settings.group("alerting"), settings.topic("scores")),
    ])
    return lags == [0, 0, 0]


async def snapshot(store: Store) -> dict:
    """Everything the assertions compare before and after the re-post."""
    rows = await store.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM feedback")
    scores = await store.query(
        "SELECT touchpoint, window_start, volume, positive_count, neutral_count, negative_count,"
        " mean_sentiment, negative_share FROM cem_scores FINAL WHERE window_seconds = 60"
        " AND channel = '' AND stage = '' ORDER BY touchpoint, window_start")
    alerts = await store.query("SELECT alert_id, touchpoint, rule_id FROM alerts FINAL")
    return {"rows": rows[0], "scores": scores, "alerts": alerts}


async def check_scores_match_rows(store: Store, window_seconds: int) -> None:
    rows = await store.query(
        "SELECT touchpoint, occurred_at, sentiment, sentiment_label FROM feedback FINAL")
    expected: dict = defaultdict(lambda: {"volume": 0, "negative": 0, "positive": 0,
                                          "neutral": 0, "sum": 0.0})
    for row in rows:
        epoch = int(row["occurred_at"].timestamp())
        key = (row["touchpoint"], epoch - epoch % window_seconds)
        expected[key]["volume"] += 1
        expected[key][row["sentiment_label"]] += 1
        expected[key]["sum"] += row["sentiment"]
    scores = await store.query(
        "SELECT * FROM cem_scores FINAL WHERE window_seconds = %(seconds)s AND channel = '' "
        "AND stage = ''", {"seconds": window_seconds})
    actual = {(s["touchpoint"], int(s["window_start"].timestamp())): s for s in scores}
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert (got["volume"], got["negative_count"], got["positive_count"],
                got["neutral_count"]) == (want["volume"], want["negative"], want["positive"],
                                          want["neutral"]), key
        assert got["mean_sentiment"] == pytest.approx(want["sum"] / want["volume"], abs=1e-6)
        assert got["negative_share"] == pytest.approx(want["negative"] / want["volume"])


async def scenario(api_url: str, store: Store, settings: Settings, bootstrap: str) -> None:
    events = feedback_events()
    await post_all(api_url, events)

    async def all_landed() -> bool:
        rows = await store.query("SELECT count() AS n FROM feedback")
        alerts = await store.query("SELECT count() AS n FROM alerts")
        return rows[0]["n"] >= 300 and alerts[0]["n"] >= 1 and await caught_up(settings, bootstrap)

    await eventually(all_landed, 150, "300 rows, an alert and no consumer lag")
    first = await snapshot(store)
    assert first["rows"] == {"n": 300, "ids": 300}
    assert [(a["touchpoint"], a["rule_id"]) for a in first["alerts"]] == [
        ("delivery", "negative-share-high")]
    await check_scores_match_rows(store, settings.window_seconds)

    alert_messages = read_topic(bootstrap, settings.topic("alerts"))
    assert [m["touchpoint"] for _, m in alert_messages] == ["delivery"]
    validator = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    validator.validate(alert_messages[0][1])
    assert alert_messages[0][1]["alert_id"] == first["alerts"][0]["alert_id"]

    await post_all(api_url, events)

    async def reprocessed() -> bool:
        enriched = await asyncio.to_thread(read_topic, bootstrap, settings.topic("feedback.enriched"))
        return len(enriched) >= 600 and await caught_up(settings, bootstrap)

    await eventually(reprocessed, 150, "the re-posted 300 to pass every stage")
    second = await snapshot(store)
    assert second["rows"] == first["rows"]
    assert second["alerts"] == first["alerts"]
    assert second["scores"] == first["scores"]
    assert len(read_topic(bootstrap, settings.topic("alerts"))) == 1


def test_embedded_services_on_chdb(broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    # Ingest's own duplicate check is off so the re-post reaches the sinks and proves that
    # they are idempotent (a re-send after an ingest restart does the same).
    settings = settings.model_copy(update={"ingest_dedupe_window": 0})
    create_topics(settings, broker.bootstrap)

    async def main() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            async with running(settings, SERVICES, broker.bootstrap, store=store) as url:
                await scenario(url, store, settings, broker.bootstrap)
        finally:
            await store.close()

    run(main())


def _voc(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    binary = Path(sys.executable).with_name("voc")
    with open(log, "ab") as out:
        return subprocess.Popen([str(binary), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def test_each_service_its_own_process_on_clickhouse_server(
        broker: LocalBroker, clickhouse_server: str, settings: Settings, tmp_path: Path) -> None:
    url = with_database(clickhouse_server, f"e2e_{settings.topic_prefix}")
    port = free_port()
    env = {**os.environ, "VOC_KAFKA_BOOTSTRAP": broker.bootstrap, "VOC_CLICKHOUSE_URL": url,
           "VOC_TOPIC_PREFIX": settings.topic_prefix, "VOC_GROUP_PREFIX": settings.group_prefix,
           "VOC_TOPIC_PARTITIONS": str(settings.topic_partitions), "VOC_HTTP_PORT": str(port),
           "VOC_LOG_FORMAT": "json", "VOC_INGEST_DEDUPE_WINDOW": "0"}
    logs = tmp_path / "services.log"
    for admin in (("topics", "create"), ("db", "migrate")):
        done = subprocess.run([str(Path(sys.executable).with_name("voc")), *admin], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    processes = {name: _voc(name, env=env, log=logs) for name in SERVICES}
    try:
        async def main() -> None:
            api = f"http://127.0.0.1:{port}"

            async def healthy() -> bool:
                try:
                    async with httpx.AsyncClient(base_url=api) as client:
                        return (await client.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(healthy, 60, "the ingest process to answer /healthz")
            store = await open_store(url)
            try:
                await scenario(api, store, settings, broker.bootstrap)
            finally:
                await store.close()

        run(main())
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            assert process.wait(timeout=40) == 0, f"voc {name} did not exit cleanly on SIGTERM"
    except BaseException:
        print(logs.read_text()[-20000:])
        raise
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()

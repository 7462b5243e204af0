"""Outages and failovers on the real broker and ClickHouse server: nothing lost, no double count.

Each test prints the recovery time it measured (``-s`` shows them; docs/operations.md records
them); none asserts a timing beyond a generous bound that only catches a stall.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from services.core.broker import LocalBroker, free_port
from services.core.events import RawFeedback, stable_event_id
from services.core.kafka import create_topics
from services.core.local_clickhouse import LocalClickHouse
from services.core.ops import READINESS
from services.core.settings import Settings
from services.core.store import open_store
from tests.conftest import run, with_database
from tests.pipeline_harness import group_lag, read_topic, running
from tests.waiting import eventually, stays_true

pytestmark = pytest.mark.slow

ITEM = {"source": "recovery", "channel": "web", "touchpoint": "checkout", "text": "付款页面打不开"}


def raw_events(count: int, source: str, start: int = 0) -> list[RawFeedback]:
    now = datetime.now(UTC)
    texts = ["配送太慢了，等了两个小时", "客服很耐心，问题解决了", "支付失败了三次", "包装完好，物流很快"]
    return [RawFeedback(event_id=stable_event_id(source, str(i)), source=source, external_id=str(i),
                        channel="app", touchpoint=("delivery", "hotline", "checkout")[i % 3],
                        text=texts[i % len(texts)], occurred_at=now - timedelta(seconds=i % 240),
                        received_at=now)
            for i in range(start, start + count)]


def produce(bootstrap: str, topic: str, events: list[RawFeedback]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for event in events:
        producer.send(topic, key=event.touchpoint.encode(), value=event.to_bytes())
    producer.flush()
    producer.close()


def test_ingest_answers_503_while_the_broker_is_down_and_recovers_by_itself(settings: Settings) -> None:
    broker = LocalBroker().start()
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        nonlocal broker
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=60) as client:
            assert (await client.post("/v1/feedback", json={**ITEM, "external_id": "a"})).status_code == 202
            broker.stop()
            down = await client.post("/v1/feedback", json={**ITEM, "external_id": "b"})
            assert down.status_code == 503 and down.headers["retry-after"]
            broker = LocalBroker(port=broker.port).start()
            await asyncio.to_thread(create_topics, settings, broker.bootstrap)
            back_at = time.monotonic()

            async def accepted() -> bool:
                response = await client.post("/v1/feedback", json={**ITEM, "external_id": "c"})
                assert response.status_code in (202, 503), response.text
                return response.status_code == 202
            await eventually(accepted, 60, "ingest to accept again after the broker came back")
            print(f"ingest recovered {time.monotonic() - back_at:.1f}s after the broker restarted")
        raw = read_topic(broker.bootstrap, settings.topic("feedback.raw"))
        assert [m["external_id"] for _, m in raw] == ["c"], "only acknowledged events exist"

    try:
        run(scenario())
    finally:
        broker.stop()


def test_store_outage_pauses_the_sink_and_loses_nothing(broker: LocalBroker, settings: Settings,
                                                        tmp_path: Path) -> None:
    """ClickHouse stops for 30 s mid-stream: the sink retries with backoff, stops consuming
    (lag grows instead of memory), reports not-ready, and resumes; every event lands once."""
    create_topics(settings, broker.bootstrap)
    server = LocalClickHouse(tmp_path / "ch").start()
    raw_topic = settings.topic("feedback.raw")
    first, second = raw_events(600, "outage"), raw_events(600, "outage", start=600)

    async def scenario() -> None:
        store = await open_store(server.url)
        try:
            async with running(settings, ["nlp", "scoring"], broker.bootstrap, store=store):
                await asyncio.to_thread(produce, broker.bootstrap, raw_topic, first)

                async def count() -> int:
                    return (await store.query("SELECT uniqExact(event_id) AS n FROM feedback"))[0]["n"]

                async def first_landed() -> bool:
                    return await count() == 600
                await eventually(first_landed, 120, "the first 600 events in ClickHouse")

                await asyncio.to_thread(server.stop)
                stopped_at = time.monotonic()
                await asyncio.to_thread(produce, broker.bootstrap, raw_topic, second)

                def not_ready() -> bool:
                    return READINESS.report()[1][settings.group("scoring")] is False

                async def holding_back() -> bool:
                    lag = await asyncio.to_thread(group_lag, broker.bootstrap,
                                                  settings.group("scoring"),
                                                  settings.topic("feedback.enriched"))
                    return lag > 0 and not_ready()

                await eventually(not_ready, 30, "the sink to report not ready")
                # The rest of the 30 s outage: the sink keeps what it could not write
                # uncommitted and stays not ready the whole time, not just at its end.
                await stays_true(holding_back, 30 - (time.monotonic() - stopped_at),
                                 "uncommitted lag and not ready while ClickHouse is down")
                await asyncio.to_thread(server.start)
                back_at = time.monotonic()

                async def all_landed() -> bool:
                    try:
                        return await count() == 1200
                    except Exception:
                        return False
                await eventually(all_landed, 180, "all 1,200 events after the outage")
                print(f"sink caught up {time.monotonic() - back_at:.1f}s after ClickHouse restarted")
                rows = await store.query("SELECT count() AS n, uniqExact(event_id) AS ids FROM feedback FINAL")
                assert rows == [{"n": 1200, "ids": 1200}]
        finally:
            await store.close()

    try:
        run(scenario())
    finally:
        server.stop()


def _metric_total(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def test_two_nlp_workers_split_partitions_and_one_takes_over_after_kill(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"topic_partitions": 4})
    create_topics(settings, broker.bootstrap)
    raw_topic, enriched_topic = settings.topic("feedback.raw"), settings.topic("feedback.enriched")
    ports = [free_port(), free_port()]
    env = {**os.environ, "VOC_KAFKA_BOOTSTRAP": broker.bootstrap,
           "VOC_TOPIC_PREFIX": settings.topic_prefix, "VOC_GROUP_PREFIX": settings.group_prefix,
           "VOC_DATA_DIR": str(tmp_path), "VOC_LOG_FORMAT": "json"}
    voc = str(Path(sys.executable).with_name("voc"))
    log = tmp_path / "nlp.log"
    with open(log, "ab") as out:
        workers = [subprocess.Popen([voc, "nlp"], env={**env, "VOC_OPS_PORT": str(port)},
                                    stdout=out, stderr=subprocess.STDOUT) for port in ports]

    def spread(events: list[RawFeedback]) -> list[RawFeedback]:
        return [e.model_copy(update={"touchpoint": f"tp{i % 12}"}) for i, e in enumerate(events)]

    async def enriched_ids() -> set[str]:
        messages = await asyncio.to_thread(read_topic, broker.bootstrap, enriched_topic)
        return {m["event_id"] for _, m in messages}

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            async def both_ready() -> bool:
                try:
                    answers = [await client.get(f"http://127.0.0.1:{p}/readyz") for p in ports]
                except httpx.HTTPError:
                    return False
                return all(a.status_code == 200 for a in answers)
            await eventually(both_ready, 90, "two NLP workers ready")
            await asyncio.to_thread(produce, broker.bootstrap, raw_topic, spread(raw_events(400, "split")))

            async def first_done() -> bool:
                return len(await enriched_ids()) == 400
            await eventually(first_done, 120, "400 events enriched by two workers")
            shares = [_metric_total((await client.get(f"http://127.0.0.1:{p}/metrics/")).text,
                                    "voc_events_in_total") for p in ports]
            assert all(share > 0 for share in shares), f"both workers must consume: {shares}"
            print(f"events per worker before the kill: {shares}")

        workers[0].kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(produce, broker.bootstrap, raw_topic,
                                spread(raw_events(400, "split", start=400)))

        async def taken_over() -> bool:
            return len(await enriched_ids()) == 800
        await eventually(taken_over, 120, "the survivor to enrich the killed worker's partitions")
        print(f"survivor took over and caught up {time.monotonic() - killed_at:.1f}s after kill -9")

    try:
        run(scenario())
    except BaseException:
        print(log.read_text()[-10000:])
        raise
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                worker.kill()


def test_kill_9_of_nlp_and_scoring_mid_stream_loses_and_doubles_nothing(
        broker: LocalBroker, clickhouse_server: str, settings: Settings, tmp_path: Path) -> None:
    """10,000 events; kill -9 the NLP worker, later the scoring worker, restart each: ClickHouse
    ends with exactly 10,000 distinct events and every window equals a recomputation."""
    from tests.e2e.test_e2e_pipeline import check_scores_match_rows

    create_topics(settings, broker.bootstrap)
    url = with_database(clickhouse_server, f"crash_{settings.topic_prefix}")
    nlp_port = free_port()
    env = {**os.environ, "VOC_KAFKA_BOOTSTRAP": broker.bootstrap, "VOC_CLICKHOUSE_URL": url,
           "VOC_TOPIC_PREFIX": settings.topic_prefix, "VOC_GROUP_PREFIX": settings.group_prefix,
           "VOC_DATA_DIR": str(tmp_path), "VOC_LOG_FORMAT": "json"}
    voc = str(Path(sys.executable).with_name("voc"))
    log = tmp_path / "services.log"
    assert subprocess.run([voc, "db", "migrate"], env=env, capture_output=True, timeout=120).returncode == 0
    produce(broker.bootstrap, settings.topic("feedback.raw"), raw_events(10_000, "crash"))

    def start(name: str) -> subprocess.Popen[bytes]:
        extra = {"VOC_OPS_PORT": str(nlp_port)} if name == "nlp" else {}
        with open(log, "ab") as out:
            return subprocess.Popen([voc, name], env={**env, **extra}, stdout=out,
                                    stderr=subprocess.STDOUT)

    processes = {"nlp": start("nlp"), "scoring": start("scoring")}

    async def scenario() -> None:
        store = await open_store(url)
        try:
            async def stored() -> int:
                return (await store.query("SELECT uniqExact(event_id) AS n FROM feedback"))[0]["n"]

            async def nlp_out() -> float:
                try:
                    async with httpx.AsyncClient(timeout=2) as client:
                        text = (await client.get(f"http://127.0.0.1:{nlp_port}/metrics/")).text
                except httpx.HTTPError:
                    return 0.0
                return _metric_total(text, "voc_events_out_total")

            async def nlp_mid_stream() -> bool:
                return await nlp_out() >= 2_000
            await eventually(nlp_mid_stream, 120, "the NLP worker to be mid-stream")
            seen = await nlp_out()
            processes["nlp"].kill()
            processes["nlp"].wait()
            print(f"killed nlp after about {seen:.0f} enriched")
            processes["nlp"] = start("nlp")

            async def scoring_mid_stream() -> bool:
                return await stored() >= 4_000
            await eventually(scoring_mid_stream, 180, "the scoring worker to be mid-stream")
            processes["scoring"].kill()
            processes["scoring"].wait()
            print(f"killed scoring after {await stored()} events stored")
            processes["scoring"] = start("scoring")

            async def complete() -> bool:
                if await stored() < 10_000:
                    return False
                lags = await asyncio.to_thread(lambda: [
                    group_lag(broker.bootstrap, settings.group("nlp"), settings.topic("feedback.raw")),
                    group_lag(broker.bootstrap, settings.group("scoring"),
                              settings.topic("feedback.enriched"))])
                return lags == [0, 0]
            await eventually(complete, 300, "all 10,000 events stored and both groups caught up")
            rows = await store.query(
                "SELECT count() AS n, uniqExact(event_id) AS ids FROM feedback FINAL")
            assert rows == [{"n": 10_000, "ids": 10_000}]
            await check_scores_match_rows(store, settings.window_seconds)
        finally:
            await store.close()

    try:
        run(scenario())
    except BaseException:
        print(log.read_text()[-20000:])
        raise
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()

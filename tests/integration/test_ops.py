"""/metrics, /healthz and /readyz: what operators and Kubernetes probes read."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.core.broker import LocalBroker, free_port
from services.core.kafka import create_topics
from services.core.ops import READINESS, Readiness, ops_app
from services.core.settings import Settings
from services.core.store import open_store
from tests.conftest import run
from tests.pipeline_harness import running
from tests.waiting import eventually


def test_readiness_needs_every_component() -> None:
    readiness = Readiness()
    assert readiness.report() == (False, {})
    readiness.set("a", True)
    readiness.set("b", False)
    assert readiness.report() == (False, {"a": True, "b": False})
    readiness.set("b", True)
    assert readiness.report()[0] is True
    readiness.forget("b")
    assert readiness.report() == (True, {"a": True})


def test_ops_app_answers_probes_and_metrics() -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=ops_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://ops") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            READINESS.set("probe-test", False)
            try:
                assert (await client.get("/readyz")).status_code == 503
            finally:
                READINESS.forget("probe-test")
            metrics = (await client.get("/metrics/")).text
            assert "voc_events_in_total" in metrics and "voc_sink_batch_rows" in metrics

    run(scenario())


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over series whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match[1] for k, v in labels.items()):
            total += float(match[2])
    return total


def test_pipeline_reports_its_work_in_metrics(settings: Settings, broker: LocalBroker,
                                              tmp_path: Path) -> None:
    """The whole pipeline in-process: counters move, sinks report batch sizes, all ready."""
    create_topics(settings, broker.bootstrap)
    events = [{"source": "ops-test", "external_id": f"m{i}", "channel": "web",
               "touchpoint": "checkout", "text": "付款很顺利，点赞" if i % 2 else "页面一直卡住",
               "occurred_at": datetime(2026, 11, 23, 10, 0, i, tzinfo=UTC).isoformat()}
              for i in range(20)]

    async def scenario() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            await pipeline(store)
        finally:
            await store.close()

    async def pipeline(store) -> None:  # noqa: ANN001
        async with running(settings, ["ingest", "nlp", "scoring", "alerting"], broker.bootstrap,
                           store=store) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                # Counters are process-wide: earlier tests in the session may have stored rows.
                before = metric((await client.get("/metrics/")).text, "voc_sink_batch_rows_sum",
                                table="feedback")
                assert (await client.post("/v1/feedback/batch", json={"events": events})).status_code == 202

                async def counted() -> bool:
                    text = (await client.get("/metrics/")).text
                    return metric(text, "voc_sink_batch_rows_sum", table="feedback") >= before + 20
                await eventually(counted, 90, "20 feedback rows in the sink metrics")
                text = (await client.get("/metrics/")).text
                assert metric(text, "voc_events_in_total", stage=settings.group("nlp")) >= 20
                assert metric(text, "voc_events_in_total", stage=settings.group("scoring")) >= 20
                assert metric(text, "voc_events_out_total",
                              topic=settings.topic("feedback.enriched")) >= 20
                ready = (await client.get("/readyz")).json()
                assert ready["ready"] is True
                assert {"ingest", settings.group("nlp"), settings.group("scoring"),
                        settings.group("alerting")} <= set(ready["components"])

    run(scenario())


def test_worker_process_serves_ops_port(settings: Settings, broker: LocalBroker) -> None:
    """A process without the API serves the probes on VOC_OPS_PORT."""
    create_topics(settings, broker.bootstrap)
    port = free_port()
    settings = settings.model_copy(update={"ops_port": port})

    async def scenario() -> None:
        async with running(settings, ["nlp"], broker.bootstrap):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                async def ready() -> bool:
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False
                await eventually(ready, 60, "the NLP process to report ready")
                assert "voc_batch_seconds" in (await client.get("/metrics/")).text

    run(scenario())


def test_api_metrics_need_an_admin_and_the_ops_port_serves_them_openly(
        settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    """With credentials configured, the API port's /metrics is for admins, the probes stay open
    for Kubernetes, and VOC_OPS_PORT serves the same metrics to an in-cluster scraper."""
    from tests.access_fixtures import principals_file

    create_topics(settings, broker.bootstrap)
    keys_file, keys = principals_file(tmp_path, {"ops": {"roles": ["admin"]},
                                                 "wall": {"roles": ["viewer"]}})
    port = free_port()
    settings = settings.model_copy(update={"ops_port": port, "api_keys_file": keys_file})

    async def scenario() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            async with running(settings, ["ingest"], broker.bootstrap, store=store) as url, \
                    httpx.AsyncClient(timeout=10) as client:
                api = [(await client.get(f"{url}/metrics/", headers=h)).status_code
                       for h in ({}, {"X-API-Key": keys["wall"]}, {"X-API-Key": keys["ops"]})]
                assert api == [401, 403, 200]
                assert (await client.get(f"{url}/healthz")).status_code == 200
                assert (await client.get(f"{url}/readyz")).status_code == 200
                ops = await client.get(f"http://127.0.0.1:{port}/metrics/")
                assert ops.status_code == 200 and "voc_ingest_events_total" in ops.text
        finally:
            await store.close()

    run(scenario())

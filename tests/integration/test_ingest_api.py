"""The ingest API against a real broker."""

from __future__ import annotations

import httpx
import pytest

from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import read_topic, running

ITEM = {"source": "app-cn", "external_id": "o-1", "channel": "app", "touchpoint": "delivery",
        "text": "  配送太慢了  ", "occurred_at": "2026-11-23T12:00:00+08:00",
        "metadata": {"city": "上海"}}


def test_accepts_after_broker_ack_with_stable_ids(broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url) as client:
            one = await client.post("/v1/feedback", json=ITEM)
            assert one.status_code == 202, one.text
            again = await client.post("/v1/feedback", json=ITEM)
            assert again.json()["event_ids"] == one.json()["event_ids"]
            assert (one.json()["duplicates"], again.json()["duplicates"]) == (0, 1)
            batch = await client.post("/v1/feedback/batch", json={"events": [
                {**ITEM, "external_id": f"o-{i}", "touchpoint": f"tp{i % 2}"} for i in range(10)]})
            assert batch.status_code == 202 and batch.json()["accepted"] == 10
            assert batch.json()["duplicates"] == 1, "o-1 was sent before"
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/openapi.json")).status_code == 200

    run(scenario())
    messages = read_topic(broker.bootstrap, settings.topic("feedback.raw"))
    assert len(messages) == 10, "re-sent o-1 is counted as a duplicate, not written again"
    key, first = messages[0] if messages[0][1]["touchpoint"] == "delivery" else next(
        m for m in messages if m[1]["touchpoint"] == "delivery")
    assert key == b"delivery"
    assert first["text"] == "配送太慢了"
    assert first["occurred_at"] == "2026-11-23T04:00:00Z"
    assert first["schema"] == "feedback.raw.v2"


@pytest.mark.parametrize(("body", "status", "where"), [
    ({**ITEM, "channel": "fax"}, 422, ["body", "channel"]),
    ({**ITEM, "text": "   "}, 422, ["body", "text"]),
    ({**ITEM, "occurred_at": "2026-11-23T12:00:00"}, 422, ["body", "occurred_at"]),
    ({**ITEM, "colour": "red"}, 422, ["body", "colour"]),
    ({k: v for k, v in ITEM.items() if k != "touchpoint"}, 422, ["body", "touchpoint"]),
])
def test_bad_input_gets_field_level_errors(broker: LocalBroker, settings: Settings, body: dict,
                                           status: int, where: list[str]) -> None:
    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/v1/feedback", json=body)
            assert response.status_code == status
            assert where in [e["loc"] for e in response.json()["detail"]]

    run(scenario())


def test_batch_over_limit_is_413(broker: LocalBroker, settings: Settings) -> None:
    small = settings.model_copy(update={"ingest_batch_max": 3})

    async def scenario() -> None:
        async with running(small, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/v1/feedback/batch", json={"events": [ITEM] * 4})
            assert response.status_code == 413
            assert "VOC_INGEST_BATCH_MAX" in response.json()["detail"]

    run(scenario())


def test_broker_down_means_503_never_202(settings: Settings) -> None:
    doomed = LocalBroker().start()
    create_topics(settings, doomed.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], doomed.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=60) as client:
            assert (await client.post("/v1/feedback", json=ITEM)).status_code == 202
            doomed.stop()
            response = await client.post("/v1/feedback", json={**ITEM, "external_id": "o-2"})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"

    run(scenario())

"""Direct producers and poison records on the real broker: bad records go to the dead-letter
topic with their reason and original bytes, and good records keep flowing."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from services.core.broker import LocalBroker
from services.core.events import RawFeedback, stable_event_id
from services.core.kafka import create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from tests.conftest import run
from tests.pipeline_harness import read_topic, running
from tests.waiting import eventually

pytestmark = pytest.mark.slow

POISON = [b"{not json", b'{"schema": "feedback.raw.v9"}', b"\xff\xfe\x00bad utf-8",
          RawFeedback(event_id="x", source="s", channel="web", touchpoint="t", text="ok",
                      occurred_at=datetime.now(UTC), received_at=datetime.now(UTC))
          .to_bytes().replace(b'"web"', b'"fax"'),
          RawFeedback(event_id="big", source="s", channel="web", touchpoint="t", text="ok",
                      occurred_at=datetime.now(UTC), received_at=datetime.now(UTC))
          .to_bytes().replace(b'"touchpoint":"t"', b'"touchpoint":"' + b"x" * 5000 + b'"')]


def test_poison_is_dead_lettered_and_good_records_flow(broker: LocalBroker, settings: Settings,
                                                       tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    now = datetime.now(UTC)
    good = RawFeedback(event_id=stable_event_id("direct", "1"), source="direct",
                       external_id="1", channel="call", touchpoint="hotline",
                       text="客服态度很好，问题解决了", occurred_at=now, received_at=now)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for value in [*POISON, good.to_bytes()]:
        producer.send(settings.topic("feedback.raw"), key=b"hotline", value=value)
    producer.flush()
    producer.close()

    async def scenario() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        await migrate(store)
        try:
            async with running(settings, ["nlp", "scoring", "alerting"], broker.bootstrap,
                               store=store):
                async def landed() -> bool:
                    rows = await store.query("SELECT event_id FROM feedback")
                    return len(rows) == 1
                await eventually(landed, 60, "the valid record to reach the store")
            rows = await store.query("SELECT event_id, sentiment_label, topics FROM feedback")
            assert rows == [{"event_id": good.event_id, "sentiment_label": "positive",
                             "topics": ["service_attitude"]}]
        finally:
            await store.close()

    run(scenario())
    letters = [value for _, value in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert sorted(base64.b64decode(v["original_base64"]) for v in letters) == sorted(POISON)
    assert all(v["stage"] == "nlp" and v["reason"] for v in letters)
    assert any("channel" in v["reason"] for v in letters)
    assert any("touchpoint" in v["reason"] and "128" in v["reason"] for v in letters), \
        "an oversized value is dead-lettered with the limit it broke"

"""The NLP worker's faust transport: eager message hand-off and the batch send.

The consumer's ``wait_first`` must keep faust's semantics (a rebalance interrupts a blocked
hand-off), and ``send_many`` must put exactly what per-record sends put on the wire: same
partitions (faust's partitioner by key), same order, same keys and values, acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import faust
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2

from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.nlp import transport
from tests.conftest import run


def _app(settings: Settings, bootstrap: str, tmp_path: Path, **conf: object) -> faust.App:
    app = faust.App(settings.group("transport-test"), broker=f"kafka://{bootstrap}",
                    store="memory://", web_enabled=False, autodiscover=False,
                    datadir=str(tmp_path / "faust"), **conf)
    transport.install(app)
    return app


MakeConsumer = Callable[[], transport.Consumer]


@pytest.fixture
def consumer(settings: Settings, tmp_path: Path) -> Iterator[MakeConsumer]:
    """Makes the consumer inside the test's running loop (faust binds it to the current one)."""
    def make() -> transport.Consumer:
        made = _app(settings, "127.0.0.1:1", tmp_path).consumer
        assert isinstance(made, transport.Consumer)
        return made
    yield make


def test_install_gives_the_app_both_halves(settings: Settings, tmp_path: Path) -> None:
    app = _app(settings, "127.0.0.1:1", tmp_path)
    assert isinstance(app.consumer, transport.Consumer)
    assert isinstance(app.producer, transport.Producer)


def test_a_hand_off_that_never_suspends_creates_no_task(consumer: MakeConsumer) -> None:
    async def main() -> tuple[object, int]:
        ran = []

        async def hand_off() -> str:
            ran.append(1)
            return "delivered"

        made = consumer()
        suspend = asyncio.Event()
        before = len(asyncio.all_tasks())
        result = await made.wait_first(hand_off(), suspend.wait())
        assert len(asyncio.all_tasks()) == before
        return result, len(ran)

    result, calls = run(main())
    assert calls == 1
    assert result.done and result.results == ["delivered"] and not result.stopped


def test_a_suspended_hand_off_resumes_and_returns_its_value(consumer: MakeConsumer) -> None:
    async def main() -> object:
        gate = asyncio.Event()

        async def hand_off() -> str:
            await asyncio.sleep(0)
            await gate.wait()
            return "after the wait"

        asyncio.get_running_loop().call_later(0.05, gate.set)
        return await consumer().wait_first(hand_off(), asyncio.Event().wait())

    result = run(main())
    assert result.results == ["after the wait"] and not result.stopped


def test_a_suspended_hand_off_is_interrupted_and_cancelled_by_the_other_waitable(
        consumer: MakeConsumer) -> None:
    """faust passes ``suspend_flow.wait()``: a rebalance must free the fetch loop."""
    async def main() -> tuple[object, list[str]]:
        seen: list[str] = []

        async def blocked_put() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        suspend = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, suspend.set)
        result = await consumer().wait_first(blocked_put(), suspend.wait())
        await asyncio.sleep(0)
        return result, seen

    result, seen = run(main())
    assert len(result.done) == 1 and result.results == [True]
    assert seen == ["cancelled"]


def test_an_error_in_the_hand_off_propagates(consumer: MakeConsumer) -> None:
    async def failing() -> None:
        raise ValueError("bad message")

    async def main() -> None:
        await consumer().wait_first(failing(), asyncio.Event().wait())

    with pytest.raises(ValueError, match="bad message"):
        run(main())


def test_send_many_puts_what_per_record_sends_would(broker: LocalBroker, settings: Settings,
                                                    tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("feedback.enriched")
    # Small batches force the split path; one record is larger than a whole batch.
    app = _app(settings, broker.bootstrap, tmp_path, producer_max_batch_size=4096,
               producer_acks=-1)
    records = [(f"tp{i % 5}".encode(), f"value {i} ".encode() * 40) for i in range(60)]
    records.append((b"tp-big", b"x" * 20_000))

    async def main() -> int:
        await app.producer.start()
        try:
            futures = await app.producer.send_many(topic, records)
            metadata = await asyncio.gather(*futures)
        finally:
            await app.producer.stop()
        return len(metadata)

    batches = run(main())
    assert 5 < batches < len(records)

    reader = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                           auto_offset_reset="earliest")
    try:
        partitions = sorted(reader.partitions_for_topic(topic) or [])
        assert len(partitions) == settings.topic_partitions
        reader.assign([TopicPartition(topic, p) for p in partitions])
        got: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in partitions}
        for _ in range(100):
            for tp, items in reader.poll(timeout_ms=200).items():
                got[tp.partition].extend((r.key, r.value) for r in items)
            if sum(map(len, got.values())) >= len(records):
                break
    finally:
        reader.close()
    expected: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in partitions}
    for key, value in records:
        # Kafka's default partitioner (murmur2 of the key), as faust's Topic.send uses it.
        expected[(murmur2(key) & 0x7FFFFFFF) % len(partitions)].append((key, value))
    assert got == expected

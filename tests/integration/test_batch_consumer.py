"""BatchConsumer on the real broker: with a fill time, records that arrive shortly after a
batch's first one join that batch (scoring relies on this to keep its per-batch store work
rare), and a batch never exceeds its record limit; a failing batch follows the failure policy
(nothing committed during an outage, a poison record dead-lettered, the rest handled once)."""

from __future__ import annotations

import asyncio
import base64

from aiokafka import ConsumerRecord, TopicPartition

from services.core.broker import LocalBroker
from services.core.kafka import BatchConsumer, Producer, create_topics
from services.core.ops import READINESS
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import group_lag, read_topic
from tests.waiting import eventually, stays_true


async def _batches(settings: Settings, bootstrap: str, *, max_records: int, fill_s: float,
                   bursts: list[int], gap_s: float) -> list[int]:
    """Sizes of the batches a consumer handed over for ``bursts`` sent ``gap_s`` apart.

    One record goes first, and the bursts only once it was handled: the consumer has joined
    its group by then, so the bursts arrive while it is reading, not all at once at its start.
    """
    topic = settings.topic("scores")
    total = 1 + sum(bursts)
    sizes: list[int] = []
    stop = asyncio.Event()
    joined = asyncio.Event()

    async def handle(records: list[ConsumerRecord]) -> None:
        sizes.append(len(records))
        joined.set()
        if sum(sizes) >= total:
            stop.set()

    producer = Producer(bootstrap, client_id="fill-test")
    consumer = BatchConsumer(settings, bootstrap, topic, settings.group("fill"), handle,
                             stage="scoring", producer=producer, max_records=max_records,
                             wait_s=0.2, fill_s=fill_s)
    await producer.start()
    try:
        consuming = asyncio.create_task(consumer.run(stop))
        await producer.send_many(topic, [(b"k", b"first")])
        await asyncio.wait_for(joined.wait(), 30)
        sent = 0
        for burst in bursts:
            await producer.send_many(topic, [(b"k", str(sent + i).encode())
                                             for i in range(burst)])
            sent += burst
            await asyncio.sleep(gap_s)
        await asyncio.wait_for(consuming, 30)
    finally:
        await producer.stop()
    return sizes


def test_records_arriving_within_the_fill_time_join_one_batch(broker: LocalBroker,
                                                              settings: Settings) -> None:
    settings = settings.model_copy(update={"topic_partitions": 1})
    create_topics(settings, broker.bootstrap)
    sizes = run(_batches(settings, broker.bootstrap, max_records=100, fill_s=3.0,
                         bursts=[5, 5, 5], gap_s=0.3))
    assert sizes == [1, 15]


def test_a_filling_batch_stops_at_its_record_limit(broker: LocalBroker,
                                                    settings: Settings) -> None:
    settings = settings.model_copy(update={"topic_partitions": 1})
    create_topics(settings, broker.bootstrap)
    sizes = run(_batches(settings, broker.bootstrap, max_records=4, fill_s=1.0,
                         bursts=[10], gap_s=0.0))
    assert sizes == [1, 4, 4, 2]


def test_transient_failures_commit_nothing_and_a_poison_record_is_dead_lettered(
        broker: LocalBroker, settings: Settings) -> None:
    """On the real broker: while the handler fails with a store outage nothing is committed
    and the consumer says why it is not ready; once it passes, a poison record in the batch is
    dead-lettered (stage, reason, original) and every other record handled exactly once."""
    settings = settings.model_copy(update={"topic_partitions": 1, "consumer_backoff_s": 0.05})
    create_topics(settings, broker.bootstrap)
    topic, group = settings.topic("scores"), settings.group("policy")
    values = [str(i).encode() for i in range(20)]
    values[7] = b"poison"
    handled: list[bytes] = []
    outage = asyncio.Event()
    outage.set()

    async def handle(records: list[ConsumerRecord]) -> None:
        if outage.is_set():
            raise ConnectionRefusedError("ClickHouse at 127.0.0.1:9000 refused the connection")
        if any(r.value == b"poison" for r in records):
            raise OverflowError("date value out of range")
        handled.extend(r.value for r in records)

    async def scenario() -> None:
        producer = Producer(broker.bootstrap, client_id="policy-test")
        await producer.start()
        stop = asyncio.Event()
        consumer = BatchConsumer(settings, broker.bootstrap, topic, group, handle,
                                 stage="scoring", producer=producer, max_records=100,
                                 wait_s=0.2, fill_s=1.0)
        try:
            await producer.send_many(topic, [(b"k", v) for v in values])
            consuming = asyncio.create_task(consumer.run(stop))

            async def retrying() -> bool:
                return "ConnectionRefusedError" in READINESS.reasons().get(group, "")
            await eventually(retrying, 30, "the consumer to report the outage")

            async def holding() -> bool:
                lag = await asyncio.to_thread(group_lag, broker.bootstrap, group, topic)
                return lag == 20 and READINESS.report()[1][group] is False
            await stays_true(holding, 1, "all 20 uncommitted and not ready during the outage")
            outage.clear()

            async def committed() -> bool:
                return await asyncio.to_thread(group_lag, broker.bootstrap, group, topic) == 0
            await eventually(committed, 30, "the batch to be committed")
            stop.set()
            await asyncio.wait_for(consuming, 30)
        finally:
            await producer.stop()

    run(scenario())
    assert sorted(handled) == sorted(v for v in values if v != b"poison")
    letters = [v for _, v in read_topic(broker.bootstrap, settings.topic("deadletter"))]
    assert len(letters) == 1
    assert letters[0]["stage"] == "scoring" and letters[0]["offset"] == 7
    assert "OverflowError: date value out of range" in letters[0]["reason"]
    assert base64.b64decode(letters[0]["original_base64"]) == b"poison"


def test_a_partition_revoked_during_its_batch_is_left_out_of_the_lag(
        broker: LocalBroker, settings: Settings) -> None:
    """A rebalance (another member killed or joining) may take a partition away while its
    batch is handled; reporting its lag afterwards asserted inside aiokafka and killed the
    stage. A partition the consumer never owned stands in for one it just lost."""
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("scores")

    async def handle(records: list[ConsumerRecord]) -> None:
        raise AssertionError("nothing is consumed here")

    async def scenario() -> None:
        producer = Producer(broker.bootstrap, client_id="revoked-test")
        consumer = BatchConsumer(settings, broker.bootstrap, topic, settings.group("revoked"),
                                 handle, stage="scoring", producer=producer, max_records=10,
                                 wait_s=0.2)
        await consumer._consumer.start()
        try:
            revoked = TopicPartition(topic, settings.topic_partitions)
            assert revoked not in consumer._consumer.assignment()
            consumer._report_lag({revoked: [ConsumerRecord(
                topic, revoked.partition, 5, 0, 0, b"k", b"v", None, 1, 1, [])]})
        finally:
            await consumer._consumer.stop()

    run(scenario())

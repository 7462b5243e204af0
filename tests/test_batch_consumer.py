"""BatchConsumer on the real broker: with a fill time, records that arrive shortly after a
batch's first one join that batch (scoring relies on this to keep its per-batch store work
rare), and a batch never exceeds its record limit."""

from __future__ import annotations

import asyncio

from aiokafka import ConsumerRecord

from services.core.broker import LocalBroker
from services.core.kafka import BatchConsumer, Producer, create_topics
from services.core.settings import Settings
from tests.conftest import run


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

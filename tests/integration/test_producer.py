"""The producer every stage writes through (services/core/kafka.py).

``send_many`` builds record batches itself, so it must put exactly what per-message sends
would put on the wire: the same partitions (Kafka's murmur2 of the key), each partition's
messages in order, every message acknowledged, a message larger than a whole batch included.
"""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2

from services.core.broker import LocalBroker
from services.core.kafka import Producer, create_topics
from services.core.ops import EVENTS_OUT
from services.core.settings import Settings
from tests.conftest import run


def read_partitions(bootstrap: str, topic: str, expected: int) -> dict[int, list[tuple]]:
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                           auto_offset_reset="earliest")
    try:
        partitions = sorted(reader.partitions_for_topic(topic) or [])
        reader.assign([TopicPartition(topic, p) for p in partitions])
        got: dict[int, list[tuple]] = {p: [] for p in partitions}
        for _ in range(100):
            for tp, items in reader.poll(timeout_ms=200).items():
                got[tp.partition].extend((r.key, r.value) for r in items)
            if sum(map(len, got.values())) >= expected:
                break
        return got
    finally:
        reader.close()


def test_send_many_puts_what_per_message_sends_would(broker: LocalBroker,
                                                     settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("feedback.enriched")
    records = [(f"tp{i % 5}".encode(), f"value {i} ".encode() * 40) for i in range(60)]
    records.append((b"tp-big", b"x" * 20_000))
    before = EVENTS_OUT.labels(topic)._value.get()

    async def main() -> None:
        # Small batches force the split path; one record is larger than a whole batch.
        producer = Producer(broker.bootstrap, client_id="producer-test", max_batch_bytes=4096)
        await producer.start()
        try:
            await producer.send_many(topic, records)
            await producer.send_many(topic, [])
        finally:
            await producer.stop()

    run(main())
    assert EVENTS_OUT.labels(topic)._value.get() - before == len(records)
    got = read_partitions(broker.bootstrap, topic, len(records))
    assert len(got) == settings.topic_partitions
    expected: dict[int, list[tuple]] = {p: [] for p in got}
    for key, value in records:
        expected[(murmur2(key) & 0x7FFFFFFF) % len(got)].append((key, value))
    assert got == expected


def test_keyless_messages_of_one_call_stay_together_in_order(broker: LocalBroker,
                                                             settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("deadletter")
    values = [f"letter {i}".encode() for i in range(30)]

    async def main() -> None:
        producer = Producer(broker.bootstrap, client_id="producer-test")
        await producer.start()
        try:
            await producer.send_many(topic, [(None, v) for v in values])
        finally:
            await producer.stop()

    run(main())
    got = read_partitions(broker.bootstrap, topic, len(values))
    assert [v for items in got.values() for _, v in items] == values

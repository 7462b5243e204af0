"""Which Kafka clients the local broker (tansu, `voc up`'s default) serves, measured on it.

docs/cli.md's client table states what these tests prove. The tests named ``..._still_...``
assert a failure on purpose: when a broker upgrade fixes it, they fail, and the table, the
README and the tail's workaround (services/cli_tail.py) should be revisited.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from services.core.broker import LocalBroker, port_taken
from tests.conftest import run

KCAT = shutil.which("kcat")
needs_kcat = pytest.mark.skipif(KCAT is None, reason="kcat is missing: `make system-deps` "
                                "installs it (Debian package kcat)")
# What librdkafka 2.0.2 (Debian's kcat) needs to talk to tansu at all: no ApiVersions request
# (it cannot parse tansu's answer) and the protocol of Kafka 0.9.
KCAT_LEGACY = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
VALUES = [f'{{"n": {n}, "text": "配送太慢"}}'.encode() for n in range(3)]


def new_topic(bootstrap: str) -> str:
    name = f"clients-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()
    return name


def _kafka_python(bootstrap: str, topic: str, group: str) -> tuple[list[bytes], int]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in VALUES:
        producer.send(topic, value)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(VALUES) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got += [r.value for r in records]
        consumer.commit()
        return got, consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


def _aiokafka(bootstrap: str, topic: str, group: str) -> tuple[list[bytes], int]:
    async def go() -> tuple[list[bytes], int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for value in VALUES:
                await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            got: list[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < len(VALUES) and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [r.value for r in records]
            await consumer.commit()
            return got, await consumer.committed(TopicPartition(topic, 0)) or 0
        finally:
            await consumer.stop()

    return run(go())


def _confluent(bootstrap: str, topic: str, group: str) -> tuple[list[bytes], int]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as Partition

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in VALUES:
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(VALUES) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                got.append(message.value())
        consumer.commit(asynchronous=False)
        (committed,) = consumer.committed([Partition(topic, 0)], timeout=10)
        return got, committed.offset
    finally:
        consumer.close()


@pytest.mark.parametrize("client", [_kafka_python, _aiokafka, _confluent],
                         ids=["kafka-python", "aiokafka", "confluent-kafka"])
def test_client_produces_consumes_in_a_group_and_commits(
        broker: LocalBroker, client: Callable[[str, str, str], tuple[list[bytes], int]]) -> None:
    topic = new_topic(broker.bootstrap)
    got, committed = client(broker.bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}")
    assert got == VALUES
    assert committed == len(VALUES)


def test_local_broker_still_answers_list_offsets_latest_wrongly(broker: LocalBroker) -> None:
    """Every client asks ListOffsets(latest) for 'the end'; tansu answers inside the last
    record batch. A Fetch's high watermark is right, which is what `voc alerts tail` uses."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as Partition

    topic = new_topic(broker.bootstrap)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=200)
    for n in range(5):
        producer.send(topic, f"{n}".encode())
    producer.flush()  # the five share one batch (linger)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    try:
        assert consumer.end_offsets([partition])[partition] < 5
        consumer.assign([partition])
        consumer.seek(partition, 0)
        deadline = time.monotonic() + 30
        while consumer.highwater(partition) is None and time.monotonic() < deadline:
            consumer.poll(timeout_ms=500)
        assert consumer.highwater(partition) == 5
    finally:
        consumer.close()
    librdkafka = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        assert librdkafka.get_watermark_offsets(Partition(topic, 0), timeout=10)[1] < 5
    finally:
        librdkafka.close()


def _kcat(broker: LocalBroker, *args: str,
          stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([KCAT or "kcat", "-b", broker.bootstrap, *args], input=stdin,
                          capture_output=True, timeout=60)


@needs_kcat
def test_kcat_with_default_settings_still_fails_on_the_local_broker(broker: LocalBroker) -> None:
    done = _kcat(broker, "-L", "-m", "5")
    assert done.returncode != 0
    assert b"ApiVersionRequest failed" in done.stderr
    assert b"Read underflow" in done.stderr


@needs_kcat
def test_kcat_with_legacy_protocol_settings_reads_and_follows_from_offset_0(
        broker: LocalBroker) -> None:
    topic = new_topic(broker.bootstrap)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for value in VALUES:
        producer.send(topic, value)
    producer.flush()
    done = _kcat(broker, *KCAT_LEGACY, "-C", "-t", topic, "-o", "0", "-e", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == VALUES
    follower = subprocess.Popen([KCAT or "kcat", "-b", broker.bootstrap, *KCAT_LEGACY, "-C",
                                 "-t", topic, "-o", "0", "-u"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        producer.send(topic, b'{"n": "later"}')
        producer.flush()
        seen = b""
        deadline = time.monotonic() + 30
        while seen.count(b"\n") < len(VALUES) + 1 and time.monotonic() < deadline:
            ready, _, _ = select.select([follower.stdout], [], [], 1)
            if ready:
                seen += os.read(follower.stdout.fileno(), 65536)
        assert seen.splitlines() == [*VALUES, b'{"n": "later"}']
    finally:
        producer.close()
        follower.terminate()
        follower.wait(timeout=10)


@needs_kcat
def test_kcat_with_legacy_protocol_settings_still_cannot_produce_or_seek_to_the_end(
        broker: LocalBroker) -> None:
    topic = new_topic(broker.bootstrap)
    produced = _kcat(broker, *KCAT_LEGACY, "-P", "-t", topic, stdin=b'{"n": 1}\n')
    assert produced.returncode != 0
    latest = _kcat(broker, *KCAT_LEGACY, "-C", "-t", topic, "-o", "end", "-e")
    assert latest.returncode != 0
    assert b"Failed to query logical offset" in latest.stderr


def test_a_taken_port_gives_the_local_broker_a_free_one(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert port_taken(taken)
        with LocalBroker(port=taken, log_path=tmp_path / "broker.log") as local:
            assert local.port != taken
            consumer = KafkaConsumer(bootstrap_servers=local.bootstrap)
            try:
                assert consumer.topics() == set()
            finally:
                consumer.close()


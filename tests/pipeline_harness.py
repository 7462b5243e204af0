"""Helpers to run services in-process and read topics, shared by the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence

from kafka import KafkaConsumer, TopicPartition

from services.core.kafka import Producer
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import Store, open_store
from services.pipeline import run_services


@contextlib.asynccontextmanager
async def store_and_producer(store_url: str, bootstrap: str
                             ) -> AsyncIterator[tuple[Store, Producer]]:
    """A migrated store and a started producer for a test to drive, both closed on exit."""
    store = await open_store(store_url)
    await migrate(store)
    producer = Producer(bootstrap, client_id="test")
    await producer.start()
    try:
        yield store, producer
    finally:
        await producer.stop()
        await store.close()


@contextlib.asynccontextmanager
async def running(settings: Settings, names: Sequence[str], bootstrap: str,
                  store: Store | None = None) -> AsyncIterator[str]:
    """Run services in this event loop; yields the ingest API URL ('' without ingest)."""
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_services(settings, names, bootstrap, stop, store=store,
                                            on_listening=url.set_result))
    if "ingest" in names:
        done, _ = await asyncio.wait([url, task], return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            await task
    try:
        yield url.result() if url.done() else ""
    finally:
        stop.set()
        await task


def _read(bootstrap: str, topic: str) -> list:
    """Every record on ``topic``, read until the topic stays quiet for two seconds.

    Reading to the end, rather than asking for end offsets, is deliberate: the local tansu
    broker answers ListOffsets(latest) wrongly (about the last batch's base, not the log end).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=2000, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return list(consumer)
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, dict]]:
    """Every message currently on ``topic`` as (key, decoded JSON value)."""
    return [(r.key, json.loads(r.value)) for r in _read(bootstrap, topic)]


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages on ``topic`` that ``group`` has not committed yet."""
    ends: dict[int, int] = {}
    for record in _read(bootstrap, topic):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return sum(end - (consumer.committed(TopicPartition(topic, p)) or 0)
                   for p, end in ends.items())
    finally:
        consumer.close()

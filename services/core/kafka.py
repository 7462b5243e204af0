"""Kafka plumbing shared by the services: topic creation, an acknowledged producer, an
at-least-once batch consumer and the dead-letter path.

Delivery semantics: the local broker has no idempotent producer or transactions, so every
stage is at-least-once. Producers wait for the broker's acknowledgement (acks=all) before
reporting success; consumers commit offsets only after their batch has been fully handled
(written to the store and/or produced downstream). Sinks deduplicate by id, so re-delivery
after a crash or rebalance never double-counts.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.core.bounds import entrance_problem
from services.core.events import DeadLetter, RawFeedback, utc_now
from services.core.ops import (
    BATCH_RETRIES,
    BATCH_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_IN,
    EVENTS_OUT,
    READINESS,
)
from services.core.settings import TOPICS, Settings

log = structlog.get_logger(__name__)

# Largest message a stage writes or must be able to read. A 2-hour, 1 MB call transcript
# becomes a raw event with the transcript and the customer's text (~2 MB) and an enriched
# event with tokens on top; the clients' 1 MB defaults would refuse those.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def create_topics(settings: Settings, bootstrap: str | None = None) -> list[str]:
    """Create every pipeline topic that does not exist yet; returns the ones created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap or settings.bootstrap,
                             client_id="voc-admin", request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        wanted = [settings.topic(name) for name in TOPICS]
        missing = [name for name in wanted if name not in existing]
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, settings.topic_partitions,
                                              settings.topic_replication)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("topics created", topics=created, partitions=settings.topic_partitions)
        return created
    finally:
        admin.close()


class Producer:
    """An aiokafka producer whose sends return only after the broker acknowledged them."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all",
            enable_idempotence=False, linger_ms=5, request_timeout_ms=15000,
            max_request_size=MAX_MESSAGE_BYTES,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_many(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Send (key, value) pairs and wait until every one is acknowledged.

        All sends are queued first, so one batch costs one round of broker requests rather
        than one per message.
        """
        futures = [await self._producer.send(topic, value=value, key=key)
                   for key, value in messages]
        await asyncio.gather(*futures)
        EVENTS_OUT.labels(topic).inc(len(messages))


Handler = Callable[[list[ConsumerRecord]], Awaitable[None]]


class BatchConsumer:
    """Consume one topic in batches and commit only after ``handler`` returned.

    If the handler raises, the batch is retried (with backoff) rather than skipped: a record
    the stage cannot parse must be dead-lettered by the handler itself, so exceptions here
    mean a dependency (store, broker) is failing and waiting is the right answer.

    With ``fill_s`` > 0 a batch keeps reading for up to ``fill_s`` after its first record (or
    until ``max_records``): for a handler whose cost is mostly per batch (scoring's store
    round trips and window recomputation), fewer, larger batches cost much less per event than
    handling whatever each fetch returned, at the price of up to ``fill_s`` more latency.
    """

    def __init__(self, bootstrap: str, topic: str, group: str, handler: Handler, *,
                 max_records: int, wait_s: float, fill_s: float = 0.0) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, client_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=max_records, session_timeout_ms=10000,
            heartbeat_interval_ms=3000, max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        )
        self._topic = topic
        self._group = group
        self._handler = handler
        self._wait_ms = int(wait_s * 1000)
        self._fill_s = fill_s
        self._max = max_records

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, handle, commit until ``stop`` is set; then commit what was handled and leave."""
        await self._consumer.start()
        READINESS.set(self._group, True)
        log.info("consumer started", topic=self._topic, group=self._group)
        try:
            while not stop.is_set():
                batches = await self._consumer.getmany(timeout_ms=self._wait_ms,
                                                       max_records=self._max)
                if not any(batches.values()):
                    continue
                await self._fill(batches, stop)
                records = [r for part in batches.values() for r in part]
                EVENTS_IN.labels(self._group).inc(len(records))
                started = time.perf_counter()
                await self._handle_until_done(records, stop)
                await self._consumer.commit()
                BATCH_SECONDS.labels(self._group).observe(time.perf_counter() - started)
                self._report_lag(batches)
        finally:
            READINESS.forget(self._group)
            await self._consumer.stop()

    async def _fill(self, batches: dict[Any, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        """Add what arrives within ``fill_s`` of the first fetch to ``batches``, in order."""
        deadline = time.monotonic() + self._fill_s
        count = sum(len(part) for part in batches.values())
        while count < self._max and not stop.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            more = await self._consumer.getmany(timeout_ms=left_ms, max_records=self._max - count)
            for tp, part in more.items():
                batches.setdefault(tp, []).extend(part)
                count += len(part)

    def _report_lag(self, batches: dict[Any, list[ConsumerRecord]]) -> None:
        """Lag per partition just handled: high watermark minus the next offset to read."""
        for tp, part in batches.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and part:
                CONSUMER_LAG.labels(self._group, str(tp.partition)).set(
                    max(0, highwater - part[-1].offset - 1))

    async def _handle_until_done(self, records: list[ConsumerRecord], stop: asyncio.Event) -> None:
        delay = 0.5
        while True:
            try:
                await self._handler(records)
                READINESS.set(self._group, True)
                return
            except Exception as exc:
                if stop.is_set():
                    raise
                BATCH_RETRIES.labels(self._group).inc()
                READINESS.set(self._group, False)
                log.warning("batch failed, retrying", topic=self._topic, records=len(records),
                            error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def dead_letter(stage: str, topic: str, partition: int, offset: int, value: bytes | None,
                reason: str) -> tuple[bytes | None, bytes]:
    """The (key, value) of a dead-letter message for a record a stage could not process."""
    letter = DeadLetter(
        stage=stage, topic=topic, partition=partition, offset=offset, reason=reason[:2000],
        original_base64=base64.b64encode(value or b"").decode("ascii"), failed_at=utc_now(),
    )
    DEAD_LETTERS.labels(stage).inc()
    log.warning("dead-lettered", stage=stage, topic=topic, partition=partition, offset=offset,
                reason=reason[:300])
    return f"{topic}:{partition}:{offset}".encode(), letter.to_bytes()


def parse_or_reason(model: Any, value: bytes | None,
                    settings: Settings | None = None) -> tuple[Any, str | None]:
    """Validate a record value against a wire model; returns (event, None) or (None, reason).

    With ``settings``, feedback events must also keep to the entrance bounds
    (services/core/bounds.py), because direct producers write these topics past ingest.
    """
    if value is None:
        return None, "empty message value"
    try:
        event = model.model_validate_json(value)
    except Exception as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return None, (f"not UTF-8: byte 0x{value[bad.start]:02x} at offset {bad.start}; "
                          f"write {model.__name__} as UTF-8 JSON")
        return None, f"not a valid {model.__name__}: {exc}"
    if settings is not None and isinstance(event, RawFeedback):
        problem = entrance_problem(event, settings, utc_now())
        if problem is not None:
            return None, f"out of bounds: {problem[0]}: {problem[1]}"
    return event, None


Screen = Callable[[list[Any]], Awaitable[list[str | None]]]
"""A check of a batch's valid events that needs I/O (the touchpoint cap reads the store): per
event, the reason to dead-letter it, or None to keep it."""


async def parse_or_dead_letter(model: Any, records: Sequence[ConsumerRecord], stage: str,
                               producer: Producer, settings: Settings,
                               screen: Screen | None = None) -> list[Any]:
    """The records of a batch that are valid ``model`` payloads (and pass ``screen``), in order.

    The others are written to the dead-letter topic (and acknowledged) before this returns, so
    committing the batch afterwards never drops a record silently.
    """
    valid: list[tuple[ConsumerRecord, Any]] = []
    letters = []
    for record in records:
        event, reason = parse_or_reason(model, record.value, settings)
        if event is None:
            letters.append(dead_letter(stage, record.topic, record.partition, record.offset,
                                       record.value, reason or "invalid"))
        else:
            valid.append((record, event))
    if screen is not None and valid:
        reasons = await screen([event for _, event in valid])
        letters += [dead_letter(stage, record.topic, record.partition, record.offset,
                                record.value, f"out of bounds: {reason}")
                    for (record, _), reason in zip(valid, reasons, strict=True) if reason]
        valid = [pair for pair, reason in zip(valid, reasons, strict=True) if not reason]
    if letters:
        await producer.send_many(settings.topic("deadletter"), letters)
    return [event for _, event in valid]

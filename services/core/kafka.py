"""Kafka plumbing shared by the services: topic creation, an acknowledged producer, an
at-least-once batch consumer and the dead-letter path.

Delivery semantics: the local broker has no idempotent producer or transactions, so every
stage is at-least-once. Producers wait for the broker's acknowledgement (acks=all) before
reporting success; consumers commit offsets only after every record of their batch has been
handled (written to the store and/or produced downstream) or dead-lettered, under the failure
policy of services/core/failures.py. Sinks deduplicate by id, so re-delivery after a crash or
rebalance never double-counts.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError
from aiokafka.partitioner import DefaultPartitioner
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.core.bounds import entrance_problem
from services.core.events import DeadLetter, RawFeedback, utc_now
from services.core.failures import MAX_BACKOFF_S, FailurePolicy, Kind, Stopped, classify
from services.core.ops import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_IN,
    EVENTS_OUT,
    READINESS,
)
from services.core.pii import redact, redact_bytes
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
    """An aiokafka producer whose sends return only after the broker acknowledged them.

    Every stage writes through this one class, the NLP stage included (faust only consumes
    there): docs/architecture.md, "One way to write", says why and gives the measurement.
    """

    def __init__(self, bootstrap: str, client_id: str,
                 max_batch_bytes: int = 1024 * 1024) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all",
            enable_idempotence=False, linger_ms=5, request_timeout_ms=15000,
            max_request_size=MAX_MESSAGE_BYTES, max_batch_size=max_batch_bytes,
        )
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_many(self, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
        """Send (key, value) pairs and wait until every one is acknowledged.

        The messages go out as one record batch per partition (more when a batch fills), built
        with aiokafka's batch API, rather than as one send, future and accumulator visit per
        message: a batch of enriched events costs a few produce requests. Partitions are the
        ones per-message sends would pick (Kafka's murmur2 of the key; keyless messages of one
        call share a random partition), and each partition's messages keep their order.
        """
        if not messages:
            return
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        keyless = self._partitioner(None, partitions, partitions)
        for key, value in messages:
            partition = keyless if key is None else self._partitioner(key, partitions, partitions)
            by_partition.setdefault(partition, []).append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # Full (the first record of a batch always fits, however large).
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        EVENTS_OUT.labels(topic).inc(len(messages))


Handler = Callable[[list[ConsumerRecord]], Awaitable[None]]


class BatchConsumer:
    """Consume one topic in batches and commit only after every record was handled.

    Each batch goes through the failure policy (services/core/failures.py): transient errors
    retry the batch with backoff and nothing is committed meanwhile (the consumer stops
    polling, so memory stays bounded by one batch); records whose handling fails otherwise are
    isolated by splitting the batch and dead-lettered with ``stage`` and the reason, the rest
    handled, and then the batch is committed. ``handler`` must be safe to call again on any
    part of a batch it has already seen.

    With ``fill_s`` > 0 a batch keeps reading for up to ``fill_s`` after its first record (or
    until ``max_records``): for a handler whose cost is mostly per batch (scoring's store
    round trips and window recomputation), fewer, larger batches cost much less per event than
    handling whatever each fetch returned, at the price of up to ``fill_s`` more latency.
    """

    def __init__(self, settings: Settings, bootstrap: str, topic: str, group: str,
                 handler: Handler, *, stage: str, producer: Producer, max_records: int,
                 wait_s: float, fill_s: float = 0.0) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, client_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=max_records, session_timeout_ms=10000,
            heartbeat_interval_ms=3000, max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        )
        self._settings = settings
        self._topic = topic
        self._group = group
        self._handler = handler
        self._stage = stage
        self._producer = producer
        self._wait_ms = int(wait_s * 1000)
        self._fill_s = fill_s
        self._max = max_records

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, handle, commit until ``stop`` is set; then commit what was handled and leave."""
        policy = FailurePolicy(self._group, self._handler, self._dead_letter,
                               max_retries=self._settings.consumer_max_retries,
                               backoff_s=self._settings.consumer_backoff_s, stop=stop)
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
                await policy.run(records)
                await self._commit(stop)
                BATCH_SECONDS.labels(self._group).observe(time.perf_counter() - started)
                self._report_lag(batches)
        except Stopped:
            log.info("stopped while a batch was failing; it stays uncommitted", topic=self._topic,
                     group=self._group)
        finally:
            READINESS.forget(self._group)
            await self._consumer.stop()

    async def _commit(self, stop: asyncio.Event) -> None:
        """Commit the handled batch, waiting out a broker outage rather than dying of it.

        After a rebalance the offsets are no longer ours to commit: the partition's new owner
        reads the batch again, which the idempotent sinks absorb.
        """
        delay = self._settings.consumer_backoff_s
        while True:
            try:
                await self._consumer.commit()
                READINESS.set(self._group, True)
                return
            except CommitFailedError as exc:
                log.warning("commit refused after a rebalance; the new owner re-reads the batch",
                            group=self._group, error=str(exc)[:300])
                return
            except Exception as exc:
                failure = classify(exc)
                if failure.kind is not Kind.TRANSIENT or stop.is_set():
                    raise
                READINESS.set(self._group, False, f"commit failed, retrying: {failure.reason}")
                log.warning("commit failed, retrying", group=self._group,
                            error=failure.reason[:300], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _dead_letter(self, record: ConsumerRecord, reason: str, keep_original: bool) -> None:
        letter = await asyncio.to_thread(
            dead_letter, self._stage, record.topic, record.partition, record.offset,
            record.value if keep_original else b"", reason)
        await self._producer.send_many(self._settings.topic("deadletter"), [letter])

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
        """Lag per partition just handled: high watermark minus the next offset to read.

        A partition revoked by a rebalance while its batch was handled (another member of the
        group was killed or joined) is no longer ours to report: aiokafka's ``highwater``
        asserts on it, which killed the stage (seen in tests/e2e/test_cluster.py)."""
        assigned = self._consumer.assignment()
        for tp, part in batches.items():
            if tp not in assigned:
                continue
            highwater = self._consumer.highwater(tp)
            if highwater is not None and part:
                CONSUMER_LAG.labels(self._group, str(tp.partition)).set(
                    max(0, highwater - part[-1].offset - 1))


# A dead letter carries the original base64-encoded (4/3 of its size) in a JSON message that
# must stay under MAX_MESSAGE_BYTES; longer originals keep their first bytes.
MAX_DEAD_LETTER_ORIGINAL = 5 * 1024 * 1024


def dead_letter(stage: str, topic: str, partition: int, offset: int, value: bytes | None,
                reason: str) -> tuple[bytes | None, bytes]:
    """The (key, value) of a dead-letter message for a record a stage could not process.

    Direct producers write the topics past ingest, so the original bytes and the reason
    (which may quote the input) go through PII redaction here, for every stage.
    """
    original = redact_bytes(value or b"")
    if len(original) > MAX_DEAD_LETTER_ORIGINAL:
        reason = (f"{reason[:4000]} (original truncated to its first "
                  f"{MAX_DEAD_LETTER_ORIGINAL} of {len(original)} bytes)")
        original = original[:MAX_DEAD_LETTER_ORIGINAL]
    # Redacted before it is cut, so the cut cannot leave part of a number unredacted.
    reason = redact(reason[:8000])[:2000]
    letter = DeadLetter(
        stage=stage, topic=topic, partition=partition, offset=offset, reason=reason,
        original_base64=base64.b64encode(original).decode("ascii"),
        failed_at=utc_now(),
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
    invalid = []
    for record in records:
        event, reason = parse_or_reason(model, record.value, settings)
        if event is None:
            invalid.append((record, reason or "invalid"))
        else:
            valid.append((record, event))
    if screen is not None and valid:
        reasons = await screen([event for _, event in valid])
        invalid += [(record, f"out of bounds: {reason}")
                    for (record, _), reason in zip(valid, reasons, strict=True) if reason]
        valid = [pair for pair, reason in zip(valid, reasons, strict=True) if not reason]
    if invalid:
        # Redacting up to 8 MiB per record is CPU work: off the event loop.
        letters = await asyncio.to_thread(lambda: [
            dead_letter(stage, r.topic, r.partition, r.offset, r.value, reason)
            for r, reason in invalid])
        await producer.send_many(settings.topic("deadletter"), letters)
    return [event for _, event in valid]

"""The NLP stream processor: a faust-streaming agent from the raw topic to the enriched topic.

Events are taken in batches (count or time bound, whichever first) and analysed off the event
loop. The enriched events, and dead letters for records that fail validation, are awaited
until the broker acknowledged them before the batch is left; faust's ``take`` acknowledges a
batch's offsets only then, so a crash re-delivers rather than loses. No exception leaves the
agent's body (one would end ``take`` and acknowledge the batch unprocessed): each batch runs
under the failure policy of services/core/failures.py, which retries a produce timeout or an
unreachable broker, and analyses a record whose analysis raises on its own and dead-letters
it, so no record can stop the stream. faust consumes (consumer group, batches,
acknowledgements) with its own transport, unpatched; the output goes through the producer
every stage uses (services/core/kafka.py), a few record batches per batch of events
(docs/architecture.md, "One way to write", has the measurement).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import faust
import structlog
from pydantic import ValidationError

from services.core.channels import prepare_raw
from services.core.events import RawFeedback
from services.core.failures import FailurePolicy
from services.core.kafka import MAX_MESSAGE_BYTES, Producer, dead_letter, parse_or_reason
from services.core.ops import BATCH_SECONDS, EVENTS_IN, READINESS
from services.core.settings import Settings
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import TaxonomyFile, load_taxonomy

log = structlog.get_logger(__name__)


YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default is 700)."""


def build_analyzer(settings: Settings) -> Analyzer:
    """The analyzer configured by settings (model and taxonomy load here, once), with what
    was loaded kept out of the garbage collector's passes (:func:`settle_collector`)."""
    analyzer = Analyzer(load_sentiment(settings.sentiment_backend),
                        load_taxonomy(settings.taxonomy_path), load_urgency(settings.urgency_path),
                        settings.neutral_band, settings.jieba_user_dict)
    settle_collector()
    return analyzer


def settle_collector() -> None:
    """Move every object alive now (the models, tables and modules just loaded) into the
    collector's permanent generation, after collecting what loading left behind, and let the
    youngest generation grow to :data:`YOUNG_THRESHOLD` objects before it is collected.

    The loaded objects live as long as the process, yet each full collection walked all of
    them: in bench/stage_profile.py one full collection per 2,000 events cost 39-41 µs per
    event (measured with ``gc.callbacks``; 0.7-5 once frozen), charged in cProfile to whatever
    ran when it struck (``getattr`` in one profile, a list comprehension in another). The
    analysis of a batch allocates many short-lived containers, so at the default 700 the
    young collections ran 121 times per 2,000 events and moved survivors on to the middle
    generation, whose collections cost as much again: young and middle
    collections took 16.4 µs per event at 700 and 8.5 at 10,000 (2,000 dev reviews six times
    over, ``gc.callbacks``). Frozen objects are still freed by reference counting (a reloaded
    taxonomy's old tagger is); only a cycle among them would stay, and models hold none that
    is ever dropped.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)


def build_app(settings: Settings, bootstrap: str, analyzer: Analyzer,
              producer: Producer) -> faust.App:
    """A faust app whose one agent turns raw events into enriched events.

    faust keeps its table state under ``datadir`` (default: the working directory), so it is
    placed under ``VOC_DATA_DIR`` with everything else the pipeline writes.
    """
    datadir = settings.data_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    group = settings.group("nlp")
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    raw = app.topic(settings.topic("feedback.raw"), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    enricher = Enricher(settings, analyzer, producer)
    policy: FailurePolicy[Any] = FailurePolicy(
        group, enricher.handle, enricher.dead_letter,
        max_retries=settings.consumer_max_retries, backoff_s=settings.consumer_backoff_s)

    @app.agent(raw, name="enrich")
    async def enrich(stream: faust.Stream) -> None:
        async for batch in stream.take_events(settings.nlp_batch_size,
                                              within=settings.nlp_batch_wait_s):
            started = time.perf_counter()
            EVENTS_IN.labels(group).inc(len(batch))
            # take_events acknowledges the batch when the loop leaves this body, however it
            # leaves. An extra reference per message, dropped only once the batch was handled,
            # keeps a batch that was cancelled half-way (a stop) from being acknowledged.
            for event in batch:
                event.message.incref()
            await policy.run(batch)
            for event in batch:
                event.message.decref()
            BATCH_SECONDS.labels(group).observe(time.perf_counter() - started)

    return app


class Enricher:
    """What the agent does with (part of) a batch; safe to run again on any part of one.

    Every record ends as an enriched event or a dead letter, both acknowledged by the broker
    before ``handle`` returns; an exception (a produce timeout, an analysis that raises) is
    the failure policy's to classify: it retries the batch or isolates the failing record.
    Running again re-sends enriched events already sent; scoring stores each id once.
    """

    def __init__(self, settings: Settings, analyzer: Analyzer, producer: Producer) -> None:
        self.settings = settings
        self.analyzer = analyzer
        self.producer = producer
        self.enriched_topic = settings.topic("feedback.enriched")
        self.dlq_topic = settings.topic("deadletter")
        self.taxonomy_file = TaxonomyFile(settings.taxonomy_path)

    async def handle(self, batch: list[Any]) -> None:
        reloaded = await asyncio.to_thread(self.taxonomy_file.reload_if_changed)
        if reloaded is not None:
            try:
                # In a thread: checking which of the tagger's features the other models read
                # (Analyzer.use_taxonomy) compares vocabularies of 100,000 n-grams, about 0.15 s.
                await asyncio.to_thread(self.analyzer.use_taxonomy, reloaded)
            except ValueError as exc:
                log.error("taxonomy NOT reloaded; the previous one stays in force",
                          error=str(exc))
        valid: list[RawFeedback] = []
        dead: list[tuple[Any, str]] = []
        for event in batch:
            message = event.message
            parsed, reason = parse_or_reason(RawFeedback, message.value, self.settings)
            if parsed is not None:
                try:
                    parsed = prepare_raw(parsed)
                except ValidationError as exc:
                    parsed, reason = None, f"invalid once PII is redacted: {exc}"
            if parsed is None:
                dead.append((message, reason or "invalid"))
            else:
                valid.append(parsed)
        results = await asyncio.to_thread(self.analyzer.analyze, valid)
        await self.producer.send_many(
            self.enriched_topic, [(item.touchpoint.encode(), item.to_bytes()) for item in results])
        if dead:
            # dead_letter redacts the bytes and the reason (which quotes the input): direct
            # producers bypass ingest's redaction.
            letters = await asyncio.to_thread(lambda: [
                dead_letter("nlp", m.topic, m.partition, m.offset, m.value, reason)
                for m, reason in dead])
            await self.producer.send_many(self.dlq_topic, letters)
        log.debug("nlp batch", events=len(batch), enriched=len(results))

    async def dead_letter(self, event: Any, reason: str, keep_original: bool) -> None:
        message = event.message
        letter = await asyncio.to_thread(
            dead_letter, "nlp", message.topic, message.partition, message.offset,
            message.value if keep_original else b"", reason)
        await self.producer.send_many(self.dlq_topic, [letter])


async def run(settings: Settings, bootstrap: str, stop: asyncio.Event) -> None:
    """Run the NLP stage until ``stop`` is set."""
    analyzer = await asyncio.to_thread(build_analyzer, settings)
    producer = Producer(bootstrap, client_id=settings.group("nlp"))
    await producer.start()
    app = build_app(settings, bootstrap, analyzer, producer)
    try:
        await app.start()
        READINESS.set(settings.group("nlp"), True)
        log.info("nlp stage started", model=analyzer.model_id, group=settings.group("nlp"))
        await stop.wait()
    finally:
        READINESS.forget(settings.group("nlp"))
        await app.stop()
        await producer.stop()
        log.info("nlp stage stopped")

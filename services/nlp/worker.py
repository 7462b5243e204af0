"""The NLP stream processor: a faust-streaming agent from the raw topic to the enriched topic.

Events are taken in batches (count or time bound, whichever first) and analysed off the event
loop. The enriched events, and dead letters for records that fail validation, are awaited
until the broker acknowledged them before the batch is left; faust's ``take`` acknowledges a
batch's offsets only then, so a crash re-delivers rather than loses. The app runs on
``services.nlp.transport``, faust's aiokafka transport without its per-message task fan-out,
and sends each batch's output as a few produce batches rather than one send per event.
"""

from __future__ import annotations

import asyncio
import time

import faust
import structlog
from pydantic import ValidationError

from services.core.events import RawFeedback
from services.core.kafka import MAX_MESSAGE_BYTES, dead_letter, parse_or_reason
from services.core.normalize import prepare_raw
from services.core.ops import BATCH_SECONDS, EVENTS_IN, EVENTS_OUT, READINESS
from services.core.pii import redact, redact_bytes
from services.core.settings import Settings
from services.nlp import transport
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import load_taxonomy

log = structlog.get_logger(__name__)


def build_analyzer(settings: Settings) -> Analyzer:
    """The analyzer configured by settings (model and taxonomy load here, once)."""
    return Analyzer(load_sentiment(settings.sentiment_backend),
                    load_taxonomy(settings.taxonomy_path), load_urgency(settings.urgency_path),
                    settings.neutral_band, settings.jieba_user_dict)


def build_app(settings: Settings, bootstrap: str, analyzer: Analyzer) -> faust.App:
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
        # A batch's enriched events (~2-3 KB each) go out in a few large produce requests
        # rather than one per 16 KB (faust's default batch size, sent without lingering): each
        # request costs a socket write here and a request parse in the broker.
        producer_linger=0.01,
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    transport.install(app)
    producer = app.producer
    raw = app.topic(settings.topic("feedback.raw"), key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
    enriched_topic = settings.topic("feedback.enriched")
    dlq_topic = settings.topic("deadletter")

    @app.agent(raw, name="enrich")
    async def enrich(stream: faust.Stream) -> None:
        async for batch in stream.take_events(settings.nlp_batch_size,
                                              within=settings.nlp_batch_wait_s):
            started = time.perf_counter()
            EVENTS_IN.labels(group).inc(len(batch))
            valid: list[RawFeedback] = []
            dead: list[tuple[bytes, bytes]] = []
            for event in batch:
                message = event.message
                parsed, reason = parse_or_reason(RawFeedback, message.value, settings)
                if parsed is not None:
                    try:
                        parsed = prepare_raw(parsed)
                    except ValidationError as exc:
                        parsed, reason = None, f"invalid once PII is redacted: {exc}"
                if parsed is None:
                    # Direct producers bypass ingest: their bytes and the validation message
                    # (which quotes the input) may hold PII, so both are redacted.
                    dead.append(dead_letter("nlp", message.topic, message.partition,
                                            message.offset, redact_bytes(message.value or b""),
                                            redact(reason or "invalid")))
                else:
                    valid.append(parsed)
            results = await asyncio.to_thread(analyzer.analyze, valid)
            pending = await producer.send_many(
                enriched_topic, [(item.touchpoint.encode(), item.to_bytes()) for item in results])
            if dead:
                pending += await producer.send_many(dlq_topic, dead)
            await asyncio.gather(*pending)
            EVENTS_OUT.labels(enriched_topic).inc(len(results))
            BATCH_SECONDS.labels(group).observe(time.perf_counter() - started)
            log.debug("nlp batch", events=len(batch), enriched=len(results))

    return app


async def run(settings: Settings, bootstrap: str, stop: asyncio.Event) -> None:
    """Run the NLP stage until ``stop`` is set."""
    analyzer = await asyncio.to_thread(build_analyzer, settings)
    app = build_app(settings, bootstrap, analyzer)
    await app.start()
    READINESS.set(settings.group("nlp"), True)
    log.info("nlp stage started", model=analyzer.model_id, group=settings.group("nlp"))
    try:
        await stop.wait()
    finally:
        READINESS.forget(settings.group("nlp"))
        await app.stop()
        log.info("nlp stage stopped")

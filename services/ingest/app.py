"""The ingest HTTP API: validates feedback and writes it to the raw topic.

A 202 means the broker acknowledged the write (acks=all), never less: a caller that got 202
can forget the event. The key is the touchpoint, so one touchpoint's events stay in order on
one partition. Ids are stable per ``source`` + ``external_id``, so a retried POST is
deduplicated downstream.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, AsyncIterator

import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.core.events import Channel, MetaValue, RawFeedback, SourceName, stable_event_id, utc_now
from services.core.kafka import Producer
from services.core.ops import ops_routes
from services.core.settings import Settings

log = structlog.get_logger(__name__)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]


class FeedbackIn(BaseModel):
    """One piece of feedback as a client sends it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "source": "app-cn", "external_id": "order-20261123-0042", "channel": "app",
        "touchpoint": "delivery", "text": "配送太慢了，等了两个小时饭都凉了",
        "occurred_at": "2026-11-23T12:00:00+08:00", "customer_id": "c-1001",
        "metadata": {"city": "上海"},
    }]})

    source: SourceName = Field(description="Sending system; with external_id it makes the id.")
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="Your id for this message; send it so retries deduplicate.")
    channel: Channel = Field(description="web, app, survey, call, email, social, chat or other.")
    touchpoint: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=128)]
    text: Text
    occurred_at: datetime | None = Field(
        default=None, description="When the customer gave it (RFC 3339 with offset); "
        "default: time of receipt.")
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    metadata: Annotated[dict[str, MetaValue], Field(max_length=64)] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _has_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset, e.g. 2026-11-23T12:00:00+08:00")
        return value


class BatchIn(BaseModel):
    """Several pieces of feedback in one request."""

    model_config = ConfigDict(extra="forbid")

    events: list[FeedbackIn] = Field(min_length=1)


class Accepted(BaseModel):
    """Events the broker acknowledged, by id in request order."""

    accepted: int
    event_ids: list[str]


def to_raw(item: FeedbackIn) -> RawFeedback:
    """The raw-topic event of one accepted item."""
    received = utc_now()
    return RawFeedback(
        event_id=stable_event_id(item.source, item.external_id),
        source=item.source, external_id=item.external_id, channel=item.channel,
        touchpoint=item.touchpoint, text=item.text,
        occurred_at=item.occurred_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata,
    )


def create_app(settings: Settings, bootstrap: str) -> FastAPI:
    """The ingest API, producing to the raw topic of ``bootstrap``."""
    producer = Producer(bootstrap, client_id=settings.group("ingest"))
    topic = settings.topic("feedback.raw")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="Tingjian (听见) ingest API", version="1", lifespan=lifespan,
                  description="Accepts customer feedback into the VoC pipeline.")

    async def publish(items: list[FeedbackIn]) -> Accepted:
        events = [to_raw(item) for item in items]
        try:
            await producer.send_many(topic, [(e.touchpoint.encode(), e.to_bytes()) for e in events])
        except KafkaError as exc:
            log.error("broker write failed", topic=topic, events=len(events), error=str(exc))
            raise HTTPException(status_code=503, headers={"Retry-After": "5"},
                                detail="the message broker did not acknowledge the write; "
                                       "nothing was accepted, retry later") from exc
        return Accepted(accepted=len(events), event_ids=[e.event_id for e in events])

    @app.post("/v1/feedback", status_code=202, response_model=Accepted,
              summary="Accept one piece of feedback")
    async def post_one(item: FeedbackIn) -> Accepted:
        return await publish([item])

    @app.post("/v1/feedback/batch", status_code=202, response_model=Accepted,
              summary="Accept up to VOC_INGEST_BATCH_MAX pieces of feedback")
    async def post_batch(batch: BatchIn) -> Accepted:
        if len(batch.events) > settings.ingest_batch_max:
            raise HTTPException(status_code=413, detail=(
                f"batch has {len(batch.events)} events; the limit is "
                f"{settings.ingest_batch_max} (VOC_INGEST_BATCH_MAX): split it"))
        return await publish(batch.events)

    app.router.routes.extend(ops_routes())
    return app

"""The ingest HTTP API: validates feedback per channel and writes it to the raw topic.

A 202 means the broker acknowledged the write (acks=all), never less: a caller that got 202
can forget the event. The key is the touchpoint, so one touchpoint's events stay in order on
one partition. Ids are stable per ``source`` + the channel's own message id, so a re-sent
message keeps its id: ingest answers a recent re-send as a duplicate without writing it again,
and the sinks drop any that get through (after a restart, or from another ingest copy).

Nothing leaves here unredacted: every event is built through ``prepare_raw``, and request
bodies are never logged. ``/metrics`` counts written and duplicate events per source and
channel, next to the process-wide pipeline metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, AsyncIterator

import structlog
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.access import Principal, Require
from services.core.events import Channel, MetaValue, RawFeedback, SourceName, stable_event_id, utc_now
from services.core.kafka import Producer
from services.core.normalize import prepare_raw
from services.core.ops import LabelBudget
from services.core.settings import Settings
from services.ingest.call_transcript import CallIn
from services.ingest.channels import (
    EmailJsonIn,
    Ratings,
    Segment,
    SocialBatchIn,
    Stage,
    SurveyBatchIn,
    call_event,
    email_event,
    parsed_from_json,
    social_event,
    survey_event,
)
from services.ingest.email_message import UndecodableEmail, parse_rfc822

log = structlog.get_logger(__name__)

WRITTEN = Counter("voc_ingest_events_total", "Events ingest wrote to the raw topic.",
                  ["source", "channel"])
# Without API keys the source is whatever a client sends: the first 100 get their own series.
SOURCE_LABEL = LabelBudget(100)
DUPLICATES = Counter("voc_ingest_duplicates_total", "Re-sent events ingest answered as "
                     "duplicates and did not write again.", ["source", "channel"])

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]
SOURCE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
Sender = Annotated[Principal, Depends(Require("ingest"))]
SourcePath = Annotated[str, Path(min_length=1, max_length=64, pattern=SOURCE_PATTERN,
                                 description="The sending system; its API key must match.")]


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
    stage: Stage | None = Field(default=None, description="售前, 售中 or 售后.")
    segment: Segment | None = Field(default=None, description="Customer segment, e.g. VIP.")
    ratings: Ratings = Field(default_factory=Ratings)
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
    """Events the broker acknowledged, by id in request order.

    ``duplicates`` counts items that were sent before (same source and message id): they are
    accepted but not written again.
    """

    accepted: int
    duplicates: int = 0
    event_ids: list[str]


def to_raw(item: FeedbackIn) -> RawFeedback:
    """The raw-topic event of one generic item."""
    received = utc_now()
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(item.source, item.external_id),
        source=item.source, external_id=item.external_id, channel=item.channel,
        touchpoint=item.touchpoint, text=item.text,
        occurred_at=item.occurred_at or received, received_at=received,
        customer_id=item.customer_id, stage=item.stage, segment=item.segment,
        ratings=item.ratings.model_dump(), metadata=item.metadata,
    ))


class BodyGuard:
    """Refuse bodies over ``limit`` bytes with 413 (also without Content-Length), and JSON
    bodies that are not UTF-8 with a 422 that says so.

    The body is read here, up to the limit, and handed on from memory: a body that turns out
    too large while streaming is refused before any route starts parsing it, and undecodable
    bytes get a clear answer rather than the framework's generic "error parsing the body".
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(scope, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind == b"application/json":
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await _not_utf8(exc, scope, send)
                return
        message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([message], then=receive), send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(status_code=413, content={"detail": (
            f"the request body is larger than {self.limit} bytes (VOC_INGEST_MAX_BODY_BYTES); "
            "split the batch or send the transcript in parts")})
        await response(scope, _replay([]), send)


async def _not_utf8(exc: UnicodeDecodeError, scope: Scope, send: Send) -> None:
    response = JSONResponse(status_code=422, content={"detail": [{
        "loc": ["body"], "type": "not_utf8",
        "msg": f"the JSON body is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
               f"{exc.start}); encode it as UTF-8, e.g. iconv -f GBK -t UTF-8"}]})
    await response(scope, _replay([]), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive callable that returns ``messages`` first, then defers to ``then``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


class Recent:
    """Event ids written lately, oldest forgotten first, to answer re-sends as duplicates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        return False

    def add(self, event_ids: list[str]) -> None:
        if not self.size:
            return
        for event_id in event_ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


def _validation_error(exc: ValidationError, prefix: tuple[str, ...]) -> RequestValidationError:
    """A pydantic error of a body parsed by hand, reported like FastAPI's own (with paths)."""
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])}
                                   for e in exc.errors(include_url=False)])


def create_app(settings: Settings, bootstrap: str) -> FastAPI:
    """The ingest API, producing to the raw topic of ``bootstrap``."""
    producer = Producer(bootstrap, client_id=settings.group("ingest"))
    topic = settings.topic("feedback.raw")
    recent = Recent(settings.ingest_dedupe_window)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="Tingjian (听见) ingest API", version="2", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Accepts customer feedback from surveys, calls, email and social "
                  "posts into the VoC pipeline. Send each source's key in X-API-Key.")
    app.add_middleware(BodyGuard, limit=settings.ingest_max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with field paths, also for bodies parsed by hand (whose errors carry the
        exception objects of custom validators)."""
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(
            exc.errors(), custom_encoder={Exception: str, bytes: lambda b: None})})

    @app.exception_handler(ValidationError)
    async def unbuildable(_: Request, exc: ValidationError) -> JSONResponse:
        """Input that passed its channel shape but makes no valid event (say, a value that
        grew past a limit) is still the caller's input: 422 naming the event field, not 500."""
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(
            [{**e, "loc": ["event", *e["loc"]]} for e in exc.errors(include_url=False)],
            custom_encoder={Exception: str, bytes: lambda b: None})})

    def authorize(sources: set[str], who: Principal) -> None:
        foreign = who.foreign_sources(sources)
        if foreign:
            raise HTTPException(status_code=403, detail=(
                f"{who.name!r} may send only for {sorted(who.sources or [])}, not for {foreign}"))

    async def publish(events: list[RawFeedback]) -> Accepted:
        fresh: list[RawFeedback] = []
        repeated: list[RawFeedback] = []
        batch_ids: set[str] = set()
        for event in events:
            if event.event_id in recent or event.event_id in batch_ids:
                repeated.append(event)
            else:
                fresh.append(event)
                batch_ids.add(event.event_id)
        try:
            await producer.send_many(topic, [(e.touchpoint.encode(), e.to_bytes()) for e in fresh])
        except KafkaError as exc:
            log.error("broker write failed", topic=topic, events=len(fresh), error=str(exc))
            raise HTTPException(status_code=503, headers={"Retry-After": "5"},
                                detail="the message broker did not acknowledge the write; "
                                       "nothing was accepted, retry later") from exc
        recent.add([e.event_id for e in fresh])
        for event in fresh:
            WRITTEN.labels(SOURCE_LABEL(event.source), event.channel).inc()
        for event in repeated:
            DUPLICATES.labels(SOURCE_LABEL(event.source), event.channel).inc()
        if repeated:
            log.info("duplicates not written again", events=len(repeated),
                     sources=sorted({e.source for e in repeated}))
        return Accepted(accepted=len(events), duplicates=len(repeated),
                        event_ids=[e.event_id for e in events])

    @app.post("/v1/feedback", status_code=202, response_model=Accepted,
              summary="Accept one piece of feedback (generic shape)")
    async def post_one(item: FeedbackIn, who: Sender) -> Accepted:
        authorize({item.source}, who)
        return await publish([to_raw(item)])

    @app.post("/v1/feedback/batch", status_code=202, response_model=Accepted,
              summary="Accept up to VOC_INGEST_BATCH_MAX pieces of feedback (generic shape)")
    async def post_batch(batch: BatchIn, who: Sender) -> Accepted:
        authorize({item.source for item in batch.events}, who)
        check_batch(len(batch.events))
        return await publish([to_raw(item) for item in batch.events])

    def check_batch(size: int) -> None:
        if size > settings.ingest_batch_max:
            raise HTTPException(status_code=413, detail=(
                f"batch has {size} items; the limit is {settings.ingest_batch_max} "
                "(VOC_INGEST_BATCH_MAX): split it"))

    @app.post("/v1/sources/{source}/surveys", status_code=202, response_model=Accepted,
              summary="Survey and web-form answers: text, NPS/CSAT/CES, stage, segment")
    async def post_surveys(source: SourcePath, batch: SurveyBatchIn,
                           who: Sender) -> Accepted:
        authorize({source}, who)
        check_batch(len(batch.responses))
        return await publish([survey_event(source, item) for item in batch.responses])

    @app.post("/v1/sources/{source}/calls", status_code=202, response_model=Accepted,
              summary="One contact-center call transcript (up to 2 hours)")
    async def post_call(source: SourcePath, call: CallIn, who: Sender) -> Accepted:
        authorize({source}, who)
        return await publish([call_event(source, call)])

    @app.post("/v1/sources/{source}/social", status_code=202, response_model=Accepted,
              summary="Social posts and comments (weibo, wechat, douyin, xiaohongshu, other)")
    async def post_social(source: SourcePath, batch: SocialBatchIn,
                          who: Sender) -> Accepted:
        authorize({source}, who)
        check_batch(len(batch.posts))
        return await publish([social_event(source, item) for item in batch.posts])

    email_body = {"requestBody": {"required": True, "content": {
        "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": EmailJsonIn.model_json_schema()},
    }}}

    @app.post("/v1/sources/{source}/emails", status_code=202, response_model=Accepted,
              summary="One email: raw RFC 822 (message/rfc822) or its JSON form",
              openapi_extra=email_body)
    async def post_email(
        request: Request, source: SourcePath, who: Sender,
        touchpoint: Annotated[str, Query(min_length=1, max_length=128)] = "email",
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Accepted:
        authorize({source}, who)
        raw = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("message/rfc822", "application/json"):
            raise HTTPException(status_code=415, detail=(
                f"content-type {kind or '(none)'} is not accepted here: send message/rfc822 "
                "or application/json"))
        try:
            if kind == "message/rfc822":
                event = email_event(source, parse_rfc822(raw), raw, touchpoint=touchpoint,
                                    customer_id=customer_id)
            else:
                item = EmailJsonIn.model_validate_json(raw)
                event = email_event(source, parsed_from_json(item), raw,
                                    touchpoint=item.touchpoint,
                                    customer_id=item.customer_id or customer_id,
                                    stage=item.stage, segment=item.segment,
                                    metadata=item.metadata)
        except ValidationError as exc:
            raise _validation_error(exc, ("body",)) from exc
        except UndecodableEmail as exc:
            raise HTTPException(status_code=422, detail=[{
                "loc": ["body"], "type": "undecodable", "msg": str(exc)}]) from exc
        return await publish([event])

    return app

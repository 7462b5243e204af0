"""The ingest HTTP API: validates feedback per channel and writes it to the raw topic.

A 202 means the broker acknowledged the write (acks=all), never less: a caller that got 202
can forget the event. The key is the touchpoint, so one touchpoint's events stay in order on
one partition. Ids are stable per ``source`` + the channel's own message id, so a re-sent
message keeps its id: ingest answers a recent re-send as a duplicate without writing it again,
and the sinks drop any that get through (after a restart, or from another ingest copy).

Nothing leaves here unredacted: every event is built through ``prepare_raw``, and request
bodies are never logged. ``/metrics`` counts written and duplicate events per source and
channel, next to the process-wide pipeline metrics.

Every byte is hostile until bounded. Input shapes bound each field; events must then keep to
the entrance bounds every consumer applies too (services/core/bounds.py: event time within
VOC_MAX_EVENT_AGE_S back and VOC_MAX_CLOCK_SKEW_S ahead, VOC_MAX_TOUCHPOINTS), answered with a
422 naming the field. Building events (email parsing, redaction, normalisation) is CPU work
proportional to the body, so it runs in a small thread pool: a 1 MB body never holds up the
event loop that answers ``/healthz`` and everyone else's requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, TypeVar

import structlog
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.access import Principal, Require
from services.core.bounds import entrance_problem
from services.core.events import (
    MAX_NAME,
    NAME_PATTERN,
    SOURCE_PATTERN,
    Channel,
    RawFeedback,
    SourceName,
    UtcTime,
    stable_event_id,
    utc_now,
)
from services.core.kafka import Producer
from services.core.normalize import prepare_raw
from services.core.ops import LabelBudget
from services.core.settings import Settings
from services.core.store import StoreError
from services.core.touchpoints import TouchpointLimit, over_cap_reason
from services.ingest.call_transcript import CallIn
from services.ingest.channels import (
    EmailJsonIn,
    Ratings,
    SocialBatchIn,
    SurveyBatchIn,
    call_event,
    email_event,
    parsed_from_json,
    social_event,
    survey_event,
)
from services.ingest.email_message import EmailTooComplex, UndecodableEmail, parse_rfc822
from services.ingest.inputs import BATCH_LIMIT, Input, Metadata, Segment, Stage, Text, Touchpoint

log = structlog.get_logger(__name__)

WRITTEN = Counter("voc_ingest_events_total", "Events ingest wrote to the raw topic.",
                  ["source", "channel"])
# Without API keys the source is whatever a client sends: the first 100 get their own series.
SOURCE_LABEL = LabelBudget(100)
DUPLICATES = Counter("voc_ingest_duplicates_total", "Re-sent events ingest answered as "
                     "duplicates and did not write again.", ["source", "channel"])

Sender = Annotated[Principal, Depends(Require("ingest"))]
T = TypeVar("T")
Loc = tuple[str | int, ...]
BATCH_LISTS = [["body", "events"], ["body", "responses"], ["body", "posts"]]
SourcePath = Annotated[str, Path(min_length=1, max_length=64, pattern=SOURCE_PATTERN,
                                 description="The sending system; its API key must match.")]


class FeedbackIn(Input):
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
    touchpoint: Touchpoint = Field(description="A name: CJK characters, ASCII letters, digits, "
                                   "_ . : - / or · with inner spaces.")
    text: Text
    occurred_at: UtcTime | None = Field(
        default=None, description="When the customer gave it (RFC 3339 with offset); "
        "default: time of receipt. At most VOC_MAX_EVENT_AGE_S old (30 days by default).")
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    stage: Stage | None = Field(default=None, description="售前, 售中 or 售后.")
    segment: Segment | None = Field(default=None, description="Customer segment, e.g. VIP.")
    ratings: Ratings = Field(default_factory=Ratings)
    metadata: Metadata = Field(default_factory=dict)


class BatchIn(Input):
    """Several pieces of feedback in one request."""

    model_config = ConfigDict(extra="forbid")

    events: list[FeedbackIn] = Field(min_length=1, max_length=BATCH_LIMIT)


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


# In a JSON body: an escaped backslash (skipped, so "\\\\ud800" is text) or the escape of one
# UTF-16 surrogate. Two fixed tokens that start differently after the backslash: linear.
_SURROGATE_ESCAPE = re.compile(r"\\\\|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: str) -> int | None:
    """Character offset of the first surrogate escape in a JSON body that is not one half of
    a high-low pair, else None.

    Python's JSON reader turns such an escape into a string no UTF-8 encoder accepts, so it
    would fail wherever the text is written out (the topic, the 422 echoing it); pydantic's
    reader and every consumer refuse it. Found here, it is a 422 naming its place.
    """
    if "\\u" not in body:
        return None
    pending: int | None = None  # start of a high surrogate waiting for its low half
    expected_at = -1
    for match in _SURROGATE_ESCAPE.finditer(body):
        token = match.group()
        if token == "\\\\":
            if pending is not None:
                return pending
            continue
        high = int(token[2:], 16) < 0xDC00
        if pending is not None and (high or match.start() != expected_at):
            return pending
        if high:
            pending, expected_at = match.start(), match.end()
        elif pending is None:
            return match.start()
        else:
            pending = None
    return pending


def _json_kind(kind: bytes) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (it does without one)."""
    return kind in (b"", b"application/json") or kind.endswith(b"+json")


class BodyGuard:
    """Refuse bodies over ``limit`` bytes with 413 (also without Content-Length), and JSON
    bodies that are not UTF-8 or hold a lone surrogate escape with a 422 that says so.

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
        if _json_kind(kind) and body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await _not_utf8(exc, scope, send)
                return
            offset = lone_surrogate(text)
            if offset is not None:
                await _unprocessable(scope, send, "lone_surrogate", (
                    f"the JSON body has a lone UTF-16 surrogate escape at character {offset} "
                    f"({text[offset:offset + 6]}); such escapes only come in high-low pairs: "
                    "send the text as UTF-8"))
                return
        message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([message], then=receive), send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(status_code=413, content={"detail": (
            f"the request body is larger than {self.limit} bytes (VOC_INGEST_MAX_BODY_BYTES); "
            "split the batch or send the transcript in parts")})
        await response(scope, _replay([]), send)


async def _not_utf8(exc: UnicodeDecodeError, scope: Scope, send: Send) -> None:
    await _unprocessable(scope, send, "not_utf8", (
        f"the JSON body is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}); encode it as UTF-8, e.g. iconv -f GBK -t UTF-8"))


async def _unprocessable(scope: Scope, send: Send, kind: str, message: str) -> None:
    response = JSONResponse(status_code=422, content={"detail": [{
        "loc": ["body"], "type": kind, "msg": message}]})
    await response(scope, _replay([]), send)


MAX_ERRORS = 100
"""Most errors one 422 lists: a batch of 100,000 empty items must not answer megabytes."""
_ENCODERS: dict[Any, Callable[[Any], Any]] = {Exception: str, bytes: lambda _: None}


def _bounded(value: Any, depth: int = 0) -> Any:
    """An input echoed in a 422, cut to a readable size and safe to encode: strings of at most
    200 characters (unpaired surrogates replaced), at most 20 items per list or object, NaN
    and infinities as text."""
    if isinstance(value, str):
        short = value if len(value) <= 200 else value[:200] + f"... ({len(value)} characters)"
        return short.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bytes):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: echoed as text
    if isinstance(value, dict):
        if depth >= 3:
            return f"(an object of {len(value)} entries)"
        return {_bounded(k, depth + 1): _bounded(v, depth + 1)
                for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        if depth >= 3:
            return f"(a list of {len(value)} items)"
        return [_bounded(v, depth + 1) for v in value[:20]]
    return value


def error_details(errors: Sequence[dict[str, Any]], prefix: Loc = ()) -> list[dict[str, Any]]:
    """pydantic errors as a 422 lists them: each with its path, the first ``MAX_ERRORS``."""
    out = []
    for error in errors[:MAX_ERRORS]:
        item = {"loc": [*prefix, *(_bounded(part) for part in error["loc"])],
                "msg": _bounded(str(error["msg"])), "type": error["type"]}
        # Cut first: an input nested 900 levels deep must not recurse through the encoder.
        if "input" in error:
            item["input"] = jsonable_encoder(_bounded(error["input"]), custom_encoder=_ENCODERS)
        if error.get("ctx"):
            item["ctx"] = jsonable_encoder(_bounded(error["ctx"]), custom_encoder=_ENCODERS)
        out.append(item)
    return out


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


def create_app(settings: Settings, bootstrap: str,
               touchpoints: TouchpointLimit | None = None) -> FastAPI:
    """The ingest API, producing to the raw topic of ``bootstrap``; with ``touchpoints``, new
    touchpoints beyond VOC_MAX_TOUCHPOINTS are refused."""
    producer = Producer(bootstrap, client_id=settings.group("ingest"))
    topic = settings.topic("feedback.raw")
    recent = Recent(settings.ingest_dedupe_window)
    # Two threads: building is CPU work that holds the GIL most of the time, so more would only
    # queue; requests beyond them wait here without holding up the event loop.
    builders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-build")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()
            builders.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Tingjian (听见) ingest API", version="2", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Accepts customer feedback from surveys, calls, email and social "
                  "posts into the VoC pipeline. Send each source's key in X-API-Key.")
    app.add_middleware(BodyGuard, limit=settings.ingest_max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with field paths, also for bodies parsed by hand (whose errors carry the
        exception objects of custom validators); echoed inputs are cut short. A batch longer
        than the shapes take is the 413 of any batch over VOC_INGEST_BATCH_MAX."""
        errors = exc.errors()
        if any(e["type"] == "too_long" and list(e["loc"]) in BATCH_LISTS for e in errors):
            return JSONResponse(status_code=413, content={"detail": (
                f"batch has more than {BATCH_LIMIT} items; the limit is "
                f"{settings.ingest_batch_max} (VOC_INGEST_BATCH_MAX): split it")})
        return JSONResponse(status_code=422, content={"detail": error_details(errors)})

    @app.exception_handler(ValidationError)
    async def unbuildable(_: Request, exc: ValidationError) -> JSONResponse:
        """Input that passed its channel shape but makes no valid event (say, a value that
        grew past a limit) is still the caller's input: 422 naming the event field, not 500."""
        return JSONResponse(status_code=422, content={"detail": error_details(
            exc.errors(include_url=False), ("event",))})

    def authorize(sources: set[str], who: Principal) -> None:
        foreign = who.foreign_sources(sources)
        if foreign:
            raise HTTPException(status_code=403, detail=(
                f"{who.name!r} may send only for {sorted(who.sources or [])}, not for {foreign}"))

    async def off_loop(build: Callable[[], T]) -> T:
        """Run ``build`` in the builder threads, with this request's log context."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(builders, context.run, build)

    def within_bounds(events: Sequence[RawFeedback], locs: Sequence[Loc], time_field: str) -> None:
        """422 for events the consumers would dead-letter (services/core/bounds.py), naming
        the input field: the event time is each channel's own field."""
        now = utc_now()
        problems = []
        for event, loc in zip(events, locs, strict=True):
            problem = entrance_problem(event, settings, now)
            if problem is not None:
                field, why = problem
                problems.append({"loc": [*loc, time_field if field == "occurred_at" else field],
                                 "type": "out_of_bounds", "msg": why})
        if problems:
            raise HTTPException(status_code=422, detail=problems[:MAX_ERRORS])

    async def within_touchpoint_cap(events: Sequence[RawFeedback], locs: Sequence[Loc],
                                    touchpoint_loc: Loc | None) -> None:
        if touchpoints is None:
            return
        try:
            refused = set(await touchpoints.refused([e.touchpoint for e in events]))
        except (StoreError, OSError) as exc:
            log.warning("touchpoint cap not checked, the store could not be read; scoring "
                        "applies it", error=str(exc)[:300])
            return
        if refused:
            raise HTTPException(status_code=422, detail=[
                {"loc": list(touchpoint_loc or (*loc, "touchpoint")), "type": "touchpoint_cap",
                 "msg": over_cap_reason(event.touchpoint, touchpoints.cap)}
                for event, loc in zip(events, locs, strict=True)
                if event.touchpoint in refused][:MAX_ERRORS])

    async def accept(events: list[RawFeedback], locs: Sequence[Loc], time_field: str,
                     touchpoint_loc: Loc | None = None) -> Accepted:
        within_bounds(events, locs, time_field)
        await within_touchpoint_cap(events, locs, touchpoint_loc)
        accepted = await publish(events)
        if touchpoints is not None:
            touchpoints.remember(e.touchpoint for e in events)
        return accepted

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
        messages = await off_loop(lambda: [(e.touchpoint.encode(), e.to_bytes()) for e in fresh])
        try:
            await producer.send_many(topic, messages)
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
        return await accept(await off_loop(lambda: [to_raw(item)]), [("body",)], "occurred_at")

    @app.post("/v1/feedback/batch", status_code=202, response_model=Accepted,
              summary="Accept up to VOC_INGEST_BATCH_MAX pieces of feedback (generic shape)")
    async def post_batch(batch: BatchIn, who: Sender) -> Accepted:
        authorize({item.source for item in batch.events}, who)
        check_batch(len(batch.events))
        events = await off_loop(lambda: [to_raw(item) for item in batch.events])
        return await accept(events, [("body", "events", i) for i in range(len(events))],
                            "occurred_at")

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
        events = await off_loop(lambda: [survey_event(source, item) for item in batch.responses])
        return await accept(events, [("body", "responses", i) for i in range(len(events))],
                            "submitted_at")

    @app.post("/v1/sources/{source}/calls", status_code=202, response_model=Accepted,
              summary="One contact-center call transcript (up to 2 hours)")
    async def post_call(source: SourcePath, call: CallIn, who: Sender) -> Accepted:
        authorize({source}, who)
        return await accept(await off_loop(lambda: [call_event(source, call)]), [("body",)],
                            "started_at")

    @app.post("/v1/sources/{source}/social", status_code=202, response_model=Accepted,
              summary="Social posts and comments (weibo, wechat, douyin, xiaohongshu, other)")
    async def post_social(source: SourcePath, batch: SocialBatchIn,
                          who: Sender) -> Accepted:
        authorize({source}, who)
        check_batch(len(batch.posts))
        events = await off_loop(lambda: [social_event(source, item) for item in batch.posts])
        return await accept(events, [("body", "posts", i) for i in range(len(events))],
                            "posted_at")

    email_body = {"requestBody": {"required": True, "content": {
        "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": EmailJsonIn.model_json_schema()},
    }}}

    @app.post("/v1/sources/{source}/emails", status_code=202, response_model=Accepted,
              summary="One email: raw RFC 822 (message/rfc822) or its JSON form",
              openapi_extra=email_body)
    async def post_email(
        request: Request, source: SourcePath, who: Sender,
        touchpoint: Annotated[str, Query(min_length=1, max_length=MAX_NAME,
                                         pattern=NAME_PATTERN)] = "email",
        customer_id: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Accepted:
        authorize({source}, who)
        raw = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("message/rfc822", "application/json"):
            raise HTTPException(status_code=415, detail=(
                f"content-type {kind or '(none)'} is not accepted here: send message/rfc822 "
                "or application/json"))

        def from_rfc822() -> RawFeedback:
            return email_event(source, parse_rfc822(raw), raw, touchpoint=touchpoint,
                               customer_id=customer_id)

        def from_json() -> RawFeedback:
            item = EmailJsonIn.model_validate_json(raw)
            return email_event(source, parsed_from_json(item), raw, touchpoint=item.touchpoint,
                               customer_id=item.customer_id or customer_id, stage=item.stage,
                               segment=item.segment, metadata=item.metadata)

        try:
            event = await off_loop(from_rfc822 if kind == "message/rfc822" else from_json)
        except ValidationError as exc:
            raise _validation_error(exc, ("body",)) from exc
        except EmailTooComplex as exc:
            raise HTTPException(status_code=422, detail=[{
                "loc": ["body"], "type": f"email_{exc.limit}", "msg": str(exc)}]) from exc
        except UndecodableEmail as exc:
            raise HTTPException(status_code=422, detail=[{
                "loc": ["body"], "type": "undecodable", "msg": str(exc)}]) from exc
        if kind == "message/rfc822":
            return await accept([event], [("body",)], "Date", ("query", "touchpoint"))
        return await accept([event], [("body",)], "sent_at")

    return app

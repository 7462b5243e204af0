"""What every channel does with the events it built: entrance checks, dedupe, the broker write.

A 202 means the broker acknowledged the write (acks=all), never less: a caller that got 202
can forget the event. The key is the touchpoint, so one touchpoint's events stay in order on
one partition. Ids are stable per ``source`` + the channel's own message id, so a re-sent
message keeps its id: a recent re-send is answered as a duplicate without being written again,
and the sinks drop any that get through (after a restart, or from another ingest copy).

Events must keep to the entrance bounds every consumer applies too (services/core/bounds.py:
event time within VOC_MAX_EVENT_AGE_S back and VOC_MAX_CLOCK_SKEW_S ahead, VOC_MAX_TOUCHPOINTS),
answered with a 422 naming the channel's own input field. Building events (email parsing,
redaction, normalisation) is CPU work proportional to the body, so it runs in a small thread
pool: a 1 MB body never holds up the event loop that answers ``/healthz`` and everyone else.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog
from aiokafka.errors import KafkaError
from fastapi import HTTPException
from prometheus_client import Counter
from pydantic import BaseModel

from services.core.bounds import entrance_problem
from services.core.events import RawFeedback, utc_now
from services.core.kafka import Producer
from services.core.ops import LabelBudget
from services.core.settings import Settings
from services.core.store import StoreError
from services.core.touchpoints import TouchpointLimit, over_cap_reason

log = structlog.get_logger(__name__)

WRITTEN = Counter("voc_ingest_events_total", "Events ingest wrote to the raw topic.",
                  ["source", "channel"])
# Without API keys the source is whatever a client sends: the first 100 get their own series.
SOURCE_LABEL = LabelBudget(100)
DUPLICATES = Counter("voc_ingest_duplicates_total", "Re-sent events ingest answered as "
                     "duplicates and did not write again.", ["source", "channel"])

MAX_ERRORS = 100
"""Most errors one 422 lists: a batch of 100,000 empty items must not answer megabytes."""

T = TypeVar("T")
Item = TypeVar("Item")
Loc = tuple[str | int, ...]


class Accepted(BaseModel):
    """Events the broker acknowledged, by id in request order.

    ``duplicates`` counts items that were sent before (same source and message id): they are
    accepted but not written again.
    """

    accepted: int
    duplicates: int = 0
    event_ids: list[str]


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


class Publisher:
    """Builds a channel's events off the event loop, checks them, and writes the new ones to
    the raw topic; with ``touchpoints``, new touchpoints beyond VOC_MAX_TOUCHPOINTS are
    refused."""

    def __init__(self, settings: Settings, producer: Producer,
                 touchpoints: TouchpointLimit | None = None) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = settings.topic("feedback.raw")
        self.touchpoints = touchpoints
        self.recent = Recent(settings.ingest_dedupe_window)
        # Two threads: building is CPU work that holds the GIL most of the time, so more would
        # only queue; requests beyond them wait here without holding up the event loop.
        self._builders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-build")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        try:
            await self.producer.stop()
        finally:
            self._builders.shutdown(wait=False, cancel_futures=True)

    async def off_loop(self, build: Callable[[], T]) -> T:
        """Run ``build`` in the builder threads, with this request's log context."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._builders, context.run,
                                                                build)

    async def accept_batch(self, items: Sequence[Item], build: Callable[[Item], RawFeedback],
                           field: str, time_field: str) -> Accepted:
        """The events of a batch route's ``items`` (the body's list ``field``), one each."""
        self.check_batch(len(items))
        events = await self.off_loop(lambda: [build(item) for item in items])
        return await self.accept(events, [("body", field, i) for i in range(len(events))],
                                 time_field)

    async def accept_one(self, build: Callable[[], RawFeedback], time_field: str,
                         touchpoint_loc: Loc | None = None) -> Accepted:
        """The one event a body makes."""
        return await self.accept([await self.off_loop(build)], [("body",)], time_field,
                                 touchpoint_loc)

    def check_batch(self, size: int) -> None:
        if size > self.settings.ingest_batch_max:
            raise HTTPException(status_code=413, detail=(
                f"batch has {size} items; the limit is {self.settings.ingest_batch_max} "
                "(VOC_INGEST_BATCH_MAX): split it"))

    async def accept(self, events: list[RawFeedback], locs: Sequence[Loc], time_field: str,
                     touchpoint_loc: Loc | None = None) -> Accepted:
        """Check ``events`` (``locs`` name each one's place in the request, ``time_field``
        the input field that became its ``occurred_at``) and publish them."""
        self._within_bounds(events, locs, time_field)
        await self._within_touchpoint_cap(events, locs, touchpoint_loc)
        accepted = await self._publish(events)
        if self.touchpoints is not None:
            self.touchpoints.remember(e.touchpoint for e in events)
        return accepted

    def _within_bounds(self, events: Sequence[RawFeedback], locs: Sequence[Loc],
                       time_field: str) -> None:
        """422 for events the consumers would dead-letter (services/core/bounds.py), naming
        the input field: the event time is each channel's own field."""
        now = utc_now()
        problems = []
        for event, loc in zip(events, locs, strict=True):
            problem = entrance_problem(event, self.settings, now)
            if problem is not None:
                field, why = problem
                problems.append({"loc": [*loc, time_field if field == "occurred_at" else field],
                                 "type": "out_of_bounds", "msg": why})
        if problems:
            raise HTTPException(status_code=422, detail=problems[:MAX_ERRORS])

    async def _within_touchpoint_cap(self, events: Sequence[RawFeedback], locs: Sequence[Loc],
                                     touchpoint_loc: Loc | None) -> None:
        if self.touchpoints is None:
            return
        try:
            refused = set(await self.touchpoints.refused([e.touchpoint for e in events]))
        except (StoreError, OSError) as exc:
            log.warning("touchpoint cap not checked, the store could not be read; scoring "
                        "applies it", error=str(exc)[:300])
            return
        if refused:
            raise HTTPException(status_code=422, detail=[
                {"loc": list(touchpoint_loc or (*loc, "touchpoint")), "type": "touchpoint_cap",
                 "msg": over_cap_reason(event.touchpoint, self.touchpoints.cap)}
                for event, loc in zip(events, locs, strict=True)
                if event.touchpoint in refused][:MAX_ERRORS])

    async def _publish(self, events: list[RawFeedback]) -> Accepted:
        fresh: list[RawFeedback] = []
        repeated: list[RawFeedback] = []
        batch_ids: set[str] = set()
        for event in events:
            if event.event_id in self.recent or event.event_id in batch_ids:
                repeated.append(event)
            else:
                fresh.append(event)
                batch_ids.add(event.event_id)
        messages = await self.off_loop(
            lambda: [(e.touchpoint.encode(), e.to_bytes()) for e in fresh])
        try:
            await self.producer.send_many(self.topic, messages)
        except KafkaError as exc:
            log.error("broker write failed", topic=self.topic, events=len(fresh), error=str(exc))
            raise HTTPException(status_code=503, headers={"Retry-After": "5"},
                                detail="the message broker did not acknowledge the write; "
                                       "nothing was accepted, retry later") from exc
        self.recent.add([e.event_id for e in fresh])
        for event in fresh:
            WRITTEN.labels(SOURCE_LABEL(event.source), event.channel).inc()
        for event in repeated:
            DUPLICATES.labels(SOURCE_LABEL(event.source), event.channel).inc()
        if repeated:
            log.info("duplicates not written again", events=len(repeated),
                     sources=sorted({e.source for e in repeated}))
        return Accepted(accepted=len(events), duplicates=len(repeated),
                        event_ids=[e.event_id for e in events])

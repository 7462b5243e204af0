"""The generic shape: one piece of feedback of any channel, with its source in the body.

For systems without a channel route of their own (apps, chat, web forms that are not
surveys). The event id is derived from ``source`` + ``external_id``, so a client that retries
must send ``external_id``.
"""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter
from pydantic import ConfigDict, Field, StringConstraints

from services.core.channels import prepare_raw
from services.core.events import Channel, RawFeedback, SourceName, UtcTime, stable_event_id, utc_now
from services.core.events import Ratings as WireRatings
from services.ingest.deps import PublisherDep, Sender, authorize
from services.ingest.inputs import (
    Batch,
    CustomerId,
    Input,
    Metadata,
    Ratings,
    Segment,
    Stage,
    Text,
    Touchpoint,
)
from services.ingest.publish import Accepted

router = APIRouter()

_CHANNELS = get_args(Channel)


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
    channel: Channel = Field(description=f"{', '.join(_CHANNELS[:-1])} or {_CHANNELS[-1]}.")
    touchpoint: Touchpoint = Field(description="A name: CJK characters, ASCII letters, digits, "
                                   "_ . : - / or · with inner spaces.")
    text: Text
    occurred_at: UtcTime | None = Field(
        default=None, description="When the customer gave it (RFC 3339 with offset); "
        "default: time of receipt. At most VOC_MAX_EVENT_AGE_S old (30 days by default).")
    customer_id: CustomerId | None = None
    stage: Stage | None = Field(default=None, description="售前, 售中 or 售后.")
    segment: Segment | None = Field(default=None, description="Customer segment, e.g. VIP.")
    ratings: Ratings = Field(default_factory=Ratings)
    metadata: Metadata = Field(default_factory=dict)


class BatchIn(Input):
    """Several pieces of feedback in one request."""

    model_config = ConfigDict(extra="forbid")

    events: Batch[FeedbackIn]


def to_raw(item: FeedbackIn) -> RawFeedback:
    """The raw-topic event of one generic item."""
    received = utc_now()
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(item.source, item.external_id),
        source=item.source, external_id=item.external_id, channel=item.channel,
        touchpoint=item.touchpoint, text=item.text,
        occurred_at=item.occurred_at or received, received_at=received,
        customer_id=item.customer_id, stage=item.stage, segment=item.segment,
        ratings=WireRatings(**item.ratings.model_dump()), metadata=item.metadata,
    ))


@router.post("/v1/feedback", status_code=202, response_model=Accepted,
             summary="Accept one piece of feedback (generic shape)")
async def post_one(item: FeedbackIn, who: Sender, publisher: PublisherDep) -> Accepted:
    authorize({item.source}, who)
    return await publisher.accept_one(lambda: to_raw(item), "occurred_at")


@router.post("/v1/feedback/batch", status_code=202, response_model=Accepted,
             summary="Accept up to VOC_INGEST_BATCH_MAX pieces of feedback (generic shape)")
async def post_batch(batch: BatchIn, who: Sender, publisher: PublisherDep) -> Accepted:
    authorize({item.source for item in batch.events}, who)
    return await publisher.accept_batch(batch.events, to_raw, "events", "occurred_at")

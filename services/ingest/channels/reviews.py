"""Product and store reviews from e-commerce, local-services and app-store platforms (Tmall,
JD, Pinduoduo, Meituan, Dianping, app stores): the star rating becomes CSAT, the product and
SKU travel as facts, the merchant's reply is kept for context but not analysed.

``platform:review_id`` is a review's identity. A 追评 (the customer's follow-up, often days
later and often the real verdict: "用了一周就坏了") is an item of its own with
``follow_up: true``: it becomes its own event, ``platform:review_id:follow_up``, without a
rating, so a connector that re-exports a review once it gained a follow-up adds the follow-up
and does not count the review or its stars twice.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from services.core.bounds import clean_input
from services.core.channels import prepare_raw, review_key
from services.core.events import (
    Ratings,
    RawFeedback,
    ReviewFacts,
    ReviewPlatform,
    UtcTime,
    stable_event_id,
    utc_now,
)
from services.ingest.deps import PublisherDep, Source
from services.ingest.inputs import (
    Batch,
    CustomerId,
    Id,
    Input,
    Metadata,
    Segment,
    Stage,
    Text,
    Touchpoint,
)
from services.ingest.publish import Accepted

router = APIRouter()

REPLY_LABEL = "商家回复："
"""What precedes the merchant's reply in the event's text; the review analysis drops the
reply (services/core/channels.py), for events from ingest and direct producers alike."""


class ReviewIn(Input):
    """One review, or one follow-up (追评) to a review, as the platform exports it."""

    model_config = ConfigDict(extra="forbid")

    platform: ReviewPlatform
    review_id: Id
    follow_up: bool = Field(default=False, description="True for the customer's 追评 to "
                            "review_id: its own event, without stars.")
    stars: Annotated[int, Field(ge=1, le=5)] | None = Field(
        default=None, description="1-5 (round half stars); becomes CSAT. Required for a "
        "review, absent on a follow-up.")
    text: Text
    reply: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20000),
                     BeforeValidator(clean_input)] | None = Field(
        default=None, description="The merchant's reply: kept in text, not analysed.")
    touchpoint: Touchpoint = "review"
    product_id: Id | None = None
    sku_id: Id | None = None
    product_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1024),
                            BeforeValidator(clean_input)] | None = None
    stage: Stage | None = None
    segment: Segment | None = None
    customer_id: CustomerId | None = None
    reviewed_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stars_on_reviews_only(self) -> ReviewIn:
        if self.follow_up and self.stars is not None:
            raise ValueError("a follow-up carries no stars (the review's stars count once); "
                             "drop stars or send the review itself")
        if not self.follow_up and self.stars is None:
            raise ValueError("a review needs its stars (1-5)")
        return self


class ReviewBatchIn(Input):
    """Reviews and follow-ups, e.g. one product's new reviews since the last export."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reviews": [{
        "platform": "jd", "review_id": "18832157701", "stars": 2, "touchpoint": "delivery",
        "product_id": "100012043978", "sku_id": "100012043978-黑色",
        "product_name": "小熊电煮锅 1.2L", "text": "锅还行，快递太慢了，外箱都压扁了",
        "reply": "亲，给您带来不便非常抱歉，已反馈物流",
        "reviewed_at": "2026-11-23T20:15:00+08:00"}]}]})

    reviews: Batch[ReviewIn]


def review_event(source: str, item: ReviewIn) -> RawFeedback:
    """The raw event of one review or follow-up: the merchant's reply after the text, the
    stars as CSAT."""
    received = utc_now()
    facts = ReviewFacts(platform=item.platform, review_id=item.review_id,
                        follow_up=item.follow_up, product_id=item.product_id,
                        sku_id=item.sku_id, product_name=item.product_name)
    external = review_key(facts)
    text = f"{item.text}\n{REPLY_LABEL}{item.reply}" if item.reply else item.text
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel="review", touchpoint=item.touchpoint, text=text,
        occurred_at=item.reviewed_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata, stage=item.stage,
        segment=item.segment, ratings=Ratings(csat=item.stars), review=facts,
    ))


@router.post("/v1/sources/{source}/reviews", status_code=202, response_model=Accepted,
             summary="Product and store reviews and their follow-ups (追评): stars become CSAT")
async def post_reviews(source: Source, batch: ReviewBatchIn, publisher: PublisherDep) -> Accepted:
    return await publisher.accept_batch(batch.reviews, lambda item: review_event(source, item),
                                        "reviews", "reviewed_at")

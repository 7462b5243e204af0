"""Survey and web-form answers: text with NPS, CSAT and CES, stage and segment.

A batch comes from one source (a survey tool's export); ``survey_id:response_id`` is the
message's identity, so a re-exported answer keeps its event id.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import ConfigDict, Field

from services.core.channels import prepare_raw
from services.core.events import Ratings as WireRatings
from services.core.events import RawFeedback, UtcTime, stable_event_id, utc_now
from services.ingest.deps import PublisherDep, Source
from services.ingest.inputs import (
    Batch,
    CustomerId,
    Id,
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


class SurveyResponseIn(Input):
    """One web-form or survey answer."""

    model_config = ConfigDict(extra="forbid")

    response_id: Id
    survey_id: Id | None = Field(default=None, description="Form or questionnaire id; with "
                                 "response_id it is the message's identity.")
    channel: Literal["survey", "web"] = "survey"
    touchpoint: Touchpoint
    text: Text
    ratings: Ratings = Field(default_factory=Ratings)
    stage: Stage | None = None
    segment: Segment | None = None
    customer_id: CustomerId | None = None
    submitted_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)


class SurveyBatchIn(Input):
    """A batch of survey answers, as survey tools export them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"responses": [{
        "response_id": "nps-2026w47-000912", "survey_id": "nps-post-delivery",
        "touchpoint": "delivery", "stage": "售后", "segment": "VIP", "customer_id": "c-10017",
        "ratings": {"nps": 2, "csat": 1, "ces": 6}, "text": "快递员没打电话就把东西放门口了",
        "submitted_at": "2026-11-23T09:12:00+08:00", "metadata": {"city": "杭州"}}]}]})

    responses: Batch[SurveyResponseIn]


def survey_event(source: str, item: SurveyResponseIn) -> RawFeedback:
    """The raw event of one survey answer."""
    received = utc_now()
    external = f"{item.survey_id}:{item.response_id}" if item.survey_id else item.response_id
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel=item.channel, touchpoint=item.touchpoint, text=item.text,
        occurred_at=item.submitted_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata, stage=item.stage,
        segment=item.segment, ratings=WireRatings(**item.ratings.model_dump()),
    ))


@router.post("/v1/sources/{source}/surveys", status_code=202, response_model=Accepted,
             summary="Survey and web-form answers: text, NPS/CSAT/CES, stage, segment")
async def post_surveys(source: Source, batch: SurveyBatchIn,
                       publisher: PublisherDep) -> Accepted:
    return await publisher.accept_batch(batch.responses, lambda item: survey_event(source, item),
                                        "responses", "submitted_at")

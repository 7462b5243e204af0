"""Contact-center calls: one transcript per request, the customer's turns analysed.

The input shape and the call-level facts (holds, silences, transfers) are in
``services/ingest/call_transcript.py``; ``call_id`` is the message's identity.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.core.channels import prepare_raw
from services.core.events import CallFacts, RawFeedback, stable_event_id, utc_now
from services.core.normalize import to_simplified
from services.core.pii import redact
from services.ingest.call_transcript import (
    CallIn,
    call_facts,
    customer_text,
    redacted_turns,
    transcript_text,
)
from services.ingest.deps import PublisherDep, Source
from services.ingest.publish import Accepted

router = APIRouter()


def call_event(source: str, call: CallIn) -> RawFeedback:
    """The raw event of one call: the labelled transcript, customer turns for analysis."""
    turns = redacted_turns(call.turns)
    analysed, spans = customer_text(turns, to_simplified)
    facts = call_facts(call)
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, call.call_id), source=source,
        external_id=call.call_id, channel="call", touchpoint=call.touchpoint,
        text=redact(transcript_text(turns)), analysis_text=analysed,
        occurred_at=call.started_at, received_at=utc_now(), customer_id=call.customer_id,
        metadata=call.metadata, stage=call.stage, segment=call.segment,
        call=CallFacts(**facts, customer_spans=spans),
    ))


@router.post("/v1/sources/{source}/calls", status_code=202, response_model=Accepted,
             summary="One contact-center call transcript (up to 2 hours)")
async def post_call(source: Source, call: CallIn, publisher: PublisherDep) -> Accepted:
    return await publisher.accept_one(lambda: call_event(source, call), "started_at")

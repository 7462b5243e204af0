"""Bounds every event must keep to wherever it enters: ingest, or a consumer of a topic that
direct producers write to (raw and enriched feedback skip ingest).

The wire models bound each field on its own (lengths, ranges, character sets). What needs a
clock or a setting lives here, so ingest answers 422 and the consumers dead-letter by one
rule: an event dated in the future would otherwise hold a touchpoint's newest time and flag
every real event of it too late; one dated centuries back would open a partition per month.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.core.events import RawFeedback
from services.core.settings import Settings


def entrance_problem(event: RawFeedback, settings: Settings, now: datetime) -> tuple[str, str] | None:
    """(field, why) when ``event`` may not enter the pipeline at ``now``, else None."""
    skew = timedelta(seconds=settings.max_clock_skew_s)
    if event.received_at > now + skew:
        return "received_at", (f"{event.received_at.isoformat()} is more than "
                               f"{settings.max_clock_skew_s}s ahead of this server's clock "
                               "(VOC_MAX_CLOCK_SKEW_S); fix the sender's clock")
    if event.occurred_at > now + skew:
        return "occurred_at", (f"{event.occurred_at.isoformat()} is more than "
                               f"{settings.max_clock_skew_s}s in the future "
                               "(VOC_MAX_CLOCK_SKEW_S); send the time the customer gave it")
    oldest = now - timedelta(seconds=settings.max_event_age_s)
    if event.occurred_at < oldest:
        return "occurred_at", (f"{event.occurred_at.isoformat()} is older than "
                               f"{settings.max_event_age_s}s (VOC_MAX_EVENT_AGE_S); "
                               "raise it for a backfill")
    return None

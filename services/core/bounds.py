"""Bounds every event must keep to wherever it enters: ingest, or a consumer of a topic that
direct producers write to (raw and enriched feedback skip ingest).

The wire models bound each field on its own (lengths, ranges, character sets). What needs a
clock or a setting lives here, so ingest answers 422 and the consumers dead-letter by one
rule: an event dated in the future would otherwise hold a touchpoint's newest time and flag
every real event of it too late; one dated centuries back would open a partition per month.
The cap on distinct touchpoints needs the store and lives in services/core/touchpoints.py.

Texts are free, but control and zero-width characters carry no meaning a customer meant:
they only hide words from the cues ("1\u200b2315") and from people reading the dashboard. Ingest
removes them from every text it receives (:func:`without_invisibles`); names never allow them.
Events of direct producers are taken as sent (JSON escapes them on the wire).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from services.core.events import RawFeedback
from services.core.settings import Settings

# C0 and C1 controls except tab, line feed and carriage return; soft hyphen; zero-width space,
# joiners and direction marks; bidirectional embeddings, overrides and isolates; word joiner
# and invisible operators; byte order mark; interlinear annotation marks. One character class:
# linear, whatever the text.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def without_invisibles(text: str) -> str:
    """``text`` without control and zero-width characters (tab and line breaks stay)."""
    return _INVISIBLE.sub("", text)


def clean_input(value: object) -> object:
    """A validator for input texts: strings lose their invisible characters, the rest is left
    for the type check to refuse."""
    return without_invisibles(value) if isinstance(value, str) else value


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
                               f"{settings.max_event_age_s}s (VOC_MAX_EVENT_AGE_S); to load "
                               "history, run a backfill with VOC_MAX_EVENT_AGE_S raised to "
                               "cover it (docs/operations.md, Backfill)")
    return None

"""Event-time tumbling windows and the figures of one window.

Kept free of I/O so the arithmetic is unit-tested on its own; the worker feeds it rows that
ClickHouse aggregated from the stored (deduplicated) events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.core.events import EnrichedFeedback, Score


def window_start(moment: datetime, seconds: int) -> datetime:
    """Start of the tumbling window of ``seconds`` that contains ``moment`` (UTC-aligned)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def affected_windows(events: Iterable[EnrichedFeedback], seconds: int) -> set[tuple[str, datetime]]:
    """(touchpoint, window start) pairs a batch of events touches."""
    return {(e.touchpoint, window_start(e.occurred_at, seconds)) for e in events}


def score_from_counts(row: Mapping[str, Any], seconds: int, computed_at: datetime) -> Score:
    """A score event from one aggregated window row (see ``WINDOW_SQL``)."""
    start = datetime.fromtimestamp(int(row["window_epoch"]), UTC)
    volume = int(row["volume"])
    negatives = int(row["negative_count"])
    return Score(
        touchpoint=row["touchpoint"],
        window_start=start,
        window_end=start + timedelta(seconds=seconds),
        window_seconds=seconds,
        volume=volume,
        positive_count=int(row["positive_count"]),
        neutral_count=int(row["neutral_count"]),
        negative_count=negatives,
        mean_sentiment=max(-1.0, min(1.0, float(row["mean_sentiment"]))),
        negative_share=negatives / volume,
        computed_at=computed_at,
    )


def feedback_row(event: EnrichedFeedback, inserted_ms: int) -> dict[str, Any]:
    """The ``feedback`` table row of an enriched event."""
    return {
        "event_id": event.event_id,
        "source": event.source,
        "external_id": event.external_id or "",
        "channel": event.channel,
        "touchpoint": event.touchpoint,
        "customer_id": event.customer_id or "",
        "text": event.text,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "enriched_at": event.enriched_at,
        "sentiment": event.sentiment.score,
        "sentiment_label": event.sentiment.label,
        "sentiment_model": event.sentiment.model,
        "topics": [t.id for t in event.topics],
        "topic_sentiments": [t.sentiment.score for t in event.topics],
        "stage": event.stage or "",
        "segment": event.segment or "",
        "nps": event.ratings.nps,
        "csat": event.ratings.csat,
        "ces": event.ratings.ces,
        "intent": event.intent,
        "urgent_flags": sorted({u.flag for u in event.urgency}),
        "keywords": event.keywords,
        "metadata": json.dumps(event.metadata, ensure_ascii=False),
        "enriched_json": event.model_dump_json(by_alias=True),
        "inserted_ms": inserted_ms,
    }


def score_row(score: Score, computed_ms: int) -> dict[str, Any]:
    """The ``scores`` table row of a window score."""
    return {
        "touchpoint": score.touchpoint,
        "window_seconds": score.window_seconds,
        "window_start": score.window_start,
        "volume": score.volume,
        "positive_count": score.positive_count,
        "neutral_count": score.neutral_count,
        "negative_count": score.negative_count,
        "mean_sentiment": score.mean_sentiment,
        "negative_share": score.negative_share,
        "computed_ms": computed_ms,
    }


# Aggregates the stored events of the given touchpoints and time range into windows. Epoch
# arithmetic instead of toStartOfInterval: ClickHouse 18.16 lacks that function.
WINDOW_SQL = """
SELECT
    touchpoint,
    intDiv(toUInt32(occurred_at), %(seconds)s) * %(seconds)s AS window_epoch,
    count() AS volume,
    countIf(sentiment_label = 'positive') AS positive_count,
    countIf(sentiment_label = 'neutral') AS neutral_count,
    countIf(sentiment_label = 'negative') AS negative_count,
    avg(sentiment) AS mean_sentiment
FROM feedback FINAL
WHERE touchpoint IN %(touchpoints)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
GROUP BY touchpoint, window_epoch
"""

"""Event-time tumbling windows and the stored rows of an event and of a legacy window score.

Kept free of I/O so the arithmetic is unit-tested on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.core.events import EnrichedFeedback, Score


def window_start(moment: datetime, seconds: int) -> datetime:
    """Start of the tumbling window of ``seconds`` that contains ``moment`` (UTC-aligned)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


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

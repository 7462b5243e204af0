"""The stored ``feedback`` row of an enriched event.

Kept free of I/O so the mapping is unit-tested on its own; the window arithmetic every stage
shares is ``window_start`` in services/core/cem_metrics.py.
"""

from __future__ import annotations

import json
from typing import Any

from services.core.events import EnrichedFeedback


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
        **channel_columns(event),
    }


def channel_columns(event: EnrichedFeedback) -> dict[str, Any]:
    """The channel-fact columns (migration 0005); empty or NULL for other channels."""
    call, mail, post, tone = event.call, event.email, event.social, event.call_tone
    return {
        "analysis_text": event.analysis_text or "",
        "thread_id": (mail and mail.thread_id) or (post and post.root_id) or "",
        "parent_id": (mail and mail.in_reply_to) or (post and post.parent_id) or "",
        "call_duration_s": call.duration_s if call else None,
        "call_silence_s": call.silence_s if call else None,
        "call_hold_s": call.hold_s if call else None,
        "call_hold_count": call.hold_count if call else None,
        "call_transfers": call.transfers if call else None,
        "call_tone": tone.trend if tone else "",
        "call_tone_change": tone.change if tone else None,
        "social_platform": post.platform if post else "",
        "social_followers": post.followers if post else None,
        "social_likes": post.likes if post else None,
        "social_reposts": post.reposts if post else None,
        "hashtags": list(post.hashtags) if post else [],
        "attachments": list(mail.attachments) if mail else [],
    }


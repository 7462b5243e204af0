"""Where the scoring stage's output goes: the ``Sink`` seam, the store and topic sinks, the
batching writer that feeds them, and the ``feedback`` row of an enriched event.

The shape follows quix-streams' ``BatchingSink`` and bytewax's ``write_batch``: a sink takes
a whole batch at once (ClickHouse wants few large inserts), and the writer collects what one
consumer batch produces and hands each sink its part at ``flush``. Sinks are written in the
order the writer was given them, because later output depends on earlier output: an event's
id goes in after its row, a window's score is published after it is stored. A failed write
raises to the consumer's failure policy (services/core/failures.py), which retries or splits
the batch; the writer keeps nothing for the retry, which adds its items again, and what was
written before the failure collapses with the retry's rows (ReplacingMergeTree, keyed by id).
Storing somewhere else is one more class with ``write_batch``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from services.core.events import EnrichedFeedback
from services.core.kafka import Producer
from services.core.phrases import candidate_phrases
from services.core.store import Row, Store

T_contra = TypeVar("T_contra", contravariant=True)


class Sink(Protocol[T_contra]):
    """A destination that takes items a batch at a time."""

    name: str

    async def write_batch(self, items: Sequence[T_contra]) -> None:
        """Write every item, or raise; a sink is never given an empty batch."""


class TableSink:
    """Rows into one store table (``Sink[Row]``); rows of one batch share their columns."""

    def __init__(self, store: Store, table: str, *, month_column: str | None = None) -> None:
        self.store = store
        self.name = table
        self.month_column = month_column
        """Partition column: the store splits inserts that span too many months."""

    async def write_batch(self, items: Sequence[Row]) -> None:
        await self.store.insert(self.name, items, month_column=self.month_column)


Message = tuple[bytes, bytes]
"""A Kafka message as (key, value)."""


class TopicSink:
    """Messages onto one topic (``Sink[Message]``), acknowledged by the broker (acks=all)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.name = topic

    async def write_batch(self, items: Sequence[Message]) -> None:
        await self.producer.send_many(self.name, list(items))


class BatchWriter:
    """Collects the items of one consumer batch per sink and writes them, sink by sink in the
    order given here, at ``flush``."""

    def __init__(self, *sinks: Sink[Any]) -> None:
        self._sinks = sinks
        self._pending: dict[int, list[Any]] = {}

    def add(self, sink: Sink[Any], items: Sequence[Any]) -> None:
        """Queue ``items`` for ``sink`` (one of this writer's)."""
        if not any(s is sink for s in self._sinks):
            raise ValueError(f"sink {sink.name!r} is not one of this writer's "
                             f"({', '.join(s.name for s in self._sinks)})")
        self._pending.setdefault(id(sink), []).extend(items)

    async def flush(self) -> None:
        """Write what was added, in sink order; empty sinks are skipped. Nothing stays queued,
        whether the writes succeed or not."""
        pending, self._pending = self._pending, {}
        for sink in self._sinks:
            items = pending.get(id(sink))
            if items:
                await sink.write_batch(items)


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
        "effort": int(event.effort is not None),
        "effort_score": event.effort.score if event.effort is not None else 0.0,
        "keywords": event.keywords,
        "phrases": candidate_phrases(event.tokens),
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
        "call_agent": (call.agent_id or "") if call else "",
        "call_queue": (call.queue or "") if call else "",
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

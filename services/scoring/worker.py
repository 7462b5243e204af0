"""The scoring stage: enriched events -> ``feedback`` rows -> window scores -> ``scores`` topic.

Each batch is handled as: store the events that are not stored yet, recompute every window the
batch touched from the stored rows, store the new window rows, publish them, then (in the
consumer) commit. Recomputing from stored, deduplicated rows is what makes the stage
idempotent: a re-delivered event changes no figure, and a crash at any point converges.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog
from aiokafka import ConsumerRecord

from services.core.events import EnrichedFeedback, Score, utc_now
from services.core.kafka import BatchConsumer, Producer, parse_or_dead_letter
from services.core.settings import Settings
from services.core.store import Store
from services.scoring.windows import (
    WINDOW_SQL,
    affected_windows,
    feedback_row,
    score_from_counts,
    score_row,
)

log = structlog.get_logger(__name__)


class Scorer:
    """Handles batches of enriched-topic records."""

    def __init__(self, settings: Settings, store: Store, producer: Producer) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.seconds = settings.window_seconds
        self.stored = 0
        self.duplicates = 0
        self._last_report = 0.0

    async def handle(self, records: list[ConsumerRecord]) -> None:
        events: dict[str, EnrichedFeedback] = {}
        for event in await parse_or_dead_letter(EnrichedFeedback, records, "scoring",
                                                self.producer, self.settings):
            events.setdefault(event.event_id, event)
        if not events:
            return
        fresh = await self._unstored(list(events.values()))
        now_ms = int(time.time() * 1000)
        await self.store.insert("feedback", [feedback_row(e, now_ms) for e in fresh])
        scores = await self._recompute(list(events.values()))
        await self.store.insert("scores", [score_row(s, now_ms) for s in scores])
        await self.producer.send_many(
            self.settings.topic("scores"),
            [(s.touchpoint.encode(), s.to_bytes()) for s in scores],
        )
        self.stored += len(fresh)
        self.duplicates += len(events) - len(fresh)
        if time.monotonic() - self._last_report >= 10:
            self._last_report = time.monotonic()
            log.info("scoring progress", events_stored=self.stored,
                     duplicates_skipped=self.duplicates, windows_in_last_batch=len(scores))

    async def _unstored(self, events: list[EnrichedFeedback]) -> list[EnrichedFeedback]:
        """The events whose id is not in the store yet (lookup narrowed by the sort key)."""
        rows = await self.store.query(
            "SELECT DISTINCT event_id FROM feedback WHERE touchpoint IN %(touchpoints)s "
            "AND occurred_at >= %(lo)s AND occurred_at <= %(hi)s AND event_id IN %(ids)s",
            {
                "touchpoints": tuple({e.touchpoint for e in events}),
                "lo": min(e.occurred_at for e in events),
                "hi": max(e.occurred_at for e in events),
                "ids": tuple(e.event_id for e in events),
            },
        )
        stored = {row["event_id"] for row in rows}
        return [e for e in events if e.event_id not in stored]

    async def _recompute(self, events: list[EnrichedFeedback]) -> list[Score]:
        """Fresh scores of every window the batch touched, from all stored rows."""
        windows = affected_windows(events, self.seconds)
        starts = [start for _, start in windows]
        rows = await self.store.query(WINDOW_SQL, {
            "seconds": self.seconds,
            "touchpoints": tuple({tp for tp, _ in windows}),
            "lo": min(starts),
            "hi": max(starts) + timedelta(seconds=self.seconds),
        })
        computed_at = utc_now()
        scores = [score_from_counts(row, self.seconds, computed_at) for row in rows]
        return [s for s in scores if (s.touchpoint, s.window_start) in windows]


async def run(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event) -> None:
    """Run the scoring stage until ``stop`` is set."""
    producer = Producer(bootstrap, client_id=settings.group("scoring"))
    await producer.start()
    try:
        scorer = Scorer(settings, store, producer)
        consumer = BatchConsumer(bootstrap, settings.topic("feedback.enriched"),
                                 settings.group("scoring"), scorer.handle,
                                 max_records=settings.sink_batch_size,
                                 wait_s=settings.sink_batch_wait_s)
        await consumer.run(stop)
    finally:
        await producer.stop()

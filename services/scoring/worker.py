"""The scoring stage: enriched events -> ``feedback`` rows -> CEM window scores -> ``scores`` topic.

Each batch is handled as: store the events whose id is not stored yet (flagging those too late
for their window) and then their ids, then one query per score table reads the touched base
windows aggregated from the stored events and, for every touched coarser window (5m, 1h, 1d),
the sums of the stored finer windows the batch did not touch; the coarser levels are summed in
memory from those, every level of a table goes in one insert, the base-window scores are
published, then (in the consumer) commit. Seven store round trips per batch, however many
levels (more only for a batch spanning over 100 months: ClickHouse takes at most 100
partitions per insert). The SQL is in services/scoring/queries.py, the writes go through the
sinks of services/scoring/sink.py, and the figures are those of the metric catalogue
(services/core/cem_metrics.py). Figures are always recomputed from stored, deduplicated rows,
never incremented, so a re-delivered event changes no figure and a crash at any point converges
on replay. The one piece of state, each touchpoint's newest event time, moves only once the
batch's rows are stored, so a batch retried or split by the failure policy
(services/core/failures.py) is judged as it was the first time.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

import structlog
from aiokafka import ConsumerRecord
from cachetools import LRUCache
from prometheus_client import Counter

from services.core.cem_metrics import SCORE_COUNTS, TOPIC_COUNTS, window_start
from services.core.events import EnrichedFeedback, Score, utc_now
from services.core.kafka import BatchConsumer, Producer, parse_or_dead_letter
from services.core.settings import Settings
from services.core.store import Row, Store
from services.core.touchpoints import TouchpointLimit
from services.scoring import queries
from services.scoring.expectations import Expectations, load_expectations
from services.scoring.queries import SCORE_DIMS, TOPIC_DIMS
from services.scoring.rows import (
    Record,
    agg_row,
    cube,
    rollup,
    score_event,
    score_record,
    topic_record,
)
from services.scoring.sink import BatchWriter, TableSink, TopicSink, feedback_row
from services.scoring.windows import granularities

log = structlog.get_logger(__name__)

# No touchpoint label: touchpoints are named by whoever sends feedback, and every label value
# would be a time series kept forever. The log line names the touchpoints.
TOO_LATE = Counter("voc_scoring_too_late_total",
                   "Events stored but not scored because their window was already final.")
DUPLICATES = Counter("voc_scoring_duplicates_total",
                     "Re-delivered events the scoring stage skipped (already stored).")

WindowKey = tuple[str, int]
"""(touchpoint, window start as epoch seconds)."""


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class Scorer:
    """Handles batches of enriched-topic records."""

    def __init__(self, settings: Settings, store: Store, producer: Producer,
                 expectations: Expectations) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.expectations = expectations
        self.levels = granularities(settings.window_seconds)
        self.lateness_s = settings.allowed_lateness_s
        # Bounded: a touchpoint evicted here is re-read from the store when next seen.
        self.newest: LRUCache[str, int] = LRUCache(maxsize=settings.scoring_touchpoint_cache)
        self.touchpoints = TouchpointLimit(store, settings.max_touchpoints)
        self.feedback = TableSink(store, "feedback", month_column="occurred_at")
        self.feedback_ids = TableSink(store, "feedback_ids")
        self.cem_scores = TableSink(store, "cem_scores", month_column="window_start")
        self.topic_scores = TableSink(store, "topic_scores", month_column="window_start")
        self.scores_topic = TopicSink(producer, settings.topic("scores"))
        self.stored = 0
        self.duplicates = 0
        self.too_late = 0
        self._last_version = 0
        self._last_report = 0.0

    async def handle(self, records: list[ConsumerRecord]) -> None:
        events: dict[str, EnrichedFeedback] = {}
        for event in await parse_or_dead_letter(EnrichedFeedback, records, "scoring",
                                                self.producer, self.settings,
                                                screen=self.touchpoints.screen):
            events.setdefault(event.event_id, event)
        if not events:
            return
        fresh, stored_late = await self._unstored(list(events.values()))
        late, newest = await self._classify_late(fresh)
        now_ms = int(time.time() * 1000)
        # The ids go in after the rows: an id stored means its row is stored, so a retry
        # after a failure in between stores the rows again (they collapse) rather than never.
        stored = BatchWriter(self.feedback, self.feedback_ids)
        stored.add(self.feedback, [
            {**feedback_row(e, now_ms), "too_late": int(e.event_id in late)} for e in fresh])
        stored.add(self.feedback_ids, [
            {"event_id": e.event_id, "too_late": int(e.event_id in late), "inserted_ms": now_ms}
            for e in fresh])
        await stored.flush()
        # Only now that the rows are stored: a retried batch must not find its own events
        # moved the touchpoint's newest time and judge them too late.
        self.newest.update(newest)
        self.touchpoints.remember(e.touchpoint for e in fresh)
        self._report_late(fresh, late)
        on_time = [e for e in events.values()
                   if e.event_id not in late and e.event_id not in stored_late]
        scores = await self._recompute(on_time) if on_time else []
        self.stored += len(fresh)
        self.duplicates += len(events) - len(fresh)
        DUPLICATES.inc(len(events) - len(fresh))
        if time.monotonic() - self._last_report >= 10:
            self._last_report = time.monotonic()
            log.info("scoring progress", events_stored=self.stored,
                     duplicates_skipped=self.duplicates, too_late=self.too_late,
                     base_scores_in_last_batch=len(scores))

    async def _unstored(self, events: list[EnrichedFeedback],
                        ) -> tuple[list[EnrichedFeedback], set[str]]:
        """The events whose id is not stored yet, whatever else a re-send changed (its time,
        its touchpoint), and the ids of stored ones flagged too late: a re-delivery of those
        touches no window, so every window a batch recomputes has at least one event that
        counts in it. ``feedback_ids`` is sorted by id, so the lookup reads only these ids."""
        stored = await queries.stored_ids(self.store, (e.event_id for e in events))
        return ([e for e in events if e.event_id not in stored],
                {event_id for event_id, too_late in stored.items() if too_late})

    async def _classify_late(self, fresh: list[EnrichedFeedback],
                             ) -> tuple[set[str], dict[str, int]]:
        """Ids of new events whose base window is already final, and each touchpoint's newest
        event time once they are stored (for the caller to keep after storing them).

        A window [s, e) of a touchpoint is final once the newest event time stored for that
        touchpoint before this batch is at least e + allowed lateness. The newest time is read
        from the store the first time a touchpoint is seen (leaving out this batch's events,
        which a failed attempt may have stored), so a restarted scorer judges exactly as the
        one before it did. It never lies beyond now + VOC_MAX_CLOCK_SKEW_S:
        a row dated in the future (stored before entrance bounds existed, or by a sender
        whose clock was wrong) must not make every real event of its touchpoint too late.
        """
        if not fresh:
            return set(), {}
        horizon = _epoch(utc_now()) + self.settings.max_clock_skew_s
        unknown = tuple({e.touchpoint for e in fresh if e.touchpoint not in self.newest})
        known: dict[str, int] = {tp: self.newest[tp] for tp in {e.touchpoint for e in fresh}
                                 if tp in self.newest}
        if unknown:
            # The batch's own events are left out: an attempt that failed after storing
            # them must not make them too late on its retry.
            known.update(await queries.newest_event_times(
                self.store, unknown, datetime.fromtimestamp(horizon, UTC),
                excluding=(e.event_id for e in fresh)))
        seconds = self.levels[0]
        late = {e.event_id for e in fresh if e.touchpoint in known
                and _epoch(window_start(e.occurred_at, seconds)) + seconds + self.lateness_s
                <= known[e.touchpoint]}
        newest = dict(known)
        for event in fresh:
            newest[event.touchpoint] = max(newest.get(event.touchpoint, 0),
                                           min(_epoch(event.occurred_at), horizon))
        return late, newest

    def _report_late(self, fresh: list[EnrichedFeedback], late: set[str]) -> None:
        if not late:
            return
        self.too_late += len(late)
        TOO_LATE.inc(len(late))
        dropped = [e for e in fresh if e.event_id in late]
        log.warning("events too late for their window: stored, not scored",
                    count=len(late), total_too_late=self.too_late,
                    allowed_lateness_s=self.lateness_s,
                    touchpoints=sorted({e.touchpoint for e in dropped})[:20],
                    event_ids=sorted(late)[:10],
                    oldest=min(e.occurred_at for e in dropped).isoformat())

    def _version(self) -> int:
        """Strictly increasing row version, so this batch's rows win over any earlier ones."""
        self._last_version = max(int(time.time() * 1000), self._last_version + 1)
        return self._last_version

    async def _recompute(self, events: list[EnrichedFeedback]) -> list[Score]:
        """Fresh figures of every window (all levels) the batch touched, stored, and the
        base-window scores published; returns those.

        Two queries read everything (one per score table, see ``queries.SCORE_LEVELS_SQL``),
        the coarser levels are summed here, and each table gets all levels in one insert.
        """
        base = self.levels[0]
        touched = [{(e.touchpoint, _epoch(window_start(e.occurred_at, base))) for e in events}]
        for seconds in self.levels[1:]:
            touched.append({(tp, epoch - epoch % seconds) for tp, epoch in touched[0]})
        params = self._params(touched)
        version = self._version()
        score_rows, topic_rows = (await queries.score_levels(self.store, params),
                                  await queries.topic_levels(self.store, params))
        scores = self._levels(score_rows, SCORE_DIMS, SCORE_COUNTS, touched,
                              lambda row, s: score_record(row, s, self.expectations, version))
        topics = self._levels(topic_rows, TOPIC_DIMS, TOPIC_COUNTS, touched,
                              lambda row, s: topic_record(row, s, version))
        events_out = self._events(scores[0], topics[0])
        figures = BatchWriter(self.cem_scores, self.topic_scores, self.scores_topic)
        figures.add(self.cem_scores, [r for level in scores for r in level])
        figures.add(self.topic_scores, [r for level in topics for r in level])
        figures.add(self.scores_topic, [(s.touchpoint.encode(), s.to_bytes()) for s in events_out])
        await figures.flush()
        return events_out

    def _params(self, touched: list[set[WindowKey]]) -> dict:
        """Query parameters: the touched base windows, and the untouched finer windows inside
        each touched coarser window (the stored rows its rollup sums)."""
        epochs = sorted({epoch for _, epoch in touched[0]})
        base = self.levels[0]
        # (0, '', 0) matches no row; it keeps the set non-empty when a batch touched every
        # finer window of its coarser ones.
        finer_windows = ((0, "", 0), *(
            (finer, tp, epoch + offset)
            for finer, seconds, finer_keys, keys in zip(self.levels, self.levels[1:], touched,
                                                        touched[1:])
            for tp, epoch in sorted(keys) for offset in range(0, seconds, finer)
            if (tp, epoch + offset) not in finer_keys))
        starts = [epoch for _, _, epoch in finer_windows[1:]] or [epochs[0]]
        return {"seconds": base, "touchpoints": tuple(sorted({tp for tp, _ in touched[0]})),
                "lo": datetime.fromtimestamp(epochs[0], UTC),
                "hi": datetime.fromtimestamp(epochs[-1] + base, UTC),
                "epochs": tuple(epochs), "finer_levels": self.levels[:-1],
                "finer_array": list(self.levels[:-1]), "coarser_array": list(self.levels[1:]),
                "finer_lo": datetime.fromtimestamp(min(starts), UTC),
                "finer_hi": datetime.fromtimestamp(max(starts), UTC),
                "finer_windows": finer_windows}

    def _levels(self, rows: list[Row], dims: tuple[str, ...], names: Mapping[str, str],
                touched: list[set[WindowKey]],
                record: Callable[[Row, int], Record]) -> list[list[Record]]:
        """Records of every touched window, base level first.

        A base window's rows are the cube of its channel x stage cells the SQL aggregated. A
        coarser window is the sum of the finer windows just recomputed and the SQL's sum of
        the stored finer windows this batch did not touch.
        """
        stored: dict[int, list[Row]] = defaultdict(list)
        cells = []
        for row in rows:
            if not row["fresh"]:
                stored[int(row["lvl"])].append(row)
            elif (row["tp"], int(row["epoch"])) in touched[0]:
                cells.append(row)
        levels = [[record(row, self.levels[0]) for row in cube(cells, dims, names)]]
        for seconds, keys in zip(self.levels[1:], touched[1:]):
            inputs = [*stored[seconds], *(agg_row(rec, dims, names) for rec in levels[-1])]
            levels.append([record(row, seconds) for row in rollup(inputs, dims, names, seconds)
                           if (row["tp"], row["epoch"]) in keys])
        return levels

    @staticmethod
    def _events(scores: Iterable[Record], topics: Iterable[Record]) -> list[Score]:
        by_row: dict[tuple, list[Record]] = defaultdict(list)
        for topic in topics:
            by_row[(topic["touchpoint"], topic["channel"], topic["stage"],
                    topic["window_start"])].append(topic)
        computed_at = utc_now()
        return [score_event(s, by_row[(s["touchpoint"], s["channel"], s["stage"],
                                       s["window_start"])], computed_at) for s in scores]


async def run(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event) -> None:
    """Run the scoring stage until ``stop`` is set."""
    expectations = load_expectations(settings.expectations_path)
    producer = Producer(bootstrap, client_id=settings.group("scoring"))
    await producer.start()
    try:
        scorer = Scorer(settings, store, producer, expectations)
        consumer = BatchConsumer(settings, bootstrap, settings.topic("feedback.enriched"),
                                 settings.group("scoring"), scorer.handle, stage="scoring",
                                 producer=producer, max_records=settings.sink_batch_size,
                                 wait_s=settings.sink_batch_wait_s,
                                 fill_s=settings.scoring_batch_fill_s)
        await consumer.run(stop)
    finally:
        await producer.stop()

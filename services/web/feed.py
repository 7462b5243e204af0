"""The push feed behind ``/v1/stream``: one store poller per process, fanned out to every client.

Why polling the store rather than tailing topics: the store is what the page's queries read,
so a pushed row is always one a reload would show, and polling works the same on chdb and on
a ClickHouse server. (Seeking a Kafka consumer to the end is also unreliable on the local
broker, which answers ListOffsets(latest) wrongly.)

Rows are found by their write stamp (``computed_ms`` of score rows, ``inserted_ms`` of alerts
and case transitions) being newer than the newest stamp seen. Stamps come from the writer's
wall clock and a row can land slightly after a newer-stamped one, so every poll looks back
``overlap_ms`` further and drops rows already sent; clients merge by key, so a rare repeat is
harmless anyway.

The SQL is in services/web/queries.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from services.alerting.cases import event_from_row
from services.core.events import utc_now
from services.core.store import Row, Store
from services.web import queries

log = structlog.get_logger(__name__)

SNAPSHOT_WINDOWS = 60
"""Base windows per touchpoint sent on connect: enough for the tiles' sparklines."""

SNAPSHOT_ALERTS = 200

LIVE_HORIZON = timedelta(days=1)
"""Score rows for windows older than this are not pushed (a reload shows them): it bounds what
each poll scans to the newest partitions."""


def score_out(row: Row) -> dict[str, Any]:
    """A score row as the page reads it: one window of one touchpoint and journey stage, with
    the counts that let the page sum windows exactly and the expectation gaps."""
    out = {k: v for k, v in row.items() if k not in ("gap_metrics", "gap_targets", "gaps")}
    out["expectations"] = [{"metric": m, "target": t, "gap": g} for m, t, g in
                           zip(row["gap_metrics"], row["gap_targets"], row["gaps"])]
    return out


def case_out(row: Row) -> dict[str, Any]:
    """A case transition as ``case.v1``, the shape the cases API answers with."""
    return event_from_row(row).model_dump(mode="json", by_alias=True) | {
        "inserted_ms": int(row["inserted_ms"])}


@dataclass
class _Cursor:
    """Newest write stamp seen and the keys already sent within the look-back."""

    since_ms: int = 0
    sent: dict[tuple[Any, ...], int] = field(default_factory=dict)

    def fresh(self, rows: list[Row], stamp: str, key: tuple[str, ...],
              overlap_ms: int) -> list[Row]:
        out = []
        for row in rows:
            ident = (*(row[k] for k in key), row[stamp])
            if ident not in self.sent:
                self.sent[ident] = int(row[stamp])
                out.append(row)
        if rows:
            self.since_ms = max(self.since_ms, max(int(r[stamp]) for r in rows))
        horizon = self.since_ms - overlap_ms
        self.sent = {k: v for k, v in self.sent.items() if v >= horizon}
        return out


class LiveFeed:
    """Polls the store while anyone listens and hands each change to every subscriber."""

    def __init__(self, store: Store, window_seconds: int, *, interval_s: float = 0.5,
                 overlap_ms: int = 5000, queue_size: int = 256) -> None:
        self.store = store
        self.window_seconds = window_seconds
        self.interval_s = interval_s
        self.overlap_ms = overlap_ms
        self.queue_size = queue_size
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._scores = _Cursor()
        self._alerts = _Cursor()
        self._cases = _Cursor()

    async def snapshot(self) -> dict[str, Any]:
        """What a newly connected page starts from: recent windows and the latest alerts."""
        newest = await queries.newest_window(self.store, self.window_seconds)
        scores: list[Row] = []
        if newest is not None:
            since = newest - timedelta(seconds=self.window_seconds * (SNAPSHOT_WINDOWS - 1))
            scores = await queries.recent_scores(self.store, self.window_seconds, since)
        alerts = await queries.latest_alerts(self.store, SNAPSHOT_ALERTS)
        return {"window_seconds": self.window_seconds,
                "scores": [score_out(r) for r in scores],
                "alerts": alerts}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of change messages; starts the shared poller for the first subscriber."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        return queue

    async def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Forget ``queue``; the poller stops when nobody is left, so idle APIs do not poll."""
        self._subscribers.discard(queue)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def _poll(self) -> None:
        await self._start_cursors()
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception as exc:  # a store hiccup must not end the feed for every page
                log.warning("dashboard feed poll failed; retrying", error=str(exc))
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _start_cursors(self) -> None:
        """Start at the rows already stored (pages get those from the snapshot): the newest
        stamps, and every row within the look-back marked as sent."""
        stamps = await queries.newest_stamps(self.store)
        self._scores.since_ms = stamps.scores
        self._alerts.since_ms = stamps.alerts
        self._cases.since_ms = stamps.cases
        await self.poll_once(publish=False)

    async def poll_once(self, *, publish: bool = True) -> None:
        """Read rows newer than the cursors and publish them (one message per kind)."""
        scores = await queries.scores_written_after(
            self.store, self.window_seconds, utc_now() - LIVE_HORIZON,
            max(0, self._scores.since_ms - self.overlap_ms))
        fresh_scores = self._scores.fresh(scores, "computed_ms",
                                          ("touchpoint", "stage", "window_start"),
                                          self.overlap_ms)
        if fresh_scores and publish:
            self._publish({"type": "scores", "rows": [score_out(r) for r in fresh_scores]})
        alerts = await queries.alerts_written_after(
            self.store, max(0, self._alerts.since_ms - self.overlap_ms))
        fresh_alerts = self._alerts.fresh(alerts, "inserted_ms", ("alert_id",), self.overlap_ms)
        if fresh_alerts and publish:
            self._publish({"type": "alerts", "rows": fresh_alerts})
        cases = await queries.case_events_written_after(
            self.store, max(0, self._cases.since_ms - self.overlap_ms))
        fresh_cases = self._cases.fresh(cases, "inserted_ms", ("case_id", "seq"),
                                        self.overlap_ms)
        if fresh_cases and publish:
            self._publish({"type": "cases", "rows": [case_out(r) for r in fresh_cases]})

    def _publish(self, message: Mapping[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                # A page that stopped reading gets a resync instead of an ever-growing backlog.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"type": "resync"})
            else:
                queue.put_nowait(dict(message))

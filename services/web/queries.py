"""Every SQL statement the dashboard feed runs, behind typed functions (the one module of the
web service that speaks ClickHouse's dialect).

Score rows carry every count and ratio of the metric catalogue (services/core/cem_metrics.py),
so the page can sum windows exactly and label every figure, and a new metric reaches the page
without an edit here. SQL text is fixed at import; values travel as ``%(name)s`` parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from services.core.cem_metrics import COUNTS, RATIOS
from services.core.store import Row, Store

SCORE_COLUMNS = ", ".join([
    "touchpoint", "channel", "stage", "window_seconds", "window_start",
    *(c.name for c in COUNTS), *(r.name for r in RATIOS),
    "gap_metrics", "gap_targets", "gaps", "computed_ms"])

ALERT_COLUMNS = ("alert_id, dedupe_key, rule_id, rule_type, severity, status, touchpoint, "
                 "channel, stage, topic, metric, operator, threshold, value, baseline, volume, "
                 "window_start, window_end, fired_at, team, owner, message, inserted_ms, "
                 "explanation")


def _explained(rows: list[Row]) -> list[Row]:
    """Alert rows with their explanation as a document (None without one) for the page."""
    for row in rows:
        stored = row.get("explanation") or ""
        row["explanation"] = json.loads(stored) if stored else None
    return rows


@dataclass(frozen=True)
class Stamps:
    """The newest write stamp of each table the feed follows (0 when it is empty)."""

    scores: int
    alerts: int
    cases: int


async def newest_stamps(store: Store) -> Stamps:
    rows = await store.query(
        "SELECT (SELECT max(computed_ms) FROM cem_scores) AS s, "
        "(SELECT max(inserted_ms) FROM alerts) AS a, "
        "(SELECT max(inserted_ms) FROM case_events) AS c")
    return Stamps(int(rows[0]["s"] or 0), int(rows[0]["a"] or 0), int(rows[0]["c"] or 0))


async def newest_window(store: Store, seconds: int) -> datetime | None:
    """Start of the newest stored window of length ``seconds``; None when there is none."""
    rows = await store.query(
        "SELECT max(window_start) AS w FROM cem_scores WHERE window_seconds = %(seconds)s",
        {"seconds": seconds})
    newest = rows[0]["w"] if rows else None
    return newest if newest is not None and newest.timestamp() > 0 else None


async def recent_scores(store: Store, seconds: int, since: datetime) -> list[Row]:
    """Base-window rows over all channels from ``since`` on: per touchpoint, all stages
    together (stage '') for the tiles and each journey stage for the journey map."""
    return await store.query(f"""
SELECT {SCORE_COLUMNS} FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s AND channel = '' AND window_start >= %(lo)s
ORDER BY touchpoint, stage, window_start
""", {"seconds": seconds, "lo": since})


async def scores_written_after(store: Store, seconds: int, horizon: datetime,
                               stamp_ms: int) -> list[Row]:
    """Base-window rows over all channels written after ``stamp_ms``, for windows from
    ``horizon`` on (which bounds the scan to the newest partitions), oldest write first."""
    return await store.query(f"""
SELECT {SCORE_COLUMNS} FROM cem_scores
WHERE window_seconds = %(seconds)s AND channel = '' AND window_start >= %(horizon)s
  AND computed_ms > %(since)s
ORDER BY computed_ms
""", {"seconds": seconds, "horizon": horizon, "since": stamp_ms})


async def latest_alerts(store: Store, limit: int) -> list[Row]:
    """The ``limit`` alerts fired last, newest first."""
    return _explained(await store.query(
        f"SELECT {ALERT_COLUMNS} FROM alerts FINAL ORDER BY fired_at DESC LIMIT %(limit)s",
        {"limit": limit}))


async def alerts_written_after(store: Store, stamp_ms: int) -> list[Row]:
    return _explained(await store.query(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE inserted_ms > %(since)s ORDER BY inserted_ms",
        {"since": stamp_ms}))


async def case_events_written_after(store: Store, stamp_ms: int) -> list[Row]:
    return await store.query(
        "SELECT * FROM case_events WHERE inserted_ms > %(since)s "
        "ORDER BY inserted_ms, case_id, seq", {"since": stamp_ms})

"""Every store read and write of the alerting service, as typed functions.

The rest of the service names no table and writes no SQL: it calls these with typed
parameters and gets typed rows back (score rows stay mappings, since their metrics are the
score schema's, not a fixed list). The SQL is ClickHouse's, accepted by 18.16 and chdb 26.x;
a second store backend means a second module with these functions and nothing else changes.

Instants are passed as timezone-aware datetimes, which the store renders as epoch seconds, and
every value goes through the store's escaper, so no customer text is ever spliced into SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.events import Alert, EnrichedFeedback
from services.core.store import Store

Row = dict[str, Any]


def _utc(value: Any) -> Any:
    """Nullable DateTime columns come back as naive text from chdb and naive values from the
    server driver; both are UTC."""
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


# --------------------------------------------------------------------------- rule evaluation

_TOTALS_ONLY = " AND channel = '' AND stage = ''"
_TOUCHPOINTS = " AND touchpoint IN %(touchpoints)s"


def _touchpoints(touchpoints: Collection[str] | None) -> tuple[str, dict[str, Any]]:
    """The touchpoint filter: none for every touchpoint."""
    if touchpoints is None:
        return "", {}
    return _TOUCHPOINTS, {"touchpoints": tuple(sorted(touchpoints))}


async def score_windows(store: Store, *, window_seconds: int,
                        touchpoints: Collection[str] | None, lo: datetime, hi: datetime,
                        totals_only: bool) -> list[Row]:
    """``cem_scores`` rows of base windows starting in ``[lo, hi)``; only the all-channel,
    all-stage row of each window with ``totals_only`` (one row per window instead of the
    whole cube)."""
    if touchpoints is not None and not touchpoints:
        return []
    where, params = _touchpoints(touchpoints)
    return await store.query(
        "SELECT * FROM cem_scores FINAL WHERE window_seconds = %(seconds)s"
        " AND window_start >= %(lo)s AND window_start < %(hi)s"
        + where + (_TOTALS_ONLY if totals_only else ""),
        {"seconds": window_seconds, "lo": lo, "hi": hi, **params})


async def topic_windows(store: Store, *, window_seconds: int,
                        touchpoints: Collection[str] | None, topics: Collection[str],
                        lo: datetime, hi: datetime, totals_only: bool) -> list[Row]:
    """``topic_scores`` rows of the topics, as ``score_windows`` reads ``cem_scores``."""
    if not topics or (touchpoints is not None and not touchpoints):
        return []
    where, params = _touchpoints(touchpoints)
    return await store.query(
        "SELECT * FROM topic_scores FINAL WHERE window_seconds = %(seconds)s"
        " AND topic IN %(topics)s AND window_start >= %(lo)s AND window_start < %(hi)s"
        + where + (_TOTALS_ONLY if totals_only else ""),
        {"seconds": window_seconds, "topics": tuple(sorted(topics)), "lo": lo, "hi": hi,
         **params})


@dataclass(frozen=True)
class MentionBucket:
    """One touchpoint's stored feedback in ``[start, start + bucket_s)``: every event, and
    the events mentioning one topic."""

    touchpoint: str
    start: datetime
    volume: int
    mentions: int


async def topic_mentions(store: Store, *, topic: str, touchpoints: Collection[str] | None,
                         channels: Collection[str] | None, stages: Collection[str] | None,
                         lo: datetime, hi: datetime, bucket_s: int) -> list[MentionBucket]:
    """Feedback from the ``feedback`` table counted in buckets of ``bucket_s`` seconds from
    ``lo`` (the last one ends at ``hi``), per touchpoint; only buckets holding an event."""
    if touchpoints is not None and not touchpoints:
        return []
    where, params = _touchpoints(touchpoints)
    if channels:
        where += " AND channel IN %(channels)s"
        params["channels"] = tuple(channels)
    if stages:
        where += " AND stage IN %(stages)s"
        params["stages"] = tuple(stages)
    rows = await store.query(
        "SELECT touchpoint, intDiv(toUInt32(occurred_at) - %(lo_s)s, %(bucket_s)s) AS bucket,"
        " count() AS volume, countIf(has(topics, %(topic)s)) AS mentions"
        " FROM feedback FINAL WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s" + where
        + " GROUP BY touchpoint, bucket",
        {"topic": topic, "lo": lo, "hi": hi, "lo_s": int(lo.timestamp()),
         "bucket_s": bucket_s, **params})
    first = int(lo.timestamp())
    return [MentionBucket(r["touchpoint"],
                          datetime.fromtimestamp(first + int(r["bucket"]) * bucket_s, UTC),
                          int(r["volume"]), int(r["mentions"])) for r in rows]


async def latest_received(store: Store, touchpoint: str, lo: datetime,
                          hi: datetime) -> datetime | None:
    """Ingest time of the newest stored event of ``touchpoint`` that occurred in ``[lo, hi)``
    (None when there is none)."""
    rows = await store.query(
        "SELECT max(received_at) AS latest FROM feedback WHERE touchpoint = %(touchpoint)s"
        " AND occurred_at >= %(lo)s AND occurred_at < %(hi)s",
        {"touchpoint": touchpoint, "lo": lo, "hi": hi})
    return rows[0]["latest"] if rows and rows[0]["latest"].year > 1970 else None


async def enriched_events(store: Store, lo: datetime, hi: datetime) -> list[EnrichedFeedback]:
    """Stored enriched events that occurred in ``[lo, hi)``, oldest first."""
    rows = await store.query(
        "SELECT enriched_json FROM feedback FINAL WHERE occurred_at >= %(lo)s"
        " AND occurred_at < %(hi)s ORDER BY occurred_at", {"lo": lo, "hi": hi})
    return [EnrichedFeedback.model_validate_json(r["enriched_json"]) for r in rows]


# --------------------------------------------------------------------------------- alerts

@dataclass(frozen=True)
class StoredKey:
    """What the ``alerts`` table says about one dedupe key: its newest alert."""

    dedupe_key: str
    alert_id: str
    status: str
    fired_end: datetime
    fired_at: datetime


# Keys with an open alert, and the most recent others that may still be cooling down.
_KEYS_SQL = """
SELECT dedupe_key, alert_id, state AS status, fired_end, fired_at FROM (
    SELECT dedupe_key, argMax(alert_id, fired_window_end) AS alert_id,
           argMax(status, fired_window_end) AS state, max(fired_window_end) AS fired_end,
           argMax(fired_at, fired_window_end) AS fired_at
    FROM alerts FINAL GROUP BY dedupe_key
)
WHERE state = 'firing' OR fired_end >= %(since)s
ORDER BY state = 'firing' DESC, fired_end DESC
LIMIT %(limit)s
"""


async def alert_keys(store: Store, *, since: datetime, limit: int) -> list[StoredKey]:
    """Keys with an open alert first, then those that fired since ``since``, newest first; at
    most ``limit`` (the state a restarted evaluator needs, bounded like its map)."""
    rows = await store.query(_KEYS_SQL, {"since": since, "limit": limit})
    return [StoredKey(r["dedupe_key"], r["alert_id"], r["status"], r["fired_end"],
                      r["fired_at"]) for r in rows]


async def fired_per_rule(store: Store, *, since: datetime, except_suffix: str) -> dict[str, int]:
    """Alerts fired per rule since ``since``, leaving out keys ending in ``except_suffix``."""
    rows = await store.query(
        "SELECT rule_id, count() AS fired FROM alerts FINAL WHERE fired_at >= %(since)s"
        " AND dedupe_key NOT LIKE %(suffix)s GROUP BY rule_id",
        {"since": since, "suffix": "%" + except_suffix})
    return {r["rule_id"]: int(r["fired"]) for r in rows}


async def firing_alerts(store: Store, *, key_suffix: str) -> list[Alert]:
    """Firing alerts whose dedupe key ends in ``key_suffix``, as their stored rows say (no
    routing: the table keeps neither ``notify`` nor ``open_case``)."""
    rows = await store.query(
        "SELECT * FROM alerts FINAL WHERE status = 'firing' AND dedupe_key LIKE %(suffix)s",
        {"suffix": "%" + key_suffix})
    return [alert_from_row(r) for r in rows]


def alert_row(alert: Alert, fired_end: datetime, inserted_ms: int) -> Row:
    """The ``alerts`` table row of an alert event (the current status of its alert)."""
    latency = (None if alert.latest_received_at is None else
               int((alert.emitted_at - alert.latest_received_at).total_seconds() * 1000))
    row = alert.model_dump(exclude={"schema_", "notify", "open_case"})
    for name in ("channel", "stage", "topic", "team", "owner", "operator"):
        row[name] = row[name] or ""
    row["threshold"] = alert.threshold if alert.threshold is not None else 0.0
    row.update(fired_window_end=fired_end, latency_ms=latency, inserted_ms=inserted_ms)
    return row


def alert_from_row(row: Row) -> Alert:
    """An alert read back from its row; the table does not keep routing, so ``notify`` is
    empty and ``open_case`` false."""
    fields = {k: v for k, v in row.items() if k in Alert.model_fields}
    for name in ("channel", "stage", "topic", "team", "owner", "operator"):
        fields[name] = fields.get(name) or None
    for name in ("resolved_at", "latest_received_at"):
        fields[name] = _utc(fields.get(name))
    return Alert.model_validate({**fields, "schema": "alert.v2", "notify": [],
                                 "open_case": False})


async def record_alerts(store: Store, alerts: Sequence[tuple[Alert, datetime]],
                        inserted_ms: int) -> None:
    """Rows of alert events (each with the window end it fired at); of rows with equal
    ``inserted_ms`` the table keeps the last, so later ones in ``alerts`` win."""
    await store.insert("alerts", [alert_row(a, end, inserted_ms) for a, end in alerts],
                       month_column="window_start")

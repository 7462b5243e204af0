"""Every SQL statement of the scoring service (the scorer and the query API), behind typed
functions: the one module that speaks ClickHouse's dialect here, so a second store is one more
module like this one.

SQL text is built once at import from the metric catalogue and constant fragments (never from
input); values always travel as ``%(name)s`` parameters, which the store escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.cem_metrics import RATIOS, SCORE_COUNTS, TOPIC_COUNTS
from services.core.store import Row, Store

# ------------------------------------------------------------------ the scorer's recomputation

# Each event counts in four rows: its channel x its stage, its channel x all stages, all
# channels x its stage, all x all (a CUBE; 18.16 has no WITH CUBE). The SQL groups by the
# event's own channel x stage only and the scorer sums the other three rows from those
# (rows.cube): aggregating four copies of every event made ClickHouse spend ~40% more CPU on
# the query than summing the ~100 grouped rows costs in Python. Aliases differ from column
# names because ClickHouse aliases are query-global.
_CELL = "channel AS ch, if(stage = '', 'unknown', stage) AS st"

# Only windows the batch touched are recomputed: the PK range narrows the scan, the epoch list
# keeps untouched windows out of the aggregation.
_EVENT_WINDOWS = """
WHERE touchpoint IN %(touchpoints)s AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
  AND intDiv(toUInt32(occurred_at), %(seconds)s) * %(seconds)s IN %(epochs)s
  AND too_late = 0"""


def _aggregates(counts: Mapping[str, str]) -> str:
    return ",\n    ".join(f"{expr} AS agg_{name}" for name, expr in counts.items())


SCORES_FROM_EVENTS_SQL = f"""
SELECT touchpoint AS tp, {_CELL},
    intDiv(toUInt32(occurred_at), %(seconds)s) * %(seconds)s AS window_epoch,
    {_aggregates(SCORE_COUNTS)}
FROM feedback FINAL
{_EVENT_WINDOWS}
GROUP BY tp, ch, st, window_epoch
"""

TOPICS_FROM_EVENTS_SQL = f"""
SELECT touchpoint AS tp, {_CELL}, topic_id AS tid,
    intDiv(toUInt32(occurred_at), %(seconds)s) * %(seconds)s AS window_epoch,
    {_aggregates(TOPIC_COUNTS)}
FROM feedback FINAL
ARRAY JOIN topics AS topic_id, topic_sentiments AS topic_sentiment
{_EVENT_WINDOWS}
  AND length(topics) = length(topic_sentiments)
GROUP BY tp, ch, st, tid, window_epoch
"""

SCORE_DIMS = ("tp", "ch", "st")
TOPIC_DIMS = ("tp", "ch", "st", "tid")
"""Key columns (besides the window) of the rows the two level queries return."""

_STORED_DIMS = {"cem_scores": "touchpoint AS tp, channel AS ch, stage AS st",
                "topic_scores": "touchpoint AS tp, channel AS ch, stage AS st, topic AS tid"}


def _levels_sql(from_events: str, table: str, dims: str, counts: Mapping[str, str]) -> str:
    """One query for everything a batch's recomputation reads from one score table.

    The touched base windows aggregated from ``feedback`` per channel x stage cell
    (``fresh = 1``; the scorer adds the all-channel and all-stage rows) and, UNION ALL, for
    every touched coarser window (level ``lvl``), the sum of the stored finer rows inside it
    whose own window the batch did not touch (``fresh = 0``). The scorer adds the recomputed
    finer rows to those sums level by level in memory: one round trip instead of a SELECT and
    an INSERT per level, and no level waits for the finer level to be written first. Casts keep
    the two halves' types identical, which 18.16's UNION ALL requires.
    """
    names = ", ".join(f"agg_{name}" for name in counts)
    sums = ", ".join(f"sum({name}) AS agg_{name}" for name in counts)
    return f"""
SELECT toUInt8(1) AS fresh, toUInt32(%(seconds)s) AS lvl, {dims},
    toUInt32(window_epoch) AS epoch, {names}
FROM ({from_events})
UNION ALL
SELECT toUInt8(0) AS fresh,
    toUInt32(arrayElement(%(coarser_array)s, indexOf(%(finer_array)s, window_seconds))) AS lvl,
    {_STORED_DIMS[table]}, toUInt32(intDiv(toUInt32(window_start), lvl) * lvl) AS epoch, {sums}
FROM {table} FINAL
WHERE touchpoint IN %(touchpoints)s AND window_seconds IN %(finer_levels)s
  AND window_start >= %(finer_lo)s AND window_start <= %(finer_hi)s
  AND (window_seconds, touchpoint, toUInt32(window_start)) IN %(finer_windows)s
GROUP BY lvl, {dims}, epoch
"""


SCORE_LEVELS_SQL = _levels_sql(SCORES_FROM_EVENTS_SQL, "cem_scores", ", ".join(SCORE_DIMS),
                               SCORE_COUNTS)
TOPIC_LEVELS_SQL = _levels_sql(TOPICS_FROM_EVENTS_SQL, "topic_scores", ", ".join(TOPIC_DIMS),
                               TOPIC_COUNTS)


async def score_levels(store: Store, params: Mapping[str, Any]) -> list[Row]:
    """Rows of ``SCORE_LEVELS_SQL`` for the windows ``params`` name (``Scorer._params``)."""
    return await store.query(SCORE_LEVELS_SQL, params)


async def topic_levels(store: Store, params: Mapping[str, Any]) -> list[Row]:
    """Rows of ``TOPIC_LEVELS_SQL`` for the windows ``params`` name (``Scorer._params``)."""
    return await store.query(TOPIC_LEVELS_SQL, params)


async def stored_ids(store: Store, event_ids: Iterable[str]) -> dict[str, bool]:
    """The ids among ``event_ids`` that are stored already, each with whether it was stored
    too late. ``feedback_ids`` is sorted by id, so the lookup reads only these ids."""
    rows = await store.query(
        "SELECT event_id, max(too_late) AS too_late FROM feedback_ids "
        "WHERE event_id IN %(ids)s GROUP BY event_id", {"ids": tuple(event_ids)})
    return {row["event_id"]: bool(row["too_late"]) for row in rows}


async def newest_event_times(store: Store, touchpoints: Iterable[str], horizon: datetime,
                             excluding: Iterable[str]) -> dict[str, int]:
    """Each touchpoint's newest stored event time (epoch seconds) not after ``horizon``,
    leaving out the events ``excluding`` names."""
    rows = await store.query(
        "SELECT touchpoint, toUInt32(max(occurred_at)) AS newest FROM feedback "
        "WHERE touchpoint IN %(touchpoints)s AND occurred_at <= %(horizon)s "
        "AND event_id NOT IN %(ids)s GROUP BY touchpoint",
        {"touchpoints": tuple(touchpoints), "horizon": horizon, "ids": tuple(excluding)})
    return {row["touchpoint"]: int(row["newest"]) for row in rows}


# ------------------------------------------------------------------------- the query API


@dataclass(frozen=True)
class Cell:
    """Which score rows a read covers: one window length, one channel x stage cell, a time
    range, and the touchpoints (None: all)."""

    seconds: int
    channel: str
    stage: str
    start: datetime
    end: datetime
    touchpoints: tuple[str, ...] | None = None

    def where(self) -> str:
        scope = "" if self.touchpoints is None else " AND touchpoint IN %(touchpoints)s"
        return ("window_seconds = %(seconds)s AND channel = %(channel)s AND stage = %(stage)s "
                "AND window_start >= %(lo)s AND window_start < %(hi)s" + scope)

    def params(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "channel": self.channel, "stage": self.stage,
                "lo": self.start, "hi": self.end, "touchpoints": self.touchpoints or ()}


_SCORE_COLUMNS = ", ".join([
    "touchpoint", "channel", "stage", "window_seconds", "window_start", *SCORE_COUNTS,
    *(r.name for r in RATIOS), "gap_metrics", "gap_targets", "gaps"])


async def score_rows(store: Store, cell: Cell, limit: int) -> list[Row]:
    """Stored score rows of ``cell`` (every count, ratio and gap), by touchpoint then window,
    at most ``limit``."""
    return await store.query(
        f"SELECT {_SCORE_COLUMNS} FROM cem_scores FINAL WHERE {cell.where()} "
        "ORDER BY touchpoint, window_start LIMIT %(limit)s", {**cell.params(), "limit": limit})


async def score_totals(store: Store, cell: Cell) -> dict[str, Row]:
    """Per touchpoint, every count of ``cell`` summed over its windows."""
    rows = await store.query(
        f"SELECT touchpoint AS tp, {_sums(SCORE_COUNTS)} FROM cem_scores FINAL "
        f"WHERE {cell.where()} GROUP BY tp", cell.params())
    return {row["tp"]: _totals(row, SCORE_COUNTS) for row in rows}


async def topic_totals(store: Store, cell: Cell) -> dict[str, list[Row]]:
    """Per touchpoint, each topic's counts of ``cell`` summed over its windows (each row has
    ``topic`` and the ``TOPIC_COUNTS``)."""
    out: dict[str, list[Row]] = {}
    for row in await store.query(
            f"SELECT touchpoint AS tp, topic AS tid, {_sums(TOPIC_COUNTS)} FROM topic_scores "
            f"FINAL WHERE {cell.where()} GROUP BY tp, tid", cell.params()):
        out.setdefault(row["tp"], []).append({"topic": row["tid"],
                                              **_totals(row, TOPIC_COUNTS)})
    return out


def _sums(counts: Iterable[str]) -> str:
    # Aliased apart from the column names: ClickHouse aliases are query-global, so
    # ``sum(volume) AS volume`` would refer to itself.
    return ", ".join(f"sum({c}) AS {c}_total" for c in counts)


def _totals(row: Row, counts: Iterable[str]) -> Row:
    return {c: row[f"{c}_total"] for c in counts}


async def touchpoint_summaries(store: Store, seconds: int) -> list[Row]:
    """Every touchpoint with daily (``seconds``) rows: events, first and last day, the channels
    and stages seen (columns tp, events, first_day, last_day, channels, stages)."""
    return await store.query("""
SELECT touchpoint AS tp,
    sumIf(volume, channel = '' AND stage = '') AS events,
    min(window_start) AS first_day, max(window_start) AS last_day,
    groupUniqArrayIf(channel, channel != '') AS channels,
    groupUniqArrayIf(stage, stage != '') AS stages
FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s
GROUP BY tp
ORDER BY tp
""", {"seconds": seconds})


async def too_late_counts(store: Store) -> dict[str, int]:
    """Per touchpoint, the stored events that arrived too late to be scored."""
    rows = await store.query("SELECT touchpoint AS tp, uniqExact(event_id) AS n FROM feedback "
                             "WHERE too_late = 1 GROUP BY tp")
    return {row["tp"]: int(row["n"]) for row in rows}


@dataclass(frozen=True)
class FeedbackFilter:
    """What ``/v1/feedback`` narrows to; None is "any". ``stage`` '' is "no stage given"."""

    start: datetime
    end: datetime
    touchpoint: str | None = None
    topic: str | None = None
    sentiment: str | None = None
    channel: str | None = None
    stage: str | None = None
    intent: str | None = None
    q: str | None = None
    event_ids: tuple[str, ...] | None = None
    """These events only (e.g. the comments an alert's explanation quotes)."""
    scope: tuple[str, ...] | None = None
    """The caller's touchpoints, when it may not see all."""
    segment: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs of configured dimensions the feedback's metadata must hold."""
    effort: int | None = None
    """1: only events whose text holds an effort cue; 0: only those without."""


_FEEDBACK_CONDITIONS = {
    "touchpoint": "touchpoint = %(touchpoint)s",
    "topic": "has(topics, %(topic)s)",
    "sentiment": "sentiment_label = %(sentiment)s",
    "channel": "channel = %(channel)s",
    "stage": "stage = %(stage)s",
    "intent": "intent = %(intent)s",
    "q": "positionCaseInsensitiveUTF8(text, %(q)s) > 0",
    "event_ids": "event_id IN %(event_ids)s",
    "scope": "touchpoint IN %(scope)s",
    "segment": "segment = %(segment)s",
    "effort": "effort = %(effort)s",
}

_FEEDBACK_COLUMNS = ("event_id, occurred_at, touchpoint, channel, stage, segment, customer_id, "
                     "text, "
                     "analysis_text, "
                     "sentiment, sentiment_label, intent, topics, topic_sentiments, "
                     "urgent_flags, keywords, nps, csat, ces, too_late, effort_score, enriched_json")


async def feedback_page(store: Store, where: FeedbackFilter, offset: int,
                        limit: int) -> tuple[int, list[Row]]:
    """Stored feedback matching ``where``, newest first: the number of matches, and ``limit``
    rows from ``offset``."""
    active = {name: getattr(where, name) for name in _FEEDBACK_CONDITIONS
              if getattr(where, name) is not None}
    meta_condition, meta_params = DimensionFilter(where.start, where.end,
                                                  metadata=where.metadata).where()
    condition = " AND ".join([meta_condition, *(_FEEDBACK_CONDITIONS[name] for name in active)])
    params = {**active, **meta_params, "offset": offset, "limit": limit}
    total = await store.query(f"SELECT count() AS n FROM feedback FINAL WHERE {condition}",
                              params)
    rows = await store.query(
        f"SELECT {_FEEDBACK_COLUMNS} FROM feedback FINAL WHERE {condition} "
        "ORDER BY occurred_at DESC, event_id LIMIT %(offset)s, %(limit)s", params)
    return int(total[0]["n"]), rows


# ------------------------------------------------------------------------- dimensions

SEGMENT = "segment"
"""The dimension every deployment has: the event's own ``segment`` field."""

COLUMN_DIMENSIONS = {SEGMENT: "segment", "agent": "call_agent", "queue": "call_queue"}
"""Dimensions every deployment has, each a column of ``feedback``: the segment, and a call's
agent and queue (empty for other channels)."""

_COMPACT_METADATA = """replaceAll(metadata, '": "', '":"')"""


def _dimension_value(name: str, param: str) -> str:
    """The SQL value of dimension ``name``: the ``segment`` column, or the metadata key read
    from the stored metadata JSON (the key travels as the parameter ``param``). The metadata
    is a flat object of strings (``events.Metadata``) written by ``json.dumps``, so a key's
    quoted name cannot occur inside a value, where its quotes are escaped. visitParam
    functions read only ``"key":"value"`` without a space, and ``json.dumps`` writes ``": "``
    between a key and its value: the space is taken out first (inside a value, a quote is
    always escaped, so ``": "`` occurs only between keys and values)."""
    if name in COLUMN_DIMENSIONS:
        return COLUMN_DIMENSIONS[name]
    return f"visitParamExtractString({_COMPACT_METADATA}, %({param})s)"


@dataclass(frozen=True)
class DimensionFilter:
    """Which stored feedback a dimension read covers: the time range, the touchpoints (None:
    all), and optionally one channel, stage ('' = none given), segment and metadata values."""

    start: datetime
    end: datetime
    touchpoints: tuple[str, ...] | None = None
    channel: str | None = None
    stage: str | None = None
    segment: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    agent: str | None = None
    queue: str | None = None
    calls_only: bool = False
    """Only contact-center calls (events with call facts)."""

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE condition and its parameters."""
        parts = ["occurred_at >= %(lo)s", "occurred_at < %(hi)s"]
        if self.calls_only:
            parts.append("isNotNull(call_duration_s)")
        params: dict[str, Any] = {"lo": self.start, "hi": self.end}
        for name, value in (("touchpoint", self.touchpoints), ("channel", self.channel),
                            ("stage", self.stage), ("segment", self.segment),
                            ("call_agent", self.agent), ("call_queue", self.queue)):
            if value is not None:
                parts.append(f"{name} IN %({name})s" if name == "touchpoint"
                             else f"{name} = %({name})s")
                params[name] = value
        for i, (key, value) in enumerate(self.metadata):
            parts.append(f"{_dimension_value(key, f'mk{i}')} = %(mv{i})s")
            params.update({f"mk{i}": key, f"mv{i}": value})
        return " AND ".join(parts), params


async def dimension_figures(store: Store, name: str, where: DimensionFilter,
                            max_values: int) -> tuple[list[Row], Row]:
    """Every catalogue count of the on-time feedback ``where`` covers, per value of dimension
    ``name`` for the ``max_values`` largest values by volume (then by value), and over all of
    it (``values`` is the number of distinct values). The answer is bounded however many
    values the store holds; the caller folds the rest into ``other`` as total minus the
    values answered, which is exact because the counts are additive."""
    condition, params = where.where()
    value = _dimension_value(name, "dimension")
    params = {**params, "dimension": name, "limit": max_values}
    counts = _aggregates(SCORE_COUNTS)
    top = await store.query(
        f"SELECT {value} AS dim_value, {counts} FROM feedback FINAL "
        f"WHERE {condition} AND too_late = 0 GROUP BY dim_value "
        "ORDER BY agg_volume DESC, dim_value LIMIT %(limit)s", params)
    total = await store.query(
        f"SELECT uniqExact({value}) AS dim_values, {counts} FROM feedback FINAL "
        f"WHERE {condition} AND too_late = 0", params)
    return top, total[0]


# ------------------------------------------------------------------ contact center

_FCR_SQL = """
SELECT dim_value, count() AS calls, sum(is_matured) AS matured,
    sum(is_matured * (1 - is_repeated)) AS resolved
FROM (
    SELECT event_id, any(call_value) AS dim_value, any(call_matured) AS is_matured,
        max(later_at > at AND later_at <= at + %(fcr_s)s) AS is_repeated
    FROM (
        SELECT event_id, {value} AS call_value, customer_id, toUInt32(occurred_at) AS at,
            toUInt8(toUInt32(occurred_at) + %(fcr_s)s <= %(now_epoch)s) AS call_matured,
            arrayJoin(if(empty(topics), [''], topics)) AS topic
        FROM feedback FINAL
        WHERE {condition} AND too_late = 0 AND isNotNull(call_duration_s)
          AND customer_id != '' {only}
    ) AS call_rows ALL LEFT JOIN (
        SELECT DISTINCT customer_id, toUInt32(occurred_at) AS later_at,
            arrayJoin(arrayPushBack(topics, '')) AS topic
        FROM feedback FINAL
        WHERE occurred_at >= %(lo)s AND occurred_at < %(fcr_hi)s AND too_late = 0
          AND customer_id IN (
            SELECT customer_id FROM feedback
            WHERE {condition} AND isNotNull(call_duration_s) AND customer_id != '')
    ) AS later_rows USING (customer_id, topic)
    GROUP BY event_id
)
GROUP BY dim_value
"""


async def first_contact_resolution(store: Store, name: str, where: DimensionFilter,
                                   values: Iterable[str] | None, days: int,
                                   now: datetime) -> dict[str, Row]:
    """Per value of dimension ``name`` among ``values`` (None: one row over all, keyed ''),
    the calls of a known customer (``calls``), those whose ``days`` have passed by ``now``
    (``matured``) and, of those, the ones after which the customer did not contact us again
    (any channel) about one of the call's topics within ``days`` (``resolved``; a call
    without topics: about anything). Later contacts are read up to ``days`` after the range,
    so a call near its end is judged on the same span as any other."""
    condition, params = where.where()
    fcr_s = days * 86400
    only = "" if values is None else f"AND {_dimension_value(name, 'dimension')} IN %(values)s"
    sql = _FCR_SQL.format(value="''" if values is None else _dimension_value(name, "dimension"),
                          condition=condition, only=only)
    rows = await store.query(sql, {
        **params, "dimension": name, "values": tuple(values or ()), "fcr_s": fcr_s,
        "now_epoch": int(now.timestamp()),
        "fcr_hi": datetime.fromtimestamp(int(where.end.timestamp()) + fcr_s, UTC)})
    return {row["dim_value"]: row for row in rows}


_COACHING_COLUMNS = ("event_id, occurred_at, touchpoint, call_agent, call_queue, text, "
                     "sentiment, topics, call_tone_change, enriched_json")


async def worsened_calls(store: Store, where: DimensionFilter, limit: int) -> list[Row]:
    """Calls whose customer tone worsened, newest first, at most ``limit``."""
    condition, params = where.where()
    return await store.query(
        f"SELECT {_COACHING_COLUMNS} FROM feedback FINAL WHERE {condition} "
        "AND isNotNull(call_duration_s) AND call_tone = 'worsened' "
        "ORDER BY occurred_at DESC, event_id LIMIT %(limit)s", {**params, "limit": limit})

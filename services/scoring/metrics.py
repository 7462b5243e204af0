"""The CEM metrics: what is counted per window, how ratios derive from counts, and the SQL.

Every metric is stored as additive counts (or sums) plus the ratio derived from them, so a
coarser window is the exact sum of the finer windows inside it, and any window can be
recomputed from stored rows at any time with the same result. ``docs/metrics.md`` defines each
figure; this module is that definition in code.

The SQL text here is built once at import from the constant tables below (never from input);
values always travel as ``%(name)s`` parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

ALL = ""
"""channel / stage value of the rows that cover all channels / all stages."""

UNKNOWN_STAGE = "unknown"
"""stage value of the rows that count events that carried no journey stage."""

STAGES = ("售前", "售中", "售后", UNKNOWN_STAGE)

URGENT_FLAGS = ("escalation_threat", "churn_intent", "repeat_contact", "safety")

ROLLUP_SECONDS = (300, 3600, 86400)
"""Windows above the base window; each divides the next so rollups chain exactly."""

_LABELS = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}


def window_label(seconds: int) -> str:
    """``1m``, ``5m``, ``1h``, ``1d`` (the query API's names), else ``<n>s``."""
    return _LABELS.get(seconds, f"{seconds}s")


def granularities(base_seconds: int) -> tuple[int, ...]:
    """The base window followed by the rollup windows coarser than it."""
    return (base_seconds, *(s for s in ROLLUP_SECONDS if s > base_seconds))


# Additive columns of a score row: name -> aggregate over ``feedback`` rows.
SCORE_COUNTS: dict[str, str] = {
    "volume": "count()",
    "positive_count": "countIf(sentiment_label = 'positive')",
    "neutral_count": "countIf(sentiment_label = 'neutral')",
    "negative_count": "countIf(sentiment_label = 'negative')",
    "sentiment_sum": "sum(sentiment)",
    "nps_responses": "countIf(isNotNull(nps))",
    "nps_promoters": "countIf(ifNull(nps, 0) >= 9)",
    "nps_detractors": "countIf(ifNull(nps, 10) <= 6)",
    "csat_responses": "countIf(isNotNull(csat))",
    "csat_satisfied": "countIf(ifNull(csat, 0) >= 4)",
    "ces_responses": "countIf(isNotNull(ces))",
    "ces_sum": "toFloat64(sum(ifNull(ces, 0)))",
    "complaint_count": "countIf(intent = 'complaint')",
    "urgent_count": "countIf(notEmpty(urgent_flags))",
    **{f"{flag}_count": f"countIf(has(urgent_flags, '{flag}'))" for flag in URGENT_FLAGS},
}

# Additive columns of a topic row (over the events that mention the topic).
TOPIC_COUNTS: dict[str, str] = {
    "mentions": "count()",
    "topic_sentiment_sum": "sum(topic_sentiment)",
    "sentiment_sum": "sum(sentiment)",
    "positive_count": "countIf(sentiment_label = 'positive')",
    "negative_count": "countIf(sentiment_label = 'negative')",
    "nps_responses": "countIf(isNotNull(nps))",
    "nps_promoters": "countIf(ifNull(nps, 0) >= 9)",
    "nps_detractors": "countIf(ifNull(nps, 10) <= 6)",
    "csat_responses": "countIf(isNotNull(csat))",
    "csat_satisfied": "countIf(ifNull(csat, 0) >= 4)",
    "complaint_count": "countIf(intent = 'complaint')",
}

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
"""Key columns (besides the window) of the rows the two queries below return."""


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


_STORED_DIMS = {"cem_scores": "touchpoint AS tp, channel AS ch, stage AS st",
                "topic_scores": "touchpoint AS tp, channel AS ch, stage AS st, topic AS tid"}

SCORE_LEVELS_SQL = _levels_sql(SCORES_FROM_EVENTS_SQL, "cem_scores", ", ".join(SCORE_DIMS),
                               SCORE_COUNTS)
TOPIC_LEVELS_SQL = _levels_sql(TOPICS_FROM_EVENTS_SQL, "topic_scores", ", ".join(TOPIC_DIMS),
                               TOPIC_COUNTS)


SCORE_METRICS = ("volume", "mean_sentiment", "net_sentiment", "negative_share", "nps", "csat",
                 "ces", "complaint_rate", "urgent_count")
"""Metrics the query API serves by name."""

RESPONSES_OF = {"nps": "nps_responses", "csat": "csat_responses", "ces": "ces_responses"}
"""The response count that qualifies a survey metric (others are qualified by volume)."""

LOWER_IS_BETTER = frozenset({"negative_share", "ces", "complaint_rate"})
"""Metrics whose gap is target - value, so a negative gap always means "below expectation"."""

GAP_METRICS = ("mean_sentiment", "net_sentiment", "negative_share", "nps", "csat", "ces",
               "complaint_rate")
"""Metrics an expectation target can be set for."""


def gap(metric: str, value: float | None, target: float) -> float | None:
    """Experience minus expectation, signed so that negative is always worse than expected."""
    if value is None:
        return None
    raw = target - value if metric in LOWER_IS_BETTER else value - target
    return round(raw, 10)

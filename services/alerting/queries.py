"""Every store read and write of the alerting service, as typed functions.

The rest of the service names no table and writes no SQL: it calls these with typed
parameters and gets typed rows back (score rows stay mappings, since their metrics are the
score schema's, not a fixed list). The SQL is ClickHouse's, accepted by 18.16 and chdb 26.x;
a second store backend means a second module with these functions and nothing else changes.

Instants are passed as timezone-aware datetimes, which the store renders as epoch seconds, and
every value goes through the store's escaper, so no customer text is ever spliced into SQL.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from services.core.events import Alert, CaseEvent, CaseStatus, EnrichedFeedback, Explanation
from services.core.store import Store

log = structlog.get_logger(__name__)

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


@dataclass(frozen=True)
class PhraseCount:
    """One candidate phrase of one touchpoint ('' for every touchpoint together): the events
    mentioning it in the window and in the baseline before it, and the window's distinct
    customers among them."""

    touchpoint: str
    phrase: str
    mentions: int
    customers: int
    baseline: int


@dataclass(frozen=True)
class PhraseVolume:
    """All events of one touchpoint ('' for all together) in the window and the baseline."""

    touchpoint: str
    volume: int
    baseline: int


def _phrase_scope(touchpoints: Collection[str] | None,
                  overall: bool) -> tuple[str, str, dict[str, Any]]:
    where, params = _touchpoints(touchpoints)
    return ("''" if overall else "touchpoint"), where, params


@dataclass(frozen=True)
class Rolled:
    """Which buckets of ``phrase_counts`` a read takes, instead of their ``feedback`` rows:
    buckets of ``bucket_s`` seconds starting at the given epoch seconds, each inside the
    baseline and rolled up completely (:func:`rolled_buckets`)."""

    bucket_s: int
    starts: tuple[int, ...]


def _raw_rows(rolled: Rolled | None, lo: datetime,
              hi: datetime) -> tuple[str, dict[str, Any]]:
    """The filter keeping the feedback rows of ``[lo, hi)`` outside the rolled buckets (their
    counts are read from ``phrase_counts``), as ranges of event time, so the store skips the
    rolled buckets' rows by the sorting key instead of reading and dropping them."""
    if rolled is None or not rolled.starts:
        return "", {}
    ranges, at = [], int(lo.timestamp())
    for start in rolled.starts:
        if start > at:
            ranges.append((at, start))
        at = max(at, start + rolled.bucket_s)
    if at < int(hi.timestamp()):
        ranges.append((at, int(hi.timestamp())))
    params: dict[str, Any] = {}
    for i, (a, b) in enumerate(ranges):
        params[f"raw{i}_lo"] = datetime.fromtimestamp(a, UTC)
        params[f"raw{i}_hi"] = datetime.fromtimestamp(b, UTC)
    where = " OR ".join(f"(occurred_at >= %(raw{i}_lo)s AND occurred_at < %(raw{i}_hi)s)"
                        for i in range(len(ranges)))
    return f" AND ({where or '0'})", params


def _rolled_rows(rolled: Rolled) -> tuple[str, dict[str, Any]]:
    """The ``phrase_counts`` rows of the rolled buckets; the range lets the store skip every
    other bucket by the sorting key."""
    return (" FROM phrase_counts FINAL WHERE bucket_s = %(bucket_s)s"
            " AND bucket >= %(first)s AND bucket <= %(last)s"
            " AND toUInt32(bucket) IN %(rolled)s",
            {"bucket_s": rolled.bucket_s, "rolled": rolled.starts,
             "first": datetime.fromtimestamp(rolled.starts[0], UTC),
             "last": datetime.fromtimestamp(rolled.starts[-1], UTC)})


async def phrase_counts(store: Store, *, touchpoints: Collection[str] | None, lo: datetime,
                        start: datetime, hi: datetime, min_mentions: int, limit: int,
                        overall: bool = False, rolled: Rolled | None = None
                        ) -> list[PhraseCount]:
    """Candidate phrases (``feedback.phrases``) mentioned in at least ``min_mentions`` events
    of the window ``[start, hi)``, each with its mentions in the baseline ``[lo, start)``; per
    touchpoint, or with ``overall`` across them all (touchpoint ''). At most ``limit`` per
    touchpoint, those most mentioned relative to their baseline first (mentions / (baseline
    + 1)): at high volume hundreds of everyday words are mentioned more often than a new
    issue's phrase in its first minute, and the limit must not cut the new phrase off.

    The baseline's ``rolled`` buckets are read from ``phrase_counts`` (only for the phrases
    the window mentions), the rest of it and the window from ``feedback``: the same counts,
    without reading every event of the baseline."""
    if touchpoints is not None and not touchpoints:
        return []
    scope, where, params = _phrase_scope(touchpoints, overall)
    raw, raw_params = _raw_rows(rolled, lo, hi)
    window_rows = (" FROM feedback FINAL ARRAY JOIN phrases AS phrase"
                   " WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s" + where + raw)
    if rolled is not None and rolled.starts:
        from_rolled, rolled_params = _rolled_rows(rolled)
        raw_params.update(rolled_params)
        in_window = ("SELECT phrase FROM feedback ARRAY JOIN phrases AS phrase"
                     " WHERE occurred_at >= %(start)s AND occurred_at < %(hi)s" + where)
        source = (
            f"(SELECT {scope} AS tp, phrase, countIf(occurred_at >= %(start)s) AS m,"
            " uniqExactIf(if(customer_id = '', event_id, customer_id),"
            " occurred_at >= %(start)s) AS c, countIf(occurred_at < %(start)s) AS b"
            + window_rows + " GROUP BY tp, phrase"
            f" UNION ALL SELECT {scope} AS tp, phrase, toUInt64(0) AS m, toUInt64(0) AS c,"
            " sum(mentions) AS b" + from_rolled + where
            + f" AND phrase IN ({in_window}) GROUP BY tp, phrase)")
        rows = await store.query(
            "SELECT tp, phrase, sum(m) AS mentions, sum(c) AS customers, sum(b) AS baseline"
            f" FROM {source} GROUP BY tp, phrase HAVING mentions >= %(min)s"
            " ORDER BY tp, mentions / (baseline + 1) DESC, phrase LIMIT %(limit)s BY tp",
            {"lo": lo, "start": start, "hi": hi, "min": min_mentions, "limit": limit,
             **params, **raw_params})
    else:
        rows = await store.query(
            f"SELECT {scope} AS tp, phrase, countIf(occurred_at >= %(start)s) AS mentions,"
            " uniqExactIf(if(customer_id = '', event_id, customer_id),"
            " occurred_at >= %(start)s) AS customers,"
            " countIf(occurred_at < %(start)s) AS baseline" + window_rows
            + " GROUP BY tp, phrase HAVING mentions >= %(min)s"
            " ORDER BY tp, mentions / (baseline + 1) DESC, phrase LIMIT %(limit)s BY tp",
            {"lo": lo, "start": start, "hi": hi, "min": min_mentions, "limit": limit,
             **params})
    return [PhraseCount(r["tp"], r["phrase"], int(r["mentions"]), int(r["customers"]),
                        int(r["baseline"])) for r in rows]


async def phrase_volumes(store: Store, *, touchpoints: Collection[str] | None, lo: datetime,
                         start: datetime, hi: datetime, overall: bool = False,
                         rolled: Rolled | None = None) -> list[PhraseVolume]:
    """Events per touchpoint (or overall) in the window ``[start, hi)`` and the baseline
    ``[lo, start)``: the denominators of the phrases' shares; the ``rolled`` buckets' events
    are their phrase '' rows in ``phrase_counts``."""
    if touchpoints is not None and not touchpoints:
        return []
    scope, where, params = _phrase_scope(touchpoints, overall)
    raw, raw_params = _raw_rows(rolled, lo, hi)
    counted = (f"SELECT {scope} AS tp, countIf(occurred_at >= %(start)s) AS v,"
               " countIf(occurred_at < %(start)s) AS b FROM feedback FINAL"
               " WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s" + where + raw
               + " GROUP BY tp")
    if rolled is not None and rolled.starts:
        from_rolled, rolled_params = _rolled_rows(rolled)
        raw_params.update(rolled_params)
        counted += (f" UNION ALL SELECT {scope} AS tp, toUInt64(0) AS v, sum(mentions) AS b"
                    + from_rolled + where + " AND phrase = '' GROUP BY tp")
    rows = await store.query(
        f"SELECT tp, sum(v) AS volume, sum(b) AS baseline FROM ({counted}) GROUP BY tp",
        {"lo": lo, "start": start, "hi": hi, **params, **raw_params})
    return [PhraseVolume(r["tp"], int(r["volume"]), int(r["baseline"])) for r in rows]


async def rolled_buckets(store: Store, *, bucket_s: int, lo: datetime,
                         start: datetime) -> Rolled:
    """The buckets inside ``[lo, start)`` whose newest roll-up is done (phrase_rollups): a
    bucket being rolled up, or whose last roll-up failed, is read from ``feedback``."""
    first = -(-int(lo.timestamp()) // bucket_s) * bucket_s
    last = int(start.timestamp()) // bucket_s * bucket_s - bucket_s
    if last < first:
        return Rolled(bucket_s, ())
    rows = await store.query(
        "SELECT toUInt32(bucket) AS at FROM phrase_rollups"
        " WHERE bucket_s = %(bucket_s)s AND bucket >= %(first)s AND bucket <= %(last)s"
        " GROUP BY bucket HAVING argMax(done, rolled_ms) = 1",
        {"bucket_s": bucket_s, "first": datetime.fromtimestamp(first, UTC),
         "last": datetime.fromtimestamp(last, UTC)})
    return Rolled(bucket_s, tuple(sorted(int(r["at"]) for r in rows)))


@dataclass(frozen=True)
class BucketState:
    """One bucket's feedback rows now, and what its newest roll-up recorded."""

    start: int
    rows: int
    done: bool
    rolled_rows: int | None


async def phrase_buckets(store: Store, *, bucket_s: int, lo: datetime,
                         hi: datetime) -> list[BucketState]:
    """Every bucket in ``[lo, hi)`` holding feedback, oldest first: its rows (counted without
    FINAL, so any insert, a late or a redelivered event, changes the figure) and its newest
    roll-up record, if any."""
    params = {"bucket_s": bucket_s, "lo": lo, "hi": hi}
    stored = await store.query(
        "SELECT intDiv(toUInt32(occurred_at), %(bucket_s)s) * %(bucket_s)s AS at,"
        " count() AS n FROM feedback WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s"
        " GROUP BY at", params)
    records = await store.query(
        "SELECT toUInt32(bucket) AS at, argMax(done, rolled_ms) AS done,"
        " argMax(events, rolled_ms) AS events FROM phrase_rollups"
        " WHERE bucket_s = %(bucket_s)s AND bucket >= %(lo)s AND bucket < %(hi)s"
        " GROUP BY bucket", params)
    recorded = {int(r["at"]): (bool(r["done"]), int(r["events"])) for r in records}
    return [BucketState(at, int(r["n"]), *recorded.get(at, (False, None)))
            for r in sorted(stored, key=lambda r: int(r["at"])) for at in [int(r["at"])]]


async def record_phrase_rollup(store: Store, *, bucket_s: int, start: int, rolled_ms: int,
                               done: bool, rows: int) -> None:
    """One roll-up record of a bucket: before its counts are written (``done`` False) and
    after (True, one millisecond later, so it is the newest)."""
    await store.insert("phrase_rollups", [{
        "bucket_s": bucket_s, "bucket": datetime.fromtimestamp(start, UTC),
        "rolled_ms": rolled_ms + int(done), "done": int(done), "events": rows}])


async def roll_up_phrases(store: Store, *, bucket_s: int, start: int, rolled_ms: int) -> None:
    """Every phrase's mentions per touchpoint in the bucket starting at ``start``, and its
    events as phrase '', from ``feedback FINAL`` (a redelivered event counts once), in one
    INSERT ... SELECT."""
    await store.execute(
        "INSERT INTO phrase_counts (bucket_s, bucket, touchpoint, phrase, mentions, rolled_ms)"
        " SELECT %(bucket_s)s, toDateTime(%(start_s)s, 'UTC'), touchpoint, phrase, count(),"
        " %(rolled_ms)s FROM feedback FINAL ARRAY JOIN arrayConcat([''], phrases) AS phrase"
        " WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s GROUP BY touchpoint, phrase",
        {"bucket_s": bucket_s, "start_s": start, "rolled_ms": rolled_ms,
         "lo": datetime.fromtimestamp(start, UTC),
         "hi": datetime.fromtimestamp(start + bucket_s, UTC)})


async def untagged_negative(store: Store, *, touchpoints: Collection[str] | None,
                            lo: datetime, hi: datetime, limit: int) -> list[Row]:
    """The newest ``limit`` negative feedback events of ``[lo, hi)`` that no topic tags, oldest
    first: event_id, touchpoint, occurred_at, the analysed text and the candidate phrases."""
    if touchpoints is not None and not touchpoints:
        return []
    where, params = _touchpoints(touchpoints)
    rows = await store.query(
        "SELECT event_id, touchpoint, occurred_at,"
        " if(analysis_text = '', text, analysis_text) AS body, phrases FROM feedback FINAL"
        " WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s"
        " AND sentiment_label = 'negative' AND empty(topics)" + where
        + " ORDER BY occurred_at DESC, event_id LIMIT %(limit)s",
        {"lo": lo, "hi": hi, "limit": limit, **params})
    return [{**r, "occurred_at": _utc(r["occurred_at"])} for r in reversed(rows)]


@dataclass(frozen=True)
class TaggedPreview:
    """Stored comments a set of keywords would tag: all matching, and those among them the
    topic already tags (0 for a new topic)."""

    matches: int
    already: int


async def keyword_matches(store: Store, *, keywords: Sequence[str], topic: str, lo: datetime,
                          hi: datetime,
                          touchpoints: Collection[str] | None) -> TaggedPreview:
    """Feedback of ``[lo, hi)`` whose analysed text contains one of ``keywords`` (ignoring
    case): the taxonomy's matching, less its word edges for Latin words and its exclusions."""
    if not keywords or (touchpoints is not None and not touchpoints):
        return TaggedPreview(0, 0)
    where, params = _touchpoints(touchpoints)
    names = {f"kw{i}": k for i, k in enumerate(keywords)}
    found = " OR ".join(f"positionCaseInsensitiveUTF8(if(analysis_text = '', text,"
                        f" analysis_text), %({name})s) > 0" for name in names)
    rows = await store.query(
        "SELECT count() AS matches, countIf(has(topics, %(topic)s)) AS already"
        " FROM feedback FINAL WHERE occurred_at >= %(lo)s AND occurred_at < %(hi)s"
        f"{where} AND ({found})", {"lo": lo, "hi": hi, "topic": topic, **names, **params})
    return TaggedPreview(int(rows[0]["matches"]), int(rows[0]["already"])) if rows \
        else TaggedPreview(0, 0)


@dataclass(frozen=True)
class TaxonomyChange:
    """One change made to the taxonomy through the API (table ``taxonomy_changes``)."""

    change_id: str
    at: datetime
    principal: str
    action: Literal["add_topic", "add_keywords"]
    topic: str
    name: str
    keywords: list[str]
    phrase: str
    matches: int


async def record_taxonomy_change(store: Store, change: TaxonomyChange,
                                 inserted_ms: int) -> None:
    await store.insert("taxonomy_changes", [{**change.__dict__, "inserted_ms": inserted_ms}])


async def taxonomy_changes(store: Store, limit: int) -> list[TaxonomyChange]:
    """The newest ``limit`` changes, newest first."""
    rows = await store.query(
        "SELECT change_id, at, principal, action, topic, name, keywords, phrase, matches"
        " FROM taxonomy_changes FINAL ORDER BY at DESC, change_id LIMIT %(limit)s",
        {"limit": limit})
    return [TaxonomyChange(r["change_id"], _utc(r["at"]), r["principal"], r["action"],
                           r["topic"], r["name"], list(r["keywords"]), r["phrase"],
                           int(r["matches"])) for r in rows]


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
    """Stored enriched events that occurred in ``[lo, hi)``, oldest first.

    A row the current wire model refuses (stored before a bound existed, e.g. a touchpoint
    name the entrance now refuses) is left out and counted in one warning, rather than
    failing the whole read."""
    rows = await store.query(
        "SELECT event_id, enriched_json FROM feedback FINAL WHERE occurred_at >= %(lo)s"
        " AND occurred_at < %(hi)s ORDER BY occurred_at", {"lo": lo, "hi": hi})
    events, refused = [], []
    for row in rows:
        try:
            events.append(EnrichedFeedback.model_validate_json(row["enriched_json"]))
        except ValidationError:
            refused.append(row["event_id"])
    if refused:
        log.warning("stored events left out: the current event model refuses them",
                    count=len(refused), event_ids=refused[:10])
    return events


async def negative_contacts(store: Store, *, customers: Collection[str], lo: datetime,
                            hi: datetime, sentiment_at_most: float, nps_at_most: int | None,
                            csat_at_most: int | None, touchpoints: Collection[str] | None,
                            channels: Collection[str] | None, stages: Collection[str] | None,
                            topics: Collection[str] | None, per_customer: int) -> list[Row]:
    """Stored negative contacts (sentiment, NPS or CSAT at or below the given bounds) of
    ``customers`` that occurred in ``[lo, hi]``, within the scope; the newest
    ``per_customer`` of each customer (customer_history rules)."""
    if not customers:
        return []
    negative = ["sentiment <= %(sentiment)s"]
    if nps_at_most is not None:
        negative.append("nps <= %(nps)s")
    if csat_at_most is not None:
        negative.append("csat <= %(csat)s")
    where = (" WHERE customer_id IN %(customers)s AND occurred_at >= %(lo)s"
             " AND occurred_at <= %(hi)s AND (" + " OR ".join(negative) + ")")
    params: dict[str, Any] = {"customers": tuple(customers), "lo": lo, "hi": hi,
                              "sentiment": sentiment_at_most, "nps": nps_at_most or 0,
                              "csat": csat_at_most or 0, "n": per_customer}
    for column, values in (("touchpoint", touchpoints), ("channel", channels),
                           ("stage", stages)):
        if values:
            where += f" AND {column} IN %({column}s)s"
            params[f"{column}s"] = tuple(values)
    if topics:
        where += " AND hasAny(topics, %(topics)s)"
        params["topics"] = list(topics)
    return await store.query(
        "SELECT event_id, customer_id, occurred_at, channel FROM feedback FINAL" + where
        + " ORDER BY customer_id, occurred_at DESC LIMIT %(n)s BY customer_id", params)


# ---------------------------------------------------------------------------- explanations

@dataclass(frozen=True)
class ExplainScope:
    """The stored feedback an explanation reads: one touchpoint, the rule's channel, stage
    and topic scope, and two periods of event time (the window and its baseline)."""

    touchpoint: str
    channels: Sequence[str] | None
    stages: Sequence[str] | None
    topics: Sequence[str] | None
    lo: datetime
    hi: datetime
    baseline_lo: datetime
    baseline_hi: datetime

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause (events of either period, on time, in scope) and its values; the
        ``cur`` expression tells the window's events (1) from the baseline's (0)."""
        sql = (" WHERE touchpoint = %(touchpoint)s AND too_late = 0"
               " AND ((occurred_at >= %(lo)s AND occurred_at < %(hi)s)"
               " OR (occurred_at >= %(blo)s AND occurred_at < %(bhi)s))")
        params: dict[str, Any] = {"touchpoint": self.touchpoint, "lo": self.lo, "hi": self.hi,
                                  "blo": self.baseline_lo, "bhi": self.baseline_hi}
        if self.channels:
            sql += " AND channel IN %(channels)s"
            params["channels"] = tuple(self.channels)
        if self.stages:
            sql += " AND stage IN %(stages)s"
            params["stages"] = tuple(self.stages)
        if self.topics:
            sql += " AND hasAny(topics, %(scope_topics)s)"
            params["scope_topics"] = list(self.topics)
        return sql, params


_IN_WINDOW = "if(occurred_at >= %(lo)s AND occurred_at < %(hi)s, 1, 0) AS cur"
_MAX_EXPLAIN_GROUPS = 1000
_MAX_EXPLAIN_TERMS = 500


def _explain_aggregates(counts: Mapping[str, str]) -> str:
    return ", ".join(f"{sql} AS agg_{name}" for name, sql in counts.items())


def _counts_of(row: Row, names: Collection[str]) -> dict[str, Any]:
    return {name: row[f"agg_{name}"] for name in names}


@dataclass(frozen=True)
class CellCounts:
    """The metric's input counts over one channel x stage cell of one period."""

    channel: str
    stage: str
    current: bool
    counts: dict[str, Any]


async def explain_cells(store: Store, scope: ExplainScope,
                        counts: Mapping[str, str]) -> list[CellCounts]:
    """``counts`` (name -> aggregate over ``feedback``, from the metric catalogue) per channel
    x stage and period: channels and stages are closed sets, so the rows are few."""
    where, params = scope.where()
    rows = await store.query(
        f"SELECT channel AS ch, stage AS st, {_IN_WINDOW}, {_explain_aggregates(counts)}"
        f" FROM feedback FINAL{where} GROUP BY ch, st, cur LIMIT {_MAX_EXPLAIN_GROUPS}", params)
    return [CellCounts(r["ch"], r["st"], bool(r["cur"]), _counts_of(r, counts)) for r in rows]


@dataclass(frozen=True)
class TopicCounts:
    """The metric's input counts over the events of one period mentioning one topic, with the
    sum of the topic's own sentiment in them."""

    topic: str
    current: bool
    mentions: int
    topic_sentiment_sum: float
    counts: dict[str, Any]


async def explain_topics(store: Store, scope: ExplainScope,
                         counts: Mapping[str, str]) -> list[TopicCounts]:
    """``counts`` per topic and period over the events mentioning the topic (taxonomy topics:
    a bounded set; the LIMIT bounds what a store full of odd topic ids could return)."""
    where, params = scope.where()
    rows = await store.query(
        f"SELECT tid, {_IN_WINDOW}, count() AS mentions, sum(tsent) AS tsum,"
        f" {_explain_aggregates(counts)} FROM feedback FINAL"
        f" ARRAY JOIN topics AS tid, topic_sentiments AS tsent{where}"
        " AND length(topics) = length(topic_sentiments)"
        f" GROUP BY tid, cur ORDER BY mentions DESC, tid LIMIT {_MAX_EXPLAIN_GROUPS}", params)
    return [TopicCounts(r["tid"], bool(r["cur"]), int(r["mentions"]), float(r["tsum"]),
                        _counts_of(r, counts)) for r in rows]


@dataclass(frozen=True)
class TermCount:
    """Events of the window and of the baseline carrying one keyword."""

    term: str
    count: int
    baseline_count: int


async def explain_terms(store: Store, scope: ExplainScope) -> list[TermCount]:
    """Keyword counts per period, the window's most frequent first (at most 500: the ranking
    by lift only ever keeps terms the window carries often)."""
    where, params = scope.where()
    rows = await store.query(
        "SELECT kw, sum(cur) AS n, sum(1 - cur) AS b FROM ("
        f" SELECT kw, {_IN_WINDOW} FROM feedback FINAL ARRAY JOIN keywords AS kw{where})"
        f" GROUP BY kw HAVING n > 0 ORDER BY n DESC, kw LIMIT {_MAX_EXPLAIN_TERMS}", params)
    return [TermCount(r["kw"], int(r["n"]), int(r["b"])) for r in rows]


@dataclass(frozen=True)
class CommentRow:
    """A candidate representative comment: the window's event and its enriched document."""

    event_id: str
    channel: str
    stage: str
    sentiment: float
    enriched_json: str


async def explain_comments(store: Store, scope: ExplainScope, topic: str | None,
                           limit: int, phrase: str | None = None) -> list[CommentRow]:
    """The window's most negative events in scope, mentioning ``topic`` when one is given,
    or else the candidate ``phrase`` when one is given (feedback.phrases)."""
    where, params = scope.where()
    where += " AND occurred_at >= %(lo)s AND occurred_at < %(hi)s"
    if topic is not None:
        where += " AND has(topics, %(topic)s)"
        params["topic"] = topic
    elif phrase is not None:
        where += " AND has(phrases, %(phrase)s)"
        params["phrase"] = phrase
    rows = await store.query(
        "SELECT event_id, channel, stage, sentiment, enriched_json FROM feedback FINAL"
        f"{where} ORDER BY sentiment, event_id LIMIT %(limit)s", {**params, "limit": limit})
    return [CommentRow(r["event_id"], r["channel"], r["stage"], float(r["sentiment"]),
                       r["enriched_json"]) for r in rows]


async def stored_explanation(store: Store, alert_id: str) -> str:
    """The explanation JSON stored with an alert ('' for none or an unknown alert)."""
    rows = await store.query(
        "SELECT explanation FROM alerts FINAL WHERE alert_id = %(id)s"
        " ORDER BY inserted_ms DESC LIMIT 1", {"id": alert_id})
    return str(rows[0]["explanation"]) if rows else ""


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
    row = alert.model_dump(exclude={"schema_", "notify", "open_case", "explanation",
                                    "customer_id", "channels"})
    row["explanation"] = alert.explanation.model_dump_json() if alert.explanation else ""
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
    stored = row.get("explanation") or ""
    fields["explanation"] = Explanation.model_validate_json(stored) if stored else None
    return Alert.model_validate({**fields, "schema": "alert.v3", "notify": [],
                                 "open_case": False})


async def record_alerts(store: Store, alerts: Sequence[tuple[Alert, datetime]],
                        inserted_ms: int) -> None:
    """Rows of alert events (each with the window end it fired at); of rows with equal
    ``inserted_ms`` the table keeps the last, so later ones in ``alerts`` win."""
    await store.insert("alerts", [alert_row(a, end, inserted_ms) for a, end in alerts],
                       month_column="window_start")


async def record_deliveries(store: Store, table: Literal["alert_deliveries", "case_deliveries"],
                            rows: Sequence[Row]) -> None:
    """Final webhook outcomes, one row per event and webhook."""
    await store.insert(table, rows)


# ---------------------------------------------------------------------------------- cases

_CASE_TIMES = {"at", "opened_at", "acknowledged_at", "resolved_at", "closed_at", "ack_due_at",
               "resolve_due_at"}
_UNRESOLVED = ("open", "acknowledged", "in_progress")


def case_row(event: CaseEvent, inserted_ms: int) -> Row:
    """The ``case_events`` row of a case event."""
    row = event.model_dump(exclude={"schema_", "kind"})
    row["case_kind"] = event.kind or ""
    for name in ("comment", "team", "assignee", "followup_outcome", "customer_id"):
        row[name] = row[name] or ""
    ack = event.acknowledged_at
    resolved = event.resolved_at
    row.update(
        ack_seconds=(ack - event.opened_at).total_seconds() if ack else None,
        resolve_seconds=(resolved - event.opened_at).total_seconds() if resolved else None,
        inserted_ms=inserted_ms)
    return row


def event_from_row(row: Row) -> CaseEvent:
    """A case event from its ``case_events`` row."""
    fields = {k: _utc(v) if k in _CASE_TIMES else v for k, v in row.items()
              if k in CaseEvent.model_fields}
    fields["kind"] = row.get("case_kind") or None
    for name in ("comment", "team", "assignee", "followup_outcome", "customer_id"):
        fields[name] = fields.get(name) or None
    return CaseEvent.model_validate(fields)


_CURRENT = " ORDER BY case_id, seq DESC LIMIT 1 BY case_id"


async def current_case(store: Store, case_id: str) -> CaseEvent | None:
    """The newest event of a case (its current state), None for an unknown id."""
    rows = await store.query("SELECT * FROM case_events FINAL WHERE case_id = %(id)s" + _CURRENT,
                             {"id": case_id})
    return event_from_row(rows[0]) if rows else None


async def case_history(store: Store, case_id: str) -> list[CaseEvent]:
    """Every event of a case, oldest first (empty for an unknown id)."""
    rows = await store.query("SELECT * FROM case_events FINAL WHERE case_id = %(id)s ORDER BY seq",
                             {"id": case_id})
    return [event_from_row(r) for r in rows]


async def cases(store: Store, *, status: CaseStatus | None, team: str | None,
                touchpoint: str | None, touchpoints: Collection[str] | None,
                teams: Collection[str] | None, limit: int) -> list[CaseEvent]:
    """Current state of the newest-opened ``limit`` cases whose current status, team and
    touchpoint match (None: any) and whose touchpoint and team are among ``touchpoints`` and
    ``teams`` (None: any; a case without a team is in no list), newest first.

    Filtering and the limit run in the store, on three columns of each case, so only the
    returned cases' rows come back however many cases were ever written.
    """
    if (touchpoints is not None and not touchpoints) or (teams is not None and not teams):
        return []
    having: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    # Column names are this code's own; every value is a parameter.
    for column, wanted in (("status", status), ("team", team), ("touchpoint", touchpoint)):
        if wanted is not None:
            having.append(f"argMax({column}, seq) = %({column})s")
            params[column] = wanted
    for column, allowed in (("touchpoint", touchpoints), ("team", teams)):
        if allowed is not None:
            having.append(f"argMax({column}, seq) IN %({column}s)s")
            params[f"{column}s"] = tuple(sorted(allowed))
    rows = await store.query(
        "SELECT * FROM case_events FINAL WHERE case_id IN ("
        " SELECT case_id FROM case_events FINAL GROUP BY case_id"
        + (" HAVING " + " AND ".join(having) if having else "")
        + " ORDER BY argMax(opened_at, seq) DESC, case_id LIMIT %(limit)s)" + _CURRENT, params)
    found = sorted((event_from_row(r) for r in rows), key=lambda c: c.case_id)
    return sorted(found, key=lambda c: c.opened_at, reverse=True)


async def escalatable_cases(store: Store, *, levels: int) -> list[CaseEvent]:
    """Current state of every unresolved case below escalation level ``levels``. The inner
    query reads three columns of every case (in the store); only these cases' rows return."""
    rows = await store.query(
        "SELECT * FROM case_events FINAL WHERE case_id IN ("
        " SELECT case_id FROM case_events FINAL GROUP BY case_id"
        " HAVING argMax(status, seq) IN %(unresolved)s"
        " AND argMax(escalation_level, seq) < %(levels)s)" + _CURRENT,
        {"unresolved": _UNRESOLVED, "levels": levels})
    return [event_from_row(r) for r in rows]


async def stored_case_ids(store: Store, ids: Collection[str]) -> set[str]:
    """Those of ``ids`` that have a stored case event."""
    if not ids:
        return set()
    rows = await store.query("SELECT DISTINCT case_id FROM case_events WHERE case_id IN %(ids)s",
                             {"ids": tuple(ids)})
    return {r["case_id"] for r in rows}


async def record_case_events(store: Store, events: Sequence[CaseEvent], inserted_ms: int) -> None:
    await store.insert("case_events", [case_row(e, inserted_ms) for e in events])


@dataclass(frozen=True)
class CaseFigures:
    """Cases opened in a period, per owning team ('' for none) and touchpoint."""

    team: str
    touchpoint: str
    cases: int
    unresolved: int
    mtta_s: float | None
    mttr_s: float | None
    max_escalation_level: int


CASE_FIGURES_SQL = """
SELECT team, touchpoint, count() AS cases,
       countIf(status IN ('open', 'acknowledged', 'in_progress')) AS unresolved,
       avg(ack_seconds) AS mtta_s, avg(resolve_seconds) AS mttr_s,
       max(escalation_level) AS max_escalation_level
FROM (
    SELECT * FROM case_events FINAL WHERE opened_at >= %(since)s
    ORDER BY case_id, seq DESC LIMIT 1 BY case_id
)
GROUP BY team, touchpoint
ORDER BY team, touchpoint
"""


def _number(value: Any) -> float | None:
    """An average over no values is NULL on one backend and NaN on the other: None."""
    return None if value is None or value != value else float(value)


async def case_figures(store: Store, since: datetime) -> list[CaseFigures]:
    """MTTA, MTTR and counts of the cases opened since ``since``, by their current rows."""
    rows = await store.query(CASE_FIGURES_SQL, {"since": since})
    return [CaseFigures(r["team"], r["touchpoint"], int(r["cases"]), int(r["unresolved"]),
                        _number(r["mtta_s"]), _number(r["mttr_s"]),
                        int(r["max_escalation_level"])) for r in rows]



# ------------------------------------------------------------------------------- customers

TIMELINE_COLUMNS = ("event_id, occurred_at, channel, touchpoint, stage, segment, sentiment,"
                    " sentiment_label, nps, csat, ces, topics, intent, text")


async def customer_feedback(store: Store, customer_id: str, *,
                            touchpoints: Collection[str] | None,
                            before: tuple[datetime, str] | None, limit: int) -> list[Row]:
    """A customer's stored feedback across channels, newest first (ties by event id), from
    before the cursor ``(occurred_at, event_id)`` of the previous page; at most ``limit``."""
    if touchpoints is not None and not touchpoints:
        return []
    where = " WHERE customer_id = %(customer)s"
    params: dict[str, Any] = {"customer": customer_id, "limit": limit}
    if touchpoints is not None:
        where += " AND touchpoint IN %(touchpoints)s"
        params["touchpoints"] = tuple(sorted(touchpoints))
    if before is not None:
        where += (" AND (occurred_at < %(at)s OR (occurred_at = %(at)s"
                  " AND event_id < %(event_id)s))")
        params.update(at=before[0], event_id=before[1])
    return await store.query(
        f"SELECT {TIMELINE_COLUMNS} FROM feedback FINAL{where}"
        " ORDER BY occurred_at DESC, event_id DESC LIMIT %(limit)s", params)


async def customer_cases(store: Store, customer_id: str, event_ids: Collection[str],
                         limit: int) -> list[CaseEvent]:
    """Current state of the cases of a customer, or linking any of ``event_ids`` (a case
    opened by an event rule carries no customer), newest-opened first; at most ``limit``."""
    linked = " OR hasAny(feedback_event_ids, %(events)s)" if event_ids else ""
    rows = await store.query(
        "SELECT * FROM case_events FINAL WHERE case_id IN ("
        " SELECT case_id FROM case_events FINAL WHERE customer_id = %(customer)s" + linked
        + ")" + _CURRENT, {"customer": customer_id, "events": sorted(event_ids)})
    found = sorted((event_from_row(r) for r in rows), key=lambda c: c.opened_at, reverse=True)
    return found[:limit]


@dataclass(frozen=True)
class Callback:
    """One callback case opened in a period, with what the callback KPIs need of it."""

    case_id: str
    touchpoint: str
    team: str
    customer_id: str
    opening_event: str
    first_resolved_at: datetime | None
    resolve_due_at: datetime
    """The resolve deadline the case was opened with (escalations re-arm the current one)."""


async def callback_cases(store: Store, since: datetime, limit: int) -> list[Callback]:
    """Callback cases opened since ``since``, newest-opened first (at most ``limit``)."""
    rows = await store.query(
        "SELECT case_id, argMax(touchpoint, seq) AS touchpoint, argMax(team, seq) AS team,"
        " argMax(customer_id, seq) AS customer_id,"
        " argMin(feedback_event_ids, seq) AS events, argMin(resolve_due_at, seq) AS due,"
        " minIf(at, action = 'resolved') AS resolved, countIf(action = 'resolved') AS times,"
        " min(opened_at) AS opened"
        " FROM case_events FINAL WHERE case_kind = 'callback' AND opened_at >= %(since)s"
        " GROUP BY case_id ORDER BY opened DESC, case_id LIMIT %(limit)s",
        {"since": since, "limit": limit})
    return [Callback(r["case_id"], r["touchpoint"], r["team"], r["customer_id"],
                     (r["events"] or [""])[0],
                     _utc(r["resolved"]) if int(r["times"]) else None, _utc(r["due"]))
            for r in rows]


async def feedback_by_id(store: Store, event_ids: Collection[str]) -> dict[str, Row]:
    """Ratings and sentiment of stored feedback events, by event id."""
    if not event_ids:
        return {}
    rows = await store.query(
        "SELECT event_id, customer_id, occurred_at, nps, csat, sentiment FROM feedback FINAL"
        " WHERE event_id IN %(ids)s", {"ids": tuple(sorted(event_ids))})
    return {r["event_id"]: r for r in rows}


async def feedback_after(store: Store, customers: Collection[str], since: datetime,
                         per_customer: int) -> list[Row]:
    """The earliest ``per_customer`` feedback events of each customer from ``since`` on,
    oldest first."""
    if not customers:
        return []
    return await store.query(
        "SELECT event_id, customer_id, occurred_at, nps, csat, sentiment FROM feedback FINAL"
        " WHERE customer_id IN %(customers)s AND occurred_at >= %(since)s"
        " ORDER BY customer_id, occurred_at, event_id LIMIT %(n)s BY customer_id",
        {"customers": tuple(sorted(customers)), "since": since, "n": per_customer})

"""The query API over the stored scores and feedback, for dashboards and people.

Routes live on an ``APIRouter`` built from a store, so the app composition (``services/api.py``)
decides where they are mounted. Every parameter is parsed here and a bad one is a 400 that names
the parameter and the accepted values. SQL is fixed text: optional filters pick among constant
fragments, and every value travels as a ``%(name)s`` parameter.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import TypeAdapter, ValidationError

from services.core.access import Caller, Principal, Require, forbidden_touchpoint
from services.core.cem_metrics import mean_topic_sentiment
from services.core.events import Intent, SentimentLabel, utc_now
from services.core.store import Store
from services.scoring.drivers import (
    IMPACT_METRICS,
    Factor,
    derived_importance,
    experience_0_10,
    impact,
    rank_key_experiences,
)
from services.scoring.expectations import Expectations
from services.scoring.metrics import (
    ALL,
    RESPONSES_OF,
    SCORE_COUNTS,
    SCORE_METRICS,
    STAGES,
    TOPIC_COUNTS,
    URGENT_FLAGS,
    granularities,
    window_label,
)

T = TypeVar("T")

PAGE_SIZE_MAX = 200
PAGE_MAX = 10_000
"""Deepest page of /v1/feedback: ClickHouse reads every skipped row, so deeper reading is a
narrower time range or filter, not a page number."""
SCORE_ROWS_MAX = 10000
# What the store's DateTime columns hold: seconds since 1970 in 32 bits unsigned.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)

_SCORE_COLUMNS = ", ".join([
    "touchpoint", "channel", "stage", "window_seconds", "window_start", *SCORE_COUNTS,
    "mean_sentiment", "net_sentiment", "negative_share", "nps", "csat", "ces", "complaint_rate",
    "gap_metrics", "gap_targets", "gaps"])

_SCORES_SQL = f"""
SELECT {_SCORE_COLUMNS}
FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s AND channel = %(channel)s AND stage = %(stage)s
  AND window_start >= %(lo)s AND window_start < %(hi)s {{touchpoint}}
ORDER BY touchpoint, window_start
LIMIT %(limit)s
"""

_TOTALS_SQL = f"""
SELECT touchpoint AS tp, {", ".join(f"sum({c}) AS {c}_total" for c in SCORE_COUNTS)}
FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s AND channel = %(channel)s AND stage = %(stage)s
  AND window_start >= %(lo)s AND window_start < %(hi)s {{touchpoint}}
GROUP BY tp
"""

_TOPIC_TOTALS_SQL = f"""
SELECT touchpoint AS tp, topic AS tid, {", ".join(f"sum({c}) AS {c}_total" for c in TOPIC_COUNTS)}
FROM topic_scores FINAL
WHERE window_seconds = %(seconds)s AND channel = %(channel)s AND stage = %(stage)s
  AND window_start >= %(lo)s AND window_start < %(hi)s {{touchpoint}}
GROUP BY tp, tid
"""

_TOUCHPOINTS_SQL = """
SELECT touchpoint AS tp,
    sumIf(volume, channel = '' AND stage = '') AS events,
    min(window_start) AS first_day, max(window_start) AS last_day,
    groupUniqArrayIf(channel, channel != '') AS channels,
    groupUniqArrayIf(stage, stage != '') AS stages
FROM cem_scores FINAL
WHERE window_seconds = %(seconds)s
GROUP BY tp
ORDER BY tp
"""

_FEEDBACK_FILTERS = {
    "touchpoint": "touchpoint = %(touchpoint)s",
    "topic": "has(topics, %(topic)s)",
    "sentiment": "sentiment_label = %(sentiment)s",
    "channel": "channel = %(channel)s",
    "stage": "stage = %(stage)s",
    "intent": "intent = %(intent)s",
    "q": "positionCaseInsensitiveUTF8(text, %(q)s) > 0",
    "scope": "touchpoint IN %(scope)s",
}

_FEEDBACK_COLUMNS = ("event_id, occurred_at, touchpoint, channel, stage, segment, text, "
                     "sentiment, sentiment_label, intent, topics, topic_sentiments, "
                     "urgent_flags, keywords, nps, csat, ces, too_late, enriched_json")


def _bad(parameter: str, message: str) -> HTTPException:
    return HTTPException(status_code=400, detail={"parameter": parameter, "error": message})


def _parse(parameter: str, raw: str | None, kind: Any, default: T, hint: str) -> T:
    """``raw`` validated as ``kind``; a 400 naming the parameter and ``hint`` otherwise."""
    if raw is None or raw == "":
        return default
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise _bad(parameter, f"{raw!r} is not valid ({reason}); {hint}") from exc


def _choice(parameter: str, raw: str | None, allowed: tuple[str, ...], default: str) -> str:
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise _bad(parameter, f"{raw!r} is not one of {', '.join(allowed)}")
    return raw


def _moment(parameter: str, raw: str | None, default: datetime) -> datetime:
    value = _parse(parameter, raw, datetime, default,
                   "use RFC 3339 with an offset, e.g. 2026-11-23T10:00:00+08:00")
    if value.tzinfo is None:
        raise _bad(parameter, f"{raw!r} has no UTC offset; add one, e.g. +08:00 or Z")
    try:
        value = value.astimezone(UTC)
        if EARLIEST <= value <= LATEST:
            return value
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        pass
    raise _bad(parameter, f"{raw!r} is outside the times the store holds; use a time from "
                          f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}")


def _range(raw_from: str | None, raw_to: str | None, default_span: timedelta,
           max_days: int) -> tuple[datetime, datetime]:
    to = _moment("to", raw_to, utc_now())
    start = _moment("from", raw_from, max(to - default_span, EARLIEST))
    if start >= to:
        raise _bad("from", f"from ({start.isoformat()}) must be before to ({to.isoformat()})")
    if to - start > timedelta(days=max_days):
        raise _bad("from", f"from {start.isoformat()} to {to.isoformat()} spans more than "
                   f"{max_days} days (VOC_QUERY_MAX_RANGE_DAYS); ask for a shorter range")
    return start, to


def _touchpoint_filter(touchpoint: str | None, who: Principal) -> tuple[str, dict[str, Any]]:
    """The touchpoint condition: the one asked for (403 outside the principal's scope), else
    the principal's touchpoints, else none."""
    forbidden_touchpoint(who, touchpoint)
    if touchpoint:
        return "AND touchpoint = %(touchpoint)s", {"touchpoint": touchpoint}
    if who.touchpoints is not None:
        return "AND touchpoint IN %(scope)s", {"scope": tuple(sorted(who.touchpoints))}
    return "", {}


FromParam = Annotated[str | None, Query(alias="from", description=(
    "Inclusive start, RFC 3339 with offset (default: `to` minus the default span)."),
    examples=["2026-11-23T00:00:00+08:00"])]
ToParam = Annotated[str | None, Query(description="Exclusive end (default: now).",
                                      examples=["2026-11-24T00:00:00+08:00"])]


def build_router(store: Store, expectations: Expectations, base_seconds: int, *,
                 max_range_days: int = 366) -> APIRouter:
    """The query routes, reading ``store``, for viewers; each answers only within the caller's
    touchpoints."""
    levels = {window_label(s): s for s in granularities(base_seconds)}
    router = APIRouter(prefix="/v1", tags=["scores"], dependencies=[Depends(Require("viewer"))])

    @router.get("/touchpoints", summary="Touchpoints with their volume and data range")
    async def touchpoints(who: Caller) -> dict[str, Any]:
        """Every touchpoint that has scores: events scored, first and last day, the channels
        and stages seen, and how many of its events arrived too late to be scored."""
        rows = [r for r in await store.query(_TOUCHPOINTS_SQL, {"seconds": levels["1d"]})
                if who.sees_touchpoint(r["tp"])]
        late = {r["tp"]: int(r["n"]) for r in await store.query(
            "SELECT touchpoint AS tp, uniqExact(event_id) AS n FROM feedback "
            "WHERE too_late = 1 GROUP BY tp")}
        return {"touchpoints": [{
            "touchpoint": r["tp"], "events": int(r["events"]),
            "first_day": r["first_day"], "last_day": r["last_day"],
            "channels": sorted(r["channels"]), "stages": sorted(r["stages"]),
            "too_late_events": late.get(r["tp"], 0)} for r in rows]}

    @router.get("/scores", summary="Window scores of a touchpoint x channel x stage")
    async def scores(
        who: Caller,
        touchpoint: Annotated[str | None, Query(description="Touchpoint (default: all).",
                                                examples=["delivery"])] = None,
        channel: Annotated[str | None, Query(description=(
            "Channel, e.g. app (default: all channels together)."))] = None,
        stage: Annotated[str | None, Query(description=(
            "售前, 售中, 售后 or unknown (default: all stages together)."))] = None,
        metric: Annotated[str | None, Query(description=(
            f"One of {', '.join(SCORE_METRICS)}: answer with its value, responses, target "
            "and gap only (default: every metric)."),
            examples=["nps"])] = None,
        window: Annotated[str | None, Query(description="1m, 5m, 1h or 1d (default 1h).",
                                            examples=["1h"])] = None,
        from_: FromParam = None,
        to: ToParam = None,
        limit: Annotated[str | None, Query(description=f"Most rows (1-{SCORE_ROWS_MAX}, "
                                                       "default 1000).")] = None,
    ) -> dict[str, Any]:
        """Score rows oldest first. Without `metric`, each row carries every metric, its
        counts and its expectation gaps; with it, the value, the responses it rests on, the
        target and the gap. Default range: the last 24 hours."""
        chosen = _choice("metric", metric, SCORE_METRICS, "")
        label = _choice("window", window, tuple(levels), "1h")
        stage_value = _choice("stage", stage, STAGES, ALL)
        size = _parse("limit", limit, int, 1000, f"use 1-{SCORE_ROWS_MAX}")
        if not 1 <= size <= SCORE_ROWS_MAX:
            raise _bad("limit", f"{size} is out of range; use 1-{SCORE_ROWS_MAX}")
        start, end = _range(from_, to, timedelta(days=1), max_range_days)
        where, params = _touchpoint_filter(touchpoint, who)
        rows = await store.query(_SCORES_SQL.format(touchpoint=where), {
            **params, "seconds": levels[label], "channel": channel or ALL,
            "stage": stage_value, "lo": start, "hi": end, "limit": size + 1})
        return {"window": label, "from": start, "to": end, "truncated": len(rows) > size,
                "rows": [_score_out(r, label, chosen) for r in rows[:size]]}

    @router.get("/drivers", summary="Key experiences (importance x gap) and topic impact")
    async def drivers(
        who: Caller,
        touchpoint: Annotated[str | None, Query(description="Touchpoint (default: all).")] = None,
        channel: Annotated[str | None, Query(description=(
            "Only this channel's feedback (default: all channels)."))] = None,
        stage: Annotated[str | None, Query(description=(
            "Only this journey stage: 售前, 售中, 售后 or unknown (default: all stages)."))
        ] = None,
        from_: FromParam = None,
        to: ToParam = None,
        impact_metric: Annotated[str | None, Query(description=(
            f"Metric the impact is measured on: {', '.join(IMPACT_METRICS)} "
            "(default mean_sentiment)."))] = None,
        importance: Annotated[str | None, Query(description=(
            "Basis of data-derived importance for topics without a configured one: sentiment "
            "or nps (default sentiment)."))] = None,
    ) -> dict[str, Any]:
        """Per touchpoint, its topics ranked worst first by importance x gap, each with the
        impact of its feedback on the touchpoint's score, over all its feedback or one
        channel's or stage's. Default range: the last 7 days."""
        metric = _choice("impact_metric", impact_metric, IMPACT_METRICS, "mean_sentiment")
        basis = _choice("importance", importance, ("sentiment", "nps"), "sentiment")
        stage_value = _choice("stage", stage, STAGES, ALL)
        start, end = _range(from_, to, timedelta(days=7), max_range_days)
        seconds = max(s for s in levels.values()
                      if s == base_seconds or (int(start.timestamp()) % s == 0
                                               and int(end.timestamp()) % s == 0))
        where, params = _touchpoint_filter(touchpoint, who)
        params = {**params, "seconds": seconds, "lo": start, "hi": end,
                  "channel": channel or ALL, "stage": stage_value}
        totals = {r["tp"]: {k.removesuffix("_total"): v for k, v in r.items()}
                  for r in await store.query(_TOTALS_SQL.format(touchpoint=where), params)}
        topics: dict[str, list[dict[str, Any]]] = {}
        for row in await store.query(_TOPIC_TOTALS_SQL.format(touchpoint=where), params):
            topics.setdefault(row["tp"], []).append(
                {"topic": row["tid"], **{k.removesuffix("_total"): v for k, v in row.items()}})
        return {"from": start, "to": end, "window": window_label(seconds),
                "channel": channel or ALL, "stage": stage_value,
                "impact_metric": metric, "importance_basis": basis,
                "touchpoints": [
                    {"touchpoint": tp, "volume": int(total["volume"]),
                     "key_experiences": _key_experiences(tp, total, topics.get(tp, []),
                                                         expectations, metric, basis)}
                    for tp, total in sorted(totals.items())]}

    @router.get("/feedback", summary="Stored feedback, filtered and paginated")
    async def feedback(
        who: Caller,
        touchpoint: Annotated[str | None, Query()] = None,
        topic: Annotated[str | None, Query(description="Topic id, e.g. logistics_delivery.")
                         ] = None,
        sentiment: Annotated[str | None, Query(description="negative, neutral or positive.")
                             ] = None,
        channel: Annotated[str | None, Query()] = None,
        stage: Annotated[str | None, Query(
            description="售前, 售中, 售后 or unknown (no stage given).")] = None,
        intent: Annotated[str | None, Query(
            description="complaint, inquiry, praise, suggestion or other.")] = None,
        q: Annotated[str | None, Query(description="Text contains (case-insensitive).",
                                       examples=["配送"])] = None,
        from_: FromParam = None,
        to: ToParam = None,
        page: Annotated[str | None, Query(description=f"Page number, 1-{PAGE_MAX}.")] = None,
        page_size: Annotated[str | None, Query(
            description=f"Items per page, 1-{PAGE_SIZE_MAX} (default 50).")] = None,
    ) -> dict[str, Any]:
        """Newest first. Texts are returned as stored: PII is redacted upstream, before
        storage, and this route adds nothing back. Default range: the last 7 days."""
        number = _parse("page", page, int, 1, "use a page number from 1")
        size = _parse("page_size", page_size, int, 50, f"use 1-{PAGE_SIZE_MAX}")
        if not 1 <= number <= PAGE_MAX:
            raise _bad("page", f"{number} is out of range; use 1-{PAGE_MAX} (narrow the time "
                               "range or filter to read further back)")
        if not 1 <= size <= PAGE_SIZE_MAX:
            raise _bad("page_size", f"{size} is out of range; use 1-{PAGE_SIZE_MAX}")
        labels: tuple[str, ...] = SentimentLabel.__args__  # type: ignore[attr-defined]
        intents: tuple[str, ...] = Intent.__args__  # type: ignore[attr-defined]
        stage_value = (None if not stage else
                       "" if stage == "unknown" else _choice("stage", stage, STAGES, ""))
        values: dict[str, Any] = {
            "touchpoint": touchpoint or None, "topic": topic or None, "channel": channel or None,
            "q": q or None, "stage": stage_value,
            "sentiment": _choice("sentiment", sentiment, labels, "") or None,
            "intent": _choice("intent", intent, intents, "") or None,
        }
        forbidden_touchpoint(who, touchpoint)
        if who.touchpoints is not None:
            values["scope"] = tuple(sorted(who.touchpoints))
        start, end = _range(from_, to, timedelta(days=7), max_range_days)
        active = {k: v for k, v in values.items() if v is not None}
        where = " AND ".join(["occurred_at >= %(lo)s", "occurred_at < %(hi)s",
                              *(_FEEDBACK_FILTERS[k] for k in active)])
        params = {**active, "lo": start, "hi": end, "offset": (number - 1) * size,
                  "limit": size}
        total = await store.query(f"SELECT count() AS n FROM feedback FINAL WHERE {where}",
                                  params)
        rows = await store.query(
            f"SELECT {_FEEDBACK_COLUMNS} FROM feedback FINAL WHERE {where} "
            "ORDER BY occurred_at DESC, event_id LIMIT %(offset)s, %(limit)s", params)
        return {"page": number, "page_size": size, "total": int(total[0]["n"]),
                "items": [_feedback_out(r) for r in rows]}

    return router


def _score_out(row: dict[str, Any], label: str, metric: str) -> dict[str, Any]:
    seconds = int(row["window_seconds"])
    head = {"touchpoint": row["touchpoint"], "channel": row["channel"], "stage": row["stage"],
            "window": label, "window_start": row["window_start"],
            "window_end": row["window_start"] + timedelta(seconds=seconds)}
    gaps = {m: {"target": t, "gap": g}
            for m, t, g in zip(row["gap_metrics"], row["gap_targets"], row["gaps"])}
    if metric:
        value = row[metric]
        return {**head, "metric": metric, "value": value,
                "responses": int(row[RESPONSES_OF.get(metric, "volume")]),
                "target": gaps.get(metric, {}).get("target"),
                "gap": gaps.get(metric, {}).get("gap")}
    counts = {name: row[name] for name in SCORE_COUNTS}
    return {**head, **{m: row[m] for m in SCORE_METRICS if m in row}, "counts": counts,
            "urgent_flags": {f: int(row[f"{f}_count"]) for f in URGENT_FLAGS},
            "expectations": [{"metric": m, "value": row[m], **g} for m, g in gaps.items()]}


def _feedback_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["event_id"], "occurred_at": row["occurred_at"],
        "touchpoint": row["touchpoint"], "channel": row["channel"],
        "stage": row["stage"] or None, "segment": row["segment"] or None, "text": row["text"],
        "sentiment": {"score": row["sentiment"], "label": row["sentiment_label"]},
        "intent": row["intent"],
        "topics": _topics_out(row),
        "urgent_flags": row["urgent_flags"], "keywords": row["keywords"],
        "ratings": {"nps": row["nps"], "csat": row["csat"], "ces": row["ces"]},
        "scored": not row["too_late"],
    }


def _topics_out(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Each topic with its aspect sentiment and, from the stored enriched event, its name and
    evidence spans ([start, end) character offsets), so a reader can highlight where the text
    talks about the topic."""
    enriched = {t["id"]: t for t in json.loads(row["enriched_json"] or "{}").get("topics", [])}
    return [{"id": t, "name": enriched.get(t, {}).get("name"), "sentiment": s,
             "evidence": enriched.get(t, {}).get("evidence", [])}
            for t, s in zip(row["topics"], row["topic_sentiments"])]


def _key_experiences(touchpoint: str, total: dict[str, Any], topics: list[dict[str, Any]],
                     expectations: Expectations, metric: str, basis: str
                     ) -> list[dict[str, Any]]:
    ranked: list[Factor] = []
    unranked: list[Factor] = []
    for row in topics:
        mean = mean_topic_sentiment(row)
        experience = experience_0_10(mean)
        expected = expectations.factor_expectation(touchpoint, row["topic"])
        configured = expectations.importance(touchpoint, row["topic"])
        derived, sample = derived_importance(total, row, basis)  # type: ignore[arg-type]
        weight = configured if configured is not None else derived
        factor = Factor(
            topic=row["topic"], importance=weight if weight is not None else 0.0,
            gap=round(experience - expected, 10) if expected is not None else 0.0,
            importance_source=("config" if configured is not None else
                               f"data:{basis}" if derived is not None else "none"),
            experience=experience, expectation=expected, mentions=int(row["mentions"]),
            mean_topic_sentiment=mean, importance_sample=sample,
            impact=impact(metric, total, row))
        (ranked if weight is not None and expected is not None else unranked).append(factor)
    out = []
    for rank, factor in enumerate([*rank_key_experiences(ranked), *unranked], start=1):
        scored = factor in ranked
        out.append({
            "rank": rank if scored else None, "topic": factor.topic,
            "mentions": factor.mentions, "mean_topic_sentiment": factor.mean_topic_sentiment,
            "experience": factor.experience, "expectation": factor.expectation,
            "gap": factor.gap if factor.expectation is not None else None,
            "importance": factor.importance if factor.importance_source != "none" else None,
            "importance_source": factor.importance_source,
            "importance_sample": factor.importance_sample,
            "weighted": factor.weighted if scored else None, "impact": factor.impact})
    return out

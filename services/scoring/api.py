"""The query API over the stored scores and feedback, for dashboards and people.

Routes live on an ``APIRouter`` built from a store, so the app composition (``services/api.py``)
decides where they are mounted. Parameters are typed, so FastAPI validates them and documents
them; an invalid one is a 400 that names it (``ParameterRoute``, services/core/errors.py), and
so is a range that only the combination of parameters makes invalid. Answers have response models; the score
rows' figures come from the metric catalogue (services/core/cem_metrics.py). The SQL is in
services/scoring/queries.py.

Annotations are evaluated where the routes are defined (no ``from __future__ import
annotations``): the window names a route accepts depend on ``VOC_WINDOW_SECONDS``.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from fastapi import APIRouter, Depends, Query, Response
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
)
from pydantic_core import PydanticCustomError

from services.core import cem_metrics
from services.core.access import Caller, Principal, Require, forbidden_touchpoint
from services.core.cem_metrics import (
    RESPONSES_OF,
    SCORE_COUNTS,
    SCORE_METRICS,
    URGENT_FLAGS,
    mean_topic_sentiment,
)
from services.core.errors import PROBLEM_RESPONSES, ParameterRoute, bad_parameter
from services.core.events import Intent, SentimentLabel, utc_now
from services.core.store import Row, Store
from services.scoring import queries
from services.scoring.drivers import (
    IMPACT_METRICS,
    Factor,
    ImportanceBasis,
    derived_importance,
    experience_0_10,
    impact,
    rank_key_experiences,
)
from services.scoring.expectations import Expectations
from services.scoring.queries import Cell, FeedbackFilter
from services.scoring.windows import (
    ALL,
    STAGES,
    UNKNOWN_STAGE,
    granularities,
    window_label,
)

PAGE_SIZE_MAX = 200
PAGE_MAX = 10_000
"""Deepest page of /v1/feedback: ClickHouse reads every skipped row, so deeper reading is a
narrower time range or filter, not a page number."""
SCORE_ROWS_MAX = 10000
# What the store's DateTime columns hold: seconds since 1970 in 32 bits unsigned.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)


# ------------------------------------------------------------------------------ parameters


def _blank(value: Any) -> Any:
    """An empty parameter (``?stage=``) means "not given", as it always has."""
    return None if value == "" else value


def _in_store(value: datetime | None) -> datetime | None:
    """The instant in UTC, if the store can hold it."""
    if value is None:
        return None
    try:
        moment = value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise PydanticCustomError("out_of_range", (
            "outside the times the store holds; use a time from {earliest} to {latest}"),
            {"earliest": f"{EARLIEST:%Y-%m-%d}", "latest": f"{LATEST:%Y-%m-%d}"})
    return moment


Moment = Annotated[AwareDatetime | None, BeforeValidator(_blank), AfterValidator(_in_store)]
Stage = Literal[STAGES]  # type: ignore[valid-type]
ScoreMetric = Literal[SCORE_METRICS]  # type: ignore[valid-type]
ImpactMetric = Literal[IMPACT_METRICS]  # type: ignore[valid-type]

FromParam = Annotated[Moment, Query(alias="from", description=(
    "Inclusive start, RFC 3339 with offset (default: `to` minus the default span)."),
    examples=["2026-11-23T00:00:00+08:00"])]
ToParam = Annotated[Moment, Query(description="Exclusive end, RFC 3339 with offset "
                                  "(default: now).", examples=["2026-11-24T00:00:00+08:00"])]
TouchpointParam = Annotated[str | None, Query(description="Touchpoint (default: all).",
                                              examples=["delivery"])]
StageParam = Annotated[Stage | None, BeforeValidator(_blank), Query(description=(
    "售前, 售中, 售后 or unknown (events that carried no stage); default: all stages."))]


class Span:
    """Dependency: the ``[from, to)`` a read covers, checked against each other and against
    VOC_QUERY_MAX_RANGE_DAYS; ``default`` is the span when ``from`` is not given."""

    def __init__(self, default: timedelta, max_days: int) -> None:
        self.default = default
        self.max_days = max_days

    def __call__(self, from_: FromParam = None, to: ToParam = None) -> tuple[datetime, datetime]:
        end = to or utc_now()
        start = from_ or max(end - self.default, EARLIEST)
        if start >= end:
            raise bad_parameter("from", f"from ({start.isoformat()}) must be before to "
                                        f"({end.isoformat()})")
        if end - start > timedelta(days=self.max_days):
            raise bad_parameter("from", (
                f"from {start.isoformat()} to {end.isoformat()} spans more than {self.max_days} "
                "days (VOC_QUERY_MAX_RANGE_DAYS); ask for a shorter range"))
        return start, end


def _touchpoints(touchpoint: str | None, who: Principal) -> tuple[str, ...] | None:
    """The touchpoints a read covers: the one asked for (403 outside the principal's scope),
    else the principal's, else all (None)."""
    forbidden_touchpoint(who, touchpoint)
    if touchpoint:
        return (touchpoint,)
    if who.touchpoints is not None:
        return tuple(sorted(who.touchpoints))
    return None


# -------------------------------------------------------------------------------- answers


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class TouchpointOut(_Out):
    touchpoint: str
    events: int = Field(description="On-time events scored.")
    first_day: datetime
    last_day: datetime
    channels: list[str]
    stages: list[str]
    too_late_events: int = Field(description="Events stored but too late to be scored.")


class TouchpointsOut(_Out):
    touchpoints: list[TouchpointOut]


class ExpectationOut(_Out):
    metric: str
    value: float | None
    target: float
    gap: float | None = Field(description="Negative: worse than expected.")


class _ScoreHead(_Out):
    touchpoint: str
    channel: str = Field(description="'' = all channels.")
    stage: str = Field(description="'' = all stages, 'unknown' = no stage given.")
    window: str
    window_start: datetime
    window_end: datetime


def _metric_type(name: str) -> Any:
    metric = cem_metrics.BY_NAME[name]
    if isinstance(metric, cem_metrics.Count):
        return int
    return float | None if metric.nullable else float


_SCORE_ROW_FIELDS: dict[str, Any] = {
    **{name: (_metric_type(name), Field(description=cem_metrics.BY_NAME[name].description))
       for name in SCORE_METRICS},
    "counts": (dict[str, int | float], Field(description="Every additive count of the row.")),
    "urgent_flags": (dict[str, int], Field(description="Events carrying each urgency flag.")),
    "expectations": (list[ExpectationOut], ...),
}
ScoreRow = create_model(
    "ScoreRow", __base__=_ScoreHead,
    __doc__="One window's figures (docs/metrics.md), its counts and expectation gaps.",
    **_SCORE_ROW_FIELDS,
)


class MetricRow(_ScoreHead):
    """One window's value of the asked metric."""

    metric: str
    value: int | float | None
    responses: int = Field(description="Events the value rests on (survey responses for "
                                       "nps, csat and ces; otherwise the volume).")
    target: float | None
    gap: float | None


class ScoresOut(_Out):
    window: str
    from_: datetime = Field(alias="from")
    to: datetime
    truncated: bool = Field(description="More rows matched than `limit`.")
    rows: list[ScoreRow] | list[MetricRow]


class ImpactOut(_Out):
    metric: str
    overall: float | None
    without_topic: float | None
    impact: float | None


class KeyExperience(_Out):
    rank: int | None = Field(description="None: no importance or expectation to rank by.")
    topic: str
    mentions: int
    mean_topic_sentiment: float
    experience: float
    expectation: float | None
    gap: float | None
    importance: float | None
    importance_source: str
    importance_sample: dict[str, int] | None
    weighted: float | None
    impact: ImpactOut


class TouchpointDrivers(_Out):
    touchpoint: str
    volume: int
    key_experiences: list[KeyExperience]


class DriversOut(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    window: str
    channel: str
    stage: str
    impact_metric: str
    importance_basis: str
    touchpoints: list[TouchpointDrivers]


class SentimentOut(_Out):
    score: float
    label: str


class TopicOut(_Out):
    id: str
    name: str | None
    sentiment: float
    evidence: list[tuple[int, int]] = Field(description="[start, end) character offsets.")


class RatingsOut(_Out):
    nps: int | None
    csat: int | None
    ces: int | None


class FeedbackItem(_Out):
    event_id: str
    occurred_at: datetime
    touchpoint: str
    channel: str
    stage: str | None
    segment: str | None
    text: str
    sentiment: SentimentOut
    intent: str
    topics: list[TopicOut]
    urgent_flags: list[str]
    keywords: list[str]
    ratings: RatingsOut
    scored: bool = Field(description="False: stored, but too late for its window.")


class FeedbackPage(_Out):
    page: int
    page_size: int
    total: int
    items: list[FeedbackItem]


class MetricLabel(_Out):
    zh: str
    en: str


class Formula(_Out):
    numerator: list[str]
    minus: list[str]
    denominator: str
    scale: float


class MetricOut(_Out):
    name: str
    description: str
    kind: Literal["count", "ratio"]
    label: MetricLabel
    unit: str
    minimum: float
    maximum: float | None
    lower_is_better: bool
    nullable: bool
    targetable: bool
    formula: Formula | None = Field(description=(
        "A ratio's value: scale x (sum of numerator - sum of minus) / denominator, over "
        "counts summed across rows."))


class MetricsOut(_Out):
    metrics: list[MetricOut]


# --------------------------------------------------------------------------------- routes


def build_router(store: Store, expectations: Expectations, base_seconds: int, *,
                 max_range_days: int = 366) -> APIRouter:
    """The query routes, reading ``store``, for viewers; each answers only within the caller's
    touchpoints."""
    levels = {window_label(s): s for s in granularities(base_seconds)}
    if TYPE_CHECKING:
        WindowName: TypeAlias = str  # the labels are known only here, at run time
    else:
        WindowName = Literal[tuple(levels)]  # noqa: N806
    day = Span(timedelta(days=1), max_range_days)
    week = Span(timedelta(days=7), max_range_days)
    router = APIRouter(prefix="/v1", tags=["scores"], dependencies=[Depends(Require("viewer"))],
                       responses=PROBLEM_RESPONSES, route_class=ParameterRoute)

    @router.get("/metrics", summary="The metric catalogue: names, labels, units, formulas",
                response_model=MetricsOut)
    async def metrics() -> Response:
        """Every metric `/v1/scores` serves, with its labels (中文 and English), unit, range,
        direction and, for a ratio, the formula over the row counts. The dashboard labels its
        figures from here."""
        return _answer(MetricsOut.model_validate({"metrics": cem_metrics.describe()}))

    @router.get("/touchpoints", summary="Touchpoints with their volume and data range",
                response_model=TouchpointsOut)
    async def touchpoints(who: Caller) -> Response:
        """Every touchpoint that has scores: events scored, first and last day, the channels
        and stages seen, and how many of its events arrived too late to be scored."""
        rows = [r for r in await queries.touchpoint_summaries(store, levels["1d"])
                if who.sees_touchpoint(r["tp"])]
        late = await queries.too_late_counts(store)
        return _answer(TouchpointsOut(touchpoints=[TouchpointOut(
            touchpoint=r["tp"], events=int(r["events"]), first_day=r["first_day"],
            last_day=r["last_day"], channels=sorted(r["channels"]), stages=sorted(r["stages"]),
            too_late_events=late.get(r["tp"], 0)) for r in rows]))

    @router.get("/scores", summary="Window scores of a touchpoint x channel x stage",
                response_model=ScoresOut)
    async def scores(
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(day)],
        touchpoint: TouchpointParam = None,
        channel: Annotated[str | None, Query(description=(
            "Channel, e.g. app (default: all channels together)."))] = None,
        stage: StageParam = None,
        metric: Annotated[ScoreMetric | None, BeforeValidator(_blank), Query(description=(
            "Answer with this metric's value, responses, target and gap only (default: "
            "every metric)."), examples=["nps"])] = None,
        window: Annotated[WindowName, BeforeValidator(lambda v: _blank(v) or "1h"), Query(
            description=f"{', '.join(levels)} (default 1h).", examples=["1h"])] = "1h",
        limit: Annotated[int, Query(ge=1, le=SCORE_ROWS_MAX, description=(
            f"Most rows (1-{SCORE_ROWS_MAX}, default 1000)."))] = 1000,
    ) -> Response:
        """Score rows oldest first. Without `metric`, each row carries every metric, its
        counts and its expectation gaps; with it, the value, the responses it rests on, the
        target and the gap. Default range: the last 24 hours."""
        start, end = span
        cell = Cell(levels[window], channel or ALL, stage or ALL, start, end,
                    _touchpoints(touchpoint, who))
        rows = await queries.score_rows(store, cell, limit + 1)
        shaped = [_metric_row(r, window, metric) if metric else _score_row(r, window)
                  for r in rows[:limit]]
        return _answer(ScoresOut(window=window, from_=start, to=end,
                                 truncated=len(rows) > limit, rows=shaped))

    @router.get("/drivers", summary="Key experiences (importance x gap) and topic impact",
                response_model=DriversOut)
    async def drivers(
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(week)],
        touchpoint: TouchpointParam = None,
        channel: Annotated[str | None, Query(description=(
            "Only this channel's feedback (default: all channels)."))] = None,
        stage: StageParam = None,
        impact_metric: Annotated[ImpactMetric, BeforeValidator(
            lambda v: _blank(v) or "mean_sentiment"), Query(description=(
                "Metric the impact is measured on (default mean_sentiment)."))
        ] = "mean_sentiment",
        importance: Annotated[ImportanceBasis, BeforeValidator(
            lambda v: _blank(v) or "sentiment"), Query(description=(
                "Basis of data-derived importance for topics without a configured one "
                "(default sentiment)."))] = "sentiment",
    ) -> Response:
        """Per touchpoint, its topics ranked worst first by importance x gap, each with the
        impact of its feedback on the touchpoint's score, over all its feedback or one
        channel's or stage's. Default range: the last 7 days."""
        start, end = span
        seconds = max(s for s in levels.values()
                      if s == base_seconds or (int(start.timestamp()) % s == 0
                                               and int(end.timestamp()) % s == 0))
        cell = Cell(seconds, channel or ALL, stage or ALL, start, end,
                    _touchpoints(touchpoint, who))
        totals = await queries.score_totals(store, cell)
        topics = await queries.topic_totals(store, cell)
        return _answer(DriversOut(
            from_=start, to=end, window=window_label(seconds), channel=cell.channel,
            stage=cell.stage, impact_metric=impact_metric, importance_basis=importance,
            touchpoints=[TouchpointDrivers(
                touchpoint=tp, volume=int(total["volume"]),
                key_experiences=_key_experiences(tp, total, topics.get(tp, []), expectations,
                                                 impact_metric, importance))
                for tp, total in sorted(totals.items())]))

    @router.get("/feedback", summary="Stored feedback, filtered and paginated",
                response_model=FeedbackPage)
    async def feedback(
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(week)],
        touchpoint: Annotated[str | None, Query()] = None,
        topic: Annotated[str | None, Query(description="Topic id, e.g. logistics_delivery.")
                         ] = None,
        sentiment: Annotated[SentimentLabel | None, BeforeValidator(_blank), Query(
            description="negative, neutral or positive.")] = None,
        channel: Annotated[str | None, Query()] = None,
        stage: StageParam = None,
        intent: Annotated[Intent | None, BeforeValidator(_blank), Query(
            description="complaint, inquiry, praise, suggestion or other.")] = None,
        q: Annotated[str | None, Query(description="Text contains (case-insensitive).",
                                       examples=["配送"])] = None,
        page: Annotated[int, Query(ge=1, le=PAGE_MAX, description=(
            f"Page number, 1-{PAGE_MAX}; read further back with a narrower time range or "
            "filter."))] = 1,
        page_size: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description=(
            f"Items per page, 1-{PAGE_SIZE_MAX} (default 50)."))] = 50,
    ) -> Response:
        """Newest first. Texts are returned as stored: PII is redacted upstream, before
        storage, and this route adds nothing back. Default range: the last 7 days."""
        forbidden_touchpoint(who, touchpoint)
        start, end = span
        where = FeedbackFilter(
            start=start, end=end, touchpoint=touchpoint or None, topic=topic or None,
            sentiment=sentiment, channel=channel or None, intent=intent, q=q or None,
            stage=None if stage is None else "" if stage == UNKNOWN_STAGE else stage,
            scope=None if who.touchpoints is None else tuple(sorted(who.touchpoints)))
        total, rows = await queries.feedback_page(store, where, (page - 1) * page_size,
                                                  page_size)
        return _answer(FeedbackPage(page=page, page_size=page_size, total=total,
                                    items=[_feedback_item(r) for r in rows]))

    return router


def _answer(model: BaseModel) -> Response:
    """``model`` as the JSON answer. Validated when it was built, so it is serialized once:
    returned as a model, FastAPI would dump it and validate it again, which doubled the time
    of a 10,000-row /v1/scores."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


def _head(row: Row, label: str) -> dict[str, Any]:
    return {"touchpoint": row["touchpoint"], "channel": row["channel"], "stage": row["stage"],
            "window": label, "window_start": row["window_start"],
            "window_end": row["window_start"] + timedelta(seconds=int(row["window_seconds"]))}


def _gaps(row: Row) -> dict[str, tuple[float, float]]:
    return {m: (t, g) for m, t, g in zip(row["gap_metrics"], row["gap_targets"], row["gaps"])}


def _metric_row(row: Row, label: str, metric: str) -> MetricRow:
    target, gap = _gaps(row).get(metric, (None, None))
    return MetricRow(**_head(row, label), metric=metric, value=row[metric],
                     responses=int(row[RESPONSES_OF.get(metric, "volume")]), target=target,
                     gap=gap)


def _score_row(row: Row, label: str) -> Any:
    return ScoreRow(
        **_head(row, label), **{m: row[m] for m in SCORE_METRICS},
        counts={name: row[name] for name in SCORE_COUNTS},
        urgent_flags={f: int(row[f"{f}_count"]) for f in URGENT_FLAGS},
        expectations=[ExpectationOut(metric=m, value=row[m], target=t, gap=g)
                      for m, (t, g) in _gaps(row).items()])


def _feedback_item(row: Row) -> FeedbackItem:
    return FeedbackItem(
        event_id=row["event_id"], occurred_at=row["occurred_at"],
        touchpoint=row["touchpoint"], channel=row["channel"],
        stage=row["stage"] or None, segment=row["segment"] or None, text=row["text"],
        sentiment=SentimentOut(score=row["sentiment"], label=row["sentiment_label"]),
        intent=row["intent"], topics=_topics_out(row),
        urgent_flags=row["urgent_flags"], keywords=row["keywords"],
        ratings=RatingsOut(nps=row["nps"], csat=row["csat"], ces=row["ces"]),
        scored=not row["too_late"])


def _topics_out(row: Row) -> list[TopicOut]:
    """Each topic with its aspect sentiment and, from the stored enriched event, its name and
    evidence spans ([start, end) character offsets), so a reader can highlight where the text
    talks about the topic."""
    enriched = {t["id"]: t for t in json.loads(row["enriched_json"] or "{}").get("topics", [])}
    return [TopicOut(id=t, name=enriched.get(t, {}).get("name"), sentiment=s,
                     evidence=enriched.get(t, {}).get("evidence", []))
            for t, s in zip(row["topics"], row["topic_sentiments"])]


def _key_experiences(touchpoint: str, total: Row, topics: list[Row],
                     expectations: Expectations, metric: str, basis: ImportanceBasis
                     ) -> list[KeyExperience]:
    ranked: list[Factor] = []
    unranked: list[Factor] = []
    for row in topics:
        mean = mean_topic_sentiment(row)
        experience = experience_0_10(mean)
        expected = expectations.factor_expectation(touchpoint, row["topic"])
        configured = expectations.importance(touchpoint, row["topic"])
        derived, sample = derived_importance(total, row, basis)
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
        out.append(KeyExperience(
            rank=rank if scored else None, topic=factor.topic,
            mentions=factor.mentions, mean_topic_sentiment=factor.mean_topic_sentiment,
            experience=factor.experience, expectation=factor.expectation,
            gap=factor.gap if factor.expectation is not None else None,
            importance=factor.importance if factor.importance_source != "none" else None,
            importance_source=factor.importance_source,
            importance_sample=factor.importance_sample,
            weighted=factor.weighted if scored else None,
            impact=ImpactOut.model_validate(factor.impact)))
    return out

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

import asyncio
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from fastapi import APIRouter, Depends, Query, Response
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)
from pydantic_core import PydanticCustomError

from services.core import cem_metrics
from services.core.access import Caller, Principal, Require, forbidden_touchpoint
from services.core.cem_metrics import (
    FLOAT_COUNTS,
    RESPONSES_OF,
    SCORE_COUNTS,
    SCORE_METRICS,
    URGENT_FLAGS,
    mean_topic_sentiment,
)
from services.core.errors import PROBLEM_RESPONSES, ParameterRoute, bad_parameter
from services.core.events import (
    MAX_META_KEY,
    MAX_SEGMENT,
    Intent,
    SentimentLabel,
    utc_now,
)
from services.core.store import Row, Store
from services.ingest.call_transcript import SPEAKER_LABELS
from services.nlp.taxonomy import TaxonomyNames
from services.scoring import queries
from services.scoring.drivers import (
    IMPACT_METRICS,
    Factor,
    ImportanceBasis,
    Quadrant,
    derived_importance,
    experience_0_10,
    impact,
    quadrant,
    quadrant_cuts,
    rank_key_experiences,
)
from services.scoring.expectations import Expectations
from services.scoring.queries import COLUMN_DIMENSIONS, Cell, DimensionFilter, FeedbackFilter
from services.scoring.windows import (
    ALL,
    STAGES,
    UNKNOWN_STAGE,
    granularities,
    window_label,
)

PAGE_SIZE_MAX = 200
EVENT_IDS_MAX = 50
"""Most ``event_id`` values one /v1/feedback read names: an alert quotes three comments, a
person pastes a few; more is a list for a time range or filter."""
EVENT_ID_CHARS_MAX = 64
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


# Lengths are bounded on the string itself: a Query(max_length=...) would also apply to the
# None an empty parameter becomes (``_blank``), and fail on it.
AgentParam = Annotated[Annotated[str, StringConstraints(max_length=128)] | None,
                       BeforeValidator(_blank), Query(description="Only calls of this agent id.")]
QueueParam = Annotated[Annotated[str, StringConstraints(max_length=128)] | None,
                       BeforeValidator(_blank), Query(description="Only calls of this queue.")]
SegmentParam = Annotated[Annotated[str, StringConstraints(max_length=MAX_SEGMENT)] | None,
                         BeforeValidator(_blank), Query(
                             description="Only feedback of this segment (e.g. VIP).")]
MetaParam = Annotated[list[str] | None, Query(description=(
    "`key=value`: only feedback whose metadata holds this value of a configured dimension "
    "(VOC_DIMENSIONS); repeat for several keys."), examples=["city=上海"])]
META_VALUE_MAX = 1024


class MetaFilter:
    """Dependency: the ``meta`` parameters as (key, value) pairs, each key one of the
    dimensions the deployment lists (any other is a 400 naming them), each at most once."""

    def __init__(self, dimensions: tuple[str, ...]) -> None:
        self.dimensions = dimensions

    def __call__(self, meta: MetaParam = None) -> tuple[tuple[str, str], ...]:
        pairs: dict[str, str] = {}
        for item in meta or ():
            key, sep, value = item.partition("=")
            if not sep or key not in self.dimensions:
                raise bad_parameter("meta", (
                    f"{item[:MAX_META_KEY + 2]!r}: use key=value with a key of "
                    f"VOC_DIMENSIONS {list(self.dimensions)}"))
            if key in pairs:
                raise bad_parameter("meta", f"{key!r} given twice; give each key once")
            if len(value) > META_VALUE_MAX:
                raise bad_parameter("meta", f"the value of {key!r} is longer than "
                                            f"{META_VALUE_MAX} characters")
            pairs[key] = value
        return tuple(pairs.items())


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


_FIGURES: dict[str, Any] = {
    **{name: (_metric_type(name), Field(description=cem_metrics.BY_NAME[name].description))
       for name in SCORE_METRICS},
    "counts": (dict[str, int | float], Field(description="Every additive count.")),
}
_Figures = create_model(
    "Figures", __base__=_Out, __doc__="Every catalogue figure (docs/metrics.md) of a row.",
    **_FIGURES)
_FOLDED = "How many distinct values were folded."


class DimensionValue(_Figures):
    """The figures (docs/metrics.md) of one value of a dimension."""

    value: str = Field(description="The value; '' = events that carry none.")


class DimensionOther(_Figures):
    """The figures of every value beyond VOC_DIMENSION_MAX_VALUES, folded together."""

    folded_values: int = Field(description=_FOLDED)


class DimensionTotal(_Figures):
    """The figures of all the feedback read."""

    distinct_values: int = Field(description="Distinct values of the dimension.")


class DimensionFiguresOut(_Out):
    dimension: str
    from_: datetime = Field(alias="from")
    to: datetime
    values: list[DimensionValue] = Field(
        description="The largest values by volume, then by value, at most "
        "VOC_DIMENSION_MAX_VALUES.")
    other: DimensionOther | None = Field(
        description="The values beyond those, folded; null when none were.")
    total: DimensionTotal


_FCR: dict[str, Any] = {
    "fcr": (float | None, Field(description=(
        "First-contact resolution: fcr_resolved / fcr_calls; null without such calls."))),
    "fcr_calls": (int, Field(description=(
        "Calls of a known customer whose VOC_FCR_DAYS have passed."))),
    "fcr_resolved": (int, Field(description=(
        "Of those, calls after which the customer did not contact again about one of the "
        "call's topics within VOC_FCR_DAYS."))),
    "fcr_pending": (int, Field(description=(
        "Calls of a known customer whose VOC_FCR_DAYS have not passed yet (not counted)."))),
}
_CallFigures = create_model(
    "CallFigures", __base__=_Figures,
    __doc__="Every catalogue figure of a row of calls, with first-contact resolution.", **_FCR)


class ContactCenterValue(_CallFigures):
    """The call figures (docs/metrics.md#contact-center) of one agent or queue."""

    value: str = Field(description="The agent id or queue; '' = calls that named none.")


class ContactCenterOther(_CallFigures):
    """The agents or queues beyond VOC_DIMENSION_MAX_VALUES, folded together."""

    folded_values: int = Field(description=_FOLDED)


class ContactCenterTotal(_CallFigures):
    """The figures of all the calls read."""

    distinct_values: int = Field(description="Distinct agents or queues.")


class ContactCenterOut(_Out):
    by: Literal["agent", "queue"]
    from_: datetime = Field(alias="from")
    to: datetime
    fcr_days: int = Field(description="VOC_FCR_DAYS.")
    values: list[ContactCenterValue]
    other: ContactCenterOther | None
    total: ContactCenterTotal


class ToneOut(_Out):
    first: float = Field(description="Customer sentiment in the call's first third.")
    last: float = Field(description="Customer sentiment in the call's last third.")
    change: float


class TurnOut(_Out):
    speaker: Literal["customer", "agent", "ivr"]
    text: str


class CoachingCall(_Out):
    event_id: str
    occurred_at: datetime
    touchpoint: str
    agent: str
    queue: str
    sentiment: float
    topics: list[str]
    tone: ToneOut | None
    transcript: list[TurnOut] = Field(description=(
        "The call's turns as stored (redacted), in order; the customer's are what coaching "
        "highlights."))


class CoachingOut(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    calls: list[CoachingCall]


class DimensionsOut(_Out):
    dimensions: list[str] = Field(description="'segment', 'agent', 'queue', then "
                                              "VOC_DIMENSIONS' keys.")
    max_values: int = Field(description="VOC_DIMENSION_MAX_VALUES.")


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
    quadrant: Quadrant | None = Field(default=None, description=(
        "Importance x performance: concentrate (important, below par), keep_up, "
        "low_priority, overkill (at par, not important); null without an importance."))


class QuadrantCutsOut(_Out):
    importance: float = Field(description="Mean importance of the topics that have one.")
    performance: float = Field(description="Their mean experience (0-10).")


class TouchpointDrivers(_Out):
    touchpoint: str
    volume: int
    key_experiences: list[KeyExperience]
    quadrant_cuts: QuadrantCutsOut | None = Field(description=(
        "Where the importance x performance quadrants divide; null when no topic has an "
        "importance."))


class DriversOut(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    window: str
    channel: str
    stage: str
    impact_metric: str
    importance_basis: str
    touchpoints: list[TouchpointDrivers]


class JourneyCell(_Out):
    touchpoint: str
    stage: str
    volume: int
    experience: float | None = Field(description="5 x (mean sentiment + 1): the 0-10 score.")
    metrics: dict[str, int | float | None] = Field(description=(
        "Every metric of the catalogue (GET /v1/metrics) over the range, derived from the "
        "summed counts as the scoring stage derives a window's."))


class JourneyOut(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    window: str = Field(description="The stored window length the range was summed from.")
    channel: str = Field(description="'' = all channels.")
    touchpoints: list[str] = Field(description=(
        "Left to right: VOC_JOURNEY_ORDER's touchpoints (within the caller's scope), then "
        "any others with data, by name."))
    stages: list[str]
    cells: list[JourneyCell] = Field(description="Touchpoint x stage cells with events.")


class SentimentOut(_Out):
    score: float
    label: str


class TopicOut(_Out):
    id: str
    name: str | None
    sentiment: float
    evidence: list[tuple[int, int]] = Field(
        description="[start, end) offsets, in Unicode code points, into `analysis_text`.")


class EffortCueOut(_Out):
    kind: str = Field(description="visits, calls, transfers, resubmission, runaround, "
                      "repetition or waiting (docs/nlp.md, Effort).")
    term: str
    count: int | None = Field(description="The count the cue states; null without one.")
    evidence: list[tuple[int, int]] = Field(
        description="[start, end) offsets, in Unicode code points, into `analysis_text`.")


class EffortOut(_Out):
    score: float = Field(description="Text effort score in [0, 1] (docs/metrics.md).")
    cues: list[EffortCueOut]


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
    customer_id: str | None = Field(default=None, description=(
        "The pseudonymous customer id as stored; its timeline is "
        "/v1/customers/{customer_id}/timeline."))
    text: str = Field(description="The feedback as received (redacted at ingest).")
    analysis_text: str = Field(
        description="The text the NLP stage analysed: simplified, without markup, quoted "
        "history or agent turns (the event's analysis_text, or text when it had none). The "
        "topics' evidence spans index this text, not `text`.")
    spans_index: Literal["analysis_text"] = Field(
        default="analysis_text",
        description="The field whose characters the topics' evidence offsets count.")
    sentiment: SentimentOut
    intent: str
    topics: list[TopicOut]
    urgent_flags: list[str]
    keywords: list[str]
    ratings: RatingsOut
    effort: EffortOut | None = Field(default=None, description=(
        "The effort the text says it took, with its cues' spans; null when its text holds no "
        "effort cue."))
    scored: bool = Field(description="False: stored, but too late for its window.")


class FeedbackPage(_Out):
    page: int
    page_size: int
    total: int
    items: list[FeedbackItem]


class TaxonomyTopicOut(_Out):
    id: str
    name: str = Field(description="Display name (e.g. 物流/配送).")
    parent: str | None = Field(description="Parent topic id, if any.")
    stage: str | None = Field(description="Journey stage the topic belongs to, if any.")


class TaxonomyOut(_Out):
    version: int
    topics: list[TaxonomyTopicOut]


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
                 max_range_days: int = 366, taxonomy_path: Path | None = None,
                 journey_order: Sequence[str] = (),
                 dimensions: tuple[str, ...] = (), dimension_max_values: int = 20,
                 fcr_days: int = 7) -> APIRouter:
    """The query routes, reading ``store``, for viewers; each answers only within the caller's
    touchpoints. ``taxonomy_path`` is the taxonomy the NLP stage tags with (VOC_TAXONOMY_PATH;
    None: the shipped one), whose names are read again when it changes; ``journey_order``
    the touchpoints in the order customers meet them; ``dimensions`` the metadata keys
    scored besides segment (VOC_DIMENSIONS)."""
    meta_filter = MetaFilter(tuple(dimensions))
    dimension_names = (*COLUMN_DIMENSIONS, *dimensions)
    names = TaxonomyNames(taxonomy_path)
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

    @router.get("/taxonomy", summary="The topic taxonomy: ids and display names",
                response_model=TaxonomyOut)
    async def taxonomy_names() -> Response:
        """Every topic the NLP stage tags feedback with (VOC_TAXONOMY_PATH): its id, the name
        to show for it (中文), its parent and journey stage. Other answers name topics by id;
        this maps them to names. A topic added through POST /v1/taxonomy/changes (or by editing
        the file) is named from the next call, without a restart."""
        spec = await asyncio.to_thread(names.current)
        return _answer(TaxonomyOut(version=spec.version, topics=[
            TaxonomyTopicOut(id=t.id, name=t.name, parent=t.parent, stage=t.stage)
            for t in spec.topics]))

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
        seconds = _coarsest(levels.values(), base_seconds, start, end)
        cell = Cell(seconds, channel or ALL, stage or ALL, start, end,
                    _touchpoints(touchpoint, who))
        totals = await queries.score_totals(store, cell)
        topics = await queries.topic_totals(store, cell)
        return _answer(DriversOut(
            from_=start, to=end, window=window_label(seconds), channel=cell.channel,
            stage=cell.stage, impact_metric=impact_metric, importance_basis=importance,
            touchpoints=[_touchpoint_drivers(
                tp, total, _key_experiences(tp, total, topics.get(tp, []), expectations,
                                            impact_metric, importance))
                for tp, total in sorted(totals.items())]))

    @router.get("/journey", summary="Journey map: every metric per touchpoint x stage over a "
                "range", response_model=JourneyOut)
    async def journey(
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(day)],
        channel: Annotated[str | None, Query(description=(
            "Only this channel's feedback (default: all channels)."))] = None,
    ) -> Response:
        """Per touchpoint and journey stage (售前, 售中, 售后), every metric of the catalogue
        over the range, with the touchpoints in the configured journey order
        (VOC_JOURNEY_ORDER). Any range: summed from the coarsest stored windows that fit it.
        Default range: the last 24 hours."""
        start, end = span
        seconds = _coarsest(levels.values(), base_seconds, start, end)
        scope = _touchpoints(None, who)
        shown_stages = STAGES[:-1]
        cells: list[JourneyCell] = []
        for stage in shown_stages:
            totals = await queries.score_totals(
                store, Cell(seconds, channel or ALL, stage, start, end, scope))
            cells.extend(_journey_cell(tp, stage, total) for tp, total in totals.items()
                         if total["volume"])
        seen = {c.touchpoint for c in cells}
        listed = [tp for tp in dict.fromkeys(journey_order) if who.sees_touchpoint(tp)]
        order = [*listed, *sorted(seen - set(listed))]
        rank = {tp: i for i, tp in enumerate(order)}
        cells.sort(key=lambda c: (rank[c.touchpoint], shown_stages.index(c.stage)))
        return _answer(JourneyOut(from_=start, to=end, window=window_label(seconds),
                                  channel=channel or ALL, touchpoints=order,
                                  stages=list(shown_stages), cells=cells))

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
        event_id: Annotated[list[str] | None, Query(description=(
            f"Only these events (repeat the parameter, at most {EVENT_IDS_MAX}), e.g. the "
            "comments an alert's explanation quotes."))] = None,
        segment: SegmentParam = None,
        meta: Annotated[tuple[tuple[str, str], ...], Depends(meta_filter)] = (),
        effort: Annotated[bool | None, BeforeValidator(_blank), Query(description=(
            "true: only feedback whose text holds an effort cue (跑了好几趟, 打了三次电话...), "
            "the comments behind effort_flag_rate; false: only feedback without."))] = None,
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
        events = _event_ids(event_id)
        where = FeedbackFilter(
            start=start, end=end, touchpoint=touchpoint or None, topic=topic or None,
            sentiment=sentiment, channel=channel or None, intent=intent, q=q or None,
            event_ids=events,
            stage=None if stage is None else "" if stage == UNKNOWN_STAGE else stage,
            scope=None if who.touchpoints is None else tuple(sorted(who.touchpoints)),
            segment=segment, metadata=meta, effort=None if effort is None else int(effort))
        total, rows = await queries.feedback_page(store, where, (page - 1) * page_size,
                                                  page_size)
        return _answer(FeedbackPage(page=page, page_size=page_size, total=total,
                                    items=[_feedback_item(r) for r in rows]))

    @router.get("/dimensions", summary="The dimensions feedback is scored by",
                response_model=DimensionsOut)
    async def dimensions_list() -> Response:
        """`segment`, then the metadata keys the deployment lists (VOC_DIMENSIONS), and how
        many values of one are answered with figures of their own."""
        return _answer(DimensionsOut(dimensions=list(dimension_names),
                                     max_values=dimension_max_values))

    @router.get("/dimensions/{name}", summary="Figures per value of a dimension",
                response_model=DimensionFiguresOut)
    async def dimension(
        name: str,
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(week)],
        touchpoint: TouchpointParam = None,
        channel: Annotated[str | None, Query(description=(
            "Only this channel's feedback (default: all channels)."))] = None,
        stage: StageParam = None,
        segment: SegmentParam = None,
        meta: Annotated[tuple[tuple[str, str], ...], Depends(meta_filter)] = (),
    ) -> Response:
        """Every metric of the catalogue per value of the dimension (`segment` or a key of
        VOC_DIMENSIONS), over the on-time feedback of the range and filters: the largest
        VOC_DIMENSION_MAX_VALUES values by volume, the rest folded into `other` (with how many
        were folded), and the total. Computed from the stored feedback when asked, so the
        range is bounded by VOC_QUERY_MAX_RANGE_DAYS. Default range: the last 7 days."""
        if name not in dimension_names:
            raise bad_parameter("name", f"{name[:MAX_META_KEY]!r} is not a dimension; use one "
                                        f"of {list(dimension_names)}", where="path")
        start, end = span
        where = DimensionFilter(
            start=start, end=end, touchpoints=_touchpoints(touchpoint, who),
            channel=channel or None,
            stage=None if stage is None else "" if stage == UNKNOWN_STAGE else stage,
            segment=segment, metadata=meta)
        top, total = await queries.dimension_figures(store, name, where, dimension_max_values)
        total_counts = _dimension_counts(total)
        values = [DimensionValue(value=row["dim_value"], **_figures(_dimension_counts(row)))
                  for row in top]
        folded = int(total["dim_values"]) - len(values)
        other = None
        if folded > 0:
            rest = {c: total_counts[c] - sum(_dimension_counts(r)[c] for r in top)
                    for c in SCORE_COUNTS}
            other = DimensionOther(folded_values=folded, **_figures(_rounded(rest)))
        return _answer(DimensionFiguresOut(
            dimension=name, from_=start, to=end, values=values, other=other,
            total=DimensionTotal(distinct_values=int(total["dim_values"]),
                                 **_figures(total_counts))))

    @router.get("/contact-center/coaching", summary="Calls whose customer's tone worsened",
                response_model=CoachingOut)
    async def coaching(
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(week)],
        touchpoint: TouchpointParam = None,
        agent: AgentParam = None,
        queue: QueueParam = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description=(
            f"Most calls (1-{PAGE_SIZE_MAX}, default 50)."))] = 50,
    ) -> Response:
        """The coaching list: calls whose customer tone worsened from the first to the last
        third, newest first, each with its transcript turn by turn. Default range: the last 7
        days."""
        start, end = span
        where = DimensionFilter(start=start, end=end, touchpoints=_touchpoints(touchpoint, who),
                                agent=agent, queue=queue)
        rows = await queries.worsened_calls(store, where, limit)
        return _answer(CoachingOut(from_=start, to=end, calls=[_coaching(r) for r in rows]))

    @router.get("/contact-center/{by}", summary="Call figures per agent or per queue",
                response_model=ContactCenterOut)
    async def contact_center(
        by: Literal["agent", "queue"],
        who: Caller,
        span: Annotated[tuple[datetime, datetime], Depends(week)],
        touchpoint: TouchpointParam = None,
        agent: AgentParam = None,
        queue: QueueParam = None,
        segment: SegmentParam = None,
    ) -> Response:
        """Per agent or queue (the largest VOC_DIMENSION_MAX_VALUES by calls, the rest folded
        into `other`): every metric of the catalogue over its calls (calls, mean customer
        sentiment, tone worsened / improved, hold and silence, transfers, escalation threats)
        and first-contact resolution. Default range: the last 7 days."""
        start, end = span
        where = DimensionFilter(start=start, end=end, touchpoints=_touchpoints(touchpoint, who),
                                segment=segment, agent=agent, queue=queue, calls_only=True)
        top, total = await queries.dimension_figures(store, by, where, dimension_max_values)
        now = utc_now()
        per_value = await queries.first_contact_resolution(
            store, by, where, [r["dim_value"] for r in top], fcr_days, now) if top else {}
        overall = (await queries.first_contact_resolution(
            store, by, where, None, fcr_days, now)).get("", {})
        total_counts = _dimension_counts(total)
        total_fcr = _fcr(overall)
        values = [ContactCenterValue(value=r["dim_value"], **_figures(_dimension_counts(r)),
                                     **_fcr(per_value.get(r["dim_value"], {}))) for r in top]
        folded = int(total["dim_values"]) - len(values)
        other = None
        if folded > 0:
            rest = {c: total_counts[c] - sum(_dimension_counts(r)[c] for r in top)
                    for c in SCORE_COUNTS}
            left = {k: total_fcr[k] - sum(getattr(v, k) for v in values)
                    for k in ("fcr_calls", "fcr_resolved", "fcr_pending")}
            other = ContactCenterOther(folded_values=folded, **_figures(_rounded(rest)),
                                       **_fcr_of(left))
        return _answer(ContactCenterOut(
            by=by, from_=start, to=end, fcr_days=fcr_days, values=values, other=other,
            total=ContactCenterTotal(distinct_values=int(total["dim_values"]),
                                     **_figures(total_counts), **total_fcr)))

    return router


def _coarsest(levels: Iterable[int], base_seconds: int, start: datetime, end: datetime) -> int:
    """The longest stored window whose boundaries both ends of ``[start, end)`` fall on (the
    base window otherwise), so a range is summed from as few rows as exactly covers it."""
    return max(s for s in levels if s == base_seconds
               or (int(start.timestamp()) % s == 0 and int(end.timestamp()) % s == 0))


def _journey_cell(touchpoint: str, stage: str, total: Row) -> JourneyCell:
    figures = {**total, **cem_metrics.derive_scores(total)}
    mean = figures["mean_sentiment"]
    return JourneyCell(touchpoint=touchpoint, stage=stage, volume=int(total["volume"]),
                       experience=None if mean is None else experience_0_10(mean),
                       metrics={m: figures[m] for m in SCORE_METRICS})


def _event_ids(values: list[str] | None) -> tuple[str, ...] | None:
    """The distinct event ids a read names (None: any), within the bounds a query accepts."""
    wanted = tuple(sorted({v for v in values or () if v}))
    if len(wanted) > EVENT_IDS_MAX:
        raise bad_parameter("event_id", (
            f"{len(wanted)} event ids; name at most {EVENT_IDS_MAX}, or narrow by time range "
            "and filters instead"))
    long = next((v for v in wanted if len(v) > EVENT_ID_CHARS_MAX), None)
    if long is not None:
        raise bad_parameter("event_id", (
            f"{long[:20]!r}... is {len(long)} characters; event ids have at most "
            f"{EVENT_ID_CHARS_MAX}"))
    return wanted or None
def _fcr(row: Row) -> dict[str, Any]:
    """First-contact resolution figures from a ``first_contact_resolution`` row."""
    calls, matured = int(row.get("calls", 0)), int(row.get("matured", 0))
    return _fcr_of({"fcr_calls": matured, "fcr_resolved": int(row.get("resolved", 0)),
                    "fcr_pending": calls - matured})


def _fcr_of(counts: dict[str, int]) -> dict[str, Any]:
    calls = counts["fcr_calls"]
    return {**counts, "fcr": round(counts["fcr_resolved"] / calls, 10) if calls else None}


_SPEAKERS = {f"{label}：": speaker for speaker, label in SPEAKER_LABELS.items()}


def _turns(text: str) -> list[TurnOut]:
    """A stored transcript (``客户：...`` lines, services/ingest/call_transcript.py) as turns;
    a line without a speaker's label continues the turn before it."""
    turns: list[TurnOut] = []
    for line in text.split("\n"):
        label, sep, rest = line.partition("：")
        speaker = _SPEAKERS.get(label + sep)
        if speaker is not None:
            turns.append(TurnOut(speaker=speaker, text=rest))
        elif turns:
            turns[-1] = TurnOut(speaker=turns[-1].speaker, text=f"{turns[-1].text}\n{line}")
        else:
            turns.append(TurnOut(speaker="customer", text=line))
    return turns


def _coaching(row: Row) -> CoachingCall:
    tone = json.loads(row["enriched_json"] or "{}").get("call_tone")
    return CoachingCall(
        event_id=row["event_id"], occurred_at=row["occurred_at"], touchpoint=row["touchpoint"],
        agent=row["call_agent"], queue=row["call_queue"], sentiment=row["sentiment"],
        topics=row["topics"], tone=ToneOut.model_validate(tone) if tone else None,
        transcript=_turns(row["text"]))


def _rounded(counts: dict[str, Any]) -> dict[str, Any]:
    """Counts as the scorer stores them: floats to 9 places, so a figure reads the same
    whether summed in the store or derived here."""
    return {c: round(float(v), 9) if c in FLOAT_COUNTS else int(v) for c, v in counts.items()}


def _dimension_counts(row: Row) -> dict[str, Any]:
    return _rounded({c: row[f"agg_{c}"] for c in SCORE_COUNTS})


def _figures(counts: dict[str, Any]) -> dict[str, Any]:
    """Every metric of the catalogue, and the counts, from one set of counts."""
    derived = cem_metrics.derive_scores(counts)
    return {**{m: counts[m] if m in counts else derived[m] for m in SCORE_METRICS},
            "counts": counts}


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
        stage=row["stage"] or None, segment=row["segment"] or None,
        customer_id=row["customer_id"] or None, text=row["text"],
        analysis_text=row["analysis_text"] or row["text"],
        sentiment=SentimentOut(score=row["sentiment"], label=row["sentiment_label"]),
        intent=row["intent"], topics=_topics_out(row),
        urgent_flags=row["urgent_flags"], keywords=row["keywords"],
        ratings=RatingsOut(nps=row["nps"], csat=row["csat"], ces=row["ces"]),
        effort=_effort_out(row), scored=not row["too_late"])


def _effort_out(row: Row) -> EffortOut | None:
    """The stored event's effort with its cues' spans, read from the enriched event (the
    ``effort_score`` column says whether there is one, so most rows skip the JSON)."""
    if not row["effort_score"]:
        return None
    effort = json.loads(row["enriched_json"] or "{}").get("effort")
    if not effort:
        return None
    return EffortOut(score=effort["score"], cues=[EffortCueOut(**cue) for cue in effort["cues"]])


def _topics_out(row: Row) -> list[TopicOut]:
    """Each topic with its aspect sentiment and, from the stored enriched event, its name and
    evidence spans ([start, end) character offsets), so a reader can highlight where the text
    talks about the topic."""
    enriched = {t["id"]: t for t in json.loads(row["enriched_json"] or "{}").get("topics", [])}
    return [TopicOut(id=t, name=enriched.get(t, {}).get("name"), sentiment=s,
                     evidence=enriched.get(t, {}).get("evidence", []))
            for t, s in zip(row["topics"], row["topic_sentiments"])]


def _touchpoint_drivers(touchpoint: str, total: Row, items: list[KeyExperience]
                        ) -> TouchpointDrivers:
    """The touchpoint's key experiences, each placed in its importance x performance
    quadrant."""
    cuts = quadrant_cuts((k.importance, k.experience) for k in items)
    for k in items:
        k.quadrant = quadrant(k.importance, k.experience, cuts)
    return TouchpointDrivers(
        touchpoint=touchpoint, volume=int(total["volume"]), key_experiences=items,
        quadrant_cuts=None if cuts is None else QuadrantCutsOut(
            importance=cuts.importance, performance=cuts.performance))


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

"""Typed views of the topic payloads defined in ``schemas/topics``.

The JSON Schema files are the contract; these models exist so code gets types and fast
validation. ``tests/unit/test_events_schema.py`` fails if a model drifts from its schema file.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    create_model,
    model_validator,
)

from services.core import cem_metrics

Channel = Literal["web", "app", "survey", "call", "email", "social", "chat", "review", "other"]
SentimentLabel = Literal["negative", "neutral", "positive"]
Stage = Literal["售前", "售中", "售后"]
Intent = Literal["complaint", "inquiry", "praise", "suggestion", "other"]
UrgencyFlagName = Literal["escalation_threat", "churn_intent", "repeat_contact", "safety"]
EffortKind = Literal["visits", "calls", "transfers", "resubmission", "runaround", "repetition",
                     "waiting"]
Severity = Literal["info", "warning", "critical"]
Operator = Literal[">", ">=", "<", "<="]
RuleType = Literal["threshold", "rate_of_change", "anomaly", "topic_spike", "volume_drop",
                   "emerging_topic", "event"]
AlertRuleType = Literal["threshold", "rate_of_change", "anomaly", "topic_spike", "volume_drop",
                        "emerging_topic", "event", "rating", "customer_history"]
"""``alert.v3``'s rule types: alert.v2's plus the customer rules (a rating, a history)."""
CaseKind = Literal["callback", "churn_risk"]
"""What a customer case asks for: call back a detractor, or keep a customer at risk."""
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
AlertStatus = Literal["firing", "resolved"]

SOURCE_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# Names that reach the dashboard, alert messages and metric labels (touchpoints, segments,
# metadata keys, topic names) keep to one character set without markup: CJK ideographs, ASCII
# letters and digits, _ . : - /, parentheses (ASCII and full-width, as in "App (iOS)") and the
# middle dot, with single-line inner spaces. No <>"'&,
# control or zero-width characters can pass, so a name is never markup wherever it is shown.
# The same text is the pattern in the JSON Schema files (ECMA-262) and in Python; it cannot
# backtrack (no quantifier is nested in another), and names are short.
NAME_CHARS = r"A-Za-z0-9_.:/()\u00b7\uff08\uff09\u3400-\u4dbf\u4e00-\u9fff-"
NAME_PATTERN = rf"^(?:[{NAME_CHARS}]|[{NAME_CHARS}][{NAME_CHARS} ]*[{NAME_CHARS}])$"
NAME_RULE = ("use CJK characters, ASCII letters, digits, _ . : - / ( ) （ ） or · with inner spaces "
             "(no markup, control or zero-width characters)")
MAX_NAME = 128
MAX_SEGMENT = 64
MAX_META_KEY = 64

SourceName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=SOURCE_PATTERN)
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]
Touchpoint = Name
StoredTouchpoint = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
"""The touchpoint of a derived event (score, alert, case). Names are checked where feedback
enters (ingest, and the consumers of the feedback topics); what the stages derive from stored
rows carries the name as stored, so rows written before the check existed (an upgrade) are
still scored, alerted on and paged, and every place that shows a name escapes it."""
Segment = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SEGMENT,
                                           pattern=NAME_PATTERN)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_META_KEY,
                                           pattern=NAME_PATTERN)]
MetaValue = Annotated[str, StringConstraints(max_length=1024)]
MAX_META_ENTRIES = 64


def at_most_entries(limit: int) -> BeforeValidator:
    """A mapping of more than ``limit`` entries refused before its entries are: pydantic checks
    a dict's length only after validating every entry, so 200,000 bad keys cost 400,000 errors
    and seconds of CPU for what is one error."""
    def check(value: Any) -> Any:
        if isinstance(value, dict) and len(value) > limit:
            raise ValueError(f"{len(value)} entries; at most {limit} are accepted")
        return value
    return BeforeValidator(check)


Metadata = Annotated[dict[MetaKey, MetaValue], Field(max_length=MAX_META_ENTRIES),
                     at_most_entries(MAX_META_ENTRIES)]

_set_attribute = object.__setattr__  # pydantic's own way past a frozen model's __setattr__

_EVENT_NAMESPACE = uuid.UUID("8f4b7c8e-5d1a-4c47-9a57-7c1f0e2d9b10")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps need a timezone, e.g. 2026-11-23T10:00:00+08:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is a valid RFC 3339 text whose UTC instant is in year 10000.
        raise ValueError(f"{value.isoformat()} lies outside the years 1-9999 in UTC; "
                         "send a real time") from None


UtcTime = Annotated[datetime, AfterValidator(_to_utc)]
"""A timestamp that must carry a zone and is held in UTC, so nothing mixes naive and aware
times. A type rather than a model-wide validator, so only timestamp fields pay for the check."""


def utc_now() -> datetime:
    """Wall-clock now, always timezone-aware so nothing mixes naive and aware times."""
    return datetime.now(UTC)


def stable_event_id(source: str, external_id: str | None) -> str:
    """Event id derived from the sender's own id, so a re-sent message keeps its id.

    Without an external id there is nothing stable to derive from, so a random id is used and
    a client retry becomes a new event: callers that retry must send ``external_id``.
    """
    if external_id is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{source}\x1f{external_id}"))


class Closed(BaseModel):
    """A model that takes no fields but its own, with at most one error per field it has.

    ``extra="forbid"`` reports each unknown key on its own: a document with 200,000 of them
    makes 200,000 errors, and rendering them costs more than a second of CPU. An object with
    more keys than the model has names for is refused as one error before that; fewer unknown
    keys are still reported by name.
    """

    model_config = ConfigDict(extra="forbid")
    _names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._names = frozenset(name for key, info in cls.model_fields.items()
                               for name in (key, info.alias) if name)

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) > len(cls._names):
            names = sorted(str(k)[:40] for k in list(data)[:1000] if k not in cls._names)[:5]
            raise ValueError(f"{len(data)} fields where {cls.__name__} has "
                             f"{len(cls.model_fields)}; unknown ones include {names}")
        return data


class _Wire(Closed):
    """Base of every payload: unknown fields are errors, as in the schemas."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_bytes(self) -> bytes:
        """JSON bytes as written to the topic."""
        return self.model_dump_json(by_alias=True).encode("utf-8")


W = TypeVar("W", bound=BaseModel)


@cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(model.model_fields)


def trusted(model: type[W], /, **fields: Any) -> W:
    """A ``model`` instance from values that are already valid, without validating them again.

    For hot paths that assemble an event from validated parts (the NLP stage builds each
    enriched event from its validated raw event and its own findings): validation runs a
    Python validator per field and costs more than the analysis itself. Unlike
    ``model_construct`` there is no per-field loop either, so every field must be given, by
    its field name (not its alias), as a valid value; nested models must be model instances.
    The caller's tests must validate its output against the schema file, because nothing here
    checks it.
    """
    names = _field_names(model)
    if fields.keys() != names:
        raise TypeError(f"trusted({model.__name__}) needs exactly its fields; missing "
                        f"{sorted(names - fields.keys())}, unknown {sorted(fields.keys() - names)}")
    instance = model.__new__(model)
    _set_attribute(instance, "__dict__", fields)
    _set_attribute(instance, "__pydantic_fields_set__", set(fields))
    _set_attribute(instance, "__pydantic_extra__", None)
    _set_attribute(instance, "__pydantic_private__", None)
    return instance


# Texts go up to a 2-hour call transcript (1 MB of JSON is about 300,000 hanzi).
MAX_TEXT = 1_000_000

Offset = Annotated[int, Field(ge=0, le=MAX_TEXT)]
AnalysisText = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
"""The text the NLP stage reads (``RawFeedback.analysis_text``)."""
Span = tuple[Offset, Offset]
"""[start, end) character offsets into an event's text."""

# Integers stay within the ClickHouse columns they land in (schemas/clickhouse) and within
# what every JSON reader holds exactly: orjson and the store refuse integers past 64 bits, and
# JavaScript (the dashboard) rounds past 2**53.
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
SAFE_INT_MAX = 2**53 - 1
Count = Annotated[int, Field(ge=0, le=UINT32_MAX)]
SmallCount = Annotated[int, Field(ge=0, le=UINT16_MAX)]
"""Counts stored in UInt16 columns (holds and transfers of a call)."""
Reach = Annotated[int, Field(ge=0, le=SAFE_INT_MAX)]
"""Followers, likes, reposts, comments (UInt64 columns)."""
MAX_SECONDS = 366 * 86400
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""A finite duration of at most a year (NaN and infinity are no durations)."""
ShortText = Annotated[str, StringConstraints(max_length=1024)]
MAX_CALL_TURNS = 20_000
MAX_LIST = 1000
"""Most items of the lists derived from one text (a post's mentions, hashtags, URLs, emoji)."""


class CallFacts(_Wire):
    """Call-level facts of a contact-center call (``call`` on raw and enriched events)."""

    call_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    agent_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    queue: Annotated[str, StringConstraints(max_length=128)] | None = None
    started_at: UtcTime
    ended_at: UtcTime
    duration_s: Seconds
    turns: Count
    silence_s: Seconds
    hold_count: SmallCount
    hold_s: Seconds
    longest_gap_s: Seconds
    transfers: SmallCount
    customer_spans: Annotated[list[tuple[Offset, Offset, Count]],
                              Field(max_length=MAX_CALL_TURNS)] = Field(
        default_factory=list, description="[start, end) of each customer turn in "
        "analysis_text, and the turn's start in ms from the call start.")


class EmailFacts(_Wire):
    """Threading and envelope facts of an email; ids are pseudonymised (they embed addresses)."""

    message_id: ShortText | None = None
    in_reply_to: ShortText | None = None
    references: Annotated[list[ShortText], Field(max_length=200)] = Field(default_factory=list)
    thread_id: ShortText | None = None
    subject: ShortText = ""
    charset: Annotated[str, StringConstraints(max_length=64)] | None = None
    attachments: Annotated[list[ShortText], Field(max_length=200)] = Field(default_factory=list)


SocialPlatform = Literal["weibo", "wechat", "douyin", "xiaohongshu", "other"]


class SocialFacts(_Wire):
    """A social post's place in its thread, its reach, and the markup taken out for analysis."""

    platform: SocialPlatform
    post_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    author: ShortText | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    parent_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    root_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    followers: Reach | None = None
    likes: Reach | None = None
    reposts: Reach | None = None
    comments: Reach | None = None
    mentions: Annotated[list[ShortText], Field(max_length=MAX_LIST)] = Field(default_factory=list)
    hashtags: Annotated[list[ShortText], Field(max_length=MAX_LIST)] = Field(default_factory=list)
    urls: Annotated[list[Annotated[str, StringConstraints(max_length=2048)]],
                    Field(max_length=MAX_LIST)] = Field(default_factory=list)
    emoji: Annotated[list[ShortText], Field(max_length=MAX_LIST)] = Field(default_factory=list)


ReviewPlatform = Literal["tmall", "taobao", "jd", "pinduoduo", "douyin", "meituan", "dianping",
                         "eleme", "app_store", "huawei", "xiaomi", "other"]


class ReviewFacts(_Wire):
    """A product or store review: where it was written and what it is about. Its star rating
    is the event's ``ratings.csat``; a follow-up (追评) is an event of its own, without one."""

    platform: ReviewPlatform
    review_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    follow_up: StrictBool = False
    product_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    sku_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    product_name: ShortText | None = None


class CallTone(_Wire):
    """The customer's sentiment in the first and last third of a call, and which way it went."""

    first: Annotated[float, Field(ge=-1, le=1)]
    last: Annotated[float, Field(ge=-1, le=1)]
    change: Annotated[float, Field(ge=-2, le=2)]
    trend: Literal["improved", "worsened", "steady"]


class Ratings(_Wire):
    """Survey ratings that came with the feedback; None where not asked or not answered."""

    nps: Annotated[int, Field(ge=0, le=10)] | None = None
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    ces: Annotated[int, Field(ge=1, le=7)] | None = None


class RawFeedback(_Wire):
    """``feedback.raw.v2``."""

    schema_: Literal["feedback.raw.v2"] = Field(default="feedback.raw.v2", alias="schema")
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    source: SourceName
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    channel: Channel
    touchpoint: Touchpoint
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    occurred_at: UtcTime
    received_at: UtcTime
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    stage: Stage | None = None
    segment: Segment | None = None
    ratings: Ratings = Field(default_factory=Ratings)
    metadata: Metadata = Field(default_factory=dict)
    analysis_text: AnalysisText | None = None
    call: CallFacts | None = None
    email: EmailFacts | None = None
    social: SocialFacts | None = None
    review: ReviewFacts | None = None



# What one enriched event may carry besides its raw event. The NLP stage keeps to these (see
# services/nlp/analyzer.py), so its findings add at most a few MB to the raw event whatever the
# text (tokens were one per character before); a direct producer's enriched event beyond them
# is dead-lettered by scoring.
MAX_TOPIC_TAGS = 256
MAX_EVIDENCE = 100
MAX_URGENCY = 64
MAX_TERM = 128
MAX_KEYWORDS = 20
MAX_TOKENS = 10_000
MAX_TOKEN_CHARS = 64
Evidence = Annotated[list[Span], Field(min_length=1, max_length=MAX_EVIDENCE)]
Token = Annotated[str, StringConstraints(max_length=MAX_TOKEN_CHARS)]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_CHARS)]


class Sentiment(_Wire):
    """Polarity of one text."""

    score: Annotated[float, Field(ge=-1, le=1)]
    label: SentimentLabel
    model: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]


class AspectSentiment(_Wire):
    """Polarity of the clauses that mention one topic."""

    score: Annotated[float, Field(ge=-1, le=1)]
    label: SentimentLabel


class TopicTag(_Wire):
    """One taxonomy topic found in a text, its own polarity and the spans that triggered it."""

    id: Name
    name: Name
    sentiment: AspectSentiment
    evidence: Evidence


class UrgencyFlag(_Wire):
    """A cue that the feedback needs attention now, with where it was found."""

    flag: UrgencyFlagName
    term: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TERM)]
    evidence: Evidence


MAX_EFFORT_CUES = 32


class EffortCue(_Wire):
    """One effort cue of a text (跑了好几趟, 打了三次电话) with where it was found."""

    kind: EffortKind
    term: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TERM)]
    count: Count | None = Field(description="The count the cue states (三次 -> 3; 好几 -> 3), "
                                "None when it states none.")
    evidence: Evidence


class Effort(_Wire):
    """The effort a customer's text says it took (services/nlp/effort.py)."""

    score: Annotated[float, Field(ge=0, le=1)]
    cues: Annotated[list[EffortCue], Field(min_length=1, max_length=MAX_EFFORT_CUES)]


class EnrichedFeedback(RawFeedback):
    """``feedback.enriched.v2``: the raw event plus the NLP stage's findings."""

    schema_: Literal["feedback.enriched.v2"] = Field(  # type: ignore[assignment]
        default="feedback.enriched.v2", alias="schema"
    )
    sentiment: Sentiment
    topics: Annotated[list[TopicTag], Field(max_length=MAX_TOPIC_TAGS)]
    intent: Intent
    urgency: Annotated[list[UrgencyFlag], Field(max_length=MAX_URGENCY)]
    keywords: Annotated[list[Keyword], Field(max_length=MAX_KEYWORDS)]
    tokens: Annotated[list[Token], Field(max_length=MAX_TOKENS)]
    enriched_at: UtcTime
    call_tone: CallTone | None = None
    effort: Effort | None = None


class UrgentCounts(_Wire):
    """Events of a window carrying each urgency flag."""

    escalation_threat: Annotated[int, Field(ge=0)]
    churn_intent: Annotated[int, Field(ge=0)]
    repeat_contact: Annotated[int, Field(ge=0)]
    safety: Annotated[int, Field(ge=0)]


class TopicFigure(_Wire):
    """One topic's figures within a score row."""

    topic: Annotated[str, StringConstraints(min_length=1)]
    mentions: Annotated[int, Field(ge=1)]
    mean_sentiment: Annotated[float, Field(ge=-1, le=1)]


class ExpectationGap(_Wire):
    """A metric's value against its expectation target; gap < 0 means worse than expected."""

    metric: Literal[cem_metrics.GAP_METRICS]  # type: ignore[valid-type]
    value: float
    target: float
    gap: float


def _metric_field(metric: cem_metrics.Metric, required: bool) -> tuple[Any, Any]:
    """The ``Score`` field of one catalogue metric: its type, bounds and default."""
    if isinstance(metric, cem_metrics.Count):
        kind: Any = Annotated[int, Field(ge=metric.minimum)]
    else:
        kind = Annotated[float, Field(ge=metric.minimum, le=metric.maximum)]
    if (isinstance(metric, cem_metrics.Ratio) and metric.nullable) or not required:
        kind = kind | None
    return (Annotated[kind, Field(description=metric.description)],
            ... if required else None)


class _ScoreWindow(_Wire):
    """What a ``score.v2`` message is about: one touchpoint x channel x stage x window."""

    schema_: Literal["score.v2"] = Field(default="score.v2", alias="schema")
    touchpoint: StoredTouchpoint
    channel: Annotated[str, StringConstraints(max_length=32)]
    stage: Literal["", "售前", "售中", "售后", "unknown"]
    window: Annotated[str, StringConstraints(pattern=r"^[0-9]+[smhd]$")]
    window_start: UtcTime
    window_end: UtcTime
    window_seconds: Annotated[int, Field(ge=1)]

    if TYPE_CHECKING:
        # The catalogue's figures, added by create_model below.
        def __getattr__(self, name: str) -> Any: ...


if TYPE_CHECKING:
    class Score(_ScoreWindow):
        """``score.v2``: the window, then one field per catalogue metric."""

        urgent_flags: UrgentCounts
        topics: list[TopicFigure]
        expectations: list[ExpectationGap]
        computed_at: UtcTime
else:
    Score = create_model(
        "Score", __base__=_ScoreWindow, __module__=__name__,
        __doc__="``score.v2``: the window, its figures (services/core/cem_metrics.py), topics "
                "and expectation gaps.",
        **{metric.name: _metric_field(metric, required)
           for metric, required in cem_metrics.wire_fields()},
        urgent_flags=(UrgentCounts, ...),
        topics=(list[TopicFigure], ...),
        expectations=(list[ExpectationGap], ...),
        computed_at=(UtcTime, ...),
    )


class AlertV2(_Wire):
    """``alert.v2``: one lifecycle event (firing, then resolved) of one alert, as written
    before explanations existed. Kept so old messages are checked against their own contract
    when ``Alert`` reads them."""

    schema_: Literal["alert.v2"] = Field(default="alert.v2", alias="schema")
    alert_id: Annotated[str, StringConstraints(min_length=1)]
    dedupe_key: Annotated[str, StringConstraints(min_length=1)]
    rule_id: Annotated[str, StringConstraints(min_length=1)]
    rule_type: RuleType
    severity: Severity
    status: AlertStatus
    touchpoint: StoredTouchpoint
    channel: str | None
    stage: str | None
    topic: str | None
    metric: Annotated[str, StringConstraints(min_length=1)]
    operator: Operator | None
    threshold: float | None
    value: float
    baseline: float | None
    volume: Annotated[int, Field(ge=0)]
    window_start: UtcTime
    window_end: UtcTime
    fired_at: UtcTime
    resolved_at: UtcTime | None
    emitted_at: UtcTime
    team: str | None
    owner: str | None
    notify: list[str]
    open_case: bool
    event_ids: list[str]
    latest_received_at: UtcTime | None
    message: str



# An explanation is read in a chat window and stored with its alert: a few of each figure.
MAX_EXPLAIN_TOPICS = 5
MAX_EXPLAIN_TERMS = 10
MAX_EXPLAIN_COMMENTS = 3
MAX_COMMENT_CHARS = 160
MAX_COMMENT_SPANS = 8
MAX_SPLITS = 16


class TopicDriver(_Wire):
    """One topic's part in an alert: its share of the window against the baseline and how
    much of the metric's change its feedback carries."""

    topic: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    mentions: Annotated[int, Field(ge=0)]
    share: Annotated[float, Field(ge=0, le=1)]
    baseline_share: Annotated[float, Field(ge=0, le=1)] | None
    lift: Annotated[float, Field(ge=0)] | None
    sentiment: Annotated[float, Field(ge=-1, le=1)]
    impact: float | None
    contribution: float | None


class SplitFigure(_Wire):
    """The metric within one channel or journey stage, and its part in the change."""

    value: Annotated[str, StringConstraints(max_length=MAX_NAME)]
    volume: Annotated[int, Field(ge=0)]
    baseline_volume: Annotated[int, Field(ge=0)]
    metric_value: float | None
    baseline_value: float | None
    contribution: float | None


class TermLift(_Wire):
    """A keyword over-represented in the window against the baseline."""

    term: Keyword
    count: Annotated[int, Field(ge=1)]
    share: Annotated[float, Field(ge=0, le=1)]
    baseline_share: Annotated[float, Field(ge=0, le=1)]
    lift: Annotated[float, Field(ge=0)]
    customers: Annotated[int, Field(ge=1)] | None = None
    """Distinct customers among the window's events carrying it (emerging phrases)."""


class ExampleComment(_Wire):
    """A representative comment: a redacted excerpt and the evidence spans within it."""

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    channel: Annotated[str, StringConstraints(max_length=32)]
    stage: Annotated[str, StringConstraints(max_length=32)]
    sentiment: Annotated[float, Field(ge=-1, le=1)]
    topics: Annotated[list[Annotated[str, StringConstraints(max_length=MAX_NAME)]],
                      Field(max_length=MAX_EXPLAIN_TOPICS)]
    text: Annotated[str, StringConstraints(max_length=MAX_COMMENT_CHARS)]
    evidence: Annotated[list[Span], Field(max_length=MAX_COMMENT_SPANS)]


class Explanation(_Wire):
    """Why a figure alert fired, computed from the stored feedback when it fired."""

    metric: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    direction: Literal["up", "down"]
    value: float | None
    baseline_value: float | None
    volume: Annotated[int, Field(ge=0)]
    baseline_volume: Annotated[int, Field(ge=0)]
    baseline_start: UtcTime
    baseline_end: UtcTime
    topics: Annotated[list[TopicDriver], Field(max_length=MAX_EXPLAIN_TOPICS)]
    channels: Annotated[list[SplitFigure], Field(max_length=MAX_SPLITS)]
    stages: Annotated[list[SplitFigure], Field(max_length=MAX_SPLITS)]
    breaching_channel: Annotated[str, StringConstraints(max_length=MAX_NAME)] | None
    breaching_stage: Annotated[str, StringConstraints(max_length=MAX_NAME)] | None
    terms: Annotated[list[TermLift], Field(max_length=MAX_EXPLAIN_TERMS)]
    comments: Annotated[list[ExampleComment], Field(max_length=MAX_EXPLAIN_COMMENTS)]
    computed_ms: Annotated[float, Field(ge=0)]


MAX_CASE_FEEDBACK = 100
"""Most feedback events (and their channels) one customer alert or case links."""

class Alert(AlertV2):
    """``alert.v3``: ``alert.v2`` plus the explanation of a figure alert.

    Every consumer reads both versions through this model: an ``alert.v2`` message is checked
    against ``AlertV2`` (its own contract) and read as ``alert.v3`` without an explanation.
    """

    schema_: Literal["alert.v3"] = Field(  # type: ignore[assignment]
        default="alert.v3", alias="schema")
    rule_type: AlertRuleType  # type: ignore[assignment]
    explanation: Explanation | None = None
    customer_id: CustomerId | None = None
    """The (pseudonymous, redacted) customer a customer rule fired on; None for other rules."""
    channels: Annotated[list[Annotated[str, StringConstraints(max_length=32)]],
                        Field(max_length=MAX_CASE_FEEDBACK)] = Field(default_factory=list)
    """The channels of the linked feedback (customer rules); empty for other rules."""

    @model_validator(mode="before")
    @classmethod
    def _upgrade_v2(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schema") == "alert.v2":
            AlertV2.model_validate(data)
            return {**data, "schema": "alert.v3", "explanation": None}
        return data


CaseStatus = Literal["open", "acknowledged", "in_progress", "resolved", "closed"]
CaseAction = Literal["opened", "acknowledged", "assigned", "started", "commented", "escalated",
                     "resolved", "closed", "reopened", "followed_up"]


class CaseEvent(_Wire):
    """``case.v1``: one transition of a case, carrying the whole case as it is afterwards."""

    schema_: Literal["case.v1"] = Field(default="case.v1", alias="schema")
    event_id: Annotated[str, StringConstraints(min_length=1)]
    case_id: Annotated[str, StringConstraints(min_length=1)]
    seq: Annotated[int, Field(ge=1)]
    action: CaseAction
    status: CaseStatus
    at: UtcTime
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    comment: Annotated[str, StringConstraints(max_length=4000)] | None
    severity: Severity
    team: str | None
    assignee: str | None
    escalation_level: Annotated[int, Field(ge=0)]
    touchpoint: StoredTouchpoint
    rule_id: str
    alert_ids: list[str]
    feedback_event_ids: list[str]
    opened_at: UtcTime
    acknowledged_at: UtcTime | None
    resolved_at: UtcTime | None
    closed_at: UtcTime | None
    ack_due_at: UtcTime
    resolve_due_at: UtcTime
    followup_outcome: Literal["reached", "unreachable", "declined"] | None
    followup_rating: Annotated[int, Field(ge=1, le=5)] | None
    kind: CaseKind | None = None
    customer_id: CustomerId | None = None
    channels: Annotated[list[Annotated[str, StringConstraints(max_length=32)]],
                        Field(max_length=MAX_CASE_FEEDBACK)] = Field(default_factory=list)


class DeadLetter(_Wire):
    """``deadletter.v1``."""

    schema_: Literal["deadletter.v1"] = Field(default="deadletter.v1", alias="schema")
    stage: Literal["nlp", "scoring", "alerting"]
    topic: str
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    reason: Annotated[str, StringConstraints(min_length=1)]
    original_base64: str
    failed_at: UtcTime


"""The metric catalogue: every CEM figure, defined once, and the arithmetic every stage shares.

A figure is a :class:`Count` (additive: an aggregate over stored feedback rows, summed exactly
into coarser windows) or a :class:`Ratio` of counts (derived from the sums, never summed
itself). Everything else derives from the two tables below:

- the scoring SQL that aggregates every count (services/scoring/queries.py) and the ratios
  stored with them (``derive_scores``);
- the ``score.v2`` wire fields: ``events.Score``, and ``schemas/topics/score.v2.json``, written
  by ``python -m services.core.cem_metrics`` (``make schemas``) and checked by a test;
- the query API's columns, metric names and response models, the dashboard feed's columns, and
  the dashboard's labels (served at ``GET /v1/metrics``);
- what expectation targets, driver impact and topic-scoped alert rules may name.

Adding a metric: docs/extending.md#add-a-metric. Definitions in words: docs/metrics.md. Kept
free of imports from the rest of the project, because ``events`` builds ``Score`` from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Label:
    """A metric's name as the dashboard shows it."""

    zh: str
    en: str


@dataclass(frozen=True)
class Count:
    """An additive column of a score row: an aggregate over the ``feedback`` rows of one
    touchpoint x channel x stage cell of a window."""

    name: str
    sql: str
    """ClickHouse aggregate over ``feedback`` rows (fixed text, never built from input)."""
    description: str
    floating: bool = False
    """A sum of floats (stored rounded to 9 places) rather than an integer count."""
    per_topic: bool = False
    """Also kept per topic in ``topic_scores``, over the events that mention the topic."""
    wire: bool = True
    """A field of ``score.v2`` (otherwise stored, and served among the API's ``counts``)."""
    label: Label | None = None
    """Set for counts the API serves by name (``/v1/scores?metric=``) and the dashboard shows."""
    minimum: int = 0
    wire_required: bool = True
    """Required in ``score.v2`` (see ``Ratio.wire_required``)."""


@dataclass(frozen=True)
class Ratio:
    """A figure derived from counts: ``scale * (sum(numerator) - sum(minus)) / denominator``."""

    name: str
    numerator: tuple[str, ...]
    denominator: str
    description: str
    label: Label
    unit: Literal["share", "points", "percent", "mean"]
    minimum: float
    maximum: float
    minus: tuple[str, ...] = ()
    scale: float = 1.0
    nullable: bool = False
    """None without responses (the survey metrics); otherwise 0.0 when the denominator is 0."""
    clamp: bool = False
    """Clamp into [minimum, maximum] (a mean of clamped inputs, guarding float error)."""
    lower_is_better: bool = False
    targetable: bool = True
    """Expectation targets may be set for it (the gap is then stored with each row)."""
    wire_required: bool = True
    """Required in ``score.v2``. A ratio added after score.v2 was released is optional there,
    so messages written before it still validate."""

    @property
    def inputs(self) -> tuple[str, ...]:
        return (*self.numerator, *self.minus, self.denominator)


Metric = Count | Ratio

URGENT_FLAGS = ("escalation_threat", "churn_intent", "repeat_contact", "safety")
"""Urgency flags counted per row (``events.UrgencyFlagName``, in the wire's order)."""

CATALOGUE: tuple[Metric, ...] = (
    Count("volume", "count()", "Distinct on-time events in the window.", minimum=1,
          label=Label("反馈量", "Volume")),
    Count("positive_count", "countIf(sentiment_label = 'positive')",
          "Events labelled positive.", per_topic=True),
    Count("neutral_count", "countIf(sentiment_label = 'neutral')", "Events labelled neutral."),
    Count("negative_count", "countIf(sentiment_label = 'negative')",
          "Events labelled negative.", per_topic=True),
    Count("sentiment_sum", "sum(sentiment)", "Sum of event sentiment scores.", floating=True,
          per_topic=True, wire=False),
    Ratio("mean_sentiment", ("sentiment_sum",), "volume", "Mean event sentiment score.",
          Label("情感均值", "Mean sentiment"), "mean", -1, 1, clamp=True),
    Ratio("net_sentiment", ("positive_count",), "volume",
          "100 x (positive_count - negative_count) / volume, in points.",
          Label("净情感", "Net sentiment"), "points", -100, 100, minus=("negative_count",),
          scale=100),
    Ratio("negative_share", ("negative_count",), "volume", "negative_count / volume.",
          Label("负面占比", "Negative share"), "share", 0, 1, lower_is_better=True),
    Ratio("nps", ("nps_promoters",), "nps_responses",
          "100 x (promoters - detractors) / nps_responses; null without responses.",
          Label("NPS", "NPS"), "points", -100, 100, minus=("nps_detractors",), scale=100,
          nullable=True),
    Count("nps_responses", "countIf(isNotNull(nps))", "Events with an NPS rating (0-10).",
          per_topic=True),
    Count("nps_promoters", "countIf(ifNull(nps, 0) >= 9)", "NPS ratings of 9 or 10.",
          per_topic=True),
    Count("nps_detractors", "countIf(ifNull(nps, 10) <= 6)", "NPS ratings of 0 to 6.",
          per_topic=True),
    Ratio("csat", ("csat_satisfied",), "csat_responses",
          "100 x csat_satisfied (ratings 4-5) / csat_responses; null without responses.",
          Label("CSAT", "CSAT"), "percent", 0, 100, scale=100, nullable=True),
    Count("csat_responses", "countIf(isNotNull(csat))", "Events with a CSAT rating (1-5).",
          per_topic=True),
    Count("csat_satisfied", "countIf(ifNull(csat, 0) >= 4)", "CSAT ratings of 4 or 5.",
          per_topic=True),
    Count("ces_sum", "toFloat64(sum(ifNull(ces, 0)))", "Sum of CES ratings.", floating=True,
          wire=False),
    Ratio("ces", ("ces_sum",), "ces_responses",
          "Mean CES rating (1-7, lower is easier); null without responses.",
          Label("CES", "CES"), "mean", 1, 7, nullable=True, lower_is_better=True),
    Count("ces_responses", "countIf(isNotNull(ces))", "Events with a CES rating (1-7)."),
    Count("complaint_count", "countIf(intent = 'complaint')", "Events whose intent is complaint.",
          per_topic=True),
    Ratio("complaint_rate", ("complaint_count",), "volume",
          "complaint_count / volume (intent = complaint).",
          Label("投诉率", "Complaint rate"), "share", 0, 1, lower_is_better=True),
    Count("urgent_count", "countIf(notEmpty(urgent_flags))",
          "Events with at least one urgency flag.", label=Label("紧急反馈", "Urgent events")),
    *(Count(f"{flag}_count", f"countIf(has(urgent_flags, '{flag}'))",
            f"Events carrying the {flag} urgency flag (urgent_flags.{flag} on the wire).",
            wire=False) for flag in URGENT_FLAGS),
    Ratio("repeat_contact_rate", ("repeat_contact_count",), "volume",
          "Share of events carrying the repeat_contact urgency flag (urgent_flags."
          "repeat_contact / volume): customers saying they have contacted about it before, a "
          "missed first-contact resolution; null only in messages written before this metric "
          "existed.",
          Label("重复联系率", "Repeat contact rate"), "share", 0, 1, lower_is_better=True,
          wire_required=False),
    Count("call_count", "countIf(isNotNull(call_duration_s))",
          "Contact-center calls (events with call facts); what the call figures rest on.",
          label=Label("通话量", "Calls"), wire_required=False),
    Count("tone_worsened_count", "countIf(call_tone = 'worsened')",
          "Calls whose customer tone worsened from the first to the last third.", wire=False),
    Count("tone_improved_count", "countIf(call_tone = 'improved')",
          "Calls whose customer tone improved from the first to the last third.", wire=False),
    Count("hold_s_sum", "toFloat64(sum(ifNull(call_hold_s, 0)))",
          "Seconds customers were on hold, summed over calls.", floating=True, wire=False),
    Count("silence_s_sum", "toFloat64(sum(ifNull(call_silence_s, 0)))",
          "Seconds of silence in calls, summed over calls.", floating=True, wire=False),
    Count("transfer_count", "sum(ifNull(call_transfers, 0))",
          "Transfers between agents, summed over calls.", wire=False),
    Ratio("tone_worsened_share", ("tone_worsened_count",), "call_count",
          "Share of calls whose customer tone worsened (call_tone.trend = worsened); null "
          "without calls.", Label("情绪恶化占比", "Tone worsened"), "share", 0, 1,
          nullable=True, lower_is_better=True, wire_required=False),
    Ratio("tone_improved_share", ("tone_improved_count",), "call_count",
          "Share of calls whose customer tone improved (call_tone.trend = improved); null "
          "without calls.", Label("情绪好转占比", "Tone improved"), "share", 0, 1,
          nullable=True, wire_required=False),
    Ratio("mean_hold_s", ("hold_s_sum",), "call_count",
          "Mean seconds on hold per call; null without calls.",
          Label("平均保持时长(秒)", "Mean hold (s)"), "mean", 0, 366 * 86400, nullable=True,
          lower_is_better=True, wire_required=False),
    Ratio("mean_silence_s", ("silence_s_sum",), "call_count",
          "Mean seconds of silence per call; null without calls.",
          Label("平均静默时长(秒)", "Mean silence (s)"), "mean", 0, 366 * 86400, nullable=True,
          lower_is_better=True, wire_required=False),
    Ratio("transfers_per_call", ("transfer_count",), "call_count",
          "Mean transfers per call; null without calls.",
          Label("平均转接次数", "Transfers per call"), "mean", 0, 65535, nullable=True,
          lower_is_better=True, wire_required=False),
    Count("effort_count", "countIf(effort = 1)",
          "Events whose text holds an effort cue (effort on feedback.enriched.v2: 跑了好几趟, "
          "打了三次电话, 转了好几个人...).", label=Label("费力反馈", "Effort events"),
          wire_required=False),
    Count("effort_score_sum", "toFloat64(sum(effort_score))",
          "Sum of the events' text effort scores.", floating=True, wire=False),
    Ratio("effort_flag_rate", ("effort_count",), "volume",
          "Share of events whose text holds an effort cue (effort_count / volume); null only "
          "in messages written before this metric existed.",
          Label("费力反馈占比", "Effort flag rate"), "share", 0, 1, lower_is_better=True,
          wire_required=False),
    Ratio("text_effort", ("effort_score_sum",), "volume",
          "Mean text effort score of the events (0: no effort cue, 0.5 one, 0.75 a cue "
          "counting three or more, 1 two kinds of effort); null only in messages written "
          "before this metric existed.",
          Label("文本费力度", "Text effort"), "mean", 0, 1, clamp=True, lower_is_better=True,
          wire_required=False),
)
"""Every figure of a score row, in the order of the wire's fields."""

COUNTS: tuple[Count, ...] = tuple(m for m in CATALOGUE if isinstance(m, Count))
RATIOS: tuple[Ratio, ...] = tuple(m for m in CATALOGUE if isinstance(m, Ratio))
BY_NAME: dict[str, Metric] = {m.name: m for m in CATALOGUE}

SCORE_COUNTS: dict[str, str] = {c.name: c.sql for c in COUNTS}
"""Additive columns of a ``cem_scores`` row: name -> aggregate over ``feedback`` rows."""

TOPIC_COUNTS: dict[str, str] = {
    "mentions": "count()",
    "topic_sentiment_sum": "sum(topic_sentiment)",
    **{c.name: c.sql for c in COUNTS if c.per_topic},
}
"""Additive columns of a ``topic_scores`` row, over the events that mention the topic:
``mentions`` is its volume, ``topic_sentiment_sum`` the sum of the topic's own sentiment."""

FLOAT_COUNTS = frozenset({"topic_sentiment_sum", *(c.name for c in COUNTS if c.floating)})

SCORE_METRICS: tuple[str, ...] = tuple(
    m.name for m in CATALOGUE if isinstance(m, Ratio) or m.label is not None)
"""Metrics the query API serves by name and the dashboard labels."""

RESPONSES_OF: dict[str, str] = {r.name: r.denominator for r in RATIOS}
"""The count each ratio rests on: its responses (nps, csat, ces) or ``volume``."""

LOWER_IS_BETTER = frozenset(r.name for r in RATIOS if r.lower_is_better)
"""Metrics whose gap is target - value, so a negative gap always means "below expectation"."""

GAP_METRICS: tuple[str, ...] = tuple(r.name for r in RATIOS if r.targetable)
"""Metrics an expectation target can be set for."""

_TOPIC_INPUTS = frozenset({"volume", *(c.name for c in COUNTS if c.per_topic)})

TOPIC_RATIOS: tuple[str, ...] = tuple(
    r.name for r in RATIOS if set(r.inputs) <= _TOPIC_INPUTS)
"""Ratios a ``topic_scores`` row yields (its counts hold every input): what driver impact and
topic-scoped alert rules can measure."""

TOPIC_SCORE_METRICS: tuple[str, ...] = (
    "volume", *(c.name for c in COUNTS if c.per_topic and c.wire), *TOPIC_RATIOS)
"""Score figures a ``topic_scores`` row yields (``volume`` = mentions): the counts it keeps and
the ratios made of them. Not CES (not kept per topic), not the urgent-flag counts."""


def window_start(moment: datetime, seconds: int) -> datetime:
    """Start of the tumbling window of ``seconds`` that contains ``moment`` (UTC-aligned)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    """``scale * numerator / denominator`` rounded so recomputations store the same figure."""
    return None if denominator == 0 else round(scale * numerator / denominator, 10)


def _count(counts: Mapping[str, Any], name: str) -> float:
    return float(counts[name]) if name in FLOAT_COUNTS else int(counts[name])


def derive(metric: Ratio, counts: Mapping[str, Any]) -> float | None:
    """One ratio of a row from its counts."""
    numerator = (sum(_count(counts, n) for n in metric.numerator)
                 - sum(_count(counts, n) for n in metric.minus))
    value = ratio(numerator, _count(counts, metric.denominator), metric.scale)
    if value is None:
        return None if metric.nullable else 0.0
    if metric.clamp:
        return max(float(metric.minimum), min(float(metric.maximum), value))
    return value


def derive_scores(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Every ratio of one score row from its counts."""
    return {r.name: derive(r, counts) for r in RATIOS}


def mean_topic_sentiment(counts: Mapping[str, Any]) -> float:
    """Mean aspect sentiment of a topic row."""
    mean = ratio(float(counts["topic_sentiment_sum"]), int(counts["mentions"])) or 0.0
    return max(-1.0, min(1.0, mean))


def score_counts(row: Mapping[str, Any], volume_key: str = "volume") -> dict[str, Any]:
    """Every count, from a ``cem_scores`` row (``volume``) or a ``topic_scores`` row
    (``volume_key="mentions"``: the events mentioning the topic).

    Counts not kept per topic (CES, urgency) read as 0 here, for score rows too: these counts
    are what a topic's figures and the touchpoint's can be compared (and subtracted) on.
    """
    out: dict[str, Any] = {}
    for count in COUNTS:
        if count.name == "volume":
            out["volume"] = int(row[volume_key])
        elif count.per_topic:
            out[count.name] = _count(row, count.name)
        else:
            out[count.name] = 0.0 if count.floating else 0
    return out


def topic_score_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``topic_scores`` row's ``TOPIC_SCORE_METRICS``, as a ``cem_scores`` row would name them."""
    counts = score_counts(row, "mentions")
    figures = {**counts, **derive_scores(counts)}
    return {name: figures[name] for name in TOPIC_SCORE_METRICS}


def gap(metric: str, value: float | None, target: float) -> float | None:
    """Experience minus expectation, signed so that negative is always worse than expected."""
    if value is None:
        return None
    raw = target - value if metric in LOWER_IS_BETTER else value - target
    return round(raw, 10)


# ------------------------------------------------------------------ what others read from it


def describe() -> list[dict[str, Any]]:
    """The catalogue as data, for ``GET /v1/metrics`` and the dashboard: each served metric
    with its labels, unit, range and direction; a ratio also with its formula, so a client can
    derive it from summed counts exactly as the scoring stage does."""
    out: list[dict[str, Any]] = []
    for metric in CATALOGUE:
        if metric.name not in SCORE_METRICS:
            continue
        entry: dict[str, Any] = {"name": metric.name, "description": metric.description}
        if isinstance(metric, Ratio):
            entry |= {"kind": "ratio", "label": asdict(metric.label), "unit": metric.unit,
                      "minimum": metric.minimum, "maximum": metric.maximum,
                      "lower_is_better": metric.lower_is_better, "nullable": metric.nullable,
                      "targetable": metric.targetable,
                      "formula": {"numerator": list(metric.numerator),
                                  "minus": list(metric.minus),
                                  "denominator": metric.denominator, "scale": metric.scale}}
        else:
            assert metric.label is not None
            entry |= {"kind": "count", "label": asdict(metric.label), "unit": "count",
                      "minimum": metric.minimum, "maximum": None, "lower_is_better": False,
                      "nullable": False, "targetable": False, "formula": None}
        out.append(entry)
    return out


def wire_fields() -> list[tuple[Metric, bool]]:
    """The metrics that are ``score.v2`` fields, each with whether it is required there."""
    return [(m, m.wire_required) for m in CATALOGUE if isinstance(m, Ratio) or m.wire]


def _property(metric: Metric) -> dict[str, Any]:
    if isinstance(metric, Count):
        kind: Any = "integer" if metric.wire_required else ["integer", "null"]
        return {"type": kind, "minimum": metric.minimum, "description": metric.description}
    nullable = metric.nullable or not metric.wire_required
    return {"type": ["number", "null"] if nullable else "number", "minimum": metric.minimum,
            "maximum": metric.maximum, "description": metric.description}


SCORE_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "topics" / "score.v2.json"
_FIXED_HEAD = ("schema", "touchpoint", "channel", "stage", "window", "window_start",
               "window_end", "window_seconds")
_FIXED_TAIL = ("urgent_flags", "topics", "expectations", "computed_at")


def score_schema(current: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` (the committed score.v2 schema) with its metric properties, their
    ``required`` entries and the targetable metrics of ``expectations`` from the catalogue;
    every other property is kept as written."""
    properties = current["properties"]
    fields = wire_fields()
    new_properties = {
        **{name: properties[name] for name in _FIXED_HEAD},
        **{metric.name: _property(metric) for metric, _ in fields},
        **{name: properties[name] for name in _FIXED_TAIL},
    }
    expectations = json.loads(json.dumps(new_properties["expectations"]))
    expectations["items"]["properties"]["metric"]["enum"] = list(GAP_METRICS)
    new_properties["expectations"] = expectations
    required = [*_FIXED_HEAD, *(m.name for m, needed in fields if needed), *_FIXED_TAIL]
    return {**current, "required": required, "properties": new_properties}


def render_schema(document: Mapping[str, Any]) -> str:
    """A schema file's text, formatted as the committed files are."""
    return json.dumps(document, indent=2, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, compare) schemas/topics/score.v2.json from the catalogue."""
    parser = argparse.ArgumentParser(prog="python -m services.core.cem_metrics",
                                     description=main.__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed file differs from the catalogue")
    args = parser.parse_args(argv)
    committed = SCORE_SCHEMA.read_text(encoding="utf-8")
    generated = render_schema(score_schema(json.loads(committed)))
    if committed == generated:
        print(f"{SCORE_SCHEMA.name} matches the metric catalogue")
        return 0
    if args.check:
        print(f"{SCORE_SCHEMA} differs from the metric catalogue: run "
              "`python -m services.core.cem_metrics` and commit it", file=sys.stderr)
        return 1
    SCORE_SCHEMA.write_text(generated, encoding="utf-8")
    print(f"wrote {SCORE_SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

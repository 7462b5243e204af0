"""Why a figure alert fired: the explanation computed from the stored feedback when it fires.

An ops engineer paged by ``negative_share 0.404 > 0.4`` needs to know what moved. The
explanation compares the alert's window with its baseline window (the one the rule compared
it with, ``kinds.base.Explained``) over the feedback of the rule's touchpoint and scope:

- **topics**: each topic's share of the window's events against its baseline share (lift), its
  own sentiment, its *impact* (the metric with minus without the events mentioning it, as
  the drivers' impact figure) and its *contribution* to the change (that impact minus the same
  impact in the baseline window), ranked by contribution in the breach's direction: a topic
  that always drags the metric down has no contribution, one that started to does;
- **channels and stages**: the same contribution per channel and per journey stage, and the
  one that carries the breach;
- **terms**: the keywords most over-represented against the baseline (a cause outside the
  taxonomy still shows), or the rising phrases an ``emerging_topic`` rule measured itself
  (``Explained.terms``), with their distinct customers;
- **comments**: up to three of the window's most negative comments about the top topic (or
  carrying the top emerging phrase), as redacted excerpts with the evidence spans that tagged
  the topic (or where the phrase stands), and their event ids.

Four queries (services/alerting/queries.py), each bounded by LIMITs, and arithmetic on their
rows, all in a few tens of milliseconds. The arithmetic is pure and unit-tested on its own.
An explanation that fails is logged and the alert fires without one: paging must not wait
for the reason.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import structlog
from prometheus_client import Histogram

from services.alerting import queries
from services.alerting.engine import Measurement
from services.alerting.kinds import window_kind
from services.alerting.kinds.base import Explained
from services.alerting.rulebase import WindowRuleBase
from services.core.cem_metrics import BY_NAME, SCORE_COUNTS, Count, Ratio, derive
from services.core.events import (
    MAX_COMMENT_CHARS,
    MAX_COMMENT_SPANS,
    MAX_EXPLAIN_COMMENTS,
    MAX_EXPLAIN_TERMS,
    MAX_EXPLAIN_TOPICS,
    MAX_SPLITS,
    ExampleComment,
    Explanation,
    Span,
    SplitFigure,
    TermLift,
    TopicDriver,
)
from services.core.failures import Kind, classify
from services.core.phrases import display, words
from services.core.pii import redact, snippet
from services.core.store import Store

log = structlog.get_logger(__name__)

EXPLAIN_SECONDS = Histogram("voc_alert_explanation_seconds",
                            "Time spent explaining a firing figure alert.")

Counts = dict[str, Any]
COMMENT_CANDIDATES = 12
"""Negative comments read to pick three distinct ones from."""
MIN_TERM_COUNT = 2
"""A keyword seen once in the window is anecdote, not a cause."""


def metric_counts(metric: str) -> dict[str, str]:
    """The counts (name -> aggregate over ``feedback``) the metric is computed from, and
    ``volume``. KeyError names the metric when it is not in the catalogue."""
    found = BY_NAME[metric]
    names = found.inputs if isinstance(found, Ratio) else (found.name,)
    return {name: SCORE_COUNTS[name] for name in ("volume", *names)}


def metric_value(metric: str, counts: Mapping[str, Any]) -> float | None:
    """The metric over a set of events from their counts; None for no events (or no
    responses, for a survey metric)."""
    found = BY_NAME[metric]
    if not counts or int(counts.get("volume") or 0) == 0:
        return None
    if isinstance(found, Count):
        return float(counts[found.name])
    if float(counts[found.denominator]) == 0:
        return None
    return derive(found, counts)


def _add(a: Mapping[str, Any], b: Mapping[str, Any]) -> Counts:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


def _minus(a: Mapping[str, Any], b: Mapping[str, Any]) -> Counts:
    return {k: a.get(k, 0) - b.get(k, 0) for k in a}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 10)


def part(metric: str, whole: Mapping[str, Any], own: Mapping[str, Any],
         baseline_whole: Mapping[str, Any],
         baseline_own: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Impact and contribution of one part (a topic's, channel's or stage's events).

    Impact is the window's metric minus the metric without the part; contribution is that
    impact minus the same in the baseline window (0 there when the baseline cannot say). A
    part holding every event of the window has no "without": its contribution is then the
    whole change of the metric.
    """
    with_value = metric_value(metric, whole)
    if with_value is None:
        return None, None
    without = metric_value(metric, _minus(whole, own))
    base = metric_value(metric, baseline_whole)
    if without is None:
        return None, _round(with_value - base) if base is not None else None
    impact = with_value - without
    base_without = metric_value(metric, _minus(baseline_whole, baseline_own)) if baseline_own \
        else base
    base_impact = base - base_without if base is not None and base_without is not None else 0.0
    return _round(impact), _round(impact - base_impact)


def _directed(direction: Literal["up", "down"], value: float | None) -> float:
    """A contribution seen the breach's way (larger: carries more of it); None last."""
    if value is None:
        return -math.inf
    return value if direction == "up" else -value


def rank_topics(metric: str, direction: Literal["up", "down"],
                topics: Iterable[queries.TopicCounts], whole: Counts,
                baseline: Counts) -> list[TopicDriver]:
    """The topics of the window, the largest contribution in the breach's direction first."""
    current: dict[str, queries.TopicCounts] = {}
    before: dict[str, queries.TopicCounts] = {}
    for row in topics:
        (current if row.current else before)[row.topic] = row
    volume = int(whole.get("volume") or 0)
    baseline_volume = int(baseline.get("volume") or 0)
    drivers = []
    for topic, row in current.items():
        prior = before.get(topic)
        impact, contribution = part(metric, whole, row.counts, baseline,
                                    prior.counts if prior else {})
        share = min(1.0, row.mentions / volume) if volume else 0.0
        baseline_share = (min(1.0, (prior.mentions if prior else 0) / baseline_volume)
                          if baseline_volume else None)
        lift = share / baseline_share if baseline_share else None
        sentiment = max(-1.0, min(1.0, row.topic_sentiment_sum / row.mentions)) \
            if row.mentions else 0.0
        drivers.append(TopicDriver(
            topic=topic, mentions=row.mentions, share=_round(share) or 0.0,
            baseline_share=_round(baseline_share), lift=_round(lift),
            sentiment=_round(sentiment) or 0.0, impact=impact, contribution=contribution))
    drivers.sort(key=lambda d: (-_directed(direction, d.contribution), -d.mentions, d.topic))
    return drivers[:MAX_EXPLAIN_TOPICS]


def rank_splits(metric: str, direction: Literal["up", "down"],
                cells: Iterable[queries.CellCounts], dimension: Literal["channel", "stage"],
                whole: Counts, baseline: Counts) -> list[SplitFigure]:
    """The metric per channel (or stage), the largest contribution in the breach's
    direction first."""
    current: dict[str, Counts] = {}
    before: dict[str, Counts] = {}
    for cell in cells:
        key = cell.channel if dimension == "channel" else cell.stage
        side = current if cell.current else before
        side[key] = _add(side.get(key, {}), cell.counts)
    splits = []
    for value, counts in current.items():
        prior = before.get(value, {})
        _, contribution = part(metric, whole, counts, baseline, prior)
        splits.append(SplitFigure(
            value=value, volume=int(counts["volume"]), baseline_volume=int(prior.get("volume", 0)),
            metric_value=_round(metric_value(metric, counts)),
            baseline_value=_round(metric_value(metric, prior)), contribution=contribution))
    splits.sort(key=lambda s: (-_directed(direction, s.contribution), -s.volume, s.value))
    return splits[:MAX_SPLITS]


def breaching(direction: Literal["up", "down"], splits: Sequence[SplitFigure]) -> str | None:
    """The split that carries the breach: the first, when its contribution points the
    breach's way."""
    if splits and _directed(direction, splits[0].contribution) > 0:
        return splits[0].value
    return None


def rank_terms(terms: Iterable[queries.TermCount], volume: int,
               baseline_volume: int) -> list[TermLift]:
    """Keywords over-represented in the window, by count x log(lift).

    The baseline share is smoothed by half an event, so a term absent from the baseline has
    a finite lift and a term seen once is not ranked above one seen twenty times. Without a
    baseline window there is nothing to be over-represented against: no terms.
    """
    if volume == 0 or baseline_volume == 0:
        return []
    ranked = []
    for term in terms:
        if term.count < MIN_TERM_COUNT:
            continue
        share = min(1.0, term.count / volume)
        lift = share / ((term.baseline_count + 0.5) / (baseline_volume + 0.5))
        if lift <= 1:
            continue
        ranked.append((term.count * math.log(lift), TermLift(
            term=term.term, count=term.count, share=round(share, 10),
            baseline_share=round(min(1.0, term.baseline_count / baseline_volume), 10),
            lift=round(lift, 10))))
    ranked.sort(key=lambda pair: (-pair[0], pair[1].term))
    return [t for _, t in ranked[:MAX_EXPLAIN_TERMS]]


def _one_line(piece: str) -> str:
    """Line breaks, tabs and invisible characters as spaces, one for one (offsets hold)."""
    return "".join(" " if c.isspace() or unicodedata.category(c) in ("Cc", "Cf") else c
                   for c in piece)


def excerpt(text: str, spans: Sequence[Span],
            limit: int = MAX_COMMENT_CHARS) -> tuple[str, list[Span]]:
    """At most ``limit`` characters of ``text`` around its first evidence span, on one line,
    and the spans moved into the excerpt (offsets in characters, as the NLP stage counts).

    Stored text was redacted at ingest; should redaction still change the excerpt, it is
    redacted and its spans dropped rather than shown on the wrong characters.
    """
    valid = sorted((s, e) for s, e in spans if 0 <= s < e <= len(text))
    lo = max(0, valid[0][0] - limit // 4) if valid else 0
    hi = min(len(text), lo + limit - 2)
    prefix = "…" if lo > 0 else ""
    out = prefix + _one_line(text[lo:hi]) + ("…" if hi < len(text) else "")
    shift = len(prefix) - lo
    kept = [(max(s, lo) + shift, min(e, hi) + shift) for s, e in valid if s < hi and e > lo]
    if redact(out) != out:
        return snippet(out, limit), []
    return out, kept[:MAX_COMMENT_SPANS]


def phrase_spans(text: str, phrase: str) -> list[Span]:
    """Where a candidate phrase (services/core/phrases.py) stands in a text: the first
    occurrence of it as written, else of each of its words (one linear scan each)."""
    for piece in (display(phrase), *words(phrase)):
        at = text.find(piece)
        if at >= 0:
            return [(at, at + len(piece))]
    return []


def pick_comments(rows: Iterable[queries.CommentRow], topic: str | None,
                  phrase: str | None = None) -> list[ExampleComment]:
    """Up to three distinct comments, most negative first, each with the spans that tagged
    ``topic`` (or its first topic), or where ``phrase`` stands when one is given. A row whose
    document does not parse is skipped."""
    picked: list[ExampleComment] = []
    seen: set[str] = set()
    for row in rows:
        try:
            document = json.loads(row.enriched_json)
            text = document.get("analysis_text") or document["text"]
            tags = document.get("topics") or []
        except (ValueError, KeyError, TypeError):
            log.warning("explanation skipped a stored event it cannot read",
                        event_id=row.event_id)
            continue
        wanted = topic or (tags[0]["id"] if tags else None)
        spans = phrase_spans(str(text), phrase) if phrase is not None else [
            tuple(s) for tag in tags if tag.get("id") == wanted
            for s in tag.get("evidence") or [] if len(s) == 2]
        shown, kept = excerpt(str(text), spans)
        if shown in seen:
            continue
        seen.add(shown)
        picked.append(ExampleComment(
            event_id=row.event_id, channel=row.channel, stage=row.stage,
            sentiment=max(-1.0, min(1.0, row.sentiment)),
            topics=[str(t["id"]) for t in tags[:MAX_EXPLAIN_TOPICS]], text=shown, evidence=kept))
        if len(picked) == MAX_EXPLAIN_COMMENTS:
            break
    return picked


async def explanation(store: Store, rule: WindowRuleBase, explained: Explained,
                      touchpoint: str, m: Measurement) -> Explanation:
    """The explanation of ``rule`` firing at ``touchpoint`` with measurement ``m``."""
    started = time.perf_counter()
    scope = queries.ExplainScope(
        touchpoint, rule.scope.channels, rule.scope.stages, rule.scope.topics, m.start, m.end,
        *explained.baseline)
    counts = metric_counts(explained.metric)
    cells = await queries.explain_cells(store, scope, counts)
    whole: Counts = dict.fromkeys(counts, 0)
    baseline: Counts = dict.fromkeys(counts, 0)
    for cell in cells:
        if cell.current:
            whole = _add(whole, cell.counts)
        else:
            baseline = _add(baseline, cell.counts)
    direction = explained.direction
    topics = rank_topics(explained.metric, direction,
                         await queries.explain_topics(store, scope, counts), whole, baseline)
    channels = rank_splits(explained.metric, direction, cells, "channel", whole, baseline)
    stages = rank_splits(explained.metric, direction, cells, "stage", whole, baseline)
    volume, baseline_volume = int(whole["volume"]), int(baseline["volume"])
    if explained.focus_phrase is not None:
        terms = list(explained.terms)
        comments = pick_comments(await queries.explain_comments(
            store, scope, None, COMMENT_CANDIDATES, phrase=explained.focus_phrase), None,
            phrase=explained.focus_phrase)
    else:
        terms = rank_terms(await queries.explain_terms(store, scope), volume, baseline_volume)
        focus = explained.focus_topic or (topics[0].topic if topics else None)
        comments = pick_comments(
            await queries.explain_comments(store, scope, focus, COMMENT_CANDIDATES), focus)
    elapsed = time.perf_counter() - started
    EXPLAIN_SECONDS.observe(elapsed)
    return Explanation(
        metric=explained.metric, direction=direction,
        value=_round(metric_value(explained.metric, whole)),
        baseline_value=_round(metric_value(explained.metric, baseline)), volume=volume,
        baseline_volume=baseline_volume, baseline_start=explained.baseline[0],
        baseline_end=explained.baseline[1], topics=topics, channels=channels, stages=stages,
        breaching_channel=breaching(direction, channels),
        breaching_stage=breaching(direction, stages), terms=terms, comments=comments,
        computed_ms=round(elapsed * 1000, 3))


async def explain_firing(store: Store, rule: WindowRuleBase, touchpoint: str,
                         m: Measurement) -> Explanation | None:
    """The explanation of a firing alert of ``rule``, None for a kind without explanations
    or when computing it failed for good (logged: the alert fires anyway). A transient failure
    (the store unreachable) is raised, so the failure policy retries the batch and the alert
    goes out with its explanation once the store is back: nothing was published or stepped."""
    explain = window_kind(rule).explain
    if explain is None:
        return None
    try:
        return await explanation(store, rule, explain(rule, m), touchpoint, m)
    except Exception as exc:
        if classify(exc).kind is Kind.TRANSIENT:
            raise
        log.exception("alert fires without an explanation: computing it failed",
                      rule=rule.id, touchpoint=touchpoint, window_end=m.end.isoformat())
        return None


async def carried(store: Store, rule: WindowRuleBase, alert_id: str | None) -> Explanation | None:
    """The explanation stored with a firing alert, for its resolution to repeat (None when
    there is none or it cannot be read for good; a transient failure is raised for the batch
    to be retried, as for the firing)."""
    if alert_id is None or window_kind(rule).explain is None:
        return None
    try:
        stored = await queries.stored_explanation(store, alert_id)
        return Explanation.model_validate_json(stored) if stored else None
    except Exception as exc:
        if classify(exc).kind is Kind.TRANSIENT:
            raise
        log.exception("alert resolves without its explanation: reading it failed",
                      rule=rule.id, alert_id=alert_id)
        return None

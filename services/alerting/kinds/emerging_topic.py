"""``emerging_topic``: a phrase no taxonomy topic names, rising at a touchpoint (the detector
of services/alerting/emerging.py, docs/emerging.md).

At each evaluation end the loader runs the detector over the window ending there and the
baseline before it, with the rule's thresholds, and keeps each touchpoint's rising phrases
(at most ``max_phrases``). The measure is the top phrase's G²:

- **breached** when some phrase passes every threshold (``min_llr`` corrected for the number
  of phrases tested in the window, emerging.corrected, and the support minima);
- **cleared** when no phrase passes even ``clear_llr``, corrected the same way (hysteresis: a
  phrase whose G² hovers around the bar neither fires nor resolves again and again), besides
  the support minima.

The live worker and the backtest read the same windows through the same loader, so they
decide the same. The explanation is the negative share's, with the rising phrases as its
terms (mentions, share now and in the baseline, lift, distinct customers) and comments that
carry the top phrase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from services.alerting import emerging
from services.alerting.emerging import Rising, Thresholds, Window, corrected
from services.alerting.engine import Measurement
from services.alerting.kinds.base import Described, Explained, Points, Rows, Wanted, WindowKind
from services.alerting.rulebase import Problem, WindowRuleBase
from services.core.events import MAX_EXPLAIN_TERMS, TermLift
from services.core.settings import load_settings
from services.core.store import Store


class EmergingTopicRule(WindowRuleBase):
    """Rising phrases of a touchpoint's feedback against their baseline."""

    type: Literal["emerging_topic"]
    window_s: int = Field(default=300, ge=60, le=86400)
    baseline_s: int = Field(default=86400, ge=600, le=30 * 86400)
    min_mentions: int = Field(default=5, ge=1)
    min_customers: int = Field(default=3, ge=1)
    new_min_mentions: int = Field(default=8, ge=1)
    new_min_customers: int = Field(default=5, ge=1)
    min_llr: float = Field(default=30.0, gt=0)
    clear_llr: float | None = Field(default=None, gt=0)
    min_lift: float = Field(default=5.0, ge=1)
    min_baseline_volume: int = Field(default=200, ge=1)
    max_phrases: int = Field(default=500, ge=10, le=10_000)

    @model_validator(mode="after")
    def _scope(self) -> EmergingTopicRule:
        if self.scope.topics or self.scope.channels or self.scope.stages:
            raise Problem(("scope",), "emerging_topic watches a touchpoint's whole feedback: "
                          "drop scope.topics, scope.channels and scope.stages")
        if self.clear_llr is not None and self.clear_llr > self.min_llr:
            raise Problem(("clear_llr",), f"clear_llr {self.clear_llr} must not exceed "
                          f"min_llr {self.min_llr}")
        return self

    def thresholds(self) -> Thresholds:
        """The detector's thresholds for firing."""
        return Thresholds(self.min_mentions, self.min_customers, self.new_min_mentions,
                          self.new_min_customers, self.min_llr, self.min_lift,
                          self.min_baseline_volume)

    def clear(self) -> float:
        return self.clear_llr if self.clear_llr is not None else self.min_llr / 2


@dataclass(frozen=True)
class Found:
    """One evaluation end's rising phrases of one touchpoint (best first), found with the
    clearing G²: what passes ``min_llr`` too is what fires."""

    end: datetime
    volume: int
    rising: tuple[Rising, ...]


async def detections(store: Store, wanted: Sequence[Wanted[Any]], points: Points) -> Rows:
    """Each rule's detections at every end, per touchpoint: two queries per rule and end."""
    # A loader is given no settings: the taxonomy and the bucket size are the ones the
    # environment names, as for the NLP stage and the roll-up of the same deployment.
    settings = load_settings()
    excluded = await asyncio.to_thread(emerging.current_exclusions, settings.taxonomy_path)
    found: Rows = {}
    for item in wanted:
        rule: EmergingTopicRule = item.rule
        by_touchpoint = found.setdefault(rule.id, {})
        relaxed = replace(rule.thresholds(), min_llr=rule.clear())
        for end, touchpoints in sorted(points.ends.items()):
            window = Window(end, rule.window_s, rule.baseline_s, rule.max_phrases,
                            settings.emerging_bucket_s)
            detected = await emerging.rising(store, window, relaxed, excluded,
                                             touchpoints=touchpoints)
            for touchpoint, detection in detected.items():
                by_touchpoint.setdefault(touchpoint, []).append(
                    Found(end, detection.volume, tuple(detection.rising)))
    return found


def reaching(rising: Sequence[Rising], bar: float) -> tuple[Rising, ...]:
    """The rising phrases whose G² reaches ``bar`` corrected for the phrases tested in their
    window (emerging.corrected): the firing set with ``min_llr``, the holding set with the
    clearing bar."""
    return tuple(r for r in rising if r.llr >= corrected(bar, r.tested))


def measure_emerging(rule: EmergingTopicRule, rows: Sequence[Found],
                     end: datetime) -> Measurement | None:
    """The top phrase's G² at ``end`` (0 with none); None when the detector did not run
    there (no feedback in the window or its baseline)."""
    at = next((f for f in rows if f.end == end), None)
    if at is None:
        return None
    firing = reaching(at.rising, rule.min_llr)
    holding = reaching(at.rising, rule.clear())
    top = at.rising[0].llr if at.rising else 0.0
    baseline = at.rising[0].baseline if at.rising else None
    start = end - timedelta(seconds=rule.window_s)
    return Measurement(top, baseline, at.volume, bool(firing), not holding, start, end,
                       evidence=firing or holding)


def _describe(rule: EmergingTopicRule, m: Measurement) -> Described:
    bar = rule.min_llr
    if m.evidence:
        top: Rising = m.evidence[0]
        bar = corrected(rule.min_llr, top.tested)
        was = "never seen before" if top.new else f"{top.baseline} in the baseline"
        against = (f" against {bar:.1f}, min_llr {rule.min_llr:g} corrected for "
                   f"{top.tested} phrases tested" if top.tested > 1 else "")
        what = (f"emerging phrase 「{top.text}」: {top.mentions} mentions from "
                f"{top.customers} customers in {rule.window_s}s, {was} "
                f"(G² {top.llr:.1f}{against}, lift x{top.lift:.1f})")
    else:
        what = f"no emerging phrase (G² {m.value:.1f} < {rule.clear():g}, corrected)"
    return Described("phrase_llr", ">=", round(bar, 3), what, counted="events")


def phrase_terms(rising: Sequence[Rising]) -> tuple[TermLift, ...]:
    """The rising phrases as an explanation's terms."""
    return tuple(TermLift(
        term=r.text[:64], count=r.mentions, share=round(min(1.0, r.mentions / r.volume), 10),
        baseline_share=round(min(1.0, r.baseline / r.baseline_volume), 10),
        lift=round(r.lift, 10), customers=r.customers) for r in rising[:MAX_EXPLAIN_TERMS])


def _explained(rule: EmergingTopicRule, m: Measurement) -> Explained:
    """Explained on the negative share of the window against the baseline the phrases were
    compared with; the terms are the rising phrases, the comments carry the top one."""
    baseline = (m.start - timedelta(seconds=rule.baseline_s), m.start)
    rising: Sequence[Rising] = m.evidence
    return Explained("negative_share", "up", baseline, None, phrase_terms(rising),
                     rising[0].phrase if rising else None)


EMERGING_TOPIC = WindowKind(
    model=EmergingTopicRule, loader=detections,
    history=lambda rule: ((timedelta(seconds=rule.window_s + rule.baseline_s), timedelta(0)),),
    measure=measure_emerging, describe=_describe, explain=_explained)

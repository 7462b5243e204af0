"""Key experiences (importance x gap) and topic impact, as pure functions of stored counts.

CEM practice ranks a touchpoint's factors by importance x (experience - expectation): a very
important factor that falls short matters most. Factors here are the taxonomy topics; the
figures come from ``cem_scores`` / ``topic_scores`` counts summed over the asked period, so
this module does arithmetic only and is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.core.cem_metrics import TOPIC_RATIOS, derive_scores, score_counts

IMPACT_METRICS: tuple[str, ...] = TOPIC_RATIOS
"""Metrics impact can be measured on: the ratios a topic's counts yield."""

ImportanceBasis = Literal["sentiment", "nps"]


@dataclass(frozen=True)
class Factor:
    """One factor of a touchpoint, ready to rank."""

    topic: str
    importance: float
    gap: float
    importance_source: str = "config"
    experience: float | None = None
    expectation: float | None = None
    mentions: int = 0
    mean_topic_sentiment: float | None = None
    importance_sample: Mapping[str, int] | None = None
    impact: Mapping[str, Any] | None = None

    @property
    def weighted(self) -> float:
        """Importance x gap: the more negative, the more urgent the factor."""
        return round(self.importance * self.gap, 10)


Quadrant = Literal["concentrate", "keep_up", "low_priority", "overkill"]
"""Importance-performance analysis: important and below par (concentrate here), important and
at par (keep up the good work), neither (low priority), at par but not important (possible
overkill)."""


@dataclass(frozen=True)
class QuadrantCuts:
    """Where the importance x performance grid is divided: the mean importance and the mean
    performance (experience, 0-10) of the factors that have an importance, so each touchpoint's
    factors are judged against each other (data-centred IPA)."""

    importance: float
    performance: float


def quadrant_cuts(points: Iterable[tuple[float | None, float]]) -> QuadrantCuts | None:
    """The cuts of ``(importance, performance)`` points; None when no point has an importance."""
    rated = [(i, p) for i, p in points if i is not None]
    if not rated:
        return None
    return QuadrantCuts(importance=round(sum(i for i, _ in rated) / len(rated), 10),
                        performance=round(sum(p for _, p in rated) / len(rated), 10))


def quadrant(importance: float | None, performance: float, cuts: QuadrantCuts | None
             ) -> Quadrant | None:
    """The quadrant of one factor; on a cut counts as important / at par. None without an
    importance."""
    if importance is None or cuts is None:
        return None
    important = importance >= cuts.importance
    at_par = performance >= cuts.performance
    if important:
        return "keep_up" if at_par else "concentrate"
    return "overkill" if at_par else "low_priority"


def rank_key_experiences(factors: Iterable[Factor]) -> list[Factor]:
    """Factors worst first (most negative importance x gap); ties by larger importance."""
    return sorted(factors, key=lambda f: (f.weighted, -f.importance, f.topic))


def experience_0_10(mean_topic_sentiment: float) -> float:
    """A topic's experience on the 0-10 scale the expectations file uses."""
    return round(5.0 * (mean_topic_sentiment + 1.0), 10)


def _without(total: Mapping[str, Any], topic: Mapping[str, Any]) -> dict[str, Any]:
    whole = score_counts(total, "volume")
    part = score_counts(topic, "mentions")
    return {k: whole[k] - part[k] for k in whole}


def _metric(counts: Mapping[str, Any], metric: str) -> float | None:
    if int(counts["volume"]) == 0:
        return None
    return derive_scores(counts)[metric]


def impact(metric: str, total: Mapping[str, Any], topic: Mapping[str, Any]) -> dict[str, Any]:
    """Overall score, score without the topic's events, and their difference.

    ``total`` holds the touchpoint's score counts, ``topic`` the same counts over the events
    that mention the topic (``mentions`` as their volume). Impact is ``overall - without``:
    positive when the topic lifts the score, negative when it drags it down; None when either
    side has no responses for the metric.
    """
    overall = _metric(score_counts(total, "volume"), metric)
    without = _metric(_without(total, topic), metric)
    value = None if overall is None or without is None else round(overall - without, 10)
    return {"metric": metric, "overall": overall, "without_topic": without, "impact": value}


def derived_importance(total: Mapping[str, Any], topic: Mapping[str, Any],
                       basis: ImportanceBasis) -> tuple[float | None, dict[str, int]]:
    """Importance 0-10 from how far the topic's presence moves sentiment or NPS.

    ``sentiment``: 5 x |mean sentiment with the topic - without it| (the difference spans
    0-2). ``nps``: |NPS with - NPS without| / 20 (the difference spans 0-200 points). The
    sample sizes are returned alongside so thin evidence is visible; None when one side is
    empty.
    """
    with_counts = score_counts(topic, "mentions")
    without_counts = _without(total, topic)
    if basis == "nps":
        sample = {"with_topic": with_counts["nps_responses"],
                  "without_topic": without_counts["nps_responses"]}
        with_value, without_value = (_metric(with_counts, "nps"), _metric(without_counts, "nps"))
        scale = 1 / 20
    else:
        sample = {"with_topic": with_counts["volume"], "without_topic": without_counts["volume"]}
        with_value = _metric(with_counts, "mean_sentiment")
        without_value = _metric(without_counts, "mean_sentiment")
        scale = 5.0
    if with_value is None or without_value is None:
        return None, sample
    return round(min(10.0, scale * abs(with_value - without_value)), 10), sample

"""CEM ratios derived from additive counts: the one definition every stage uses.

Scoring stores counts and the ratios derived here (``cem_scores``, ``topic_scores``); the
drivers API and alerting derive the same ratios from ``topic_scores`` counts (a topic row keeps
counts only, besides its mean aspect sentiment). Keeping the arithmetic here means a topic-scoped
alert rule and the score it is compared with can never disagree on what ``negative_share`` is.
Exact definitions: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def window_start(moment: datetime, seconds: int) -> datetime:
    """Start of the tumbling window of ``seconds`` that contains ``moment`` (UTC-aligned)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    """``scale * numerator / denominator`` rounded so recomputations store the same figure."""
    return None if denominator == 0 else round(scale * numerator / denominator, 10)


def derive_scores(counts: Mapping[str, Any]) -> dict[str, Any]:
    """Ratios of one score row from its counts."""
    volume = int(counts["volume"])
    positives, negatives = int(counts["positive_count"]), int(counts["negative_count"])
    mean = ratio(float(counts["sentiment_sum"]), volume) or 0.0
    return {
        "mean_sentiment": max(-1.0, min(1.0, mean)),
        "net_sentiment": ratio(positives - negatives, volume, 100) or 0.0,
        "negative_share": ratio(negatives, volume) or 0.0,
        "nps": ratio(int(counts["nps_promoters"]) - int(counts["nps_detractors"]),
                     int(counts["nps_responses"]), 100),
        "csat": ratio(int(counts["csat_satisfied"]), int(counts["csat_responses"]), 100),
        "ces": ratio(float(counts["ces_sum"]), int(counts["ces_responses"])),
        "complaint_rate": ratio(int(counts["complaint_count"]), volume) or 0.0,
    }


def mean_topic_sentiment(counts: Mapping[str, Any]) -> float:
    """Mean aspect sentiment of a topic row."""
    mean = ratio(float(counts["topic_sentiment_sum"]), int(counts["mentions"])) or 0.0
    return max(-1.0, min(1.0, mean))


def score_counts(row: Mapping[str, Any], volume_key: str = "volume") -> dict[str, Any]:
    """The counts ``derive_scores`` needs, from a ``cem_scores`` row (``volume``) or a
    ``topic_scores`` row (``volume_key="mentions"``: the events mentioning the topic).

    CES is not kept per topic, so it reads as no responses here, for score rows too: these
    counts are what a topic's figures and the touchpoint's can be compared (and subtracted) on.
    """
    return {
        "volume": int(row[volume_key]),
        "positive_count": int(row["positive_count"]),
        "negative_count": int(row["negative_count"]),
        "sentiment_sum": float(row["sentiment_sum"]),
        "nps_responses": int(row["nps_responses"]),
        "nps_promoters": int(row["nps_promoters"]),
        "nps_detractors": int(row["nps_detractors"]),
        "csat_responses": int(row["csat_responses"]),
        "csat_satisfied": int(row["csat_satisfied"]),
        "ces_sum": 0.0,
        "ces_responses": 0,
        "complaint_count": int(row["complaint_count"]),
    }


TOPIC_SCORE_METRICS = ("volume", "positive_count", "negative_count", "nps_responses",
                       "nps_promoters", "nps_detractors", "csat_responses", "csat_satisfied",
                       "complaint_count", "mean_sentiment", "net_sentiment", "negative_share",
                       "nps", "csat", "complaint_rate")
"""Score figures a ``topic_scores`` row yields (``volume`` = mentions): the counts it keeps and
the ratios ``derive_scores`` makes of them. Not CES (not kept per topic), not the urgent-flag
counts."""


def topic_score_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``topic_scores`` row's ``TOPIC_SCORE_METRICS``, as a ``cem_scores`` row would name them."""
    counts = score_counts(row, "mentions")
    figures = {**counts, **derive_scores(counts)}
    return {name: figures[name] for name in TOPIC_SCORE_METRICS}

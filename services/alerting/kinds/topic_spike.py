"""``topic_spike``: a topic's count (or share of all events) in the lookback against the
lookback before it, counted from the stored feedback rows.

The count is made in one place for the live worker and the backtest alike: the store counts
events and mentions per touchpoint in time buckets (queries.topic_mentions), and
``topic_counts`` sums the buckets of each lookback. Buckets are as long as the greatest
common divisor of the lookback and the distances between the ends a load serves, so every
lookback boundary is a bucket boundary and the sums are exact: one evaluation end (live) reads
two buckets per touchpoint, a backtest's window ends read windows of gcd(lookback, window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from services.alerting import queries
from services.alerting.engine import Measurement
from services.alerting.kinds.base import (
    Described,
    Explained,
    Points,
    Rows,
    Wanted,
    WindowKind,
    lookback,
)
from services.alerting.rulebase import Problem, WindowRuleBase
from services.core.store import Store


class TopicSpikeRule(WindowRuleBase):
    """A topic's count or share in the lookback against the previous lookback."""

    type: Literal["topic_spike"]
    topic: str = Field(min_length=1, description="taxonomy topic id")
    measure: Literal["count", "share"] = "count"
    factor: float = Field(gt=1, description="fire when current / previous reaches this")
    clear_factor: float | None = Field(default=None, ge=1)
    lookback_s: int = Field(ge=1)
    min_count: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _scope(self) -> TopicSpikeRule:
        if self.scope.topics:
            raise Problem(("scope", "topics"),
                          "topic_spike rules name their topic in `topic`, not scope.topics")
        if self.clear_factor is not None and self.clear_factor > self.factor:
            raise Problem(("clear_factor",), "clear_factor must not exceed factor")
        return self


@dataclass(frozen=True)
class TopicCounts:
    """A topic's mentions and all events, in the lookback and the one before it."""

    count: int
    volume: int
    previous_count: int
    previous_volume: int


def topic_counts(buckets: Sequence[queries.MentionBucket], end: datetime,
                 lookback_s: int) -> TopicCounts:
    """The mentions and events of the lookback ending at ``end`` and of the one before it,
    from buckets that never straddle a lookback boundary."""
    span = timedelta(seconds=lookback_s)
    figures = [0, 0, 0, 0]
    for bucket in buckets:
        if end - span <= bucket.start < end:
            figures[0] += bucket.mentions
            figures[1] += bucket.volume
        elif end - 2 * span <= bucket.start < end - span:
            figures[2] += bucket.mentions
            figures[3] += bucket.volume
    return TopicCounts(*figures)


def measure_topic(rule: TopicSpikeRule, counts: TopicCounts, end: datetime) -> Measurement | None:
    """Growth of a topic's count (or share) against the previous lookback.

    The previous figure is floored at one mention so a topic appearing from nothing can still
    spike (by its count), instead of dividing by zero.
    """
    if counts.count < rule.min_count:
        return None
    if rule.measure == "count":
        current, before = float(counts.count), float(max(counts.previous_count, 1))
    else:
        current = counts.count / counts.volume
        before = max(counts.previous_count, 1) / max(counts.previous_volume, 1)
    ratio = current / before
    clear = rule.clear_factor or rule.factor
    start = end - timedelta(seconds=rule.lookback_s)
    return Measurement(ratio, before, counts.volume, ratio >= rule.factor, ratio < clear,
                       start, end)


async def mention_buckets(store: Store, wanted: Sequence[Wanted[Any]], points: Points) -> Rows:
    """Each rule's buckets over its two lookbacks before every end: one query per rule and
    set of touchpoints (live, the touchpoints sharing an end; in a backtest, all of them)."""
    groups: dict[tuple[str, ...] | None, list[datetime]] = {}
    for end, touchpoints in points.ends.items():
        groups.setdefault(touchpoints, []).append(end)
    found: Rows = {}
    for item in wanted:
        rule: TopicSpikeRule = item.rule
        by_touchpoint = found.setdefault(rule.id, {})
        for touchpoints, ends in groups.items():
            first = min(ends)
            bucket_s = math.gcd(rule.lookback_s,
                                *(int((end - first).total_seconds()) for end in ends))
            buckets = await queries.topic_mentions(
                store, topic=rule.topic, touchpoints=touchpoints, channels=rule.scope.channels,
                stages=rule.scope.stages, lo=first - timedelta(seconds=2 * rule.lookback_s),
                hi=max(ends), bucket_s=bucket_s)
            for bucket in buckets:
                by_touchpoint.setdefault(bucket.touchpoint, []).append(bucket)
    return found


def _describe(rule: TopicSpikeRule, m: Measurement) -> Described:
    return Described(f"topic_{rule.measure}_ratio", ">=", rule.factor,
                     f"topic {rule.topic} {rule.measure} x{m.value:.2f} vs previous "
                     f"{rule.lookback_s}s", topic=rule.topic)


def _explained(rule: TopicSpikeRule, m: Measurement) -> Explained:
    """A spike is explained on the negative share of its scope, against the previous
    lookback it was compared with; its comments are about the spiking topic."""
    return Explained("negative_share", "up", (m.start - (m.end - m.start), m.start), rule.topic)


TOPIC_SPIKE = WindowKind(
    model=TopicSpikeRule, loader=mention_buckets,
    history=lambda rule: (lookback(2 * rule.lookback_s),),
    measure=lambda rule, buckets, end: measure_topic(
        rule, topic_counts(buckets, end, rule.lookback_s), end),
    describe=_describe, explain=_explained)

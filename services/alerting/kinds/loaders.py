"""Loaders several kinds share: what they read from the store, for a set of rules at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.alerting import queries
from services.alerting.engine import topic_row
from services.alerting.kinds.base import Points, Rows, Wanted
from services.core.store import Store


def _totals_only(wanted: Sequence[Wanted[Any]]) -> bool:
    """Only the all-channel, all-stage rows are needed unless a rule is scoped by either."""
    return not any(w.rule.scope.channels or w.rule.scope.stages for w in wanted)


async def score_windows(store: Store, wanted: Sequence[Wanted[Any]],
                        points: Points) -> Rows:
    """Base-window score rows of the evaluated touchpoints over the rules' history, and for
    rules scoped by topic the ``topic_scores`` rows of their topics as score rows
    (``engine.topic_row``). Every rule gets the same rows per touchpoint and takes its own
    slice of them (``engine.in_scope``)."""
    touchpoints = points.touchpoints()
    plain = [w for w in wanted if not w.rule.scope.topics]
    topical = [w for w in wanted if w.rule.scope.topics]
    rows: list[dict[str, Any]] = []
    for lo, hi in points.periods([span for w in plain for span in w.spans]):
        rows += await queries.score_windows(
            store, window_seconds=points.window_seconds, touchpoints=touchpoints, lo=lo, hi=hi,
            totals_only=_totals_only(plain))
    topics = {t for w in topical for t in w.rule.scope.topics or ()}
    for lo, hi in points.periods([span for w in topical for span in w.spans]):
        stored = await queries.topic_windows(
            store, window_seconds=points.window_seconds, touchpoints=touchpoints, topics=topics,
            lo=lo, hi=hi, totals_only=_totals_only(topical))
        rows += [topic_row(r) for r in stored]
    by_touchpoint: dict[str, list[Any]] = {}
    for row in rows:
        by_touchpoint.setdefault(row["touchpoint"], []).append(row)
    return {w.rule.id: by_touchpoint for w in wanted}

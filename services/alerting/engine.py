"""Rule evaluation without I/O, common to every rule kind: figures from score rows, the
measurement a kind produces, and the alert lifecycle.

Every decision is a pure function of rows, rule and state, so the behaviour ops teams rely on
(hysteresis, cooldown, flap control, dedupe) is unit-tested exhaustively, and the worker and
the backtest share exactly the same logic: the worker fetches rows and publishes, nothing more.
What is particular to one kind (its fields, how it measures) lives in services/alerting/kinds/.

Times are event time (window ends), so replaying history (backtest, re-delivery after a crash)
makes the same decisions as live evaluation did.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from services.alerting.rulebase import Scope, score_metrics
from services.core.cem_metrics import topic_score_figures

ALERT_NAMESPACE = uuid.UUID("3b0f1d8a-94c3-4f1e-8b59-2f4a4b7de6a1")
WEEK = timedelta(days=7)
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Figures:
    """Score rows aggregated over ``[start, end)``: counts summed, per-event figures averaged
    weighted by what they are a share or mean of (volume, or their responses), which
    reproduces shares, means, NPS and CSAT exactly."""

    start: datetime
    end: datetime
    volume: int
    values: Mapping[str, float | None]

    def metric(self, name: str) -> float | None:
        return self.values.get(name)


def in_scope(scope: Scope, row: Row) -> bool:
    """Whether a score row feeds a rule of this scope.

    Score rows form a cube: ``channel = ''`` is "all channels" and ``stage = ''`` "all stages"
    (every score.v1 row is both). A rule takes, per dimension, the '' rows when unscoped and
    the rows of its listed values otherwise, so the rows it sums are disjoint and nothing is
    counted twice. Topic rows (``topic_row``) are a further dimension whose '' is the score
    row itself; a rule scoped by several topics sums their rows, i.e. counts mentions.
    """
    channel, stage = row.get("channel") or "", row.get("stage") or ""
    channel_ok = channel in scope.channels if scope.channels else channel == ""
    stage_ok = stage in scope.stages if scope.stages else stage == ""
    topic = row.get("topic") or ""
    topic_ok = topic in scope.topics if scope.topics else topic == ""
    return channel_ok and stage_ok and topic_ok


def topic_row(row: Row) -> dict[str, Any]:
    """A ``topic_scores`` row as a score row of the events mentioning its topic (volume =
    mentions, ratios derived from its counts as scoring derives them), so topic-scoped rules
    go through the same aggregation and measurement as every figure rule."""
    figures = topic_score_figures(row)
    return {"touchpoint": row["touchpoint"], "channel": row["channel"], "stage": row["stage"],
            "topic": row["topic"], "window_start": row["window_start"],
            "window_seconds": row["window_seconds"], **figures}


def aggregate(rows: Iterable[Row], start: datetime, end: datetime) -> Figures:
    """Figures of the rows whose window lies wholly inside ``[start, end)``.

    A per-event figure that has a ``<name>_responses`` count (nps, csat, ces) is weighted by
    it, since only responding events make the figure; the others are weighted by volume.
    """
    kinds = score_metrics()
    volume = 0
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for row in rows:
        w_start = row["window_start"]
        if not (w_start >= start and w_start + timedelta(seconds=int(row["window_seconds"])) <= end):
            continue
        row_volume = int(row["volume"])
        volume += row_volume
        for name, kind in kinds.items():
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if kind == "integer":
                weight = 1
            elif f"{name}_responses" in kinds:
                weight = int(row.get(f"{name}_responses") or 0)
            else:
                weight = row_volume
            sums[name] = sums.get(name, 0.0) + float(value) * weight
            weights[name] = weights.get(name, 0.0) + weight
    values: dict[str, float | None] = {}
    for name, kind in kinds.items():
        if kind == "integer":
            values[name] = sums.get(name, 0.0)
        else:
            values[name] = sums[name] / weights[name] if weights.get(name) else None
    values["volume"] = float(volume)
    return Figures(start, end, volume, values)


@dataclass(frozen=True)
class Measurement:
    """One evaluation: the value compared, its baseline, and which side of the rule it is on.

    ``breached`` and ``cleared`` are separate because of hysteresis: between the fire and the
    clear threshold a value is neither, and the alert keeps its current status.
    """

    value: float
    baseline: float | None
    volume: int
    breached: bool
    cleared: bool
    start: datetime
    end: datetime
    evidence: tuple[Any, ...] = ()
    """What a kind found besides the value, for its description and explanation (the
    emerging phrases of an ``emerging_topic`` rule); empty for most kinds."""


@dataclass(frozen=True)
class KeyState:
    """Lifecycle of one dedupe key: the open alert (if any) and what cooldown needs."""

    status: Literal["ok", "firing"] = "ok"
    alert_id: str | None = None
    fired_end: datetime | None = None
    fired_at: datetime | None = None
    clear_since: datetime | None = None
    last_end: datetime | None = None


Transition = Literal["fire", "resolve"]


def alert_id_for(dedupe_key: str, at: datetime) -> str:
    """Deterministic per breach, so a re-evaluation after a crash re-emits the same alert."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{dedupe_key}@{at.isoformat()}"))


def step(state: KeyState, measurement: Measurement | None, end: datetime, *, cooldown_s: int,
         resolve_after_s: int, key: str, now: datetime) -> tuple[KeyState, Transition | None]:
    """Advance one key's lifecycle by an evaluation at event time ``end``.

    - ok -> firing when breached, unless the last fire was less than ``cooldown_s`` ago
      (suppression: a metric that keeps crossing does not page again and again);
    - firing -> ok (resolved) once cleared (past the clear threshold: hysteresis) continuously
      for ``resolve_after_s`` (flap control: a dip does not resolve and then re-fire);
    - evaluations older than the newest one seen (late windows) change nothing.
    """
    if state.last_end is not None and end < state.last_end:
        return state, None
    state = replace(state, last_end=end)
    if measurement is None:
        return state, None
    if state.status == "ok":
        cooling = (state.fired_end is not None
                   and end < state.fired_end + timedelta(seconds=cooldown_s))
        if measurement.breached and not cooling:
            return KeyState("firing", alert_id_for(key, end), end, now, None, end), "fire"
        return state, None
    if not measurement.cleared:
        return replace(state, clear_since=None), None
    since = state.clear_since or end
    if end - since >= timedelta(seconds=resolve_after_s):
        return replace(state, status="ok", clear_since=None), "resolve"
    return replace(state, clear_since=since), None


def metric_key(rule_id: str, touchpoint: str) -> str:
    return f"{rule_id}:{touchpoint}"

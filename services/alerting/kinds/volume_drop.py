"""``volume_drop``: a touchpoint's feedback volume fallen to a share of its baseline, or to
nothing, for a lookback: the sign of a broken integration (an app release that stopped the
survey, a call-centre export that no longer runs).

A touchpoint that stopped sending sends no score updates, so this kind is evaluated for every
touchpoint with score rows in its history, at the newest window end of each score batch
(``every_touchpoint``): the other touchpoints' events move event time on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from services.alerting.engine import WEEK, Measurement, Row, aggregate, in_scope
from services.alerting.kinds.base import Described, Span, WindowKind, lookback
from services.alerting.kinds.loaders import score_windows
from services.alerting.rulebase import Problem, WindowRuleBase, scope_dimensions_exist


class VolumeDropRule(WindowRuleBase):
    """Events in the lookback at most ``share`` of the baseline's events per lookback."""

    type: Literal["volume_drop"]
    lookback_s: int = Field(ge=1, description="how long the drop must last")
    share: float = Field(default=0.0, ge=0, lt=1, description=(
        "fire when the lookback holds at most this share of the baseline (0: no event at "
        "all)"))
    clear_share: float | None = Field(default=None, ge=0, le=1, description=(
        "hysteresis: resolve only once above this share (default: share)"))
    compare_to: Literal["preceding", "last_week"] = "preceding"
    baseline_s: int = Field(default=3600, ge=1, description=(
        "preceding: the period before the lookback whose events per lookback are the "
        "baseline"))
    min_baseline: float = Field(default=20, gt=0, description=(
        "baseline events per lookback needed to decide: a quiet touchpoint's silence is no "
        "drop"))

    @model_validator(mode="after")
    def _consistent(self) -> VolumeDropRule:
        if self.scope.topics:
            raise Problem(("scope", "topics"), "volume_drop counts every event of a "
                          "touchpoint (by channel and stage if scoped); drop scope.topics")
        scope_dimensions_exist(self.scope)
        if self.clear_share is not None and self.clear_share < self.share:
            raise Problem(("clear_share",), f"clear_share {self.clear_share} must not be below "
                          f"share {self.share}: a drop resolves once volume is back above it")
        return self


def measure_drop(rule: VolumeDropRule, rows: Sequence[Row], end: datetime) -> Measurement | None:
    """The lookback's events as a share of the baseline's events per lookback.

    None (no decision) when the baseline is below ``min_baseline``: a touchpoint that is quiet
    anyway, or silent for longer than the baseline reaches back, has nothing to fall from.
    """
    rows = [r for r in rows if in_scope(rule.scope, r)]
    start = end - timedelta(seconds=rule.lookback_s)
    current = aggregate(rows, start, end).volume
    if rule.compare_to == "last_week":
        baseline = float(aggregate(rows, start - WEEK, end - WEEK).volume)
    else:
        before = aggregate(rows, start - timedelta(seconds=rule.baseline_s), start).volume
        baseline = before * rule.lookback_s / rule.baseline_s
    if baseline < rule.min_baseline:
        return None
    share = current / baseline
    clear = rule.share if rule.clear_share is None else rule.clear_share
    return Measurement(share, baseline, current, share <= rule.share, share > clear, start, end)


def _history(rule: VolumeDropRule) -> tuple[Span, ...]:
    if rule.compare_to == "last_week":
        week = timedelta(seconds=rule.lookback_s) + WEEK
        return (lookback(rule.lookback_s), (week, WEEK))
    return (lookback(rule.lookback_s + rule.baseline_s),)


def _describe(rule: VolumeDropRule, m: Measurement) -> Described:
    against = "last week" if rule.compare_to == "last_week" else f"preceding {rule.baseline_s}s"
    return Described("volume_share", "<=", rule.share,
                     f"volume_share {m.value:.3f} <= {rule.share} (baseline {m.baseline:.1f} "
                     f"events per {rule.lookback_s}s, {against})")


VOLUME_DROP = WindowKind(model=VolumeDropRule, loader=score_windows, history=_history,
                         measure=measure_drop, describe=_describe, every_touchpoint=True)

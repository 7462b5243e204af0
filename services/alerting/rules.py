"""Alert rules: loading the YAML file and deciding, without I/O, whether a rule is breached.

The decision is a pure function of the window rows and the last fire time, so the rule logic
is unit-tested exhaustively and the worker only fetches data and publishes.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.core.events import Alert, Metric, Operator, Severity

_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_ALERT_NAMESPACE = uuid.UUID("3b0f1d8a-94c3-4f1e-8b59-2f4a4b7de6a1")


class Rule(BaseModel):
    """One rule of the rules file; see the comments in the shipped rules.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    metric: Metric
    operator: Operator
    threshold: float
    lookback_s: int = Field(ge=1)
    min_volume: int = Field(default=1, ge=1)
    cooldown_s: int = Field(default=1800, ge=0)
    severity: Severity = "warning"
    touchpoints: list[str] | None = None

    def applies_to(self, touchpoint: str) -> bool:
        return self.touchpoints is None or touchpoint in self.touchpoints

    def dedupe_key(self, touchpoint: str) -> str:
        return f"{self.id}:{touchpoint}"


class RuleSet(BaseModel):
    """The rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule ids: {duplicates}")
        return self


def load_rules(path: Path | None = None) -> RuleSet:
    """Load and validate a rules file (the shipped default when ``path`` is None)."""
    source = str(path) if path else "the built-in rules.yaml"
    try:
        raw = (path.read_text(encoding="utf-8") if path
               else resources.files(__package__).joinpath("rules.yaml").read_text("utf-8"))
        return RuleSet.model_validate(yaml.safe_load(raw))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"cannot load alert rules from {source}: {exc}") from exc


@dataclass(frozen=True)
class Lookback:
    """A touchpoint's figures summed over a rule's lookback."""

    start: datetime
    end: datetime
    volume: int
    negative_count: int
    sentiment_sum: float

    def metric(self, name: str) -> float:
        if name == "volume":
            return float(self.volume)
        if self.volume == 0:
            return 0.0
        if name == "negative_share":
            return self.negative_count / self.volume
        return self.sentiment_sum / self.volume


def lookback(rule: Rule, windows: Iterable[Mapping[str, Any]], end: datetime) -> Lookback:
    """Sum window rows (``window_start``, ``window_seconds``, ``volume``, ``negative_count``,
    ``mean_sentiment``) that lie wholly inside ``[end - lookback_s, end)``."""
    start = end - timedelta(seconds=rule.lookback_s)
    volume = negatives = 0
    sentiment = 0.0
    for row in windows:
        w_start = row["window_start"]
        if w_start >= start and w_start + timedelta(seconds=int(row["window_seconds"])) <= end:
            volume += int(row["volume"])
            negatives += int(row["negative_count"])
            sentiment += float(row["mean_sentiment"]) * int(row["volume"])
    return Lookback(start, end, volume, negatives, sentiment)


def evaluate(rule: Rule, touchpoint: str, figures: Lookback, last_fired_end: datetime | None,
             fired_at: datetime) -> Alert | None:
    """The alert to fire, or None when the rule holds, the sample is thin, or it cools down."""
    if not rule.applies_to(touchpoint) or figures.volume < rule.min_volume:
        return None
    value = figures.metric(rule.metric)
    if not _COMPARE[rule.operator](value, rule.threshold):
        return None
    if last_fired_end is not None and figures.end < last_fired_end + timedelta(seconds=rule.cooldown_s):
        return None
    key = rule.dedupe_key(touchpoint)
    return Alert(
        alert_id=str(uuid.uuid5(_ALERT_NAMESPACE, f"{key}@{figures.end.isoformat()}")),
        dedupe_key=key,
        rule_id=rule.id,
        severity=rule.severity,
        touchpoint=touchpoint,
        metric=rule.metric,
        operator=rule.operator,
        threshold=rule.threshold,
        value=value,
        volume=figures.volume,
        window_start=figures.start,
        window_end=figures.end,
        fired_at=fired_at,
        message=(f"{touchpoint}: {rule.metric} {value:.3f} {rule.operator} {rule.threshold} "
                 f"over {rule.lookback_s}s ({figures.volume} events). {rule.description}").strip(),
    )

"""The vocabulary every rule kind is written in: scope, route, the fields all rules share, and
the score metrics a rule may name.

It sits below the rule kinds (services/alerting/kinds/) so that each kind can build on it and
the rules file (rules.py) can then assemble the kinds into one YAML union without an import
cycle. Metric names are checked against the newest ``score.v*`` schema's numeric properties,
so the same rules work on whatever figures the scoring stage publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

import schemas
from services.core.cem_metrics import TOPIC_SCORE_METRICS
from services.core.events import Channel, EnrichedFeedback, Severity, Stage

RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)]
_NOT_METRICS = {"window_seconds"}


@cache
def score_schema_name() -> str:
    """The newest score payload version in schemas/topics (the figures rules may use)."""
    names = [n for n in schemas.topic_schema_names() if n.startswith("score.v")]
    return max(names, key=lambda n: int(n.rsplit("v", 1)[1]))


@cache
def score_metrics() -> Mapping[str, Literal["integer", "number"]]:
    """Numeric properties of the score schema: integers are counts (summed over a lookback),
    numbers are per-event figures (volume-weighted means over a lookback)."""
    found: dict[str, Literal["integer", "number"]] = {}
    for name, spec in schemas.topic_schema(score_schema_name())["properties"].items():
        kinds = spec.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if name in _NOT_METRICS:
            continue
        if "integer" in kinds:
            found[name] = "integer"
        elif "number" in kinds:
            found[name] = "number"
    return found


def topic_metrics() -> tuple[str, ...]:
    """Metrics a rule scoped by topic may use: the score metrics a ``topic_scores`` row yields
    (``volume`` being the topic's mentions)."""
    return tuple(m for m in TOPIC_SCORE_METRICS if m in score_metrics())


def score_has_dimension(name: str) -> bool:
    """Whether score rows are split by ``name`` (channel, stage): score.v2 is, score.v1 not."""
    return name in schemas.topic_schema(score_schema_name())["properties"]


class Problem(ValueError):
    """A validation error that knows which field (relative to the model raising it) is wrong,
    so the loader can point at its line; pydantic keeps the exception in the error's ctx."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    """Unknown options are errors (a typo must not become a rule that never fires)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(Strict):
    """Which data a rule looks at; an empty list or a missing key means all."""

    touchpoints: list[str] | None = None
    channels: list[Channel] | None = None
    stages: list[Stage] | None = None
    topics: list[str] | None = None

    def has_touchpoint(self, touchpoint: str) -> bool:
        return not self.touchpoints or touchpoint in self.touchpoints

    def holds(self, event: EnrichedFeedback) -> bool:
        """Whether one enriched event is in this scope: the per-event rule kinds' test, where
        score rows have ``engine.in_scope`` (a cube with '' for "all")."""
        return (self.has_touchpoint(event.touchpoint)
                and not (self.channels and event.channel not in self.channels)
                and not (self.stages and event.stage not in self.stages)
                and not (self.topics and not {t.id for t in event.topics} & set(self.topics)))


class Route(Strict):
    """Who owns an alert and where it goes besides the alerts topic."""

    team: str | None = None
    owner: str | None = None
    notify: list[str] = Field(default_factory=list, description="webhook names")
    open_case: bool = False


class RuleBase(Strict):
    """The fields of every rule; a kind adds ``type: Literal["<its name>"]`` and its own."""

    id: RuleId
    description: str = ""
    severity: Severity = "warning"
    scope: Scope = Field(default_factory=Scope)
    route: Route = Field(default_factory=Route)
    cooldown_s: int = Field(default=1800, ge=0)


class WindowRuleBase(RuleBase):
    """The fields of every rule measured at window ends, which has a lifecycle."""

    resolve_after_s: int = Field(default=0, ge=0)


def scope_dimensions_exist(scope: Scope) -> None:
    """Refuse a channel or stage scope the score rows cannot serve (score.v1 has neither)."""
    for dimension, wanted in (("channel", scope.channels), ("stage", scope.stages)):
        if wanted and not score_has_dimension(dimension):
            raise Problem(("scope", f"{dimension}s"),
                          f"scope by {dimension} needs scores split by {dimension}, which "
                          f"{score_schema_name()} is not; drop scope.{dimension}s")

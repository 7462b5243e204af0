"""The alert rules file: typed rule models, their validation, and loading.

Everything an ops team tunes lives in one YAML file (see docs/alerting.md for a complete one).
It is validated on load so a typo is an error naming the file, line, rule and field, never a
rule that silently never fires. Metric names are checked against the newest ``score.v*`` schema's numeric
properties, so the same rules work on whatever figures the scoring stage publishes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import ErrorDetails

import schemas
from services.core.cem_metrics import TOPIC_SCORE_METRICS
from services.core.config_file import ConfigFile, child_node, error_message
from services.core.events import (
    CaseAction,
    Channel,
    Operator,
    Severity,
    Stage,
    UrgencyFlagName,
)

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    """Which data a rule looks at; an empty list or a missing key means all."""

    touchpoints: list[str] | None = None
    channels: list[Channel] | None = None
    stages: list[Stage] | None = None
    topics: list[str] | None = None

    def has_touchpoint(self, touchpoint: str) -> bool:
        return not self.touchpoints or touchpoint in self.touchpoints


class Route(_Strict):
    """Who owns an alert and where it goes besides the alerts topic."""

    team: str | None = None
    owner: str | None = None
    notify: list[str] = Field(default_factory=list, description="webhook names")
    open_case: bool = False


class _RuleBase(_Strict):
    id: RuleId
    description: str = ""
    severity: Severity = "warning"
    scope: Scope = Field(default_factory=Scope)
    route: Route = Field(default_factory=Route)
    cooldown_s: int = Field(default=1800, ge=0)


class _MetricRule(_RuleBase):
    """A rule over a score metric aggregated across ``lookback_s`` of event time.

    With ``scope.topics`` the figure is over the events mentioning those topics (the
    ``topic_scores`` rows of the topics, summed: an event naming two of them counts twice), so
    only metrics derivable from a topic row's counts are allowed.
    """

    metric: str
    lookback_s: int = Field(ge=1)
    min_volume: int = Field(default=1, ge=1)
    resolve_after_s: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _known_metric_and_scope(self) -> _MetricRule:
        metrics = score_metrics()
        if self.metric not in metrics:
            raise Problem(("metric",), f"metric {self.metric!r} is not a numeric field of "
                          f"{score_schema_name()}; choose from {sorted(metrics)}")
        for dimension, wanted in (("channel", self.scope.channels), ("stage", self.scope.stages)):
            if wanted and not score_has_dimension(dimension):
                raise Problem(("scope", f"{dimension}s"),
                              f"scope by {dimension} needs scores split by {dimension}, which "
                              f"{score_schema_name()} is not; drop scope.{dimension}s")
        if self.scope.topics:
            allowed = topic_metrics()
            if self.metric not in allowed:
                raise Problem(("metric",), f"metric {self.metric!r} is not kept per topic, so "
                              f"a rule with scope.topics cannot use it; with topics choose from "
                              f"{list(allowed)} (from the topic_scores counts)")
        return self


class _Compared(_Strict):
    operator: Operator
    threshold: float
    clear_threshold: float | None = Field(
        default=None, description="hysteresis: resolve only once the value is past this "
        "(default: the threshold itself)")

    @model_validator(mode="after")
    def _clear_on_the_healthy_side(self) -> _Compared:
        clear = self.clear_threshold
        if clear is not None:
            upward = self.operator in (">", ">=")
            if (upward and clear > self.threshold) or (not upward and clear < self.threshold):
                raise Problem(("clear_threshold",),
                              f"clear_threshold {clear} must be on the healthy side of "
                              f"threshold {self.threshold} for operator {self.operator!r}")
        return self


class ThresholdRule(_MetricRule, _Compared):
    """Metric over the lookback compared with a fixed threshold."""

    type: Literal["threshold"]


class RateOfChangeRule(_MetricRule, _Compared):
    """Metric over the lookback against the previous lookback or the same time last week."""

    type: Literal["rate_of_change"]
    compare_to: Literal["previous", "last_week"] = "previous"
    change: Literal["ratio", "delta"] = "ratio"


class AnomalyRule(_MetricRule):
    """Metric over the lookback against a rolling baseline of earlier lookback-sized buckets."""

    type: Literal["anomaly"]
    method: Literal["zscore", "ewma"] = "zscore"
    direction: Literal["up", "down", "both"] = "both"
    sensitivity: float = Field(default=3.0, gt=0, description="deviations that fire")
    clear_sensitivity: float | None = Field(default=None, gt=0)
    baseline_s: int = Field(default=3600, ge=1)
    min_baseline_points: int = Field(default=5, ge=2)
    alpha: float = Field(default=0.3, gt=0, le=1, description="EWMA smoothing factor")

    @model_validator(mode="after")
    def _baseline_holds_buckets(self) -> AnomalyRule:
        if self.baseline_s < self.lookback_s * self.min_baseline_points:
            raise Problem(("baseline_s",), f"baseline_s {self.baseline_s} holds fewer than "
                          f"min_baseline_points={self.min_baseline_points} buckets of "
                          f"lookback_s={self.lookback_s}")
        if self.clear_sensitivity is not None and self.clear_sensitivity > self.sensitivity:
            raise Problem(("clear_sensitivity",), "clear_sensitivity must not exceed sensitivity")
        return self


class TopicSpikeRule(_RuleBase):
    """A topic's count or share in the lookback against the previous lookback."""

    type: Literal["topic_spike"]
    topic: str = Field(min_length=1, description="taxonomy topic id")
    measure: Literal["count", "share"] = "count"
    factor: float = Field(gt=1, description="fire when current / previous reaches this")
    clear_factor: float | None = Field(default=None, ge=1)
    lookback_s: int = Field(ge=1)
    min_count: int = Field(default=5, ge=1)
    resolve_after_s: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _scope(self) -> TopicSpikeRule:
        if self.scope.topics:
            raise Problem(("scope", "topics"),
                          "topic_spike rules name their topic in `topic`, not scope.topics")
        if self.clear_factor is not None and self.clear_factor > self.factor:
            raise Problem(("clear_factor",), "clear_factor must not exceed factor")
        return self


class EventMatch(_Strict):
    """Conditions on one enriched event; all given ones must hold."""

    urgency: list[UrgencyFlagName] | None = None
    segments: list[str] | None = None
    sentiment_at_most: float | None = Field(default=None, ge=-1, le=1)
    intents: list[Literal["complaint", "inquiry", "praise", "suggestion", "other"]] | None = None

    @model_validator(mode="after")
    def _something(self) -> EventMatch:
        if not any(v is not None for v in
                   (self.urgency, self.segments, self.sentiment_at_most, self.intents)):
            raise ValueError("an event rule needs at least one condition under `match`")
        return self


class EventRule(_RuleBase):
    """Fires on a single enriched event (urgent flags, a VIP strongly negative, ...)."""

    type: Literal["event"]
    match: EventMatch
    dedupe_by: Literal["customer", "event", "touchpoint"] = "customer"
    cooldown_s: int = Field(default=3600, ge=0)


AnyRule = Annotated[ThresholdRule | RateOfChangeRule | AnomalyRule | TopicSpikeRule | EventRule,
                    Field(discriminator="type")]
MetricRule = ThresholdRule | RateOfChangeRule | AnomalyRule


class Webhook(_Strict):
    """A delivery target; the secret is read from an environment variable, never the file."""

    url: str = Field(pattern=r"^https?://")
    format: Literal["generic", "dingtalk", "wecom", "feishu"] = "generic"
    secret_env: str | None = None
    statuses: list[Literal["firing", "resolved"]] = Field(
        default_factory=lambda: ["firing", "resolved"])

    def secret(self) -> str | None:
        """The signing secret; missing variables are caught when the file loads."""
        return os.environ.get(self.secret_env) if self.secret_env else None


class Sla(_Strict):
    """Case deadlines of one severity and who it escalates to, level by level."""

    ack_minutes: float = Field(gt=0)
    resolve_hours: float = Field(gt=0)
    escalation: list[str] = Field(default_factory=list, description="teams, level 1, 2, ...")


class Team(_Strict):
    """Where a team is paged about its cases: an SLA escalation must reach the team it moves
    the case to, which the rule that fired (``route.notify``) does not know about."""

    notify: list[str] = Field(default_factory=list, description="webhook names")
    case_actions: list[CaseAction] = Field(
        default_factory=lambda: ["opened", "escalated"],
        description="case transitions that page the case's team (after the transition)")


class RuleSet(_Strict):
    """The rules file."""

    rules: list[AnyRule] = Field(min_length=1)
    webhooks: dict[str, Webhook] = Field(default_factory=dict)
    sla: dict[Severity, Sla] = Field(default_factory=dict)
    teams: dict[str, Team] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        for index, rule_id in enumerate(ids):
            if rule_id in ids[:index]:
                raise Problem(("rules", index, "id"), f"duplicate rule id {rule_id!r}")
        for index, rule in enumerate(self.rules):
            unknown = sorted(set(rule.route.notify) - set(self.webhooks))
            if unknown:
                raise Problem(("rules", index, "route", "notify"),
                              f"rule {rule.id!r} notifies unknown webhooks {unknown}; "
                              f"define them under `webhooks`")
        for name, hook in self.webhooks.items():
            if hook.secret_env and hook.secret_env not in os.environ:
                raise Problem(("webhooks", name, "secret_env"),
                              f"webhook {name!r}: environment variable {hook.secret_env} "
                              "(secret_env) is not set")
        for name, team in self.teams.items():
            unknown = sorted(set(team.notify) - set(self.webhooks))
            if unknown:
                raise Problem(("teams", name, "notify"),
                              f"team {name!r} notifies unknown webhooks {unknown}; "
                              f"define them under `webhooks`")
        if self.teams:
            for severity, sla in self.sla.items():
                missing = [t for t in sla.escalation if t not in self.teams]
                if missing:
                    raise Problem(
                        ("sla", severity, "escalation"),
                        f"sla.{severity}.escalation names teams {missing} that are not under "
                        "`teams`, so nobody would be paged at that level; define them there "
                        "(with `notify: []` to page nobody on purpose)")
        return self

    def metric_rules(self) -> list[MetricRule]:
        return [r for r in self.rules if isinstance(r, MetricRule)]

    def topic_rules(self) -> list[TopicSpikeRule]:
        return [r for r in self.rules if isinstance(r, TopicSpikeRule)]

    def event_rules(self) -> list[EventRule]:
        return [r for r in self.rules if isinstance(r, EventRule)]

    def by_id(self, rule_id: str) -> AnyRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def load_rules(path: Path | None = None) -> RuleSet:
    """Load and validate a rules file (the shipped default when ``path`` is None).

    Every error is one line ``<file>:<line>: <rule and field>: <what is wrong>``, so an edit
    that does not load points at the line to fix.
    """
    file = ConfigFile.read(path, __package__, "rules.yaml", "alert rules", "VOC_ALERT_RULES_PATH")
    return file.validate(RuleSet, describe=_describe)


def _describe(error: ErrorDetails, file: ConfigFile) -> str:
    """One validation error as ``<file>:<line>: <rule and field>: <message>``."""
    loc = list(error["loc"])
    if len(loc) > 2 and loc[0] == "rules" and isinstance(loc[1], int) and loc[2] in _RULE_TYPES:
        del loc[2]  # the union tag pydantic inserts; the file has `type:` instead
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("type")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Problem):
        loc += cause.loc
    where = file.where(loc)
    message = error_message(error)
    if not loc and error["type"] == "model_type":
        message = ("the file is empty" if error.get("input") is None
                   else "the top level is not a mapping")
        message += "; it needs a `rules:` list (and optionally webhooks, sla, teams)"
    subject = []
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_id = child_node(child_node(child_node(file.tree, "rules"), loc[1]), "id")
        name = rule_id.value if isinstance(rule_id, yaml.ScalarNode) else "?"
        subject.append(f"rule {name!r} (rules[{loc[1]}])")
        loc = loc[2:]
    if loc:
        subject.append("field " + ".".join(str(p) for p in loc))
    return f"{where}: {', '.join(subject) or 'file'}: {message}"


_RULE_TYPES = {get_args(model.model_fields["type"].annotation)[0]
               for model in (ThresholdRule, RateOfChangeRule, AnomalyRule, TopicSpikeRule,
                             EventRule)}

"""The alert rules file: its validation and loading, and the webhooks, SLAs and teams it
defines besides the rules.

Everything an ops team tunes lives in one YAML file (see docs/alerting.md for a complete one).
It is validated on load so a typo is an error naming the file, line, rule and field, never a
rule that silently never fires. Which rule ``type``s exist, and what each one's fields are, is
the table of rule kinds (services/alerting/kinds/); the shared vocabulary (scope, route, score
metrics) is services/alerting/rulebase.py. Both are re-exported here, the one import for code
that reads rules.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union

import yaml
from pydantic import Field, model_validator
from pydantic_core import ErrorDetails

from services.alerting.kinds import is_window_rule, kind_name, models
from services.alerting.kinds.event import EventMatch, EventRule
from services.alerting.kinds.figures import AnomalyRule, MetricRule, RateOfChangeRule, ThresholdRule
from services.alerting.kinds.topic_spike import TopicSpikeRule
from services.alerting.rulebase import (
    Problem,
    Route,
    RuleBase,
    Scope,
    Strict,
    WindowRuleBase,
    score_has_dimension,
    score_metrics,
    score_schema_name,
    topic_metrics,
)
from services.core.config_file import ConfigFile, child_node, error_message
from services.core.events import CaseAction, Severity

__all__ = ["AnomalyRule", "AnyRule", "EventMatch", "EventRule", "MetricRule", "Problem",
           "RateOfChangeRule", "Route", "RuleSet", "Scope", "Sla", "Team", "ThresholdRule",
           "TopicSpikeRule", "Webhook", "load_rules", "score_has_dimension", "score_metrics",
           "score_schema_name", "topic_metrics"]

if TYPE_CHECKING:
    AnyRule = RuleBase
else:
    AnyRule = Annotated[Union[models()], Field(discriminator="type")]  # noqa: UP007
    """One rule of any kind in the table, told apart by its ``type``."""


def _both_statuses() -> list[Literal["firing", "resolved"]]:
    return ["firing", "resolved"]


def _opened_and_escalated() -> list[CaseAction]:
    return ["opened", "escalated"]


class Webhook(Strict):
    """A delivery target; the secret is read from an environment variable, never the file."""

    url: str = Field(pattern=r"^https?://")
    format: Literal["generic", "dingtalk", "wecom", "feishu"] = "generic"
    secret_env: str | None = None
    statuses: list[Literal["firing", "resolved"]] = Field(default_factory=_both_statuses)

    def secret(self) -> str | None:
        """The signing secret; missing variables are caught when the file loads."""
        return os.environ.get(self.secret_env) if self.secret_env else None


class Sla(Strict):
    """Case deadlines of one severity and who it escalates to, level by level."""

    ack_minutes: float = Field(gt=0)
    resolve_hours: float = Field(gt=0)
    escalation: list[str] = Field(default_factory=list, description="teams, level 1, 2, ...")


class Team(Strict):
    """Where a team is paged about its cases: an SLA escalation must reach the team it moves
    the case to, which the rule that fired (``route.notify``) does not know about."""

    notify: list[str] = Field(default_factory=list, description="webhook names")
    case_actions: list[CaseAction] = Field(
        default_factory=_opened_and_escalated,
        description="case transitions that page the case's team (after the transition)")


class RuleSet(Strict):
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

    def window_rules(self) -> list[WindowRuleBase]:
        """Rules measured at window ends (figure, topic-spike, ... kinds)."""
        return [r for r in self.rules if is_window_rule(r)]

    def event_rules(self) -> list[RuleBase]:
        """Rules evaluated on each enriched event."""
        return [r for r in self.rules if not is_window_rule(r)]

    def by_id(self, rule_id: str) -> RuleBase | None:
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


_RULE_TYPES = {kind_name(model) for model in models()}

"""Intent and urgency from cue phrases: cheap, explainable, and editable by a deployment.

Urgency flags page people through single-event alert rules, so each one must point at the words
that raised it; regular expressions from a YAML file give exactly that (a span per match) and let
ops teams add the phrasing their customers use without a model retrain.

Intent is decided from cues first and polarity last. The review-trained sentiment model rates
almost every question negative ("请问什么时候发货？" scores -0.9), so polarity cannot tell a
question from a complaint; grievance cues can: a question that is also angry ("为什么还没发货？")
is a complaint, a plain question is an inquiry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.core.events import Intent, SentimentLabel, UrgencyFlag, UrgencyFlagName


class UrgencySpec(BaseModel):
    """The urgency cue file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    flags: dict[UrgencyFlagName, list[str]] = Field(min_length=1)

    @field_validator("flags")
    @classmethod
    def _patterns_compile(cls, flags: dict[str, list[str]]) -> dict[str, list[str]]:
        for flag, patterns in flags.items():
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{flag}: pattern {pattern!r} is not a valid regex: {exc}") from exc
        return flags


@dataclass(frozen=True)
class UrgencyCues:
    """Compiled urgency patterns, one alternation per flag."""

    patterns: dict[UrgencyFlagName, re.Pattern[str]]

    def find(self, text: str) -> list[UrgencyFlag]:
        """Every flag raised by ``text``; one entry per distinct matched term."""
        found: list[UrgencyFlag] = []
        for flag, pattern in self.patterns.items():
            spans: dict[str, list[tuple[int, int]]] = {}
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    spans.setdefault(match.group(), []).append(match.span())
            found.extend(UrgencyFlag(flag=flag, term=term, evidence=sp) for term, sp in spans.items())
        return found


def load_urgency(path: Path | None = None) -> UrgencyCues:
    """Load and validate an urgency cue file (the shipped default when ``path`` is None)."""
    source = str(path) if path else "the built-in urgency.yaml"
    try:
        raw = (path.read_text(encoding="utf-8") if path
               else resources.files(__package__).joinpath("urgency.yaml").read_text("utf-8"))
        spec = UrgencySpec.model_validate(yaml.safe_load(raw))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"cannot load urgency cues {source}: {exc}") from exc
    return UrgencyCues({flag: re.compile("|".join(f"(?:{p})" for p in patterns))
                        for flag, patterns in spec.flags.items() if patterns})


_SUGGESTION = re.compile(r"建议|希望(你们|贵司|能|可以)|能不能|可不可以|可否|最好(能|是)|要是能|如果能|应该(增加|加|改|提供|优化)")
_GRIEVANCE = re.compile(r"为什么|为啥|凭什么|到底|怎么回事|还没|还不|一直(不|没)|又(坏|错|慢|没)|太(差|慢|贵|烂)|垃圾|骗|坑|投诉|差评|退款|赔偿|失望|生气|气死")
_QUESTION = re.compile(r"[?？]|请问|吗[。！!，,\s]*$|吗[?？]|怎么(办|弄|操作|处理|查|退|改)|如何|什么时候|多久|几天|能否|是否|哪里可以|在哪")


def intent_of(text: str, label: SentimentLabel, urgent: bool) -> Intent:
    """The customer's intent, from cues and the event's overall polarity.

    Urgent feedback and grievances are complaints even when phrased as questions or
    suggestions, because what ops must do with them is the same: handle a complaint.
    """
    if urgent or _GRIEVANCE.search(text):
        return "complaint"
    if _SUGGESTION.search(text):
        return "suggestion"
    if _QUESTION.search(text):
        return "inquiry"
    if label == "negative":
        return "complaint"
    if label == "positive":
        return "praise"
    return "other"

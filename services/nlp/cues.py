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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.core.config_file import ConfigFile
from services.core.events import Intent, SentimentLabel, UrgencyFlag, UrgencyFlagName, trusted
from services.nlp.matching import compile_cue, cue_spans, screen


class UrgencySpec(BaseModel):
    """The urgency cue file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    flags: dict[UrgencyFlagName, list[str]] = Field(min_length=1)


@dataclass(frozen=True)
class UrgencyCues:
    """Compiled urgency patterns, one RE2 alternation per flag (see services/nlp/matching.py)."""

    patterns: dict[UrgencyFlagName, Any]
    _screen: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_screen",
                           screen(list(self.patterns.values())) if self.patterns else None)

    def find(self, text: str) -> list[UrgencyFlag]:
        """Every flag raised by ``text``; one entry per distinct matched term.

        Linear in the text: one RE2 set scan tells which flags occur, then one scan per such
        flag, resumed at most ``MAX_CUE_MATCHES`` times.
        """
        hits = self._screen.Match(text) if self._screen is not None else None
        if not hits:
            return []
        names = list(self.patterns)
        found: list[UrgencyFlag] = []
        for flag in (names[i] for i in sorted(hits)):
            spans: dict[str, list[tuple[int, int]]] = {}
            for term, start, end in cue_spans(self.patterns[flag], text):
                spans.setdefault(term, []).append((start, end))
            found.extend(trusted(UrgencyFlag, flag=flag, term=term, evidence=sp) for term, sp in spans.items())
        return found


def load_urgency(path: Path | None = None) -> UrgencyCues:
    """Load and validate an urgency cue file (the shipped default when ``path`` is None).

    Each pattern must compile with RE2, the engine that matches it; one that does not is
    refused with the file, its line and the reason, and so is one that matches the empty
    string.
    """
    file = ConfigFile.read(path, __package__, "urgency.yaml", "urgency cues", "VOC_URGENCY_PATH")
    spec = file.validate(UrgencySpec)
    for flag, patterns in spec.flags.items():
        for index, pattern in enumerate(patterns):
            try:
                compile_cue(pattern)
            except ValueError as exc:
                raise file.refuse(("flags", flag, index),
                                  f"{flag}: pattern {pattern!r} is {exc}") from None
    return UrgencyCues({flag: compile_cue("|".join(f"(?:{p})" for p in patterns))
                        for flag, patterns in spec.flags.items() if patterns})


_SUGGESTION = re.compile(r"建议|希望(你们|贵司|能|可以|以后|下次)|能不能|可不可以|可否|最好(能|是)|要是能|如果能|"
                         r"就(更)?好了|应该(增加|加|改|提供|优化)")
_GRIEVANCE = re.compile(r"为什么|为啥|凭什么|到底|怎么回事|还没|还不|一直(不|没|报错|打不通)|又(坏|错|慢|没)|"
                        r"太(差|慢|贵|烂|坑)|垃圾|骗|坑|投诉|差评|赔偿|失望|生气|气死|"
                        r"用不了|不能用|报错|打不通|没人(接|理|管)|不理|敷衍|坏了|破了|送错|发错|少发|漏发|"
                        r"乱扣|扣错|过期|迟到|不道歉|凉了")
_QUESTION = re.compile(r"[?？]|请问|想问|问一下|咨询|吗[。！!，,\s]*$|吗[?？]|怎么(办|弄|操作|处理|查|退|改)|如何|"
                       r"什么时候|多久|几天|几点|能否|是否|哪里(可以|能|有|买|查|领|下载|办)|在哪|到哪|哪些|多少钱")
# A message made only of acknowledgements ("好的，谢谢", "嗯嗯嗯"). Each repetition of the
# group starts with a word no other word or separator can also start, and a repeated
# 嗯/哦 is one word per repetition (not 嗯+ inside the repeated group, which let "嗯"*40+"x"
# backtrack through 2^40 splits), so a failing match is given up after one pass.
_ACKNOWLEDGEMENT = re.compile(r"^(?:(?:好的?|嗯|哦|收到了?|知道了|明白了?|了解了?|谢谢[你您]?|麻烦[你您]?了|ok|OK)"
                              r"[，,。！!~～\s]*)+$")
_DETAILS = re.compile(r"^(我的)?(订单号?|单号|手机号?|电话(号码)?|地址|姓名|账号|会员号)(是|为|：|:)")

NON_EVALUATIVE_DAMPING = 0.15
"""Factor applied to the sentiment of inquiries, suggestions and other non-evaluative messages.

The sentiment model is trained on reviews, which have no neutral class: it rates a plain
question, a suggestion or an order number strongly negative ("请问什么时候发货？" -0.93) or an
acknowledgement positive ("收到了" +0.84). Counting those as negative or positive feedback would
distort every score, so their polarity is scaled down to well inside the default neutral band
(0.2); the sign is kept as a weak hint. Complaints and praise keep the model's score."""


def intent_of(text: str, label: SentimentLabel, flags: Iterable[UrgencyFlagName] = ()) -> Intent:
    """The customer's intent, from cues and the event's overall polarity.

    Escalation threats, repeat contacts, safety issues and grievances are complaints even when
    phrased as questions or suggestions, because what ops must do with them is the same: handle
    a complaint. A churn cue alone does not decide: "如何注销账号？" is a question (the flag
    still records the churn risk), "再也不买了" is negative and so a complaint anyway.
    """
    if any(flag != "churn_intent" for flag in flags) or _GRIEVANCE.search(text):
        return "complaint"
    if _SUGGESTION.search(text):
        return "suggestion"
    if _QUESTION.search(text):
        return "inquiry"
    stripped = text.strip()
    if _ACKNOWLEDGEMENT.match(stripped) or _DETAILS.match(stripped):
        return "other"
    if label == "negative":
        return "complaint"
    if label == "positive":
        return "praise"
    return "other"


def is_evaluative(intent: Intent) -> bool:
    """Whether the model's polarity of a message with this intent counts as feedback sentiment."""
    return intent in ("complaint", "praise")

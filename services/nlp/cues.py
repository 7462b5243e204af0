"""Urgency flags from cue phrases: cheap, explainable, and editable by a deployment.

Urgency flags page people through single-event alert rules, so each one must point at the words
that raised it; regular expressions from a YAML file give exactly that (a span per match) and let
ops teams add the phrasing their customers use without a model retrain.

Intent is decided with the event's stance in services/nlp/stance.py; ``intent_of`` is kept
here, where callers have always found it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.core.config_file import ConfigFile
from services.core.events import UrgencyFlag, UrgencyFlagName, trusted
from services.nlp.matching import compile_cue, cue_spans, screen
from services.nlp.stance import intent_of_stance


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


intent_of = intent_of_stance
"""The customer's intent from cues and the event's decided polarity (services/nlp/stance.py)."""

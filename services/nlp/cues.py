"""Urgency flags from cue phrases: cheap, explainable, and editable by a deployment.

Urgency flags page people through single-event alert rules, so each one must point at the words
that raised it; regular expressions from a YAML file give exactly that (a span per match) and let
ops teams add the phrasing their customers use without a model retrain.

Cue lists miss phrasings no one wrote down (issue 16: recall 0.68 on a second author's set),
so the file may name a learned scorer (``scorer:``, a folder relative to the file, trained by
``bench/train_topics.py urgency``): per flag a linear model over char n-grams whose margin, plus
a bonus when a cue of the flag matched, is held against a cut chosen leave-one-author-out for
the highest recall at precision 0.9 (services/nlp/cem_tagger.py). A folder written by
``bench/train_topics.py urgency-clause`` adds a per-clause model's best clause to that margin
(services/nlp/urgency_model.py; not the default: within the noise on LOAO, and it costs CPU the
stage has no room for).
A cue match the scorer does not confirm is dropped; a flag the scorer raises without a cue
points at the characters whose n-grams raised it, inside one clause for the clause model.

Intent is decided with the event's stance in services/nlp/stance.py; ``intent_of`` is kept
here, where callers have always found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.core.config_file import ConfigFile
from services.core.events import UrgencyFlag, UrgencyFlagName, trusted
from services.nlp.aspect_tagger import AspectTagger, GramMap, TextScan
from services.nlp.matching import compile_cue, cue_spans, screen
from services.nlp.stance import intent_of_stance
from services.nlp.urgency_model import UrgencyClauseModel, has_artifact


class UrgencySpec(BaseModel):
    """The urgency cue file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    scorer: str | None = Field(
        default=None, description="Folder of a learned urgency scorer, relative to this file.")
    flags: dict[UrgencyFlagName, list[str]] = Field(min_length=1)


@dataclass(frozen=True)
class UrgencyCues:
    """Compiled urgency patterns, one RE2 alternation per flag (see services/nlp/matching.py)."""

    patterns: dict[UrgencyFlagName, Any]
    scorer: AspectTagger | UrgencyClauseModel | None = field(default=None, compare=False)
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
            for _, start, end in cue_spans(self.patterns[flag], text):
                start, end = _evidence(text, start, end)
                spans.setdefault(text[start:end], []).append((start, end))
            found.extend(trusted(UrgencyFlag, flag=flag, term=term, evidence=sp) for term, sp in spans.items())
        return found

    def gram_map(self, tagger: AspectTagger | None) -> GramMap | None:
        """How the scorer reads its features from ``tagger``'s pass over a batch
        (:meth:`AspectTagger.gram_map`); None when it reads the texts itself (no scorer, the
        clause model, no tagger, or features the tagger's pass does not find)."""
        if tagger is None or not isinstance(self.scorer, AspectTagger):
            return None
        return self.scorer.gram_map(tagger)

    def decide(self, texts: Sequence[str], found: Sequence[list[UrgencyFlag]],
               scan: TextScan | None = None, grams: GramMap | None = None) -> list[list[UrgencyFlag]]:
        """The flags of each text once the scorer has weighed its cue matches ``found``
        (:meth:`find`'s); without a scorer the cue matches themselves. One model call for the
        batch. A kept cue match keeps its own span; a flag raised without a cue gets the span of
        the n-grams that raised it (inside the clause that raised it, for the clause model),
        and is dropped when there is none. With another tagger's pass over ``texts`` (``scan``)
        and :meth:`gram_map` of that tagger (``grams``) the scorer reads its features from the
        pass."""
        if self.scorer is None or not texts:
            return list(found)
        read = None
        if scan is not None and grams is not None and isinstance(self.scorer, AspectTagger):
            read = self.scorer.read_margins(scan, grams)
        result = []
        for text, flags, raised in zip(texts, found, self._raised(self.scorer, texts, found, read), strict=True):
            chosen = [u for u in flags if u.flag in raised]
            for flag in sorted(set(raised) - {u.flag for u in flags}):
                span = raised[flag]
                if span is not None:
                    chosen.append(trusted(UrgencyFlag, flag=flag, term=text[span[0]: span[1]],
                                          evidence=[span]))
            result.append(chosen)
        return result

    @staticmethod
    def _raised(scorer: AspectTagger | UrgencyClauseModel, texts: Sequence[str],
                found: Sequence[list[UrgencyFlag]], read: tuple[np.ndarray, np.ndarray] | None = None
                ) -> list[dict[str, tuple[int, int] | None]]:
        """Per text each flag the scorer raises, with the span it would point at when no cue
        of the flag matched: the clause model gives every raised flag one, the whole-text
        scorer's are looked up only for flags without a cue (None for the others). ``read``
        are the whole-text scorer's margins when they were read from another pass."""
        if isinstance(scorer, UrgencyClauseModel):
            spans = [[(u.flag, a, b) for u in flags for a, b in u.evidence] for flags in found]
            return scorer.decide(texts, spans)
        decided = scorer.combine(texts, [[u.flag for u in flags] for flags in found], read=read)
        return [{flag: None if flag in cued else scorer.evidence_span(text, flag) for flag in kept}
                for text, kept, cued in zip(texts, decided, ({u.flag for u in f} for f in found), strict=True)]


_EDGE = frozenset("，。！？!?,.、；;：:…~～ \t\n\r\u3000")
"""What a cue's evidence neither starts nor ends with: a cue that must see where a word or
number ends (取消这张卡 but not 取消卡号, 12315 but not 123150) matches the character beside
it, since RE2 has no look-around."""


def _evidence(text: str, start: int, end: int) -> tuple[int, int]:
    """The cue match ``[start, end)`` less the punctuation and white space at its ends; the
    match as it is when it is nothing else."""
    low, high = start, end
    while high > low and text[high - 1] in _EDGE:
        high -= 1
    while low < high and text[low] in _EDGE:
        low += 1
    return (low, high) if low < high else (start, end)


def load_urgency(path: Path | None = None, with_scorer: bool = True) -> UrgencyCues:
    """Load and validate an urgency cue file (the shipped default when ``path`` is None).

    Each pattern must compile with RE2, the engine that matches it; one that does not is
    refused with the file, its line and the reason, and so is one that matches the empty
    string. ``with_scorer=False`` leaves the file's scorer out (the cues alone, as the
    scorer's trainer reads them).
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
    scorer = None
    if spec.scorer and with_scorer:
        base = path.parent if path else Path(str(resources.files(__package__)))
        try:
            folder = base / spec.scorer
            scorer = (UrgencyClauseModel.load(folder) if has_artifact(folder)
                      else AspectTagger.load(folder))
        except (OSError, KeyError, ValueError) as exc:
            raise file.refuse(("scorer",), f"scorer {spec.scorer} does not load: {exc}") from exc
        known = scorer.flags if isinstance(scorer, UrgencyClauseModel) else scorer.topics
        unknown = sorted(set(known) - set(spec.flags))
        if unknown:
            raise file.refuse(("scorer",), f"scorer {spec.scorer} knows flags {unknown} that "
                              "this file lists no cues for; retrain it with "
                              "`python bench/train_topics.py urgency`")
    return UrgencyCues({flag: compile_cue("|".join(f"(?:{p})" for p in patterns))
                        for flag, patterns in spec.flags.items() if patterns}, scorer)


intent_of = intent_of_stance
"""The customer's intent from cues and the event's decided polarity (services/nlp/stance.py)."""

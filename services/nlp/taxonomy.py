"""Topic tagging from an editable YAML taxonomy, with evidence spans.

Matching is one compiled alternation over every keyword (longest first), so a text is scanned
once however many topics the taxonomy has, and overlapping keywords resolve to the longest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.core.events import Span


class TopicSpec(BaseModel):
    """One topic of the taxonomy file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1)
    synonyms: list[str] = Field(default_factory=list)
    parent: str | None = None
    stage: str | None = Field(default=None, pattern="^(售前|售中|售后)$")


@dataclass(frozen=True)
class TopicMatch:
    """A topic found in a text, before its own sentiment is known."""

    id: str
    name: str
    evidence: list[Span]


class TaxonomySpec(BaseModel):
    """The taxonomy file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    topics: list[TopicSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TaxonomySpec:
        ids = [t.id for t in self.topics]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate topic ids: {duplicates}")
        unknown = sorted({t.parent for t in self.topics if t.parent and t.parent not in ids})
        if unknown:
            raise ValueError(f"parent ids that are not topics: {unknown}")
        return self


@dataclass
class Taxonomy:
    """A loaded taxonomy that tags texts."""

    spec: TaxonomySpec
    _pattern: re.Pattern[str] = field(init=False)
    _topics_of: dict[str, list[TopicSpec]] = field(init=False)

    def __post_init__(self) -> None:
        by_id = {t.id: t for t in self.spec.topics}
        self._topics_of = {}
        for topic in self.spec.topics:
            chain = [topic]
            while chain[-1].parent:
                chain.append(by_id[chain[-1].parent])
            for phrase in {*topic.keywords, *topic.synonyms}:
                self._topics_of.setdefault(phrase, []).extend(chain)
        phrases = sorted(self._topics_of, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(p) for p in phrases))

    def tag(self, text: str) -> list[TopicMatch]:
        """Topics found in ``text``, each with its [start, end) character spans."""
        spans: dict[str, list[tuple[int, int]]] = {}
        names: dict[str, str] = {}
        for match in self._pattern.finditer(text):
            for topic in self._topics_of[match.group()]:
                spans.setdefault(topic.id, []).append(match.span())
                names[topic.id] = topic.name
        return [TopicMatch(id=tid, name=names[tid], evidence=sp) for tid, sp in spans.items()]


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy file (the shipped default when ``path`` is None)."""
    source = str(path) if path else "the built-in taxonomy.yaml"
    try:
        raw = (path.read_text(encoding="utf-8") if path
               else resources.files(__package__).joinpath("taxonomy.yaml").read_text("utf-8"))
        return Taxonomy(TaxonomySpec.model_validate(yaml.safe_load(raw)))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"cannot load taxonomy {source}: {exc}") from exc

"""Expectation targets and factor importance per touchpoint, from YAML.

Deployments state what they expect of each touchpoint; scores store the gap to it, and key
experiences rank factors by importance x gap. Kept in a file so ops change targets without a
release; validated on load so a typo fails at start, naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.core.cem_metrics import GAP_METRICS
from services.core.config_file import ConfigFile

GapMetric = Literal[GAP_METRICS]  # type: ignore[valid-type]
"""The metrics a target may be set for (``Ratio.targetable`` in the catalogue)."""
Scale10 = Annotated[float, Field(ge=0, le=10)]


class Entry(BaseModel):
    """One ``defaults`` or touchpoint block of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[GapMetric, float] = Field(default_factory=dict)
    factor_expectation: Scale10 | None = None
    factor_expectations: dict[str, Scale10] = Field(default_factory=dict)
    importance: dict[str, Scale10] = Field(default_factory=dict)


class Expectations(BaseModel):
    """The whole file; lookups merge a touchpoint's entry over the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: Entry = Field(default_factory=Entry)
    touchpoints: dict[str, Entry] = Field(default_factory=dict)

    def _entry(self, touchpoint: str) -> Entry:
        return self.touchpoints.get(touchpoint, Entry())

    def targets(self, touchpoint: str) -> dict[str, float]:
        """metric -> target for the touchpoint, in ``GAP_METRICS`` order."""
        merged = {**self.defaults.targets, **self._entry(touchpoint).targets}
        return {m: merged[m] for m in GAP_METRICS if m in merged}

    def factor_expectation(self, touchpoint: str, topic: str) -> float | None:
        """Expected experience (0-10) of a topic at a touchpoint; None when none is set."""
        own, base = self._entry(touchpoint), self.defaults
        for value in (own.factor_expectations.get(topic), base.factor_expectations.get(topic),
                      own.factor_expectation, base.factor_expectation):
            if value is not None:
                return value
        return None

    def importance(self, touchpoint: str, topic: str) -> float | None:
        """Configured importance (0-10), or None so the caller derives it from data."""
        own = self._entry(touchpoint).importance.get(topic)
        return own if own is not None else self.defaults.importance.get(topic)


def load_expectations(path: Path | None = None) -> Expectations:
    """Load and validate an expectations file (the shipped default when ``path`` is None)."""
    file = ConfigFile.read(path, __package__, "expectations.yaml", "expectations",
                           "VOC_EXPECTATIONS_PATH")
    return file.validate(Expectations, file.data or {})

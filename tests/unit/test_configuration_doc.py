"""docs/configuration.md is what ``make docs`` writes from the settings' descriptions.

The settings object is the one declaration of every setting; its reference page is generated
(services/core/settings_docs.py), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from services.core.settings import Settings
from services.core.settings_docs import MissingDescription, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_equals_the_generated_one() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/configuration.md is stale: run `make docs` and commit it"


def test_every_setting_has_a_row_with_its_default_and_description() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in render().splitlines()
            if line.startswith("| `VOC_")}
    assert set(rows) == {f"VOC_{name.upper()}" for name in Settings.model_fields}
    assert "| `VOC_DATA_DIR` | `.voc` | path |" in rows["VOC_DATA_DIR"]
    assert "| `VOC_OPS_PORT` | unset | integer ≥ 0, ≤ 65 535 |" in rows["VOC_OPS_PORT"]
    assert "| `VOC_SENTIMENT_BACKEND` | `default` | `default`, `snownlp` |" in \
        rows["VOC_SENTIMENT_BACKEND"]
    assert "[docs/operations.md#failure-policy](operations.md#failure-policy)" in \
        rows["VOC_CONSUMER_MAX_RETRIES"]


def test_a_setting_without_a_description_is_refused() -> None:
    class Undocumented(BaseSettings):
        documented: int = Field(default=1, description="Says what it does.")
        bare: int = 2

    with pytest.raises(MissingDescription, match="VOC_BARE"):
        render(Undocumented)

"""Docs and deployment files must match the code (they cannot run here without Docker)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")[:8]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_readme_documents_every_setting_and_no_stale_ones() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(VOC_[A-Z_]+)`", readme)) - {"VOC_TEST_CLICKHOUSE"}
    assert documented == {f"VOC_{name.upper()}" for name in Settings.model_fields}


def test_compose_uses_only_real_settings_and_pinned_images() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    known = {f"VOC_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for variable in service.get("environment", {}):
            if variable.startswith("VOC_"):
                assert variable in known, f"{name}: {variable} is not a setting"
    assert {"ingest", "nlp", "scoring", "alerting"} <= set(compose["services"])
    assert [c for c in (compose["services"][s].get("command") for s in
                        ("ingest", "nlp", "scoring", "alerting"))] == \
        [["ingest"], ["nlp"], ["scoring"], ["alerting"]]

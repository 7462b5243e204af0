"""Every YAML file a deployment edits is read the one way: each problem names the file and
the line to fix, under a heading naming the setting that points at the file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.alerting.rules import load_rules
from services.core.config_file import ConfigError, Watched
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import load_taxonomy
from services.scoring.expectations import load_expectations

LOADERS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "taxonomy": (load_taxonomy, "VOC_TAXONOMY_PATH"),
    "urgency": (load_urgency, "VOC_URGENCY_PATH"),
    "expectations": (load_expectations, "VOC_EXPECTATIONS_PATH"),
    "rules": (load_rules, "VOC_ALERT_RULES_PATH"),
}

CASES = [
    ("taxonomy", "topics:\n  - id: a\n    name: A\n    keywords: [x]\n    stage: 其他\n",
     ":5: field topics.0.stage: String should match pattern"),
    ("taxonomy", "topics:\n  - id: a\n    name: A\n    keywords: [x]\n  - id: a\n"
     "    name: B\n    keywords: [y]\n", ":1: file: duplicate topic ids: ['a']"),
    ("taxonomy", "tagger: no-such-dir\ntopics:\n  - {id: a, name: A, keywords: [x]}\n",
     ":1: tagger no-such-dir does not load"),
    ("urgency", "version: 1\nflags:\n  safety: ['电池鼓包']\n  panic: ['x']\n",
     ":4: field flags.panic.[key]: Input should be"),
    ("urgency", "flags:\n  safety:\n    - '电池鼓包'\n    - '(?=x)y'\n",
     ":4: safety: pattern '(?=x)y' is not a valid regex"),
    ("expectations", "defaults:\n  targets:\n    nps: 30\ntouchpoints:\n  delivery:\n"
     "    importance: {logistics: 11}\n", ":6: field touchpoints.delivery.importance.logistics: "
     "Input should be less than or equal to 10 (got 11)"),
    ("rules", "rules:\n  - {id: a, type: event, match: {segments: [VIP]}, unknown_option: 1}\n",
     ":2: rule 'a' (rules[0]), field unknown_option: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("kind", "body", "expected"), CASES,
                         ids=[f"{kind}-{i}" for i, (kind, _, _) in enumerate(CASES)])
def test_validation_errors_name_the_file_and_line(tmp_path: Path, kind: str, body: str,
                                                  expected: str) -> None:
    load, setting = LOADERS[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith("cannot load ") and f"from {path} ({setting}):\n" in message
    assert f"  {path}{expected}" in message, message


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_broken_yaml_and_missing_files_name_the_file(tmp_path: Path, kind: str) -> None:
    load, setting = LOADERS[kind]
    path = tmp_path / f"{kind}.yaml"
    path.write_text("first: 1\nsecond: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:3:1: not valid YAML"):
        load(path)
    with pytest.raises(ConfigError, match=rf"from {tmp_path / 'gone.yaml'} \({setting}\): "):
        load(tmp_path / "gone.yaml")


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_the_shipped_files_load(kind: str) -> None:
    load, _ = LOADERS[kind]
    assert load(None) is not None


def test_a_watched_file_changes_once_per_edit_and_never_without_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    watched = Watched(path)
    assert not watched.changed()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert watched.changed() and not watched.changed()
    path.unlink()
    assert not watched.changed(), "an unreadable file keeps what the stage has"
    assert not Watched(None).changed()

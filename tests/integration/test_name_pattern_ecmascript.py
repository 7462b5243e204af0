"""The name pattern of the schema files, run by Node's ECMA-262 regex engine against the names
that tests/unit/test_events_schema.py checks in Python. It starts a Node process, so it is not
a unit test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from services.core.events import NAME_PATTERN
from tests.unit.test_events_schema import NAME_CASES


def test_the_name_pattern_means_the_same_in_ecmascript() -> None:
    """JSON Schema patterns are ECMA-262: a consumer in another language (or the dashboard)
    must accept and refuse exactly what Python does."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    names = [n for n, _ in NAME_CASES] + ["a\nb", "a  b", "配 送", "\u3400", "\u4dbf", "\u9fff"]
    script = ("const p = new RegExp(process.argv[1]);"
              "console.log(JSON.stringify(JSON.parse(process.argv[2]).map(s => p.test(s))));")
    out = subprocess.run([node, "-e", script, NAME_PATTERN, json.dumps(names)],
                         capture_output=True, text=True, check=True).stdout
    python = [re.fullmatch(NAME_PATTERN.removeprefix("^").removesuffix("$"), n) is not None
              for n in names]
    assert json.loads(out) == python

"""The wire formats (JSON Schema per topic payload) and ClickHouse DDL, as data files.

This package is the single source of truth: services validate against these files and the
store applies these migrations; nothing else spells the formats out. It is importable so the
files ship inside the installed package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@cache
def topic_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one payload version, e.g. ``feedback.raw.v2``."""
    path = resources.files(__name__).joinpath("topics", f"{name}.json")
    if not path.is_file():
        known = ", ".join(topic_schema_names())
        raise KeyError(f"no schema {name!r} in schemas/topics (known: {known})")
    return json.loads(path.read_text(encoding="utf-8"))


def topic_schema_names() -> list[str]:
    """Every payload version defined in ``schemas/topics``."""
    folder = resources.files(__name__).joinpath("topics")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


@dataclass(frozen=True)
class Migration:
    """One ordered DDL step; ``version`` comes from the file name's 4-digit prefix."""

    version: int
    name: str
    statements: tuple[str, ...]


def migrations() -> list[Migration]:
    """All ClickHouse migrations in the order they must be applied."""
    folder = resources.files(__name__).joinpath("clickhouse")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if not match:
            continue
        found.append(
            Migration(int(match[1]), match[2], _statements(entry.read_text(encoding="utf-8")))
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in schemas/clickhouse: {versions}")
    return found


def _statements(sql: str) -> tuple[str, ...]:
    """Split a migration file into statements; ``--`` comments are dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())

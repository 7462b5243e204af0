"""The metric catalogue (services/core/cem_metrics.py) and what derives from it agree.

Pure: the wire schema file, the Score model, the migrations and the derivations are compared
with the catalogue without a store; the scoring tests check the figures on real stores.
"""

from __future__ import annotations

import json
import re

import pytest

import schemas
from services.core import cem_metrics
from services.core.cem_metrics import (
    CATALOGUE,
    COUNTS,
    RATIOS,
    SCORE_METRICS,
    Count,
    Ratio,
    derive,
    describe,
    score_schema,
)
from services.core.events import Score


def test_committed_score_schema_is_generated_from_the_catalogue() -> None:
    committed = cem_metrics.SCORE_SCHEMA.read_text(encoding="utf-8")
    assert cem_metrics.render_schema(score_schema(json.loads(committed))) == committed, (
        "run `make schemas` (python -m services.core.cem_metrics) and commit the file")
    assert cem_metrics.main(["--check"]) == 0


def test_schema_and_model_carry_every_wire_metric() -> None:
    schema = schemas.topic_schema("score.v2")
    for metric, required in cem_metrics.wire_fields():
        assert metric.name in schema["properties"] and metric.name in Score.model_fields
        assert (metric.name in schema["required"]) is required, metric.name
        assert Score.model_fields[metric.name].is_required() is required, metric.name
    not_on_wire = {c.name for c in COUNTS if not c.wire}
    assert not_on_wire.isdisjoint(schema["properties"]) and not_on_wire.isdisjoint(
        Score.model_fields)
    enum = schema["properties"]["expectations"]["items"]["properties"]["metric"]["enum"]
    assert enum == [r.name for r in RATIOS if r.targetable]


def test_entries_are_well_formed() -> None:
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names)), "metric names are unique"
    counts = {c.name for c in COUNTS}
    for metric in CATALOGUE:
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,62}", metric.name), metric.name
        assert metric.description, metric.name
    for ratio in RATIOS:
        assert set(ratio.inputs) <= counts, f"{ratio.name} derives from counts only"
        assert ratio.minimum < ratio.maximum and ratio.label.zh and ratio.label.en
    for count in COUNTS:
        assert re.fullmatch(r"(count|countIf|sum|toFloat64)\(.*\)", count.sql), count.name


def _stored_columns(table: str) -> set[str]:
    """Column names ``table`` has after every migration (CREATE TABLE, then ADD COLUMN)."""
    columns: set[str] = set()
    for migration in schemas.migrations():
        for statement in migration.statements:
            head = statement.split("(", 1)[0].split()
            if head[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"] and head[5] == table:
                body = statement.split("(", 1)[1].split("\n)", 1)[0]
                columns |= {line.split()[0] for line in body.splitlines() if line.strip()}
            elif statement.split()[:4] == ["ALTER", "TABLE", table, "ADD"]:
                words = statement.split()
                columns.add(words[7] if words[5:7] == ["IF", "NOT"] else words[5])
    return columns


@pytest.mark.parametrize("table", ["cem_scores"])
def test_every_count_and_ratio_has_a_column(table: str) -> None:
    missing = {m.name for m in CATALOGUE} - _stored_columns(table)
    assert not missing, (f"add a migration in schemas/clickhouse/ with a column for "
                         f"{sorted(missing)} in {table}")
    topic = _stored_columns("topic_scores")
    assert {c.name for c in COUNTS if c.per_topic} <= topic


def test_derivation_follows_the_formula() -> None:
    counts = {c.name: 0 for c in COUNTS} | {
        "volume": 8, "positive_count": 5, "negative_count": 2, "sentiment_sum": 12.0,
        "nps_responses": 4, "nps_promoters": 1, "nps_detractors": 2}
    by_name = cem_metrics.BY_NAME
    assert derive(by_name["net_sentiment"], counts) == 37.5  # type: ignore[arg-type]
    assert derive(by_name["nps"], counts) == -25.0  # type: ignore[arg-type]
    assert derive(by_name["csat"], counts) is None, "no responses: null"  # type: ignore[arg-type]
    assert derive(by_name["complaint_rate"], counts) == 0.0  # type: ignore[arg-type]
    assert derive(by_name["mean_sentiment"], counts) == 1.0, "clamped"  # type: ignore[arg-type]
    empty = {**counts, "volume": 0}
    assert derive(by_name["negative_share"], empty) == 0.0  # type: ignore[arg-type]


def test_description_serves_labels_and_formulas() -> None:
    described = {d["name"]: d for d in describe()}
    assert list(described) == list(SCORE_METRICS)
    for name, entry in described.items():
        metric = cem_metrics.BY_NAME[name]
        assert entry["label"]["zh"] and entry["label"]["en"]
        if isinstance(metric, Ratio):
            assert entry["formula"]["denominator"] == metric.denominator
        else:
            assert isinstance(metric, Count) and entry["formula"] is None
    json.dumps(described)

"""The provisioned Grafana dashboard must query only tables and columns that exist.

Grafana cannot run here, so the dashboard is checked two ways: statically (data source uid,
provisioning paths, layout) and by running every panel query, with Grafana's macros expanded
the way the ClickHouse plugin expands them, against the migrated schema in chdb, which
rejects any unknown table, column or function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "tingjian.json").read_text(encoding="utf-8"))


def queries() -> Iterator[tuple[str, dict]]:
    """(where, query target) of every panel, annotation and variable."""
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target
    for annotation in DASHBOARD["annotations"]["list"]:
        yield f"annotation {annotation['name']}", annotation["target"]
    for variable in DASHBOARD["templating"]["list"]:
        yield f"variable {variable['name']}", {"rawSql": variable["query"],
                                               "datasource": variable["datasource"]}


def expand(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's macros and variables as the ClickHouse plugin renders them."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 lambda m: f"{m[1]} >= toDateTime({int(start.timestamp())}) AND "
                           f"{m[1]} <= toDateTime({int(end.timestamp())})", sql)
    sql = sql.replace("${touchpoint:singlequote}", "'delivery','hotline'")
    assert "$" not in sql, f"unexpanded macro or variable in {sql!r}"
    return sql


def test_every_query_uses_the_provisioned_clickhouse_source() -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "tingjian.yaml").read_text())["datasources"]
    clickhouse = next(d for d in datasources if d["type"] == "grafana-clickhouse-datasource")
    seen = 0
    for where, target in queries():
        assert target["datasource"] == {"type": clickhouse["type"], "uid": clickhouse["uid"]}, where
        seen += 1
    assert seen >= 8
    panel_ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(set(panel_ids)) == len(panel_ids)


def test_panels_cover_the_core_views() -> None:
    sql = {p["title"]: " ".join(t["rawSql"] for t in p["targets"]) for p in DASHBOARD["panels"]}
    needed = {"mean_sentiment": "cem_scores", "negative_share": "cem_scores",
              "volume": "cem_scores",
              "nps": "cem_scores", "csat": "cem_scores", "fired_at": "alerts",
              "resolve_due_at": "case_events"}
    for column, table in needed.items():
        assert any(column in q and f"voc.{table}" in q for q in sql.values()), (column, table)


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert pos["x"] + pos["w"] <= 24 and not area & cells, panel["title"]
        cells |= area


def test_provisioning_points_grafana_at_the_dashboard_folder() -> None:
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "tingjian.yaml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == providers[0]["options"]["path"]

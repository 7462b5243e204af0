"""The cluster schema is derived from the single-node migrations and is valid ClickHouse SQL."""

from __future__ import annotations

import re

import chdb
import pytest
from click.testing import CliRunner

import schemas
from services.cli import main
from services.core.cluster_ddl import ClusterDDLError, _rewrite, cluster_ddl


def parses(sql: str) -> bool:
    """ClickHouse's own parser (chdb's formatQuery) accepts the statement."""
    escaped = sql.replace("\\", "\\\\").replace("'", "\\'")
    return bool(chdb.query(f"SELECT formatQuery('{escaped}')", "CSV").bytes())


def test_every_statement_is_valid_clickhouse_sql() -> None:
    for statement in cluster_ddl("prod"):
        assert parses(statement), statement


def test_each_table_is_replicated_per_shard_and_distributed_by_its_sorting_key() -> None:
    statements = cluster_ddl("prod", "voc")
    tables = [m[1] for s in schemas.migrations() for st in s.statements
              if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", st))]
    assert tables
    for table in tables:
        [local] = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS voc.{table}_local ")]
        assert "ON CLUSTER prod" in local
        assert re.search(r"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/\{shard\}/voc/"
                         rf"{table}_local', '\{{replica\}}'", local)
        [distributed] = [s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS voc.{table} ")]
        order = re.search(r"ORDER BY \(?([^)\n]+)\)?", local)[1]
        assert f"Distributed(prod, voc, {table}_local, cityHash64({order}))" in distributed


def test_added_columns_reach_local_and_distributed_tables() -> None:
    statements = cluster_ddl("prod")
    alters = [s for s in statements if s.startswith("ALTER TABLE")]
    single = [st for m in schemas.migrations() for st in m.statements if st.startswith("ALTER TABLE")]
    assert len(alters) == 2 * len(single)
    assert all(" ON CLUSTER prod ADD COLUMN " in s for s in alters)


def test_unknown_statements_and_bad_names_are_refused() -> None:
    with pytest.raises(ClusterDDLError, match="extend"):
        _rewrite("CREATE VIEW v AS SELECT 1", "prod", "voc", "0099_view")
    with pytest.raises(ClusterDDLError, match="identifiers"):
        cluster_ddl("prod; DROP TABLE x")


def test_cli_prints_the_ddl() -> None:
    result = CliRunner().invoke(main, ["db", "cluster-ddl", "--cluster", "prod"])
    assert result.exit_code == 0, result.output
    assert "ENGINE = Distributed(prod, voc, feedback_local" in result.output

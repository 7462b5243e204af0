"""The cluster schema is derived from the single-node migrations and is valid ClickHouse SQL."""

from __future__ import annotations

import re

import chdb
import pytest
from click.testing import CliRunner

import schemas
from services.cli import main
from services.core.cluster_ddl import (
    ClusterDDLError,
    _migration,
    cluster_ddl,
    cluster_migrations,
)


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
        distributed = [s for s in statements
                       if s.startswith(f"CREATE TABLE IF NOT EXISTS voc.{table} ")]
        order = re.search(r"ORDER BY \(?([^)\n]+)\)?", local)[1]
        assert distributed
        for created in distributed:
            assert f"Distributed(prod, voc, {table}_local, cityHash64({order}))" in created


def test_added_columns_reach_the_local_table_and_the_distributed_table_is_rebuilt() -> None:
    """Every added column is in one ALTER ... ON CLUSTER of the migration's local table, and the
    Distributed table is then dropped and created again over it (18.16 refuses ALTER ON
    CLUSTER of a table that is not replicated when shards replicate internally)."""
    for migration, statements in cluster_migrations("prod", "voc"):
        added: dict[str, list[str]] = {}
        for statement in migration.statements:
            if match := re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement):
                added.setdefault(match[1], []).append(match[2])
        for table, columns in added.items():
            [alter] = [s for s in statements
                       if s.startswith(f"ALTER TABLE voc.{table}_local ON CLUSTER prod ")]
            assert re.findall(r"ADD COLUMN (\w+)", alter) == columns
            assert not [s for s in statements if s.startswith(f"ALTER TABLE voc.{table} ")]
            rebuilt = statements[statements.index(alter) + 1:]
            assert rebuilt[0] == f"DROP TABLE IF EXISTS voc.{table} ON CLUSTER prod"
            assert rebuilt[1].startswith(f"CREATE TABLE IF NOT EXISTS voc.{table} ON CLUSTER prod "
                                         f"AS voc.{table}_local\nENGINE = Distributed(prod, ")


def test_an_alter_of_a_table_no_migration_created_is_refused() -> None:
    orphan = schemas.Migration(99, "orphan", ("ALTER TABLE nowhere ADD COLUMN x String",))
    with pytest.raises(ClusterDDLError, match="no earlier migration creates"):
        _migration(orphan, "prod", "voc", {})


def test_unknown_statements_and_bad_names_are_refused() -> None:
    view = schemas.Migration(99, "view", ("CREATE VIEW v AS SELECT 1",))
    with pytest.raises(ClusterDDLError, match="extend"):
        _migration(view, "prod", "voc", {})
    with pytest.raises(ClusterDDLError, match="identifiers"):
        cluster_ddl("prod; DROP TABLE x")


def test_cli_prints_the_ddl() -> None:
    result = CliRunner().invoke(main, ["db", "cluster-ddl", "--cluster", "prod"])
    assert result.exit_code == 0, result.output
    assert "ENGINE = Distributed(prod, voc, feedback_local" in result.output

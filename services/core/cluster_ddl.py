"""The ClickHouse cluster variant of the migrations, generated from ``schemas/clickhouse``.

Deriving it rather than keeping a second set of files means the single-node and the cluster
schema cannot drift. Each table becomes a replicated ``<table>_local`` on every shard plus a
``Distributed`` table under the original name, so the services read and write the same names
on one server or a cluster. Rows are sharded by a hash of the table's sorting key: a
re-delivered event or a recomputed window has the same sorting key, lands on the same shard and
is collapsed there by the ReplacingMergeTree, which only deduplicates within one shard.
"""

from __future__ import annotations

import re

import schemas

_CREATE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?\s*(?P<rest>.*)$",
    re.DOTALL,
)
_ORDER_BY = re.compile(r"ORDER BY\s+(\(.*?\)|\w+)", re.DOTALL)
_ALTER = re.compile(r"^ALTER TABLE (?P<name>\w+)\s+(?P<action>ADD COLUMN .*)$", re.DOTALL)
_INSERT = re.compile(r"^INSERT INTO \w+\b", re.DOTALL)
_TABLE_REF = re.compile(r"\b(INTO|FROM) (\w+)\b")


class ClusterDDLError(ValueError):
    """A migration statement the generator does not know how to distribute."""


def cluster_ddl(cluster: str, database: str = "voc") -> list[str]:
    """Every migration statement rewritten for ``cluster``, in migration order."""
    if not re.fullmatch(r"\w+", cluster) or not re.fullmatch(r"\w+", database):
        raise ClusterDDLError(f"cluster {cluster!r} and database {database!r} must be identifiers")
    statements = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"]
    for migration in schemas.migrations():
        for statement in migration.statements:
            statements += _rewrite(statement, cluster, database, migration.name)
    return statements


def _rewrite(statement: str, cluster: str, database: str, migration: str) -> list[str]:
    if match := _CREATE.match(statement):
        name, local = match["name"], f"{match['name']}_local"
        args = [f"'/clickhouse/tables/{{shard}}/{database}/{local}'", "'{replica}'"]
        if match["args"]:
            args.append(match["args"].strip())
        order = _ORDER_BY.search(match["rest"])
        if order is None:
            raise ClusterDDLError(f"{migration}: table {name} has no ORDER BY to shard by")
        key = order[1].strip("()")
        return [
            f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n"
            f"{match['columns']}\nENGINE = Replicated{match['engine']}({', '.join(args)})\n"
            f"{match['rest'].strip()}",
            f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} "
            f"AS {database}.{local}\n"
            f"ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({key}))",
        ]
    if match := _ALTER.match(statement):
        return [f"ALTER TABLE {database}.{table} ON CLUSTER {cluster} {match['action']}"
                for table in (f"{match['name']}_local", match["name"])]
    if _INSERT.match(statement):
        # A backfill: run once, through the Distributed tables, which route rows by shard key.
        return [_TABLE_REF.sub(lambda m: f"{m[1]} {database}.{m[2]}", statement)]
    raise ClusterDDLError(
        f"{migration}: cannot derive cluster DDL for {statement[:80]!r}; extend "
        "services/core/cluster_ddl.py for this kind of statement")

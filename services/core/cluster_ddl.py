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
_IDENTIFIER = re.compile(r"\w+")
_INSERT = re.compile(r"^INSERT INTO \w+\b", re.DOTALL)
_TABLE_REF = re.compile(r"\b(INTO|FROM) (\w+)\b")


class ClusterDDLError(ValueError):
    """A migration statement the generator does not know how to distribute."""


def cluster_ddl(cluster: str, database: str = "voc") -> list[str]:
    """Every migration statement rewritten for ``cluster``, in migration order."""
    return [create_database(cluster, database),
            *(statement for _, statements in cluster_migrations(cluster, database)
              for statement in statements)]


def create_database(cluster: str, database: str) -> str:
    """The statement creating ``database`` on every server of ``cluster``."""
    _check_names(cluster, database)
    return f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}"


def cluster_migrations(cluster: str, database: str = "voc",
                       ) -> list[tuple[schemas.Migration, list[str]]]:
    """Each migration with its statements for ``cluster``, in migration order."""
    _check_names(cluster, database)
    keys: dict[str, str] = {}
    return [(migration, _migration(migration, cluster, database, keys))
            for migration in schemas.migrations()]


def _check_names(cluster: str, database: str) -> None:
    if not _IDENTIFIER.fullmatch(cluster) or not _IDENTIFIER.fullmatch(database):
        raise ClusterDDLError(f"cluster {cluster!r} and database {database!r} must be identifiers")


def _migration(migration: schemas.Migration, cluster: str, database: str,
               keys: dict[str, str]) -> list[str]:
    """One migration's cluster statements; ``keys`` maps each table created so far to its
    sharding key and gains the tables this migration creates.

    A migration's added columns go to the replicated local table in one ``ALTER ... ON
    CLUSTER`` per table (each replicated ALTER costs a round of ZooKeeper writes and waits for
    every replica, so one per column made a fresh schema take half a minute). ClickHouse 18.16
    refuses ``ALTER ... ON CLUSTER`` on a table that is not replicated when the cluster's
    shards use internal replication, so the Distributed table, which holds no rows (inserts
    are synchronous), is dropped and created again over the altered local table, once per
    migration.
    """
    statements: list[str] = []
    added: dict[str, list[str]] = {}
    for statement in migration.statements:
        if match := _CREATE.match(statement):
            name, local = match["name"], f"{match['name']}_local"
            args = [f"'/clickhouse/tables/{{shard}}/{database}/{local}'", "'{replica}'"]
            if match["args"]:
                args.append(match["args"].strip())
            order = _ORDER_BY.search(match["rest"])
            if order is None:
                raise ClusterDDLError(f"{migration.name}: table {name} has no ORDER BY to shard by")
            keys[name] = order[1].strip("()")
            statements += [
                f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster}\n"
                f"{match['columns']}\nENGINE = Replicated{match['engine']}({', '.join(args)})\n"
                f"{match['rest'].strip()}",
                _distributed(name, keys[name], cluster, database),
            ]
        elif match := _ALTER.match(statement):
            name = match["name"]
            if name not in keys:
                raise ClusterDDLError(f"{migration.name}: ALTER of {name}, which no earlier "
                                      "migration creates")
            added.setdefault(name, []).append(match["action"].strip())
        elif _INSERT.match(statement):
            # A backfill: run once, through the Distributed tables, which route rows by shard key.
            statements.append(_TABLE_REF.sub(lambda m: f"{m[1]} {database}.{m[2]}", statement))
        else:
            raise ClusterDDLError(
                f"{migration.name}: cannot derive cluster DDL for {statement[:80]!r}; extend "
                "services/core/cluster_ddl.py for this kind of statement")
    for name, actions in added.items():
        statements += [f"ALTER TABLE {database}.{name}_local ON CLUSTER {cluster} "
                       + ", ".join(actions),
                       f"DROP TABLE IF EXISTS {database}.{name} ON CLUSTER {cluster}",
                       _distributed(name, keys[name], cluster, database)]
    return statements


def _distributed(name: str, key: str, cluster: str, database: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} "
            f"AS {database}.{name}_local\n"
            f"ENGINE = Distributed({cluster}, {database}, {name}_local, cityHash64({key}))")

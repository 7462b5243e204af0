"""Apply the ordered DDL in ``schemas/clickhouse`` to a store, once each.

Applied versions are recorded in ``schema_migrations``; every statement is also idempotent
(``IF NOT EXISTS``, or for ``ALTER TABLE t ADD COLUMN c``, skipped when ``c`` exists, since 18.16
has no ``ADD COLUMN IF NOT EXISTS``), so a crash between a statement and its record is harmless.

On a cluster (``VOC_CLICKHOUSE_CLUSTER``) the statements are the generated cluster DDL
(services/core/cluster_ddl.py), applied ``ON CLUSTER`` through one server, except that added
columns go through one replica of each shard (:func:`_alter_each_shard` says why), and the
ledger is itself replicated to every server, so each server answers "which migrations are
applied" the same. Services do not migrate a cluster themselves: seven processes racing the same
``ON CLUSTER`` ALTERs would fail each other, so ``voc db migrate`` runs once per release and
services check that the schema is current (:func:`require_current`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import structlog

import schemas
from services.core.cluster_ddl import cluster_migrations, create_database
from services.core.events import utc_now
from services.core.store import Store, StoreError, StoreUrl
from services.core.store_server import ServerStore

log = structlog.get_logger(__name__)

_ADD_COLUMN = re.compile(r"^ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)\s", re.IGNORECASE)

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


_CLUSTER_LEDGER = """
CREATE TABLE IF NOT EXISTS {database}.schema_migrations ON CLUSTER {cluster}
(
    version UInt32,
    name String,
    applied_at DateTime('UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{{replica}}')
ORDER BY version
"""

_CLUSTER_ALTER = re.compile(r"^ALTER TABLE (\w+)\.(\w+) ON CLUSTER (\w+) (ADD COLUMN .*)$",
                            re.DOTALL)
_ADDED = re.compile(r"ADD COLUMN (\w+) ")


class SchemaNotCurrent(RuntimeError):
    """The cluster's schema lacks migrations this release needs."""


async def migrate(store: Store, cluster: str = "") -> list[int]:
    """Bring the store's database up to the newest migration; returns versions applied now.

    With ``cluster``, through the cluster DDL on every server of that cluster.
    """
    if cluster:
        return await _migrate_cluster(store, cluster)
    await store.execute(_LEDGER)
    done = {row["version"] for row in await store.query("SELECT version FROM schema_migrations")}
    applied = []
    for migration in schemas.migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            if not await _already_applied(store, statement):
                await store.execute(statement)
        await store.insert(
            "schema_migrations",
            [{"version": migration.version, "name": migration.name, "applied_at": utc_now()}],
        )
        log.info("migration applied", version=migration.version, name=migration.name,
                 database=store.database, backend=store.backend)
        applied.append(migration.version)
    return applied


async def _already_applied(store: Store, statement: str) -> bool:
    """True for an ``ADD COLUMN`` whose column exists (a migration interrupted half-way)."""
    match = _ADD_COLUMN.match(statement)
    if not match:
        return False
    rows = await store.query(
        "SELECT count() AS n FROM system.columns"
        " WHERE database = currentDatabase() AND table = %(table)s AND name = %(column)s",
        {"table": match[1], "column": match[2]},
    )
    return int(rows[0]["n"]) > 0


async def _migrate_cluster(store: Store, cluster: str) -> list[int]:
    await store.execute(create_database(cluster, store.database))
    await store.execute(_CLUSTER_LEDGER.format(database=store.database, cluster=cluster))
    done = {row["version"] for row in await store.query("SELECT version FROM schema_migrations")}
    applied = []
    for migration, statements in cluster_migrations(cluster, store.database):
        if migration.version in done:
            continue
        for statement in statements:
            if match := _CLUSTER_ALTER.match(statement):
                await _alter_each_shard(store, cluster, *match.group(1, 2, 4))
            else:
                await store.execute(statement)
        await store.insert(
            "schema_migrations",
            [{"version": migration.version, "name": migration.name, "applied_at": utc_now()}],
        )
        log.info("migration applied", version=migration.version, name=migration.name,
                 database=store.database, cluster=cluster)
        applied.append(migration.version)
    return applied


async def _alter_each_shard(store: Store, cluster: str, database: str, table: str,
                            actions: str) -> None:
    """Add the columns of a replicated table's ``ALTER ... ON CLUSTER`` through one replica of
    each shard instead; the replicated ALTER reaches the shard's other replicas and returns
    once they applied it.

    18.16's DDL worker sometimes lets both replicas of a shard run a replicated ALTER from the
    queue; the second fails (the column exists) and the queue waits for it forever. Each
    replica's columns are checked first, so a migration interrupted half-way adds only the
    columns still missing.
    """
    if not isinstance(store, ServerStore):
        raise TypeError(f"a cluster migration needs a clickhouse:// store, not {store.backend}")
    rows = await store.query(
        "SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = %(cluster)s "
        "ORDER BY shard_num, replica_num", {"cluster": cluster})
    shards: dict[int, list[tuple[str, int]]] = {}
    for row in rows:
        shards.setdefault(int(row["shard_num"]), []).append((row["host_name"], int(row["port"])))
    if not shards:
        raise StoreError(f"server {store.url.host}:{store.url.port} knows no cluster {cluster!r}"
                         " in remote_servers; check VOC_CLICKHOUSE_CLUSTER")
    for shard, replicas in sorted(shards.items()):
        replica = await _first_reachable(store.url, replicas, shard)
        try:
            missing = await missing_columns(replica, database, table, actions)
            if missing:
                await replica.execute(f"ALTER TABLE {database}.{table} {', '.join(missing)}")
        finally:
            await replica.close()


async def _first_reachable(url: StoreUrl, replicas: list[tuple[str, int]],
                           shard: int) -> ServerStore:
    errors = []
    for host, port in replicas:
        try:
            return await asyncio.to_thread(
                ServerStore, dataclasses.replace(url, host=host, port=port, alt_hosts=""))
        except Exception as exc:  # the next replica may answer
            errors.append(f"{host}:{port}: {exc}")
    raise StoreError(f"no replica of shard {shard} answers for the migration: {errors}")


async def missing_columns(store: Store, database: str, table: str, actions: str) -> list[str]:
    """The ``ADD COLUMN`` actions of ``actions`` (``ADD COLUMN a ..., ADD COLUMN b ...``) for
    columns ``table`` lacks on the server behind ``store``."""
    rows = await store.query(
        "SELECT name FROM system.columns WHERE database = %(database)s AND table = %(table)s",
        {"database": database, "table": table})
    existing = {row["name"] for row in rows}
    wanted = [f"ADD COLUMN {action}"
              for action in actions.removeprefix("ADD COLUMN ").split(", ADD COLUMN ")]
    return [a for a in wanted if (m := _ADDED.match(a)) and m[1] not in existing]


async def require_current(store: Store, cluster: str) -> None:
    """Raise :class:`SchemaNotCurrent` unless every migration is applied on ``cluster``."""
    try:
        rows = await store.query("SELECT version FROM schema_migrations")
    except StoreError as exc:
        raise SchemaNotCurrent(
            f"database {store.database!r} on cluster {cluster!r} has no migrations ledger "
            f"({exc}); run `voc db migrate` once with VOC_CLICKHOUSE_CLUSTER={cluster}") from exc
    done = {row["version"] for row in rows}
    pending = [m.version for m in schemas.migrations() if m.version not in done]
    if pending:
        raise SchemaNotCurrent(
            f"database {store.database!r} on cluster {cluster!r} lacks migrations {pending}; "
            f"run `voc db migrate` once with VOC_CLICKHOUSE_CLUSTER={cluster}")

"""Apply the ordered DDL in ``schemas/clickhouse`` to a store, once each.

Applied versions are recorded in ``schema_migrations``; every statement is also idempotent
(``IF NOT EXISTS``, or for ``ALTER TABLE t ADD COLUMN c``, skipped when ``c`` exists, since 18.16
has no ``ADD COLUMN IF NOT EXISTS``), so a crash between a statement and its record is harmless.
"""

from __future__ import annotations

import re

import structlog

import schemas
from services.core.events import utc_now
from services.core.store import Store

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


async def migrate(store: Store) -> list[int]:
    """Bring the store's database up to the newest migration; returns versions applied now."""
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

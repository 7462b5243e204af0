"""Apply the ordered DDL in ``schemas/clickhouse`` to a store, once each.

Applied versions are recorded in ``schema_migrations``; every statement is also written to be
idempotent (``IF NOT EXISTS``), so a crash between a statement and its record is harmless.
"""

from __future__ import annotations

import structlog

import schemas
from services.core.events import utc_now
from services.core.store import Store

log = structlog.get_logger(__name__)

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
            await store.execute(statement)
        await store.insert(
            "schema_migrations",
            [{"version": migration.version, "name": migration.name, "applied_at": utc_now()}],
        )
        log.info("migration applied", version=migration.version, name=migration.name,
                 database=store.database, backend=store.backend)
        applied.append(migration.version)
    return applied

"""Every panel query of the provisioned Grafana dashboard, with Grafana's macros expanded the
way the ClickHouse plugin expands them, runs against the migrated schema in chdb, which rejects
any unknown table, column or function (the static checks are in
tests/unit/test_grafana_dashboard.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import schemas
from services.core.migrations import migrate
from services.core.store import open_store
from tests.conftest import run
from tests.unit.test_grafana_dashboard import expand, queries


def test_every_query_runs_on_the_migrated_schema(tmp_path: Path) -> None:
    tables = {m.group(1) for migration in schemas.migrations() for statement in
              migration.statements for m in
              re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)}

    async def scenario() -> None:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            await migrate(store)
            end = datetime.now(UTC)
            for where, target in queries():
                used = set(re.findall(r"\bvoc\.(\w+)", target["rawSql"]))
                assert used and used <= tables, f"{where}: unknown tables {used - tables}"
                await store.query(expand(target["rawSql"], end - timedelta(hours=6), end))
        finally:
            await store.close()

    run(scenario())

"""Embedded ClickHouse (chdb) backend: the default, so the pipeline runs with no server.

chdb locks its data directory, so only one process may open it; embedded mode therefore runs
all services in one process around one instance of this store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.core.store import Row, Store, StoreUrl, columns_of


def _json_value(value: Any) -> Any:
    """orjson's fallback for what it does not write itself (datetimes, by passthrough)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: attach a timezone")
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    raise TypeError(f"cannot store a {type(value).__name__} value ({value!r}) in chdb")


def _from_json(value: Any, ch_type: str) -> Any:
    """Give chdb's JSON values the Python types clickhouse-driver returns for the same type."""
    if value is None:
        return None
    if ch_type.startswith("DateTime"):
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    if ch_type.startswith(("UInt", "Int")) and isinstance(value, str):
        return int(value)
    if ch_type.startswith("Float") and isinstance(value, str):
        return float(value)
    return value


class ChdbStore(Store):
    """A chdb session on an on-disk directory."""

    backend = "chdb"

    def __init__(self, url: StoreUrl) -> None:
        super().__init__(url.database)
        from chdb import session

        self.path = Path(url.path).expanduser().resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self._session = self._executor.submit(session.Session, str(self.path)).result()
        self._executor.submit(self._use_database).result()

    def _use_database(self) -> None:
        self._session.query(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self._session.query(f"USE `{self.database}`")

    def _execute(self, sql: str) -> None:
        self._session.query(sql)

    def _query(self, sql: str) -> list[Row]:
        result = json.loads(self._session.query(sql, "JSONCompact").bytes() or b'{"meta":[],"data":[]}')
        meta = [(column["name"], column["type"]) for column in result["meta"]]
        return [
            {name: _from_json(value, ch_type) for (name, ch_type), value in zip(meta, row)}
            for row in result["data"]
        ]

    def _insert(self, table: str, rows: Sequence[Row]) -> None:
        # Positional rows (JSONCompactEachRow) written by orjson cost about half of keyed rows
        # written by json.dumps, which matters because the scoring stage inserts every batch.
        columns = columns_of(rows)
        body = b"\n".join(orjson.dumps(list(row.values()), default=_json_value,
                                        option=orjson.OPT_PASSTHROUGH_DATETIME) for row in rows)
        names = ", ".join(f"`{c}`" for c in columns)
        self._session.query(
            f"INSERT INTO `{table}` ({names}) FORMAT JSONCompactEachRow\n{body.decode()}")

    def _close(self) -> None:
        self._session.close()

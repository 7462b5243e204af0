"""ClickHouse server backend over the native TCP protocol (clickhouse-driver).

Used whenever ``VOC_CLICKHOUSE_URL`` is a ``clickhouse://`` URL; then each service can run as
its own process because the server, not a local directory lock, arbitrates access.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_driver import Client

from services.core.store import Row, Store, StoreUrl, columns_of


class ServerStore(Store):
    """One clickhouse-driver connection to one database."""

    backend = "clickhouse"

    def __init__(self, url: StoreUrl) -> None:
        super().__init__(url.database)
        common = dict(host=url.host, port=url.port, user=url.user, password=url.password,
                      connect_timeout=5, send_receive_timeout=60)
        bootstrap = Client(database="default", **common)
        try:
            bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
        finally:
            bootstrap.disconnect()
        self._client = Client(database=url.database, **common)
        self._client.execute("SELECT 1")

    def _execute(self, sql: str) -> None:
        self._client.execute(sql)

    def _query(self, sql: str) -> list[Row]:
        rows, types = self._client.execute(sql, with_column_types=True)
        names = [name for name, _ in types]
        return [dict(zip(names, row)) for row in rows]

    def _insert(self, table: str, rows: Sequence[Row]) -> None:
        columns = columns_of(rows)
        names = ", ".join(f"`{c}`" for c in columns)
        self._client.execute(
            f"INSERT INTO `{table}` ({names}) VALUES", [tuple(r.values()) for r in rows]
        )

    def _close(self) -> None:
        self._client.disconnect()

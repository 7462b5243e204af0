"""ClickHouse server backend over the native TCP protocol (clickhouse-driver).

Used whenever ``VOC_CLICKHOUSE_URL`` is a ``clickhouse://`` URL; then each service can run as
its own process because the server, not a local directory lock, arbitrates access.

On a cluster (Distributed over replicated tables, services/core/cluster_ddl.py) the scoring
stage reads back, right away, rows it has just written, and alerting reads the score rows
scoring wrote; replication between the replicas of a shard is asynchronous. So every
connection sets :data:`CLUSTER_CONSISTENCY`: an insert through a Distributed table returns
only once every shard has its rows (not when they are queued locally), and for each shard a
query reads from, and an insert writes to, the same replica: the connected server when it is
a replica of that shard (ClickHouse 18.16 always inserts there), otherwise the first replica
of the shard in the cluster definition that is up. Point the pipeline's processes at the
first replica of a shard (docs/operations.md), and they all use the same replica of every
shard. On one server these settings change nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from clickhouse_driver import Client

from services.core.store import Row, Store, StoreUrl, columns_of

CLUSTER_CONSISTENCY = {
    "insert_distributed_sync": 1,
    "load_balancing": "in_order",
    "prefer_localhost_replica": 1,
}
"""Query settings that give read-your-writes through Distributed tables (module docstring)."""

FRESH_READS = {
    "max_replica_delay_for_distributed_queries": 1,
    "fallback_to_stale_replicas_for_distributed_queries": 0,
}
"""Read settings of the stages that read back what they wrote (scoring, alerting). Replication
is asynchronous: when the replica that took a shard's inserts dies before its peer fetched
them, the peer answers without those rows, and the scoring stage would write windows that miss
them for good. A replica that knows it lacks parts (a fetch outstanding for a second or more)
is not read; with no fresh replica of a shard the query fails with
ALL_REPLICAS_ARE_STALE (369), which the failure policy retries until the replica that holds the
rows is back. The query API keeps answering from such a replica (docs/operations.md)."""


class ServerStore(Store):
    """One clickhouse-driver connection to one database."""

    backend = "clickhouse"

    def __init__(self, url: StoreUrl) -> None:
        super().__init__(url.database)
        self.url = url
        common = {"host": url.host, "port": url.port, "user": url.user,
                  "password": url.password, "connect_timeout": 5, "send_receive_timeout": 60,
                  "settings": CLUSTER_CONSISTENCY, "alt_hosts": url.alt_hosts or None}
        bootstrap = Client(database="default", **common)
        try:
            bootstrap.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
        finally:
            bootstrap.disconnect()
        self._client = Client(database=url.database, **common)
        self._client.execute("SELECT 1")
        self._read_settings: dict[str, int] = {}

    def fresh_reads(self) -> ServerStore:
        """The same connection (close the original, not this), its reads with
        :data:`FRESH_READS`."""
        view = copy.copy(self)
        view._read_settings = FRESH_READS
        return view

    def _execute(self, sql: str) -> None:
        self._client.execute(sql)

    def _query(self, sql: str) -> list[Row]:
        rows, types = self._client.execute(sql, with_column_types=True,
                                           settings=self._read_settings or None)
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

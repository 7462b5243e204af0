"""The one store interface over ClickHouse, with an embedded (chdb) and a server backend.

Both client libraries are blocking and neither connection may be used from two threads at
once, so each store owns a single worker thread: async callers never block the event loop and
calls are serialised. SQL uses ``%(name)s`` placeholders, escaped client-side by
clickhouse-driver's escaper for both backends, so queries never splice raw input.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clickhouse_driver.util.escape import escape_params

from services.core.ops import SINK_ROWS

Row = dict[str, Any]

_HOSTS = re.compile(r"[\w.-]{1,253}:\d{1,5}(?:,[\w.-]{1,253}:\d{1,5}){0,63}")

_UTC_CONTEXT = SimpleNamespace(server_info=SimpleNamespace(get_timezone=lambda: "UTC"))


class StoreError(RuntimeError):
    """A store call failed; the message names the statement and the backend's reason."""


class _Epoch:
    """A timestamp rendered as ``toDateTime(<unix seconds>)``.

    Passing instants as epoch seconds keeps comparisons right whatever time zone the server
    runs in (a string literal would be read in the server's or the column's zone).
    """

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError(f"naive datetime {moment!r} passed to the store: attach a timezone")
        self.seconds = int(moment.timestamp())

    def __str__(self) -> str:
        return f"toDateTime({self.seconds})"


def render(sql: str, params: Mapping[str, Any] | None) -> str:
    """SQL with ``%(name)s`` placeholders replaced by safely escaped literals."""
    if not params:
        return sql
    prepared = {k: _Epoch(v) if isinstance(v, datetime) else v for k, v in params.items()}
    return sql % escape_params(prepared, _UTC_CONTEXT)


@dataclass(frozen=True)
class StoreUrl:
    """A parsed ``VOC_CLICKHOUSE_URL``."""

    backend: str
    database: str
    path: str = ""
    host: str = ""
    port: int = 9000
    user: str = "default"
    password: str = ""
    alt_hosts: str = ""
    """``host:port,host:port`` tried in turn when ``host`` cannot be reached (other servers of
    a cluster, so a process whose server died goes on through another)."""

    @classmethod
    def parse(cls, url: str) -> StoreUrl:
        """Parse ``chdb:///abs/path``, ``chdb://rel/path`` or
        ``clickhouse://u:p@host:port/db[?alt_hosts=host2:port,host3:port]``."""
        if url.startswith("chdb://"):
            rest, _, query = url.removeprefix("chdb://").partition("?")
            if not rest:
                raise ValueError(f"VOC_CLICKHOUSE_URL={url!r}: chdb URLs need a data path")
            database = parse_qs(query).get("database", ["voc"])[0]
            return cls(backend="chdb", database=database, path=rest)
        parts = urlsplit(url)
        if parts.scheme != "clickhouse" or not parts.hostname:
            raise ValueError(
                f"VOC_CLICKHOUSE_URL={url!r}: expected clickhouse://user:pass@host:9000/db "
                "or chdb:///path/to/data"
            )
        alt_hosts = parse_qs(parts.query).get("alt_hosts", [""])[0]
        if alt_hosts and not _HOSTS.fullmatch(alt_hosts):
            raise ValueError(f"VOC_CLICKHOUSE_URL={url!r}: alt_hosts must be host:port pairs "
                             "separated by commas, e.g. ?alt_hosts=ch-2:9000,ch-3:9000")
        return cls(
            backend="clickhouse",
            database=parts.path.strip("/") or "voc",
            host=parts.hostname,
            port=parts.port or 9000,
            user=unquote(parts.username or "default"),
            password=unquote(parts.password or ""),
            alt_hosts=alt_hosts,
        )


class Store(ABC):
    """Async facade over one ClickHouse connection; see the module docstring for why."""

    backend: str

    def __init__(self, database: str) -> None:
        self.database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-{database}")

    async def _call(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def fresh_reads(self) -> Store:
        """The store for a stage that reads back what it wrote: its reads refuse a replica
        known to lack rows (``FRESH_READS`` in services/core/store_server.py). A single
        server's reads are always fresh, so by default the store itself."""
        return self

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, ALTER, ...)."""
        await self._call(self._checked, self._execute, render(sql, params))

    async def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Rows of a SELECT as dicts; DateTime values come back as aware UTC datetimes."""
        return await self._call(self._checked, self._query, render(sql, params))

    async def insert(self, table: str, rows: Sequence[Row], *,
                     month_column: str | None = None) -> None:
        """Insert rows (dicts with the same keys); datetimes must be aware.

        For a table partitioned by ``toYYYYMM(month_column)``, rows spanning more months than
        one insert may touch (ClickHouse refuses a block over
        ``max_partitions_per_insert_block``, default 100) go in several inserts; otherwise in one.
        """
        chunks = month_chunks(rows, month_column) if month_column else [rows]
        for chunk in chunks:
            if chunk:
                await self._call(self._checked_insert, table, chunk)
                SINK_ROWS.labels(table).observe(len(chunk))

    async def version(self) -> str:
        """Server version string, for logs and version-dependent SQL."""
        rows = await self.query("SELECT version() AS v")
        return str(rows[0]["v"])

    def _checked(self, fn: Any, sql: str) -> Any:
        try:
            return fn(sql)
        except Exception as exc:
            raise StoreError(f"{self.backend} failed on {_head(sql)!r}: {exc}") from exc

    def _checked_insert(self, table: str, rows: Sequence[Row]) -> None:
        try:
            self._insert(table, rows)
        except Exception as exc:
            raise StoreError(
                f"{self.backend} failed to insert {len(rows)} rows into {table}: {exc}"
            ) from exc

    async def close(self) -> None:
        """Release the connection and the worker thread."""
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    @abstractmethod
    def _execute(self, sql: str) -> None: ...

    @abstractmethod
    def _query(self, sql: str) -> list[Row]: ...

    @abstractmethod
    def _insert(self, table: str, rows: Sequence[Row]) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...


def _head(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= 160 else flat[:157] + "..."


MAX_PARTITIONS_PER_INSERT = 100


def month_chunks(rows: Sequence[Row], column: str,
                 limit: int = MAX_PARTITIONS_PER_INSERT) -> list[list[Row]]:
    """``rows`` in groups that each span at most ``limit`` UTC months of ``column``."""
    by_month: dict[tuple[int, int], list[Row]] = {}
    for row in rows:
        moment = row[column].astimezone(UTC)
        by_month.setdefault((moment.year, moment.month), []).append(row)
    months = sorted(by_month)
    return [[row for month in months[i:i + limit] for row in by_month[month]]
            for i in range(0, len(months), limit)]


def columns_of(rows: Iterable[Row]) -> list[str]:
    """Column list of a batch, checked to be the same for every row."""
    iterator = iter(rows)
    first = list(next(iterator))
    for row in iterator:
        if list(row) != first:
            raise ValueError(f"rows of one insert must share columns: {first} vs {list(row)}")
    return first


async def open_store(url: str, *, retries: int = 30, delay_s: float = 1.0) -> Store:
    """Connect to the store named by ``url``, waiting for a server that is still starting."""
    parsed = StoreUrl.parse(url)
    if parsed.backend == "chdb":
        from services.core.store_chdb import ChdbStore

        return ChdbStore(parsed)
    from services.core.store_server import ServerStore

    last: Exception | None = None
    for _ in range(retries):
        try:
            return await asyncio.to_thread(ServerStore, parsed)
        except Exception as exc:  # the server may still be starting
            last = exc
            await asyncio.sleep(delay_s)
    raise StoreError(
        f"cannot reach ClickHouse at {parsed.host}:{parsed.port} after {retries} tries: {last}. "
        "Check VOC_CLICKHOUSE_URL and that the server is up."
    )

"""Runs any subset of the four services in one process and one event loop.

``voc up`` runs all four around one embedded store (chdb allows one process per data
directory); ``voc ingest`` and friends run one each, against external Kafka and ClickHouse.
The services never call each other: they share only topics and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence

import structlog
import uvicorn

from services.core.access import Access
from services.core.migrations import migrate, require_current
from services.core.ops import READINESS, ops_app
from services.core.settings import Settings
from services.core.store import Store, open_store

log = structlog.get_logger(__name__)

SERVICES = ("ingest", "nlp", "scoring", "alerting")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the pipeline owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_ingest(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event,
                        on_listening: Callable[[str], None], access: Access | None) -> None:
    from services.api import create_app

    app = create_app(settings, bootstrap, store, access)
    READINESS.set("ingest", True)
    try:
        await _serve(app, settings.http_host, settings.http_port, "ingest API", stop, on_listening)
    finally:
        READINESS.forget("ingest")


async def _serve(app: object, host: str, port: int, what: str, stop: asyncio.Event,
                 on_listening: Callable[[str], None]) -> None:
    """Serve an ASGI app until ``stop`` is set; reports its URL once listening."""
    # Open dashboard streams never end by themselves: give them a moment, then close them.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=2)
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError(f"{what} could not listen on {host}:{port}")
        await asyncio.sleep(0.05)
    bound_host, bound_port = server.servers[0].sockets[0].getsockname()[:2]
    on_listening(f"http://{bound_host}:{bound_port}")
    await stop.wait()
    server.should_exit = True
    await serving


def _log_ops_url(url: str) -> None:
    log.info("ops endpoints listening", metrics=f"{url}/metrics", ready=f"{url}/readyz")


async def run_services(settings: Settings, names: Sequence[str], bootstrap: str,
                       stop: asyncio.Event, *, store: Store | None = None,
                       on_listening: Callable[[str], None] = lambda url: None,
                       access: Access | None = None) -> None:
    """Run the named services until ``stop`` is set or one of them fails.

    A failing service stops the others (a half-running pipeline would silently pile up lag)
    and its exception propagates. ``store`` is opened from settings when not given (the API
    of ``ingest`` serves the query routes from it), and so are the API's credentials
    (``access``).
    """
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; choose from {list(SERVICES)}")
    own_store = False
    if store is None and {"ingest", "scoring", "alerting"} & set(names):
        store = await open_store(settings.store_url)
        own_store = True
    # Ingest gets the store opened above; scoring and alerting, which read back what they
    # wrote, the same connection with fresh reads; the other stages need none.
    try:
        if store is not None and settings.clickhouse_cluster:
            await require_current(store, settings.clickhouse_cluster)
        elif store is not None:
            await migrate(store)
        coroutines = []
        if "ingest" in names:
            assert store is not None
            coroutines.append(_serve_ingest(settings, bootstrap, store, stop, on_listening,
                                            access))
        if settings.ops_port is not None:
            # Also next to the API: its own /metrics needs an admin, while a scraper inside
            # the cluster reads this port without credentials.
            coroutines.append(_serve(ops_app(), settings.http_host, settings.ops_port,
                                     "ops server", stop, _log_ops_url))
        if "nlp" in names:
            from services.nlp import worker as nlp

            coroutines.append(nlp.run(settings, bootstrap, stop))
        if "scoring" in names:
            from services.scoring import worker as scoring

            assert store is not None
            coroutines.append(scoring.run(settings, bootstrap, store.fresh_reads(), stop))
        if "alerting" in names:
            from services.alerting import worker as alerting

            assert store is not None
            coroutines.append(alerting.run(settings, bootstrap, store.fresh_reads(), stop))
        tasks = [asyncio.create_task(c) for c in coroutines]
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await stopping
        done, pending = await asyncio.wait(tasks, timeout=settings.shutdown_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            log.warning("services did not stop in time and were cancelled",
                        timeout_s=settings.shutdown_timeout_s, count=len(pending))
        errors = [t.exception() for t in done if t.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
    finally:
        if own_store and store is not None:
            await store.close()

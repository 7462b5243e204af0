"""``voc up``: the whole pipeline on one machine with nothing installed but the package.

A local broker child process (unless VOC_KAFKA_BOOTSTRAP names one), chdb as the store, and
the four services in this process, optionally with the demo feed posting to the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import structlog

from services.core.access import IMPLIED, Access, Principal
from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import open_store
from services.pipeline import SERVICES, run_services

log = structlog.get_logger("voc")


async def run_embedded(settings: Settings, stop: asyncio.Event, *, demo: bool) -> None:
    """Run everything until ``stop``; always stops the broker it started."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    if not settings.kafka_bootstrap:
        # Started on this (main) thread on purpose: the broker's parent-death signal follows
        # the thread that spawned it, and executor threads come and go.
        broker = LocalBroker(port=settings.local_broker_port or None,
                             log_path=settings.data_dir / "broker.log").start()
    bootstrap = broker.bootstrap if broker else settings.kafka_bootstrap
    try:
        await asyncio.to_thread(create_topics, settings, bootstrap)
        store = await open_store(settings.store_url)
        try:
            access = Access.from_settings(settings)
            demo_key = None
            if demo and not access.open_mode:
                # With credentials configured the demo feed needs one too: an ingest key for
                # its own source that lives only in this process.
                demo_key = secrets.token_urlsafe(32)
                access.add_key(demo_key, Principal(name="demo-feed", roles=IMPLIED["ingest"],
                                                   kind="key", sources=frozenset({"demo"})))
            api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            pipeline = asyncio.create_task(run_services(
                settings, SERVICES, bootstrap, stop, store=store,
                on_listening=api_url.set_result, access=access))
            feed = asyncio.create_task(_announce_and_feed(settings, bootstrap, api_url, stop,
                                                          demo, demo_key))
            try:
                await pipeline
            finally:
                stop.set()
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed
        finally:
            await store.close()
    finally:
        if broker:
            broker.stop()
        log.info("pipeline stopped")


async def _announce_and_feed(settings: Settings, bootstrap: str, api_url: asyncio.Future[str],
                             stop: asyncio.Event, demo: bool, demo_key: str | None) -> None:
    url = await api_url
    lines = [
        "",
        "  Tingjian (听见) is running.",
        f"  API:        {url}   (OpenAPI docs: {url}/docs)",
        f"  Dashboard:  {url}/dashboard/",
        f"  Store:      {settings.store_url}",
        f"  Kafka:      {bootstrap}"
        + ("" if bootstrap == settings.bootstrap else f"   (export VOC_KAFKA_BOOTSTRAP={bootstrap}"
           " for the commands below)"),
        f"  Topics:     {settings.topic('feedback.raw')} -> {settings.topic('feedback.enriched')}"
        f" -> {settings.topic('scores')} -> {settings.topic('alerts')}",
        "  Alerts:     voc alerts tail   (JSON lines; also /v1/stream and webhooks)",
        "  Try:        curl -X POST " + url + "/v1/feedback -H 'content-type: application/json' "
        "-d '{\"source\":\"me\",\"channel\":\"web\",\"touchpoint\":\"delivery\","
        "\"text\":\"送货太慢了\"}'",
    ]
    if demo:
        lines.append("  Demo feed:  on; 'delivery' degrades after 15 s, watch for 'ALERT fired'")
    lines.append("  Sign-in:    " + ("credentials configured: the dashboard asks for a key or "
                                     "token" if settings.auth_configured else
                                     "none (open on loopback: anyone on this machine may read "
                                     "and act)"))
    lines.append("  Stop:       Ctrl-C")
    print("\n".join(lines) + "\n", flush=True)
    if demo:
        from services.ingest.demo_feed import run_demo

        await run_demo(url, settings.demo_rate, stop, api_key=demo_key,
                       dimensions=settings.dimensions)

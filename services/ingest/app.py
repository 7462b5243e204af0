"""The ingest HTTP API: validates feedback per channel and writes it to the raw topic.

The app is assembled here from its parts: each channel's router (services/ingest/channels/),
the publisher every route hands its events to (dedupe, entrance bounds, the broker write:
services/ingest/publish.py), the body guard and the error answers
(services/ingest/guards.py). A 202 means the broker acknowledged the write.

Nothing leaves here unredacted: every event is built through ``prepare_raw``, and request
bodies are never logged. ``/metrics`` counts written and duplicate events per source and
channel, next to the process-wide pipeline metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.core.kafka import Producer
from services.core.settings import Settings
from services.core.touchpoints import TouchpointLimit
from services.ingest.channels import ROUTERS
from services.ingest.guards import BodyGuard, handle_errors
from services.ingest.publish import Publisher


def create_app(settings: Settings, bootstrap: str,
               touchpoints: TouchpointLimit | None = None) -> FastAPI:
    """The ingest API, producing to the raw topic of ``bootstrap``; with ``touchpoints``, new
    touchpoints beyond VOC_MAX_TOUCHPOINTS are refused."""
    publisher = Publisher(settings, Producer(bootstrap, client_id=settings.group("ingest")),
                          touchpoints)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(title="Tingjian (听见) ingest API", version="2", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Accepts customer feedback from surveys, calls, email and social "
                  "posts into the VoC pipeline. Send each source's key in X-API-Key.")
    app.state.publisher = publisher
    app.add_middleware(BodyGuard, limit=settings.ingest_max_body_bytes)
    handle_errors(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    return app

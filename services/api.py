"""The one HTTP app: the ingest routes plus the query routes of the other services.

Composed here, outside the service packages, so each service keeps owning its own routes and
no service imports another. ``voc up`` and ``voc ingest`` serve this app.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.core.http import harden
from services.core.settings import Settings
from services.core.store import Store


def create_app(settings: Settings, bootstrap: str, store: Store) -> FastAPI:
    """The ingest app (producing to ``bootstrap``, its touchpoint cap read from ``store``)
    with the query routes over ``store``."""
    from services.core.touchpoints import TouchpointLimit
    from services.ingest.app import create_app as create_ingest_app

    app = create_ingest_app(settings, bootstrap, TouchpointLimit(store, settings.max_touchpoints))
    harden(app, rate_limit=settings.api_rate_limit or None, cors_origins=settings.cors_origins)
    app.title = "Tingjian (听见) API"
    app.description = ("Accepts customer feedback into the VoC pipeline and serves the "
                       "experience scores, key drivers and stored feedback, and runs the cases workflow.")
    include(app, settings, store)
    from services.alerting.api import mount_cases

    mount_cases(app, settings, bootstrap, store)
    return app


def include(app: FastAPI, settings: Settings, store: Store) -> None:
    """Mount every service's query router on ``app``, and the dashboard."""
    from services.scoring.api import build_router
    from services.scoring.expectations import load_expectations
    from services.web.feed import LiveFeed
    from services.web.router import build_router as build_dashboard

    app.include_router(build_router(store, load_expectations(settings.expectations_path),
                                    settings.window_seconds))
    app.include_router(build_dashboard(LiveFeed(store, settings.window_seconds)))

"""The one HTTP app: the ingest routes plus the query routes of the other services.

Composed here, outside the service packages, so each service keeps owning its own routes and
no service imports another. ``voc up`` and ``voc ingest`` serve this app. Every route declares
who may call it (``services/core/access.py``); the probes are the only routes without a
declaration, and they are open on purpose.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from services.core import errors
from services.core.access import Access, Require, auth_router, route_roles
from services.core.http import harden
from services.core.ops import metrics_router, probe_routes
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)


def create_app(settings: Settings, bootstrap: str, store: Store,
               access: Access | None = None) -> FastAPI:
    """The ingest app (producing to ``bootstrap``, its touchpoint cap read from ``store``)
    with the query routes over ``store``.

    ``access`` defaults to the credentials the settings name; ``voc up`` passes its own to add
    the demo feed's in-process key.
    """
    from services.core.touchpoints import TouchpointLimit
    from services.ingest.app import create_app as create_ingest_app

    access = access or Access.from_settings(settings)
    if access.open_mode:
        log.warning("authentication is off: every caller on this machine may read feedback and "
                    "act on cases; configure VOC_API_KEYS_FILE or VOC_OIDC_ISSUER beyond a "
                    "local demo (docs/security.md)")
    app = create_ingest_app(settings, bootstrap, TouchpointLimit(store, settings.max_touchpoints))
    errors.install(app)
    harden(app, settings, access)
    app.title = "Tingjian (听见) API"
    app.description = ("Accepts customer feedback into the VoC pipeline and serves the "
                       "experience scores, key drivers and stored feedback, and runs the cases "
                       "workflow. Authenticate with an API key (X-API-Key) or an OpenID Connect "
                       "bearer token; see docs/security.md for the roles.")
    app.router.routes.extend(probe_routes())
    app.include_router(metrics_router())
    app.include_router(auth_router(access))
    include(app, settings, store, access)
    from services.alerting.api import mount_cases

    mount_cases(app, settings, bootstrap, store)
    _docs(app)
    route_roles(app)  # refuses an app with a route that does not say who may call it
    return app


def include(app: FastAPI, settings: Settings, store: Store, access: Access) -> None:
    """Mount every service's query router on ``app``, and the dashboard."""
    from services.alerting.customers import build_router as build_customers
    from services.alerting.emerging_api import build_router as build_emerging
    from services.scoring.api import build_router
    from services.scoring.expectations import load_expectations
    from services.web.feed import LiveFeed
    from services.web.router import build_router as build_dashboard

    app.include_router(build_router(store, load_expectations(settings.expectations_path),
                                    settings.window_seconds,
                                    max_range_days=settings.query_max_range_days,
                                    journey_order=settings.journey_order,
                                    taxonomy_path=settings.taxonomy_path,
                                    dimensions=tuple(settings.dimensions),
                                    dimension_max_values=settings.dimension_max_values,
                                    fcr_days=settings.fcr_days))
    app.include_router(build_emerging(store, settings))
    app.include_router(build_customers(store, settings))
    app.include_router(build_dashboard(LiveFeed(store, settings.window_seconds), access))


def _docs(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs`` for viewers and up: the API's shape is no secret (the
    repository has it), but the docs page is an app page like the dashboard."""
    from services.web.router import docs_page

    viewer = [Depends(Require("viewer"))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=viewer)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=viewer)
    async def docs() -> Any:
        return docs_page()

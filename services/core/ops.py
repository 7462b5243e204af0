"""Operational surface of every process: Prometheus metrics, liveness and readiness.

The metrics are defined once here so every service reports the same names and labels, and a
dashboard or KEDA trigger works the same whichever process runs a stage. Readiness is a small
registry that components flip when they can do their work (consumer joined its group, producer
connected), so ``/readyz`` answers "can this process make progress now", while ``/healthz``
only says the process is alive.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Depends
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from services.core.access import Require

EVENTS_IN = Counter("voc_events_in_total", "Records consumed by a stage.", ["stage"])
EVENTS_OUT = Counter("voc_events_out_total", "Messages a stage produced and the broker acknowledged.",
                     ["topic"])
DEAD_LETTERS = Counter("voc_dead_letters_total", "Records sent to the dead-letter topic.",
                       ["stage"])
BATCH_SECONDS = Histogram("voc_batch_seconds", "Time to handle one consumed batch, retries included.",
                          ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BATCH_RETRIES = Counter("voc_batch_retries_total",
                        "Batches retried because a dependency (store, broker) failed.", ["stage"])
BATCH_OUTCOMES = Counter(
    "voc_consumer_outcomes_total", "What the failure policy did (services/core/failures.py): "
    "ok (a batch or part handled), transient_retry, unknown_retry, split (a failing part cut "
    "in two), dead_lettered (a record isolated), unrecorded (a record whose dead letter could "
    "not be written either).", ["stage", "outcome"])
CONSUMER_LAG = Gauge("voc_consumer_lag", "Records behind the partition's high watermark.",
                     ["stage", "partition"])
SINK_ROWS = Histogram("voc_sink_batch_rows", "Rows per store insert.", ["table"],
                      buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000))


class LabelBudget:
    """Label values for a metric label whose values come from outside (sources, names).

    Every distinct label value is a time series held forever by the client and the Prometheus
    server, so an attacker sending random values would grow both without end. The first
    ``limit`` values keep their own series; later ones share ``other``.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "other"


class Readiness:
    """Which components of this process can currently do their work, and why not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, bool] = {}
        self._reasons: dict[str, str] = {}

    def set(self, component: str, ready: bool, reason: str | None = None) -> None:
        """Mark ``component``; ``reason`` says what it waits for while not ready."""
        with self._lock:
            self._state[component] = ready
            if ready or not reason:
                self._reasons.pop(component, None)
            else:
                self._reasons[component] = reason[:500]

    def forget(self, component: str) -> None:
        with self._lock:
            self._state.pop(component, None)
            self._reasons.pop(component, None)

    def reasons(self) -> dict[str, str]:
        """Why each component that is not ready is not (when it said)."""
        with self._lock:
            return dict(self._reasons)

    def report(self) -> tuple[bool, dict[str, bool]]:
        """(all ready, per component); a process with no components yet is not ready."""
        with self._lock:
            state = dict(self._state)
        return bool(state) and all(state.values()), state


READINESS = Readiness()


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(_: Request) -> JSONResponse:
    ready, components = READINESS.report()
    return JSONResponse({"ready": ready, "components": components, "reasons": READINESS.reasons()},
                        status_code=200 if ready else 503)


def probe_routes() -> list[Route]:
    """``/healthz`` and ``/readyz``: open on purpose (probes carry no credentials, and the
    answers say nothing about customers)."""
    return [Route("/healthz", healthz), Route("/readyz", readyz)]


def ops_app() -> Starlette:
    """The stand-alone ops server of processes that serve no API (``VOC_OPS_PORT``): the probes
    and ``/metrics`` without credentials, so keep that port on the cluster's network."""
    return Starlette(routes=[*probe_routes(), Mount("/metrics", make_asgi_app())])


def metrics_router() -> APIRouter:
    """``/metrics`` (and ``/metrics/``) of the API process, for admins only: the API's port is
    the one people and browsers reach."""
    router = APIRouter(tags=["operations"], dependencies=[Depends(Require("admin"))])

    @router.get("/metrics", summary="Prometheus metrics of this process",
                response_class=PlainTextResponse)
    @router.get("/metrics/", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router

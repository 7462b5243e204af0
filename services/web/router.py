"""Routes of the dashboard: the page, its versioned assets and the server-sent event stream.

The assets are built from ``web/`` by ``make assets`` and committed under ``static/`` with a
content hash in their names (listed in ``static/manifest.json``), so running the API needs no
Node, and browsers may cache an asset forever: a new build has a new name.

The page and its assets are public (they hold no data; the page asks who is signed in and shows
its sign-in form otherwise). The stream is for viewers: each connection gets only the rows of
its principal's touchpoints and teams, and a principal may hold at most
``VOC_STREAM_MAX_PER_PRINCIPAL`` streams at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from services.core.access import Access, Caller, Principal, Public, Require
from services.web.feed import LiveFeed

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0


@cache
def manifest() -> dict[str, Any]:
    """The build's manifest: version, hash of the sources, and the hashed file names."""
    path = STATIC / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RuntimeError(f"{path} is missing: run `make assets` to build the dashboard") from exc


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def sse(event: str, data: Any) -> str:
    """One server-sent event frame."""
    return f"event: {event}\ndata: {_json(data)}\n\n"


def scoped(message: dict[str, Any], who: Principal) -> dict[str, Any] | None:
    """``message`` with only the rows ``who`` may see; None when none is left."""
    if not who.limited or "rows" not in message:
        return message
    rows = [r for r in message["rows"] if who.sees(r)]
    return {**message, "rows": rows} if rows else None


def scoped_snapshot(snapshot: dict[str, Any], who: Principal) -> dict[str, Any]:
    if not who.limited:
        return snapshot
    return {**snapshot, "scores": [r for r in snapshot["scores"] if who.sees(r)],
            "alerts": [r for r in snapshot["alerts"] if who.sees(r)]}


def docs_page() -> HTMLResponse:
    """The OpenAPI docs page (Swagger UI, served from this build: no third-party script)."""
    return HTMLResponse((STATIC / "docs.html").read_text(encoding="utf-8"),
                        headers={"Cache-Control": "no-cache"})


def build_router(feed: LiveFeed, access: Access) -> APIRouter:
    """The dashboard page at ``/dashboard/`` and the push stream at ``/v1/stream``."""
    router = APIRouter()
    public = [Depends(Public())]
    # Read once: the installed build does not change under a running process, and the page
    # must name exactly the assets this process serves.
    assets = set(manifest()["files"].values())
    html = (STATIC / "index.html").read_text(encoding="utf-8")

    @router.get("/", include_in_schema=False, dependencies=public)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @router.get("/dashboard", include_in_schema=False, dependencies=public)
    async def dashboard_no_slash() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @router.get("/dashboard/", include_in_schema=False, dependencies=public)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard/assets/{name}", include_in_schema=False, dependencies=public)
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise HTTPException(status_code=404, detail=(
                f"no dashboard asset {name!r} in this build (version "
                f"{manifest()['version']}); reload the page to get the current asset names"))
        return FileResponse(STATIC / name,
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @router.get("/v1/stream", tags=["dashboard"],
                summary="Live score rows, alerts and case transitions (SSE)",
                response_class=StreamingResponse, dependencies=[Depends(Require("viewer"))])
    async def stream(request: Request, who: Caller) -> StreamingResponse:
        """Server-sent events. First `snapshot` (recent base-window score rows per
        touchpoint and the latest alerts), then `scores`, `alerts` and `cases` (case.v1) with
        each newly stored row, within about a second of it landing. `resync` asks the client
        to reconnect (it fell behind). A comment line every 15 s keeps proxies from closing the
        stream. Only the rows of the caller's touchpoints and teams; 429 beyond
        VOC_STREAM_MAX_PER_PRINCIPAL open streams."""
        slot = (f"{who.kind}:{who.name}" if who.kind != "open"
                else f"address:{getattr(request.state, 'client_address', '-')}")
        if not access.streams.take(slot):
            raise HTTPException(status_code=429, headers={"Retry-After": "15"}, detail=(
                f"{who.name!r} already has {access.streams.limit} open streams "
                "(VOC_STREAM_MAX_PER_PRINCIPAL); close a dashboard tab or raise the setting"))
        released = False

        def release() -> None:
            # Called from the stream's end and from the response's background task, so the
            # slot comes back even if the stream never started; only the first call counts.
            nonlocal released
            if not released:
                released = True
                access.streams.give_back(slot)

        async def events() -> AsyncIterator[str]:
            queue = feed.subscribe()
            try:
                yield "retry: 2000\n\n"
                yield sse("snapshot", scoped_snapshot(await feed.snapshot(), who))
                while not await request.is_disconnected():
                    if who.expires_at is not None and time.time() >= who.expires_at:
                        return  # the token ended; the page reconnects and must sign in again
                    try:
                        message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    visible = scoped(message, who)
                    if visible is not None:
                        yield sse(visible["type"], visible)
                    if message["type"] == "resync":
                        return
            finally:
                await feed.unsubscribe(queue)
                release()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(release))

    return router

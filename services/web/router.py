"""Routes of the dashboard: the page, its versioned assets and the server-sent event stream.

The assets are built from ``web/`` by ``make assets`` and committed under ``static/`` with a
content hash in their names (listed in ``static/manifest.json``), so running the API needs no
Node, and browsers may cache an asset forever: a new build has a new name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse

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


def build_router(feed: LiveFeed) -> APIRouter:
    """The dashboard page at ``/dashboard/`` and the push stream at ``/v1/stream``."""
    router = APIRouter()
    # Read once: the installed build does not change under a running process, and the page
    # must name exactly the assets this process serves.
    assets = set(manifest()["files"].values())
    html = (STATIC / "index.html").read_text(encoding="utf-8")

    @router.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @router.get("/dashboard", include_in_schema=False)
    async def dashboard_no_slash() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    @router.get("/dashboard/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @router.get("/dashboard/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise HTTPException(status_code=404, detail=(
                f"no dashboard asset {name!r} in this build (version "
                f"{manifest()['version']}); reload the page to get the current asset names"))
        return FileResponse(STATIC / name,
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @router.get("/v1/stream", tags=["dashboard"],
                summary="Live score rows, alerts and case transitions (SSE)",
                response_class=StreamingResponse)
    async def stream(request: Request) -> StreamingResponse:
        """Server-sent events. First `snapshot` (recent base-window score rows per
        touchpoint and the latest alerts), then `scores`, `alerts` and `cases` (case.v1) with
        each newly stored row, within about a second of it landing. `resync` asks the client to reconnect (it
        fell behind). A comment line every 15 s keeps proxies from closing the stream."""
        async def events() -> AsyncIterator[str]:
            queue = feed.subscribe()
            try:
                yield "retry: 2000\n\n"
                yield sse("snapshot", await feed.snapshot())
                while not await request.is_disconnected():
                    try:
                        message = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield sse(message["type"], message)
                    if message["type"] == "resync":
                        return
            finally:
                await feed.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return router

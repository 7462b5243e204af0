"""Cross-cutting HTTP behaviour of the API process: request ids, rate limits and CORS.

Kept out of the service routers so every route (ingest, queries, cases, dashboard) gets the
same treatment and no service has to remember it.
- Request ids: each response carries ``X-Request-ID`` (the caller's, or a new one), and every
  log line written while handling the request carries it as ``request_id``, so a client's
  complaint can be traced through the logs without logging the payload (which may hold PII).
- Rate limits: writes (POST/PUT/PATCH/DELETE) are limited per API key, or per client address
  when no key is sent, with a moving window; over the limit is 429 with ``Retry-After``.
  Reads are cheap and served from ClickHouse, so they are not limited here.
- CORS is off unless origins are configured: a browser page from another site cannot call the
  API by default.
"""

from __future__ import annotations

import math
import time

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = structlog.get_logger(__name__)

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class RateLimit(BaseHTTPMiddleware):
    """A moving-window limit on writes per API key (or client address)."""

    def __init__(self, app: object, rate: str) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in _WRITES:
            return await call_next(request)
        key = request.headers.get("x-api-key")
        who = f"key:{key}" if key else f"addr:{request.client.host if request.client else '-'}"
        if await self.limiter.hit(self.item, who):
            return await call_next(request)
        stats = await self.limiter.get_window_stats(self.item, who)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        log.warning("rate limited", path=request.url.path, limit=str(self.item),
                    keyed=bool(key))
        return JSONResponse(status_code=429, headers={"Retry-After": str(retry)}, content={
            "detail": f"more than {self.item} write requests for this API key (or address); "
                      f"retry in {retry}s, batch events with /v1/feedback/batch, or raise "
                      "VOC_API_RATE_LIMIT"})


class _BindRequestId(BaseHTTPMiddleware):
    """Puts the request id into structlog's context for the log lines of this request."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        with structlog.contextvars.bound_contextvars(request_id=correlation_id.get()):
            return await call_next(request)


def harden(app: FastAPI, *, rate_limit: str | None, cors_origins: list[str]) -> None:
    """Add request ids, the write rate limit (when set) and CORS (when origins are set)."""
    if rate_limit:
        app.add_middleware(RateLimit, rate=rate_limit)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["content-type", "x-api-key"])
    app.add_middleware(_BindRequestId)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")

"""Cross-cutting HTTP behaviour of the API process: who is calling, how often, from where, and
the headers every answer carries.

Kept out of the service routers so every route (ingest, queries, cases, dashboard) gets the
same treatment and no service has to remember it.
- Authentication runs once per request in :class:`Guard`, before any body is parsed; the
  routes only declare what they need (``services/core/access.py``).
- Rate limits come after authentication: per principal for valid credentials, per client
  address without any. Writes (``VOC_API_RATE_LIMIT``) and reads (``VOC_API_READ_RATE_LIMIT``)
  have their own budgets, and requests whose credentials fail count per address against
  ``VOC_API_AUTH_FAILURE_RATE_LIMIT``, so guessing keys (or sending a new random key each time)
  runs into 429 quickly. Over a limit is 429 with ``Retry-After``.
- Cross-site writes: a write whose ``Origin`` is another site (and not in ``VOC_CORS_ORIGINS``)
  is refused, and a write that authenticates with the dashboard's session cookie must also send
  the ``X-Tingjian-CSRF`` header, which no other site's page can add without CORS allowing it.
- Open mode (no credentials configured) answers only requests addressed to a loopback name, so a
  web page cannot reach the local demo through DNS rebinding.
- Every answer carries a Content-Security-Policy without inline script, ``nosniff`` and
  ``frame-ancestors 'none'``; request ids are echoed and bound to the log lines of the request;
  CORS is off unless origins are configured.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.access import CSRF_HEADER, Access, AuthError, SessionEnded, is_loopback
from services.core.errors import problem
from services.core.settings import Settings

log = structlog.get_logger(__name__)

_WRITES = {"POST", "PUT", "PATCH", "DELETE"}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""No inline or foreign script anywhere. Inline *styles* are allowed because ECharts positions
its tooltips and legends with style attributes; styles cannot run code."""

SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class Limits:
    """The moving-window limiters of one API process (in memory; entries expire with their
    window, so the map of addresses and principals stays bounded by traffic in one window)."""

    def __init__(self, settings: Settings) -> None:
        self.writes = parse(settings.api_rate_limit) if settings.api_rate_limit else None
        self.reads = parse(settings.api_read_rate_limit) if settings.api_read_rate_limit else None
        self.failures = (parse(settings.api_auth_failure_rate_limit)
                         if settings.api_auth_failure_rate_limit else None)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def over(self, item: RateLimitItem | None, who: str) -> int | None:
        """Counts one request of ``who``; the seconds to wait when it is over ``item``."""
        if item is None or await self._limiter.hit(item, who):
            return None
        stats = await self._limiter.get_window_stats(item, who)
        return max(1, math.ceil(stats.reset_time - time.time()))


def _too_many(retry: int, what: str, setting: str) -> JSONResponse:
    return problem(429, headers={"Retry-After": str(retry)}, detail=(
        f"more than {what}; retry in {retry}s"
        + (", batch events with /v1/feedback/batch," if "write" in what else "")
        + f" or raise {setting}"))


def _refuse(status: int, detail: str) -> JSONResponse:
    return problem(status, detail)


class Guard:
    """Authenticates each request, then applies the rate limits and the cross-site checks.

    The outcome goes into the request's state (``principal``, ``auth_failure``) for the routes'
    ``Require`` dependencies, and the principal's name into the log context.
    """

    def __init__(self, app: ASGIApp, access: Access, limits: Limits,
                 cors_origins: list[str]) -> None:
        self.app = app
        self.access = access
        self.limits = limits
        self.cors_origins = set(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        address = request.client.host if request.client else "-"
        host = request.headers.get("host", "")
        method = request.method
        if self.access.open_mode and not self.access.insecure and \
                not is_loopback(urlsplit(f"//{host}").hostname or ""):
            await _refuse(403, (
                f"authentication is off, so this API answers only loopback host names, not "
                f"{host!r}; configure credentials (docs/security.md)"))(scope, receive, send)
            return
        principal = None
        failure = None
        try:
            principal = await self.access.authenticate(request.headers, request.cookies)
        except SessionEnded as exc:
            failure = str(exc)
        except AuthError as exc:
            failure = str(exc)
            retry = await self.limits.over(self.limits.failures, f"failed:{address}")
            log.info("authentication failed", path=request.url.path, reason=failure,
                     limited=retry is not None)
            if retry is not None:
                await _too_many(retry, "failed sign-ins from this address",
                                "VOC_API_AUTH_FAILURE_RATE_LIMIT")(scope, receive, send)
                return
        if principal is not None and principal.kind != "open":
            who = f"principal:{principal.kind}:{principal.name}"
        else:
            who = f"address:{address}"
        write = method in _WRITES
        item = self.limits.writes if write else self.limits.reads
        retry = await self.limits.over(item, who)
        if retry is not None:
            log.warning("rate limited", path=request.url.path, who=who)
            kind = "write" if write else "read"
            await _too_many(retry, f"{item} {kind} requests for this principal (or address)",
                            "VOC_API_RATE_LIMIT" if write else "VOC_API_READ_RATE_LIMIT"
                            )(scope, receive, send)
            return
        if write:
            refusal = self._cross_site(request, host, via_cookie=bool(principal
                                                                      and principal.via_cookie))
            if refusal:
                await _refuse(403, refusal)(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["auth_failure"] = failure
        state["client_address"] = address
        state["limits"] = self.limits
        with structlog.contextvars.bound_contextvars(principal=principal.name if principal else None):
            await self.app(scope, receive, send)

    def _cross_site(self, request: Request, host: str, *, via_cookie: bool) -> str | None:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != host and origin not in self.cors_origins:
            return (f"a write from another site ({origin}) is refused; add the origin to "
                    "VOC_CORS_ORIGINS if it is yours")
        if via_cookie and request.headers.get(CSRF_HEADER.lower()) != "1":
            return (f"a write signed in by the session cookie must send the {CSRF_HEADER}: 1 "
                    "header (the dashboard does); scripts should send their own credentials")
        return None


class SecurityHeaders:
    """Adds the security headers to every response, errors and 429s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in SECURITY_HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


class _BindRequestId(BaseHTTPMiddleware):
    """Puts the request id into structlog's context for the log lines of this request."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        with structlog.contextvars.bound_contextvars(request_id=correlation_id.get()):
            return await call_next(request)


def harden(app: FastAPI, settings: Settings, access: Access) -> None:
    """Add authentication with rate limits, CORS (when origins are set), request ids and the
    security headers, outermost last."""
    app.add_middleware(Guard, access=access, limits=Limits(settings),
                       cors_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-api-key", "authorization"])
    app.add_middleware(_BindRequestId)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    app.add_middleware(SecurityHeaders)

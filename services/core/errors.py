"""The one error shape of the HTTP API, and the handlers that give every error that shape.

Every 4xx and 5xx answer of the app is a JSON object with the members of RFC 9457 problem
details plus the inputs at fault::

    {"title": "Bad Request", "status": 400,
     "detail": "limit: Input should be greater than or equal to 1 (got '0')",
     "errors": [{"loc": ["query", "limit"], "msg": "Input should be greater than or equal to 1",
                 "type": "greater_than_equal"}]}

- ``detail`` is always one string a person can act on (what is wrong, what to do instead).
- ``errors`` lists each input at fault with its location as FastAPI names it (``query``,
  ``path``, ``header`` or ``body``, then the path inside it), a message and a machine-readable
  type; it is empty when no single input is at fault (authentication, rate limits, outages).

Clients therefore read ``detail`` for people and ``errors`` for programs, whatever route or
middleware refused them. The body goes out as ``application/json``, which every client of the
API already parses. On a :class:`ParameterRoute` (the query API) invalid query or path
parameters are a 400 naming them. Echoed inputs are cut short, so a hostile 5000-digit number
is not sent back whole.

The ingest app's validation answers (its own handler, which the cases routes share, bounds and
touchpoint-cap lists, the body guard) still have FastAPI's shape, ``{"detail": [...]}`` with
status 422, until the ingest routes use this module.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

log = structlog.get_logger(__name__)

PARAMETER_PLACES = frozenset({"query", "path", "header", "cookie"})
"""Locations whose invalid values are the caller's bad parameters (400), not a bad body (422)."""

MAX_ERRORS = 100
"""Most inputs one answer lists: a batch of 100,000 bad items must not answer megabytes."""

_ECHO_CHARS = 200


class ErrorItem(BaseModel):
    """One input at fault."""

    loc: list[str | int] = Field(description=(
        "Where: query, path, header or body, then the name or path inside it."),
        examples=[["query", "limit"]])
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="Machine-readable kind, e.g. bad_parameter, missing.")


class Problem(BaseModel):
    """The body of every error answer (RFC 9457 members plus ``errors``)."""

    title: str = Field(description="The HTTP status phrase.", examples=["Bad Request"])
    status: int = Field(description="The HTTP status code.", examples=[400])
    detail: str = Field(description="What went wrong and what to do, for people.")
    errors: list[ErrorItem] = Field(default_factory=list, description=(
        "Each input at fault; empty when none is (authentication, limits, outages)."))


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "A parameter is invalid; `errors` names it."},
    401: {"model": Problem, "description": "No valid credentials."},
    403: {"model": Problem, "description": "The caller may not do or see this."},
    429: {"model": Problem, "description": "Over a rate or stream limit; see Retry-After."},
}
"""The error answers every query route documents, for a router's ``responses``."""


class ApiError(HTTPException):
    """An error answer with the inputs at fault; raise it from routes and dependencies."""

    def __init__(self, status: int, detail: str, *, errors: Sequence[Mapping[str, Any]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=detail, headers=dict(headers or {}))
        self.errors = [dict(e) for e in errors]


def bad_parameter(parameter: str, message: str, *, status: int = 400,
                  where: str = "query") -> ApiError:
    """The answer to one invalid ``parameter`` (400 unless ``status`` says otherwise, e.g. a 403
    for a touchpoint outside the caller's scope)."""
    return ApiError(status, f"{parameter}: {message}", errors=[
        {"loc": [where, parameter], "msg": message,
         "type": "forbidden" if status == 403 else "bad_parameter"}])


def problem(status: int, detail: str, *, errors: Iterable[Mapping[str, Any]] = (),
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error answer itself, for code that answers without raising (middleware)."""
    body = Problem(title=_title(status), status=status, detail=detail,
                   errors=[ErrorItem.model_validate(e) for e in list(errors)[:MAX_ERRORS]])
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def short(value: Any) -> str:
    """An input as echoed in a message: its repr, cut to a readable length."""
    text = repr(value)
    if len(text) > _ECHO_CHARS:
        text = f"{text[:_ECHO_CHARS]}... ({len(text)} characters)"
    return text.encode("utf-8", "replace").decode("utf-8")


def validation_items(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic / FastAPI errors as ``errors`` items: location, message (naming the input it
    refused, cut short), type; the first ``MAX_ERRORS``."""
    items = []
    for error in errors[:MAX_ERRORS]:
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if "input" in error and error.get("type") != "missing":
            message = f"{message} (got {short(error['input'])})"
        items.append({"loc": [part if isinstance(part, int) else str(part)[:_ECHO_CHARS]
                              for part in error.get("loc", ())],
                      "msg": message[:4 * _ECHO_CHARS], "type": str(error.get("type", "invalid"))})
    return items


def _summary(items: Sequence[Mapping[str, Any]]) -> str:
    shown = "; ".join(f"{_where(i['loc'])}: {i['msg']}" for i in items[:3])
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return shown + more


def _where(loc: Sequence[str | int]) -> str:
    """``["query", "limit"]`` -> ``limit``; ``["body", "events", 2]`` -> ``body.events.2``."""
    if len(loc) == 2 and loc[0] in PARAMETER_PLACES:
        return str(loc[1])
    return ".".join(str(part) for part in loc)


def _from_detail(detail: Any) -> tuple[str, list[dict[str, Any]]]:
    """``detail`` of an ``HTTPException`` raised the FastAPI way, in the one shape: a string
    stays the detail; ``{"parameter": ..., "error": ...}`` names a query parameter."""
    if isinstance(detail, Mapping) and "parameter" in detail:
        parameter, message = str(detail["parameter"]), str(detail.get("error", "invalid"))
        return f"{parameter}: {message}", [
            {"loc": ["query", parameter], "msg": message, "type": "bad_parameter"}]
    return str(detail), []


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = getattr(exc, "headers", None)
    if isinstance(exc, ApiError):
        return problem(exc.status_code, str(exc.detail), errors=exc.errors, headers=headers)
    if isinstance(exc.detail, list):
        # A list of field errors is a 422 of the ingest routes, which keep FastAPI's shape
        # (``{"detail": [...]}``, what the OpenAPI document declares for 422) together with
        # their own validation answers until they raise ApiError.
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=headers)
    detail, errors = _from_detail(exc.detail)
    return problem(exc.status_code, detail, errors=errors, headers=headers)


class ParameterRoute(APIRoute):
    """A route whose invalid query, path or header parameters are a 400 naming them, in the one
    shape, rather than FastAPI's 422: for routes whose every input is a parameter (the query
    API). ``APIRouter(route_class=ParameterRoute)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                if not all(e.get("loc") and e["loc"][0] in PARAMETER_PLACES
                           for e in exc.errors()):
                    raise
                items = validation_items(exc.errors())
                raise ApiError(400, _summary(items), errors=items) from exc

        return route


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error answering a request", path=request.url.path,
              error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
    return problem(500, "the server failed to answer; its log names the cause under this "
                   "request's X-Request-ID")


async def _invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    items = validation_items(exc.errors())
    return problem(422, _summary(items), errors=items)


def install(app: FastAPI) -> None:
    """Give the error answers of ``app`` the one shape: ``HTTPException`` (ApiError included),
    unexpected errors (500), and invalid requests (422) unless the app handles those itself
    (the ingest routes refine them: a batch over its size limit is a 413)."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    if app.exception_handlers.get(RequestValidationError) is request_validation_exception_handler:
        app.add_exception_handler(RequestValidationError, _invalid)

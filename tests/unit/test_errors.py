"""The one error shape (services/core/errors.py), on a small app with the handlers installed.

Pure: no broker or store; the routes raise what the real routes raise. The real app's answers
are checked in test_query_api.py, test_access_scopes.py and test_hostile_inputs.py.
"""

from __future__ import annotations

import time
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.core import errors
from services.core.errors import ApiError, ParameterRoute, bad_parameter, problem
from tests.conftest import run


class Body(BaseModel):
    name: str


def app_with(body_handler: bool = False) -> FastAPI:
    app = FastAPI()
    if body_handler:
        @app.exception_handler(RequestValidationError)
        async def own(_: object, exc: RequestValidationError) -> JSONResponse:
            return JSONResponse({"own": len(exc.errors())}, status_code=413)

    queries = APIRouter(route_class=ParameterRoute)

    @queries.get("/typed")
    async def typed(limit: Annotated[int, Query(ge=1, le=10)] = 5) -> dict:
        return {"limit": limit}

    @app.get("/plain")
    async def plain(limit: Annotated[int, Query(ge=1, le=10)] = 5) -> dict:
        return {"limit": limit}

    @app.post("/body")
    async def body(item: Body) -> dict:
        return {"name": item.name}

    @app.get("/text")
    async def text() -> dict:
        raise HTTPException(409, "not allowed now: resolve it first")

    @app.get("/legacy")
    async def legacy() -> dict:
        raise HTTPException(400, {"parameter": "days", "error": "use 1-90"})

    @app.get("/list")
    async def listed() -> dict:
        raise HTTPException(422, [{"loc": ["body", "events", 3, "text"], "msg": "too long",
                                   "type": "too_long", "input": "x" * 5000}])

    @app.get("/scoped")
    async def scoped() -> dict:
        raise bad_parameter("touchpoint", "may not see it", status=403)

    @app.get("/limited")
    async def limited() -> dict:
        raise ApiError(429, "slow down", headers={"Retry-After": "7"})

    @app.get("/broken")
    async def broken() -> dict:
        raise RuntimeError("a bug")

    app.include_router(queries)
    errors.install(app)
    return app


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    return run(go())


def shape(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"title", "status", "detail", "errors"}, body
    assert body["status"] == response.status_code and isinstance(body["detail"], str)
    assert body["title"] and body["detail"]
    return body


def test_bad_query_parameter_is_400_naming_it() -> None:
    answer = call(app_with(), "GET", "/typed", params={"limit": "0"})
    assert answer.status_code == 400
    body = shape(answer)
    assert body["errors"] == [{"loc": ["query", "limit"], "type": "greater_than_equal",
                               "msg": "Input should be greater than or equal to 1 (got '0')"}]
    assert body["detail"].startswith("limit: ")


def test_invalid_requests_elsewhere_are_422_or_the_apps_own_answer() -> None:
    answer = call(app_with(), "POST", "/body", json={"name": 3})
    assert answer.status_code == 422
    assert shape(answer)["errors"][0]["loc"] == ["body", "name"]
    assert shape(call(app_with(), "GET", "/plain", params={"limit": "0"}))["status"] == 422
    own = call(app_with(body_handler=True), "POST", "/body", json={})
    assert (own.status_code, own.json()) == (413, {"own": 1})
    still = call(app_with(body_handler=True), "GET", "/typed", params={"limit": "x"})
    assert still.status_code == 400, "a ParameterRoute is 400 whatever the app does otherwise"


@pytest.mark.parametrize(("path", "status", "loc"), [
    ("/text", 409, None), ("/legacy", 400, ["query", "days"]),
    ("/scoped", 403, ["query", "touchpoint"]),
    ("/limited", 429, None), ("/broken", 500, None), ("/nowhere", 404, None)])
def test_every_error_has_the_one_shape(path: str, status: int, loc: list | None) -> None:
    answer = call(app_with(), "GET", path)
    assert answer.status_code == status
    body = shape(answer)
    assert [e["loc"] for e in body["errors"]] == ([loc] if loc else [])
    if path == "/limited":
        assert answer.headers["retry-after"] == "7"
    if path == "/broken":
        assert "a bug" not in answer.text, "internals stay in the log"


def test_field_error_lists_keep_fastapis_shape_for_now() -> None:
    """The ingest routes' 422 lists, until they raise ApiError (module docstring)."""
    answer = call(app_with(), "GET", "/list")
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "events", 3, "text"]]


@pytest.mark.serial
def test_echoed_input_is_cut_short() -> None:
    started = time.perf_counter()
    huge = call(app_with(), "GET", "/typed", params={"limit": "9" * 60_000})
    assert huge.status_code == 400 and len(huge.content) < 2000
    assert "(60002 characters)" in huge.json()["errors"][0]["msg"]
    assert time.perf_counter() - started < 1, "not quadratic in the input"


def test_problem_for_middleware() -> None:
    response = problem(503, "the store is down; retry", headers={"Retry-After": "5"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.body == (b'{"title":"Service Unavailable","status":503,'
                             b'"detail":"the store is down; retry","errors":[]}')

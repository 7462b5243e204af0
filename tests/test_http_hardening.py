"""Request ids, write rate limits and CORS on the API (pure middleware behaviour)."""

from __future__ import annotations


import httpx
import pytest
import structlog
from fastapi import FastAPI

from services.core.http import harden
from services.core.settings import load_settings
from tests.conftest import run


def app_with(rate: str | None = "3/minute", cors: list[str] | None = None) -> FastAPI:
    app = FastAPI()
    seen: list[object] = []

    @app.post("/write")
    async def write() -> dict:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return {"ok": True}

    @app.get("/read")
    async def read() -> dict:
        return {"ok": True}

    app.state.seen = seen
    harden(app, rate_limit=rate, cors_origins=cors or [])
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def test_request_id_is_echoed_or_made_and_bound_to_logs() -> None:
    app = app_with(rate=None)

    async def scenario() -> None:
        async with client(app) as c:
            mine = await c.post("/write", headers={"X-Request-ID": "8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d"})
            assert mine.headers["x-request-id"] == "8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d"
            made = await c.post("/write")
            assert len(made.headers["x-request-id"]) >= 32
        assert app.state.seen == ["8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d", made.headers["x-request-id"]]

    run(scenario())


def test_writes_are_limited_per_key_with_retry_after_and_reads_are_not() -> None:
    app = app_with("3/minute")

    async def scenario() -> None:
        async with client(app) as c:
            codes = [(await c.post("/write", headers={"X-API-Key": "a"})).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            limited = await c.post("/write", headers={"X-API-Key": "a"})
            assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
            assert "VOC_API_RATE_LIMIT" in limited.json()["detail"]
            assert (await c.post("/write", headers={"X-API-Key": "b"})).status_code == 200
            assert (await c.post("/write")).status_code == 200, "no key: limited by address"
            reads = [(await c.get("/read")).status_code for _ in range(5)]
            assert reads == [200] * 5

    run(scenario())


def test_cors_is_off_unless_origins_are_configured() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}

    async def scenario() -> None:
        async with client(app_with(rate=None)) as c:
            answer = await c.options("/write", headers=preflight)
            assert "access-control-allow-origin" not in answer.headers
        async with client(app_with(rate=None, cors=["https://voc.example.com"])) as c:
            ok = await c.options("/write", headers={**preflight, "Origin": "https://voc.example.com"})
            assert ok.headers["access-control-allow-origin"] == "https://voc.example.com"
            other = await c.options("/write", headers=preflight)
            assert "access-control-allow-origin" not in other.headers

    run(scenario())


def test_bad_rate_setting_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="VOC_API_RATE_LIMIT='fast'"):
        load_settings(api_rate_limit="fast")
    assert load_settings(api_rate_limit="").api_rate_limit is None

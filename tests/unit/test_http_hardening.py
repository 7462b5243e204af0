"""Request ids, rate limits after authentication, cross-site checks, security headers and CORS
(the middleware of services/core/http.py on a small app with real keys)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import Depends, FastAPI

from services.core.access import SIGNED_IN, Access, Caller, Public, Require, auth_router
from services.core.http import CONTENT_SECURITY_POLICY, harden
from services.core.settings import Settings, load_settings
from tests.access_fixtures import principals_file
from tests.conftest import run


def app_with(folder: Path | None = None, **overrides: object) -> tuple[FastAPI, dict[str, str]]:
    """A small app behind the real middleware; with ``folder``, keys for principals a and b."""
    app = FastAPI()
    seen: list[object] = []

    @app.post("/write", dependencies=[Depends(Require(SIGNED_IN))])
    async def write(who: Caller) -> dict:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return {"who": who.name}

    @app.get("/read", dependencies=[Depends(Require(SIGNED_IN))])
    async def read(who: Caller) -> dict:
        return {"who": who.name}

    @app.get("/open", dependencies=[Depends(Public())])
    async def open_route() -> dict:
        return {"ok": True}

    keys: dict[str, str] = {}
    if folder is not None:
        path, keys = principals_file(folder, {"a": {"roles": ["viewer"]},
                                              "b": {"roles": ["viewer"]}})
        overrides["api_keys_file"] = path
    settings: Settings = load_settings(**overrides)
    access = Access.from_settings(settings)
    app.include_router(auth_router(access))
    harden(app, settings, access)
    app.state.seen = seen
    return app, keys


def client(app: FastAPI, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


def test_request_id_is_echoed_or_made_and_bound_to_logs() -> None:
    app, _ = app_with(api_rate_limit="")

    async def scenario() -> None:
        async with client(app) as c:
            mine = await c.post("/write", headers={"X-Request-ID": "8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d"})
            assert mine.headers["x-request-id"] == "8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d"
            made = await c.post("/write")
            assert len(made.headers["x-request-id"]) >= 32
        assert app.state.seen == ["8f0c6f1e-3c0e-4b4e-9d4c-0d8f1b2a3c4d", made.headers["x-request-id"]]

    run(scenario())


def test_writes_and_reads_are_limited_per_principal(tmp_path: Path) -> None:
    app, keys = app_with(tmp_path, api_rate_limit="3/minute", api_read_rate_limit="4/minute")

    async def scenario() -> None:
        async with client(app) as c:
            a = {"X-API-Key": keys["a"]}
            codes = [(await c.post("/write", headers=a)).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            limited = await c.post("/write", headers=a)
            assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
            assert "VOC_API_RATE_LIMIT" in limited.json()["detail"]
            b = await c.post("/write", headers={"Authorization": f"Bearer {keys['b']}"})
            assert b.status_code == 200 and b.json() == {"who": "b"}, "b has its own budget"
            reads = [(await c.get("/read", headers=a)).status_code for _ in range(5)]
            assert reads == [200, 200, 200, 200, 429], "reads have their own, separate budget"
            over = await c.get("/read", headers=a)
            assert "VOC_API_READ_RATE_LIMIT" in over.json()["detail"]

    run(scenario())


def test_a_new_random_key_per_request_runs_into_the_failure_limit(tmp_path: Path) -> None:
    """The old limiter keyed on the raw header, so a random key per request was never limited.
    Failed credentials now count per client address, and a valid key is still served."""
    app, keys = app_with(tmp_path, api_auth_failure_rate_limit="3/minute")

    async def scenario() -> None:
        async with client(app) as c:
            codes = [(await c.post("/write", headers={"X-API-Key": f"guess-{i}"})).status_code
                     for i in range(5)]
            assert codes == [401, 401, 401, 429, 429]
            limited = await c.get("/read", headers={"Authorization": "Bearer not-a-key"})
            assert limited.status_code == 429
            assert "VOC_API_AUTH_FAILURE_RATE_LIMIT" in limited.json()["detail"]
            assert (await c.post("/write", headers={"X-API-Key": keys["a"]})).status_code == 200
            assert (await c.post("/write")).status_code == 401, "no credentials: 401, not 429"

    run(scenario())


def test_cross_site_writes_and_cookie_writes_without_the_csrf_header_are_refused(
        tmp_path: Path) -> None:
    app, keys = app_with(tmp_path)

    async def scenario() -> None:
        async with client(app) as c:
            refused = await c.post("/auth/login", json={"credential": keys["a"]})
            assert refused.status_code == 403, "sign-in needs the CSRF header too"
            login = await c.post("/auth/login", json={"credential": keys["a"]},
                                 headers={"X-Tingjian-CSRF": "1"})
            assert login.status_code == 200 and login.json()["principal"]["name"] == "a"
            cookie = login.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
            assert keys["a"] not in login.headers["set-cookie"], "the cookie never holds the key"
            bare = await c.post("/write")
            assert bare.status_code == 403 and "X-Tingjian-CSRF" in bare.json()["detail"]
            ok = await c.post("/write", headers={"X-Tingjian-CSRF": "1"})
            assert ok.status_code == 200 and ok.json() == {"who": "a"}
            foreign = await c.post("/write", headers={"X-Tingjian-CSRF": "1",
                                                      "Origin": "https://evil.example"})
            assert foreign.status_code == 403 and "another site" in foreign.json()["detail"]
            same = await c.post("/write", headers={"X-Tingjian-CSRF": "1",
                                                   "Origin": "http://127.0.0.1"})
            assert same.status_code == 200
            keyed = await c.post("/write", headers={"X-API-Key": keys["b"]})
            assert keyed.json() == {"who": "b"}, "a header credential wins over the cookie"
            out = await c.post("/auth/logout", headers={"X-Tingjian-CSRF": "1"})
            assert out.status_code == 204
            assert (await c.post("/write", headers={"X-Tingjian-CSRF": "1"})).status_code == 401

    run(scenario())


def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    app, keys = app_with(tmp_path, api_read_rate_limit="3/minute")

    async def scenario() -> None:
        async with client(app) as c:
            answers = [await c.get("/open"), await c.get("/read"), await c.get("/nowhere")]
            answers += [await c.get("/read", headers={"X-API-Key": keys["a"]}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 401, 404, 200, 200, 200, 429]
        for answer in answers:
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert answer.headers["x-content-type-options"] == "nosniff"
        policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
        assert policy["script-src"] == "'self'", "no inline or foreign script"
        assert policy["frame-ancestors"] == "'none'"

    run(scenario())


def test_open_mode_answers_only_loopback_host_names() -> None:
    """Without credentials every caller may do everything, so only requests addressed to this
    machine by name are served: a web page cannot reach the demo through DNS rebinding."""
    app, _ = app_with()

    async def scenario() -> None:
        for host, status in [("127.0.0.1", 200), ("localhost:8000", 200), ("[::1]:8000", 200),
                             ("attacker.example", 403), ("10.0.0.5:8000", 403)]:
            async with client(app, host) as c:
                answer = await c.get("/read")
                assert answer.status_code == status, host
                if status == 200:
                    assert answer.json() == {"who": "local"}

    run(scenario())


def test_cors_is_off_unless_origins_are_configured() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}

    async def scenario() -> None:
        async with client(app_with()[0]) as c:
            answer = await c.options("/write", headers=preflight)
            assert "access-control-allow-origin" not in answer.headers
        async with client(app_with(cors_origins=["https://voc.example.com"])[0]) as c:
            ok = await c.options("/write", headers={**preflight, "Origin": "https://voc.example.com"})
            assert ok.headers["access-control-allow-origin"] == "https://voc.example.com"
            other = await c.options("/write", headers=preflight)
            assert "access-control-allow-origin" not in other.headers

    run(scenario())


def test_bad_rate_setting_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="VOC_API_RATE_LIMIT='fast'"):
        load_settings(api_rate_limit="fast")
    with pytest.raises(ValueError, match="VOC_API_READ_RATE_LIMIT='lots'"):
        load_settings(api_read_rate_limit="lots")
    assert load_settings(api_rate_limit="").api_rate_limit is None

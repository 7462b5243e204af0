"""Who may call what, generated from the app's route table and tried over real HTTP.

Every route of the composed app (``services/api.py``) must declare its role with ``Require`` or
``Public``; the probes are the only undeclared routes. Each declared role must be the one this
file expects (a new route must be added here on purpose), and then every route is called with
no credentials, with API keys of each role and with OpenID Connect tokens of each role (signed
by a locally generated RSA key, JWKS served over local HTTP), plus tokens that must fail:
expired, for another audience, from another issuer, with a bad signature, with an unknown key
id. Without credentials a route answers 401, with the wrong role 403, and with the right role
neither (the request itself may still be a 404 or a 422: it got past the door).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends

from services.api import create_app
from services.core.access import Public, expand, route_roles
from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.core.store import open_store
from tests.access_fixtures import Issuer, JwksServer, principals_file
from tests.conftest import run
from tests.pipeline_harness import running

pytestmark = pytest.mark.slow

PRINCIPALS = {
    "src-a": {"roles": ["ingest"], "sources": ["src-a"]},
    "viewer": {"roles": ["viewer"]},
    "operator": {"roles": ["operator"]},
    "admin": {"roles": ["admin"]},
}

CASE_ACTIONS = ("ack", "assign", "start", "comment", "resolve", "close", "reopen", "follow-up")
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/"): "public",
    ("GET", "/dashboard"): "public",
    ("GET", "/dashboard/"): "public",
    ("GET", "/dashboard/assets/{name}"): "public",
    ("POST", "/auth/login"): "public",
    ("POST", "/auth/logout"): "public",
    ("GET", "/auth/session"): "signed-in",
    ("POST", "/v1/feedback"): "ingest",
    ("POST", "/v1/feedback/batch"): "ingest",
    ("POST", "/v1/sources/{source}/surveys"): "ingest",
    ("POST", "/v1/sources/{source}/calls"): "ingest",
    ("POST", "/v1/sources/{source}/social"): "ingest",
    ("POST", "/v1/sources/{source}/emails"): "ingest",
    ("POST", "/v1/sources/{source}/reviews"): "ingest",
    ("GET", "/v1/metrics"): "viewer",
    ("GET", "/v1/touchpoints"): "viewer",
    ("GET", "/v1/taxonomy"): "viewer",
    ("GET", "/v1/scores"): "viewer",
    ("GET", "/v1/drivers"): "viewer",
    ("GET", "/v1/feedback"): "viewer",
    ("GET", "/v1/journey"): "viewer",
    ("GET", "/v1/dimensions"): "viewer",
    ("GET", "/v1/dimensions/{name}"): "viewer",
    ("GET", "/v1/contact-center/coaching"): "viewer",
    ("GET", "/v1/contact-center/{by}"): "viewer",
    ("GET", "/v1/customers/{customer_id}/timeline"): "viewer",
    ("GET", "/v1/customers/kpis"): "viewer",
    ("GET", "/v1/emerging"): "viewer",
    ("GET", "/v1/emerging/clusters"): "viewer",
    ("GET", "/v1/taxonomy/preview"): "viewer",
    ("GET", "/v1/taxonomy/changes"): "viewer",
    ("POST", "/v1/taxonomy/changes"): "operator",
    ("GET", "/v1/stream"): "viewer",
    ("GET", "/v1/cases"): "viewer",
    ("GET", "/v1/cases/metrics"): "viewer",
    ("GET", "/v1/cases/{case_id}"): "viewer",
    ("GET", "/openapi.json"): "viewer",
    ("GET", "/docs"): "viewer",
    **{("POST", f"/v1/cases/{{case_id}}/{action}"): "operator" for action in CASE_ACTIONS},
    ("GET", "/metrics"): "admin",
    ("GET", "/metrics/"): "admin",
}
FILL = {"{case_id}": "no-such-case", "{source}": "src-a", "{name}": "no-such-asset.js",
        "{by}": "agent"}


def may(role: str, granted: list[str] | None) -> bool:
    """Whether a caller with ``granted`` roles (None: no credentials) passes ``role``."""
    if role == "public":
        return True
    if granted is None:
        return False
    return role == "signed-in" or role in expand(granted)


def test_every_route_declares_the_expected_role(settings: Settings, tmp_path: Path) -> None:
    async def scenario() -> dict[tuple[str, str], str]:
        store = await open_store(f"chdb://{tmp_path / 'chdb'}")
        try:
            app = create_app(settings, "127.0.0.1:1", store)
            table = route_roles(app)
            stray = APIRouter(prefix="/v1")

            @stray.get("/stray")
            async def undeclared() -> dict:
                return {}

            @stray.get("/declared", dependencies=[Depends(Public())])
            async def declared() -> dict:
                return {}

            app.include_router(stray)
            with pytest.raises(ValueError, match=r"\['GET /v1/stray'\]"):
                route_roles(app)
            return table
        finally:
            await store.close()

    assert run(scenario()) == EXPECTED


def test_route_role_matrix_for_keys_and_tokens(broker: LocalBroker, settings: Settings,
                                              tmp_path: Path) -> None:
    issuer = Issuer()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    create_topics(settings, broker.bootstrap)

    with JwksServer(issuer) as jwks:
        settings = settings.model_copy(update={
            "api_keys_file": keys_file, "oidc_issuer": issuer.issuer,
            "oidc_audience": issuer.audience, "oidc_jwks_url": jwks.url,
            "api_rate_limit": "100000/minute", "api_read_rate_limit": "100000/minute",
            "api_auth_failure_rate_limit": "100000/minute"})
        callers: list[tuple[str, dict[str, str], list[str] | None]] = [("nobody", {}, None)]
        callers += [(f"{name} key", {"X-API-Key": key}, PRINCIPALS[name]["roles"])
                    for name, key in keys.items()]
        callers += [(f"{role} token", {"Authorization": f"Bearer {issuer.token(roles=[role])}"},
                     [role]) for role in ("viewer", "operator", "admin")]
        callers.append(("token without roles",
                        {"Authorization": f"Bearer {issuer.token(roles=['auditor'])}"}, []))
        bad_tokens = {
            "expired": issuer.token(roles=["admin"], expires_in=-120),
            "for another audience": issuer.token(roles=["admin"], audience="someone-else"),
            "from another issuer": issuer.token(roles=["admin"], issuer="https://evil.example"),
            "with a bad signature": issuer.token(roles=["admin"], key=other_key),
            "with an unknown key id": issuer.token(roles=["admin"], key=other_key, kid="k9"),
        }
        reasons = {"expired": "expired", "for another audience": "not meant for this API",
                   "from another issuer": "not issued by",
                   "with a bad signature": "signature does not verify",
                   "with an unknown key id": "key id 'k9'"}

        async def scenario() -> list[str]:
            store = await open_store(f"chdb://{tmp_path / 'chdb'}")
            wrong: list[str] = []
            try:
                table = route_roles(create_app(settings, broker.bootstrap, store))
                async with running(settings, ("ingest",), broker.bootstrap, store=store) as url, \
                        httpx.AsyncClient(base_url=url, timeout=30) as client:
                    for (method, path), role in sorted(table.items()):
                        for who, headers, granted in callers:
                            status = await call(client, method, path, headers)
                            expected = (None if may(role, granted)
                                        else 401 if granted is None else 403)
                            if (expected is None and status in (401, 403)) or \
                                    (expected is not None and status != expected):
                                wrong.append(f"{method} {path} ({role}) as {who}: {status}")
                        if role == "public":
                            continue
                        for what, token in bad_tokens.items():
                            answer = await call(client, method, path,
                                                {"Authorization": f"Bearer {token}"}, full=True)
                            if answer.status_code != 401 or \
                                    reasons[what] not in answer.json()["detail"]:
                                wrong.append(f"{method} {path} with a token {what}: "
                                             f"{answer.status_code} {answer.text[:200]}")
            finally:
                await store.close()
            return wrong

        wrong = run(scenario())
        assert wrong == [], "\n".join(wrong)
        assert jwks.fetches <= 2, "one fetch, plus at most one refresh for the unknown key id"


async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
               *, full: bool = False) -> Any:
    """Status of one request (the response itself with ``full``); the stream is read only up
    to its status line, and writes send an empty JSON body and the dashboard's CSRF header."""
    for placeholder, value in FILL.items():
        path = path.replace(placeholder, value)
    headers = {**headers, "X-Tingjian-CSRF": "1"}
    if path == "/v1/stream":
        async with client.stream(method, path, headers=headers) as response:
            if full:
                await response.aread()
                return response
            return response.status_code
    response = await client.request(method, path, headers=headers,
                                    json={} if method == "POST" else None)
    return response if full else response.status_code

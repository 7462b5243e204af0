"""OpenID Connect signing keys fetched from a JWKS URL: cached, refetched at most every 30 s
for an unknown key id, and kept in use while the provider is down. The provider is a real
HTTP server on loopback (tests/access_fixtures.py), so these are not unit tests; the rest of
the credential checks are in tests/unit/test_access.py."""

from __future__ import annotations

import pytest

from services.core import access as access_module
from services.core.access import Access, AuthError
from services.core.settings import load_settings
from tests.access_fixtures import Issuer, JwksServer
from tests.conftest import run


def test_signing_keys_are_cached_and_refetched_for_a_new_key_id_at_most_every_30_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = Issuer()
    clock = [1000.0]
    monkeypatch.setattr(access_module.time, "monotonic", lambda: clock[0])
    with JwksServer(issuer) as server:
        access = Access.from_settings(load_settings(
            oidc_issuer=issuer.issuer, oidc_audience=issuer.audience,
            oidc_jwks_url=server.url, oidc_jwks_cache_s=600))

        async def scenario() -> None:
            for _ in range(3):
                await access.verify(issuer.token(roles=["viewer"]))
            assert server.fetches == 1, "cached"
            rotated = Issuer(kid="k2")
            issuer.private, issuer.kid = rotated.private, "k2"  # the issuer rotates its key
            clock[0] += 5
            with pytest.raises(AuthError, match="'k2'"):
                await access.verify(issuer.token(roles=["viewer"]))
            assert server.fetches == 1, "an unknown key id refetches at most every 30 s"
            clock[0] += 30
            assert (await access.verify(issuer.token(roles=["viewer"]))).name == "alice"
            assert server.fetches == 2
            for i in range(20):  # made-up key ids do not turn into requests to the issuer
                with pytest.raises(AuthError):
                    await access.verify(issuer.token(roles=["viewer"], kid=f"made-up-{i}"))
            assert server.fetches == 2
            clock[0] += 601
            await access.verify(issuer.token(roles=["viewer"]))
            assert server.fetches == 3, "stale keys are fetched again"

        run(scenario())


def test_keys_stay_in_use_while_the_provider_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = Issuer()
    clock = [1000.0]
    monkeypatch.setattr(access_module.time, "monotonic", lambda: clock[0])
    with JwksServer(issuer) as server:
        access = Access.from_settings(load_settings(
            oidc_issuer=issuer.issuer, oidc_audience=issuer.audience,
            oidc_jwks_url=server.url, oidc_jwks_cache_s=60))
        run(access.verify(issuer.token(roles=["viewer"])))
    clock[0] += 120  # stale, and the provider is gone

    async def scenario() -> None:
        assert (await access.verify(issuer.token(roles=["viewer"]))).name == "alice"

    run(scenario())

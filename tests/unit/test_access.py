"""Credentials one by one: keys files, OpenID Connect tokens and their signing keys, session
cookies, and the refusal to serve an open API beyond loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from services.cli import main
from services.core.access import (
    OPEN,
    Access,
    AuthError,
    KeyRing,
    SessionEnded,
    check_exposure,
    is_loopback,
    key_hash,
)
from services.core.settings import load_settings
from tests.access_fixtures import Issuer, principals_file
from tests.conftest import run


def test_principals_file_grants_roles_scopes_and_rotating_keys(tmp_path: Path) -> None:
    path = tmp_path / "principals.yaml"
    path.write_text(f"""
ops-alice:
  roles: [operator]
  keys: [{key_hash('old-alice')}, {key_hash('new-alice')}]
  touchpoints: [delivery]
  teams: [cx-ops]
gateway:
  roles: [ingest]
  sources: ["*"]
  keys: [{key_hash('gw')}]
survey-tool:
  roles: [ingest]
  keys: [{key_hash('survey')}]
""", encoding="utf-8")
    ring = KeyRing()
    ring.load_principals(path)
    old, new = ring.lookup("old-alice"), ring.lookup("new-alice")
    assert old is not None and new is not None and old.name == new.name == "ops-alice"
    assert old.roles == frozenset({"operator", "viewer"}), "operator implies viewer"
    assert (old.touchpoints, old.teams) == (frozenset({"delivery"}), frozenset({"cx-ops"}))
    gateway, survey = ring.lookup("gw"), ring.lookup("survey")
    assert gateway is not None and gateway.foreign_sources({"a", "b"}) == []
    assert survey is not None and survey.foreign_sources({"survey-tool", "x"}) == ["x"], \
        "an ingest principal sends for its own name unless sources say otherwise"
    assert ring.lookup("nope") is None


@pytest.mark.parametrize(("document", "error"), [
    (f"alice: {{roles: [superuser], keys: [{key_hash('k')}]}}", "roles are ingest, viewer"),
    ("alice: {roles: [viewer], keys: [plaintext-key]}", "sha256 hex"),
    ("alice: {roles: [viewer]}", "keys"),
    (f"alice: {{roles: [viewer], keys: [{key_hash('k')}], touchpoints: []}}", "touchpoints"),
    (f"alice: {{roles: [viewer], keys: [{key_hash('k')}]}}\n"
     f"bob: {{roles: [admin], keys: [{key_hash('k')}]}}", "both 'alice' and 'bob'"),
    ("[just, a, list]", "expected a mapping"),
])
def test_principals_file_errors_name_the_file_and_the_entry(tmp_path: Path, document: str,
                                                             error: str) -> None:
    path = tmp_path / "principals.yaml"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ValueError, match="VOC_API_KEYS_FILE") as caught:
        KeyRing().load_principals(path)
    assert error in str(caught.value)


def test_a_name_in_both_keys_files_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "sources.yaml"
    legacy.write_text(f"survey-tool: {key_hash('a')}\n", encoding="utf-8")
    principals, _ = principals_file(tmp_path, {"survey-tool": {"roles": ["viewer"]}})
    with pytest.raises(ValueError, match="defined twice"):
        Access.from_settings(load_settings(ingest_api_keys_file=legacy,
                                           api_keys_file=principals))


def access_for(tmp_path: Path, issuer: Issuer, **overrides: object) -> Access:
    return Access.from_settings(load_settings(**issuer.settings(tmp_path / "jwks.json"),
                                              **overrides))


def test_tokens_are_checked_for_signature_issuer_audience_and_lifetime(tmp_path: Path) -> None:
    issuer = Issuer()
    access = access_for(tmp_path, issuer)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def scenario() -> None:
        good = await access.verify(issuer.token(roles=["operator"], name="王工",
                                                voc_touchpoints=["delivery"], voc_teams="cx-ops"))
        assert (good.name, good.kind, good.roles) == ("王工", "oidc",
                                                     frozenset({"operator", "viewer"}))
        assert (good.touchpoints, good.teams) == (frozenset({"delivery"}), frozenset({"cx-ops"}))
        assert good.expires_at is not None and good.expires_at > time.time()
        nested = access_for(tmp_path, issuer, oidc_roles_claim="realm_access.roles")
        keycloak = await nested.verify(issuer.token(realm_access={"roles": ["admin", "x"]}))
        assert "admin" in keycloak.roles
        bad = {
            "expired": issuer.token(roles=["admin"], expires_in=-120),
            "not meant for this API": issuer.token(roles=["admin"], audience="other"),
            "not issued by": issuer.token(roles=["admin"], issuer="https://evil.example"),
            "does not verify": issuer.token(roles=["admin"], key=other),
            "key id 'k2'": issuer.token(roles=["admin"], key=other, kid="k2"),
            "'HS256'": jwt.encode({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x",
                                   "exp": int(time.time()) + 60, "roles": ["admin"]},
                                  "s" * 32, algorithm="HS256", headers={"kid": "k1"}),
            "'none'": jwt.encode({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x",
                                  "exp": int(time.time()) + 60}, None, algorithm="none"),
        }
        for reason, token in bad.items():
            with pytest.raises(AuthError, match=reason):
                await access.verify(token)
        no_exp = jwt.encode({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x"},
                            issuer.private, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(AuthError, match="exp"):
            await access.verify(no_exp)

    run(scenario())


def test_a_jwks_file_without_keys_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "jwks.json"
    broken.write_text('{"keys": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="VOC_OIDC_JWKS_FILE"):
        Access.from_settings(load_settings(oidc_issuer="https://id.example", oidc_audience="a",
                                           oidc_jwks_file=broken))


def test_a_jwks_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    issuer = Issuer()
    access = access_for(tmp_path, issuer)

    async def scenario() -> None:
        await access.verify(issuer.token(roles=["viewer"]))
        rotated = Issuer(kid="k2")
        (tmp_path / "jwks.json").write_text(json.dumps(rotated.jwks()), encoding="utf-8")
        import os

        stat = (tmp_path / "jwks.json").stat()
        os.utime(tmp_path / "jwks.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert (await access.verify(rotated.token(roles=["viewer"]))).kind == "oidc"
        with pytest.raises(AuthError, match="'k1'"):
            await access.verify(issuer.token(roles=["viewer"]))

    run(scenario())


def test_sessions_are_signed_end_and_follow_key_revocation(tmp_path: Path) -> None:
    path, keys = principals_file(tmp_path, {"alice": {"roles": ["operator"]}})
    settings = load_settings(api_keys_file=path, session_secret="s" * 32, session_max_age_s=60)
    access = Access.from_settings(settings)

    async def scenario() -> None:
        alice = await access.verify(keys["alice"])
        cookie = access.sessions.issue(alice)
        assert keys["alice"] not in cookie
        found = await access.authenticate({}, {"voc_session": cookie})
        assert found is not None and (found.name, found.via_cookie) == ("alice", True)
        for forged in (cookie[:-2] + "xx", cookie.replace(".", "..", 1), "garbage"):
            with pytest.raises(SessionEnded):
                await access.authenticate({}, {"voc_session": forged})
        other_process = Access.from_settings(settings.model_copy(update={"session_secret": None}))
        with pytest.raises(SessionEnded):
            await other_process.authenticate({}, {"voc_session": cookie})
        later = tmp_path / "later"
        later.mkdir()
        revoked = Access.from_settings(settings.model_copy(update={
            "api_keys_file": principals_file(later, {"alice": {"roles": ["operator"]}})[0]}))
        with pytest.raises(SessionEnded):  # alice's old key is gone from the file
            await revoked.authenticate({}, {"voc_session": cookie})

    run(scenario())


def test_a_token_session_ends_with_the_token(tmp_path: Path) -> None:
    issuer = Issuer()
    access = access_for(tmp_path, issuer, session_secret="s" * 32)

    async def scenario() -> None:
        short = await access.verify(issuer.token(roles=["viewer"], expires_in=1))
        cookie = access.sessions.issue(short)
        assert (await access.authenticate({}, {"voc_session": cookie})).roles == \
            frozenset({"viewer"})
        time.sleep(1.1)
        with pytest.raises(SessionEnded):
            await access.authenticate({}, {"voc_session": cookie})

    run(scenario())


def test_open_mode_only_without_any_credentials(tmp_path: Path) -> None:
    async def scenario() -> None:
        assert await Access.from_settings(load_settings()).authenticate({}, {}) is OPEN
        path, _ = principals_file(tmp_path, {"a": {"roles": ["viewer"]}})
        assert await Access.from_settings(load_settings(api_keys_file=path)).authenticate(
            {}, {}) is None

    run(scenario())


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "voc.example.com", ""))


def test_an_open_api_beyond_loopback_is_refused_unless_insisted(tmp_path: Path) -> None:
    check_exposure(load_settings(http_host="127.0.0.1"))
    with pytest.raises(ValueError, match="--insecure-no-auth"):
        check_exposure(load_settings(http_host="0.0.0.0"))
    check_exposure(load_settings(http_host="0.0.0.0", insecure_no_auth=True))
    path, _ = principals_file(tmp_path, {"a": {"roles": ["viewer"]}})
    check_exposure(load_settings(http_host="0.0.0.0", api_keys_file=path))


@pytest.mark.parametrize("command", [["up", "--no-demo"], ["ingest"]])
def test_cli_refuses_to_serve_an_open_api_beyond_loopback(command: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VOC_API_KEYS_FILE", "VOC_INGEST_API_KEYS_FILE", "VOC_OIDC_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOC_HTTP_HOST", "0.0.0.0")
    result = CliRunner().invoke(main, command)
    assert result.exit_code != 0
    assert "VOC_API_KEYS_FILE" in result.output and "--insecure-no-auth" in result.output


def test_oidc_settings_must_be_complete_and_asymmetric() -> None:
    with pytest.raises(ValueError, match="VOC_OIDC_AUDIENCE"):
        load_settings(oidc_issuer="https://id.example")
    with pytest.raises(ValueError, match="VOC_OIDC_ALGORITHMS"):
        load_settings(oidc_algorithms=["HS256"])
    with pytest.raises(ValueError, match="need VOC_OIDC_ISSUER"):
        load_settings(oidc_jwks_url="https://id.example/jwks")

"""Credentials for tests that call the API as someone: a principals file with fresh keys, and
an RSA signing key with its JWKS for OpenID Connect tokens."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.core.access import Access, key_hash
from services.core.http import harden
from services.core.settings import Settings


def principals_file(folder: Path, principals: dict[str, dict[str, Any]]
                    ) -> tuple[Path, dict[str, str]]:
    """A VOC_API_KEYS_FILE for ``principals`` (name -> roles and scopes); returns it and each
    principal's key."""
    keys = {name: f"k-{secrets.token_urlsafe(24)}" for name in principals}
    document = {name: {**entry, "keys": [key_hash(keys[name])]}
                for name, entry in principals.items()}
    path = folder / "principals.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path, keys


def secured(app: FastAPI, settings: Settings) -> FastAPI:
    """``app`` behind the same authentication and limits as the real API."""
    harden(app, settings, Access.from_settings(settings))
    return app


class Issuer:
    """A local OpenID Connect issuer: an RSA key, its JWKS, and tokens signed with it."""

    def __init__(self, issuer: str = "https://id.example.test/realms/voc",
                 audience: str = "tingjian", kid: str = "k1") -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, *, roles: list[str] | None = None, name: str = "alice",
              expires_in: float = 600, key: Any = None, kid: str | None = None,
              issuer: str | None = None, audience: str | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": issuer or self.issuer, "aud": audience or self.audience, "sub": f"u-{name}",
                "preferred_username": name, "iat": now, "exp": now + int(expires_in),
                "roles": roles or [], **claims}
        return jwt.encode(body, key or self.private, algorithm="RS256",
                          headers={"kid": kid or self.kid})

    def settings(self, jwks_file: Path) -> dict[str, Any]:
        """Settings overrides that trust this issuer through a JWKS file."""
        jwks_file.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return {"oidc_issuer": self.issuer, "oidc_audience": self.audience,
                "oidc_jwks_file": jwks_file}


class JwksServer:
    """Serves an issuer's JWKS over local HTTP and counts the fetches (a real HTTP server: the
    verifier's cache and refresh are what is under test)."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.fetches = 0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                served.fetches += 1
                body = json.dumps(served.issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

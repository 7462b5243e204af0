"""Who may read and act: principals, their roles and scopes, and how a request proves who it is.

Why it is built this way:
- **One place decides who is calling.** ``services/core/http.py`` authenticates every request
  once, before its body is parsed, through :meth:`Access.authenticate`, so rate limits count per
  authenticated principal and failed attempts per client address. Routes never read credentials.
- **Every route declares who may call it** with one dependency, :class:`Require` (a role, or any
  signed-in principal) or :class:`Public`. ``tests/e2e/test_access_matrix.py`` walks the app's route
  table, so a route added without a declaration fails the suite.
- **Roles** (docs/security.md): ``ingest`` sends feedback for its sources; ``viewer`` reads
  scores, drivers, feedback, cases, the stream and the dashboard; ``operator`` also acts on cases;
  ``admin`` also reads ``/metrics``. Each of viewer < operator < admin implies the ones before;
  ``ingest`` is separate (a sending system reads nothing, a person sends nothing).
- **Scopes.** A principal may be limited to touchpoints and to teams. Touchpoints limit everything
  that has one (scores, drivers, feedback, alerts, cases, the stream); teams limit alerts and
  cases. Asking for something outside the scope is 403; lists leave it out.
- **Credentials.** API keys are stored only as SHA-256 hashes, several per principal so they
  rotate without downtime. People use OpenID Connect bearer tokens, verified by PyJWT against the
  issuer's signing keys (never our own crypto). The dashboard trades either for a signed session
  cookie (itsdangerous), so the page's own requests and its EventSource carry no secret the
  page's scripts could read.
- **Open mode.** With no credentials configured, every caller is the ``local`` principal with
  every role: the demo (``make run``) on loopback. :func:`check_exposure` refuses that on any
  other address unless ``--insecure-no-auth`` says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import jwt
import structlog
import yaml
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.core.errors import bad_parameter
from services.core.settings import Settings

log = structlog.get_logger(__name__)

Role = Literal["ingest", "viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "viewer", "operator", "admin")
IMPLIED: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "viewer": frozenset({"viewer"}),
    "operator": frozenset({"operator", "viewer"}),
    "admin": frozenset({"admin", "operator", "viewer"}),
}
SIGNED_IN = "signed-in"
"""Pseudo-role of routes any authenticated principal may call (its own session)."""

KEY_HEADER = "X-API-Key"
CSRF_HEADER = "X-Tingjian-CSRF"
SESSION_COOKIE = "voc_session"
ANY_SOURCE = "*"
JWKS_MIN_REFRESH_S = 30.0
"""An unknown key id fetches the issuer's keys again at most this often, so tokens with made-up
key ids cannot turn this API into a flood of requests to the identity provider."""
_JWKS_MAX_BYTES = 1 << 20
_HEX = re.compile(r"^[0-9a-f]{64}$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def key_hash(key: str) -> str:
    """The hex SHA-256 that the keys files store for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def expand(roles: Iterable[str]) -> frozenset[str]:
    """The roles a set of granted roles amounts to (admin implies operator implies viewer)."""
    return frozenset().union(*(IMPLIED[r] for r in roles if r in IMPLIED))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``None`` scopes mean "not limited"."""

    name: str
    roles: frozenset[str]
    kind: Literal["key", "oidc", "open"]
    sources: frozenset[str] | None = None
    touchpoints: frozenset[str] | None = None
    teams: frozenset[str] | None = None
    expires_at: float | None = None
    key_hash: str | None = field(default=None, repr=False)
    via_cookie: bool = False

    def has(self, role: str) -> bool:
        return role == SIGNED_IN or role in self.roles

    @property
    def limited(self) -> bool:
        return self.touchpoints is not None or self.teams is not None

    def sees_touchpoint(self, touchpoint: str | None) -> bool:
        return self.touchpoints is None or touchpoint in self.touchpoints

    def sees_team(self, team: str | None) -> bool:
        return self.teams is None or team in self.teams

    def sees(self, row: Mapping[str, Any]) -> bool:
        """Whether a row with a touchpoint (and, for alerts and cases, a team) is in scope."""
        if not self.sees_touchpoint(row.get("touchpoint")):
            return False
        return "team" not in row or self.sees_team(row["team"])

    def foreign_sources(self, sources: Iterable[str]) -> list[str]:
        """The sources among ``sources`` this principal may not send for."""
        if self.sources is None or ANY_SOURCE in self.sources:
            return []
        return sorted(set(sources) - self.sources)

    def public(self) -> dict[str, Any]:
        """What the principal may know about itself (the dashboard header shows it)."""
        granted = [r for r in ROLES if r in self.roles]
        top = next((r for r in ("admin", "operator", "viewer", "ingest") if r in self.roles), None)
        return {"name": self.name, "kind": self.kind, "role": top, "roles": granted,
                "touchpoints": sorted(self.touchpoints) if self.touchpoints is not None else None,
                "teams": sorted(self.teams) if self.teams is not None else None,
                "sources": sorted(self.sources) if self.sources is not None else None,
                "expires_at": self.expires_at}


OPEN = Principal(name="local", roles=frozenset(ROLES), kind="open")
"""Everyone, when no credentials are configured (the loopback demo)."""


class AuthError(Exception):
    """Credentials were presented and are not valid; the message says why (never the secret)."""


class SessionEnded(AuthError):
    """The session cookie is expired, revoked or not ours. Not counted as a failed sign-in: the
    browser sends it with every request until it is replaced, and checking it costs one HMAC."""


# ---------------------------------------------------------------------------------------- keys


class _PrincipalIn(BaseModel):
    """One entry of VOC_API_KEYS_FILE."""

    model_config = ConfigDict(extra="forbid")

    roles: list[Role] = Field(min_length=1)
    keys: list[str] = Field(min_length=1, description="sha256 hex of each key")
    sources: list[str] | None = Field(default=None, min_length=1)
    touchpoints: list[str] | None = Field(default=None, min_length=1)
    teams: list[str] | None = Field(default=None, min_length=1)


def _read_yaml(path: Path, setting: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{setting}={path}: cannot read it: {exc}") from exc


def _hashes(path: Path, setting: str, who: str, values: Iterable[object]) -> list[str]:
    out = []
    for entry in values:
        if not isinstance(entry, str) or not _HEX.match(entry.lower()):
            raise ValueError(f"{setting}={path}: {who} needs the sha256 hex (64 characters) of "
                             "its key, e.g. from `printf %s \"$KEY\" | sha256sum`")
        out.append(entry.lower())
    return out


class KeyRing:
    """Principals by the hash of their keys.

    A dict lookup by hash, not a constant-time compare against each key: the lookup's timing can
    only reveal something about the hash of a guess, and SHA-256 hides the key behind it.
    """

    def __init__(self, principals: Mapping[str, Principal] | None = None) -> None:
        self._by_hash: dict[str, Principal] = dict(principals or {})

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def add(self, hashes: Iterable[str], principal: Principal, origin: str) -> None:
        for digest in hashes:
            other = self._by_hash.get(digest)
            if other is not None and other.name != principal.name:
                raise ValueError(f"{origin}: one key hash is listed for both {other.name!r} and "
                                 f"{principal.name!r}; give each principal its own keys")
            self._by_hash[digest] = replace(principal, key_hash=digest)

    def names(self) -> set[str]:
        return {p.name for p in self._by_hash.values()}

    def load_sources(self, path: Path) -> None:
        """VOC_INGEST_API_KEYS_FILE: ``source: hash`` or ``source: [hashes]``, ingest only."""
        setting = "VOC_INGEST_API_KEYS_FILE"
        document = _read_yaml(path, setting)
        if not isinstance(document, dict) or not document:
            raise ValueError(f"{setting}={path}: expected a mapping "
                             "'source: <sha256 hex of the key>'")
        for source, value in document.items():
            values = value if isinstance(value, list) else [value]
            hashes = _hashes(path, setting, f"source {source!r}", values)
            self._check_new(str(source), path, setting)
            self.add(hashes, Principal(name=str(source), roles=IMPLIED["ingest"], kind="key",
                                       sources=frozenset({str(source)})), f"{setting}={path}")

    def load_principals(self, path: Path) -> None:
        """VOC_API_KEYS_FILE: ``name: {roles, keys, [sources], [touchpoints], [teams]}``."""
        setting = "VOC_API_KEYS_FILE"
        document = _read_yaml(path, setting)
        if not isinstance(document, dict) or not document:
            raise ValueError(f"{setting}={path}: expected a mapping 'name: {{roles: [...], "
                             "keys: [<sha256 hex>, ...]}}' (see docs/security.md)")
        for name, value in document.items():
            try:
                entry = _PrincipalIn.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"{setting}={path}: principal {name!r}: {where or 'entry'}: "
                                 f"{first['msg']} (roles are {', '.join(ROLES)})") from exc
            hashes = _hashes(path, setting, f"principal {name!r}", entry.keys)
            self._check_new(str(name), path, setting)
            roles = expand(entry.roles)
            sources = (frozenset(entry.sources) if entry.sources
                       else frozenset({str(name)}) if "ingest" in roles else None)
            self.add(hashes, Principal(
                name=str(name), roles=roles, kind="key", sources=sources,
                touchpoints=frozenset(entry.touchpoints) if entry.touchpoints else None,
                teams=frozenset(entry.teams) if entry.teams else None), f"{setting}={path}")

    def _check_new(self, name: str, path: Path, setting: str) -> None:
        if name in self.names():
            raise ValueError(f"{setting}={path}: principal {name!r} is defined twice (both keys "
                             "files together); rename one")

    def lookup(self, key: str) -> Principal | None:
        return self._by_hash.get(key_hash(key))

    def by_hash(self, digest: str) -> Principal | None:
        return self._by_hash.get(digest)


# ---------------------------------------------------------------------------------------- OIDC


class Jwks:
    """The issuer's signing keys by key id, from a URL (cached) or a file (re-read on change).

    A URL is fetched at most once per JWKS_MIN_REFRESH_S, whatever happens: when the cached keys
    are stale, when a token names an unknown key id, and when the provider is down (the previous
    keys stay in use meanwhile), so neither made-up key ids nor an outage turn into a stream of
    requests, each of which would hold up the request waiting for it.
    """

    def __init__(self, *, url: str | None, path: Path | None, cache_s: float) -> None:
        self.url = url
        self.path = path
        self.cache_s = cache_s
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -1e18
        self._attempted_at = -1e18
        self._mtime: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key ``kid`` names; refreshes when stale or when ``kid`` is unknown."""
        if self._stale():
            await self._refresh()
        found = self._find(kid)
        if found is None:
            await self._refresh()
            found = self._find(kid)
        if found is None:
            raise AuthError(f"the token's key id {kid!r} is not among the issuer's signing keys")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _stale(self) -> bool:
        if self.path is not None:
            return self._file_changed()
        return time.monotonic() - self._fetched_at > self.cache_s

    def _file_changed(self) -> bool:
        assert self.path is not None
        try:
            return self.path.stat().st_mtime != self._mtime
        except OSError:
            return False

    async def _refresh(self) -> None:
        async with self._lock:
            if self.path is not None:
                if not self._file_changed():
                    return
            elif time.monotonic() - self._attempted_at < JWKS_MIN_REFRESH_S:
                return  # tried moments ago (perhaps while this request waited for the lock)
            self._attempted_at = time.monotonic()
            try:
                document = await self._load()
                keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(document).keys
                        if k.public_key_use in (None, "sig")}
            except (OSError, ValueError, httpx.HTTPError, jwt.PyJWKSetError) as exc:
                log.error("cannot load the OIDC signing keys; keeping the previous ones",
                          source=self.url or str(self.path), error=str(exc))
                return
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _load(self) -> dict[str, Any]:
        if self.path is not None:
            self._mtime = self.path.stat().st_mtime
            return json.loads(self.path.read_text(encoding="utf-8"))
        assert self.url is not None
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
            async with client.stream("GET", self.url, headers={"accept": "application/json"}) \
                    as response:
                response.raise_for_status()
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _JWKS_MAX_BYTES:
                        raise ValueError(f"{self.url} answered more than {_JWKS_MAX_BYTES} bytes")
        return json.loads(body)

    def check_file(self) -> None:
        """Fail at start, naming the setting, when the JWKS file has no usable signing key."""
        if self.path is None:
            return
        try:
            jwt.PyJWKSet.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, jwt.PyJWKSetError) as exc:
            raise ValueError(f"VOC_OIDC_JWKS_FILE={self.path}: not a JSON Web Key Set with a "
                             f"usable signing key: {exc}") from exc


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class OidcVerifier:
    """Checks a bearer token's signature, issuer, audience and lifetime, and maps its claims.

    Claims used: ``preferred_username`` (else ``sub``) as the name, the roles claim
    (VOC_OIDC_ROLES_CLAIM), and optional ``voc_touchpoints``, ``voc_teams``, ``voc_sources``.
    """

    LEEWAY_S = 30

    def __init__(self, *, issuer: str, audience: str, algorithms: list[str], jwks: Jwks,
                 roles_claim: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.jwks = jwks
        self.roles_claim = roles_claim

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not a readable JWT: {exc}") from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise AuthError(f"the token is signed with {algorithm!r}; accepted: "
                            f"{self.algorithms} (VOC_OIDC_ALGORITHMS)")
        key = await self.jwks.key(header.get("kid"))
        try:
            claims = jwt.decode(token, key=key.key, algorithms=[algorithm],
                                audience=self.audience, issuer=self.issuer, leeway=self.LEEWAY_S,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired; sign in again") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"the token is not meant for this API (aud must include "
                            f"{self.audience!r})") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(f"the token was not issued by {self.issuer!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("the token's signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is not valid: {exc}") from exc
        roles = expand(_strings(_claim(claims, self.roles_claim)) or [])
        touchpoints = _strings(claims.get("voc_touchpoints"))
        teams = _strings(claims.get("voc_teams"))
        sources = _strings(claims.get("voc_sources"))
        name = claims.get("preferred_username") or claims["sub"]
        return Principal(
            name=str(name)[:128], roles=roles, kind="oidc",
            sources=frozenset(sources) if sources is not None else frozenset(),
            touchpoints=frozenset(touchpoints) if touchpoints is not None else None,
            teams=frozenset(teams) if teams is not None else None,
            expires_at=float(claims["exp"]))


# ------------------------------------------------------------------------------------ sessions


class Sessions:
    """Signed (not encrypted) session cookies: they hold who signed in, never a key or token.

    A key session holds the key's hash and is looked up again on every request, so removing the
    key from its file ends the session. A token session holds the token's principal and ends when
    the token expires.
    """

    def __init__(self, secret: str, max_age_s: int) -> None:
        self.max_age_s = max_age_s
        self._signer = URLSafeTimedSerializer(secret, salt="tingjian-session")

    def issue(self, principal: Principal) -> str:
        expires = time.time() + self.max_age_s
        if principal.expires_at is not None:
            expires = min(expires, principal.expires_at)
        if principal.kind == "key":
            payload: dict[str, Any] = {"k": principal.key_hash, "x": expires}
        else:
            payload = {"p": principal.public(), "x": expires}
        return self._signer.dumps(payload)

    def read(self, cookie: str, keys: KeyRing) -> Principal | None:
        """The session's principal, or None when the cookie is forged, old or revoked."""
        try:
            payload = self._signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or float(payload.get("x", 0)) <= time.time():
            return None
        if "k" in payload:
            principal = keys.by_hash(str(payload["k"]))
        else:
            data = payload.get("p") or {}
            principal = Principal(
                name=str(data.get("name")), roles=expand(data.get("roles") or []), kind="oidc",
                sources=_frozen(data.get("sources")), touchpoints=_frozen(data.get("touchpoints")),
                teams=_frozen(data.get("teams")), expires_at=data.get("expires_at"))
        return replace(principal, via_cookie=True) if principal is not None else None


def _frozen(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(str(v) for v in value)


# -------------------------------------------------------------------------------------- access


@dataclass
class StreamSlots:
    """Open streams per principal: a bounded map (an entry lives only while it has streams)."""

    limit: int
    open: dict[str, int] = field(default_factory=dict)

    def take(self, who: str) -> bool:
        if self.open.get(who, 0) >= self.limit:
            return False
        self.open[who] = self.open.get(who, 0) + 1
        return True

    def give_back(self, who: str) -> None:
        left = self.open.get(who, 0) - 1
        if left > 0:
            self.open[who] = left
        else:
            self.open.pop(who, None)


class Access:
    """The configured credentials of one API process and how a request is matched to them."""

    def __init__(self, *, keys: KeyRing, oidc: OidcVerifier | None, sessions: Sessions,
                 open_mode: bool, insecure: bool = False, stream_limit: int = 10) -> None:
        self.keys = keys
        self.oidc = oidc
        self.sessions = sessions
        self.open_mode = open_mode
        self.insecure = insecure
        self.streams = StreamSlots(stream_limit)

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        """Load the keys files and the OIDC configuration; errors name the setting to fix."""
        keys = KeyRing()
        if settings.ingest_api_keys_file:
            keys.load_sources(settings.ingest_api_keys_file)
        if settings.api_keys_file:
            keys.load_principals(settings.api_keys_file)
        oidc = None
        if settings.oidc_issuer:
            jwks = Jwks(url=settings.oidc_jwks_url, path=settings.oidc_jwks_file,
                        cache_s=settings.oidc_jwks_cache_s)
            jwks.check_file()
            oidc = OidcVerifier(issuer=settings.oidc_issuer,
                                audience=settings.oidc_audience or "",
                                algorithms=settings.oidc_algorithms, jwks=jwks,
                                roles_claim=settings.oidc_roles_claim)
        secret = (settings.session_secret.get_secret_value() if settings.session_secret
                  else secrets.token_urlsafe(32))
        return cls(keys=keys, oidc=oidc, sessions=Sessions(secret, settings.session_max_age_s),
                   open_mode=not settings.auth_configured, insecure=settings.insecure_no_auth,
                   stream_limit=settings.stream_max_per_principal)

    def add_key(self, key: str, principal: Principal) -> None:
        """Register an in-process key (the demo feed's, when keys are configured)."""
        self.keys.add([key_hash(key)], principal, "in-process key")

    async def verify(self, credential: str) -> Principal:
        """The principal of an API key or a bearer token; AuthError when it is neither."""
        if self.oidc is not None and _JWT.match(credential):
            return await self.oidc.verify(credential)
        principal = self.keys.lookup(credential)
        if principal is None:
            raise AuthError("the credential is not a known API key"
                            + (" or a valid token" if self.oidc else ""))
        return principal

    async def authenticate(self, headers: Mapping[str, str], cookies: Mapping[str, str]
                           ) -> Principal | None:
        """The caller's principal: None without credentials; AuthError for bad ones.

        Header credentials (``X-API-Key``, ``Authorization: Bearer``) win over the session
        cookie, so a script with its own key is never mistaken for the browser session.
        """
        if self.open_mode:
            return OPEN
        key = headers.get(KEY_HEADER.lower())
        authorization = headers.get("authorization", "")
        if key:
            principal = self.keys.lookup(key)
            if principal is None:
                raise AuthError(f"the {KEY_HEADER} is not a known key")
            return principal
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise AuthError("send 'Authorization: Bearer <token or API key>'")
            return await self.verify(credential.strip())
        cookie = cookies.get(SESSION_COOKIE)
        if cookie:
            principal = self.sessions.read(cookie, self.keys)
            if principal is None:
                raise SessionEnded("the session has expired or was revoked; sign in again")
            return principal
        return None


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without credentials beyond loopback, unless told to (loudly).

    Raises ValueError naming what to set; the CLI turns it into its error message.
    """
    if settings.auth_configured or is_loopback(settings.http_host):
        return
    if settings.insecure_no_auth:
        log.warning("SERVING WITHOUT AUTHENTICATION beyond loopback (--insecure-no-auth): "
                    "anyone who reaches this address can read customer feedback and act on "
                    "cases", host=settings.http_host)
        return
    raise ValueError(
        f"VOC_HTTP_HOST={settings.http_host} is not a loopback address and no credentials are "
        "configured: set VOC_API_KEYS_FILE (or VOC_INGEST_API_KEYS_FILE, or VOC_OIDC_ISSUER), "
        "or pass --insecure-no-auth to serve everyone (see docs/security.md)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header's name) is this machine only."""
    name = host.strip().lower().strip("[]")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -------------------------------------------------------------------------------- dependencies

_key_scheme = APIKeyHeader(name=KEY_HEADER, auto_error=False, description=(
    "An API key from VOC_API_KEYS_FILE or VOC_INGEST_API_KEYS_FILE."))
_bearer_scheme = HTTPBearer(auto_error=False, description=(
    "An OpenID Connect access token (or an API key) as a bearer token."))


class Declared:
    """Base of the route declarations; ``role`` is what the route needs."""

    role: str


class Public(Declared):
    """Anyone may call (health, the dashboard's page and assets, sign-in)."""

    role = "public"

    async def __call__(self) -> None:
        return None


class Require(Declared):
    """Only principals with ``role`` (or, with SIGNED_IN, any principal) may call.

    401 without valid credentials, 403 with a principal that lacks the role.
    """

    def __init__(self, role: str) -> None:
        if role not in (*ROLES, SIGNED_IN):
            raise ValueError(f"unknown role {role!r}")
        self.role = role

    async def __call__(self, request: Request,
                       _key: Annotated[str | None, Depends(_key_scheme)] = None,
                       _bearer: Annotated[object, Depends(_bearer_scheme)] = None) -> Principal:
        principal = caller_or_none(request)
        if principal is None:
            failure = getattr(request.state, "auth_failure", None)
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"}, detail=(
                failure or f"sign in: send an API key in the {KEY_HEADER} header or "
                "'Authorization: Bearer <token>', or use the dashboard's sign-in"))
        if not principal.has(self.role):
            raise HTTPException(status_code=403, detail=(
                f"{principal.name!r} ({', '.join(sorted(principal.roles)) or 'no roles'}) may "
                f"not do this: it needs the {self.role!r} role"))
        return principal


def caller_or_none(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def caller(request: Request) -> Principal:
    """The authenticated principal of a route that declared ``Require``."""
    principal = caller_or_none(request)
    if principal is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return principal


Caller = Annotated[Principal, Depends(caller)]


def forbidden_touchpoint(principal: Principal, touchpoint: str | None) -> None:
    """403 when a principal asks explicitly for a touchpoint outside its scope."""
    if touchpoint and not principal.sees_touchpoint(touchpoint):
        raise bad_parameter("touchpoint", (
            f"{principal.name!r} may not see touchpoint {touchpoint!r}; its touchpoints are "
            f"{sorted(principal.touchpoints or [])}"), status=403)


def forbidden_team(principal: Principal, team: str | None) -> None:
    """403 when a principal asks explicitly for a team outside its scope."""
    if team and not principal.sees_team(team):
        raise bad_parameter("team", (
            f"{principal.name!r} may not see team {team!r}; its teams are "
            f"{sorted(principal.teams or [])}"), status=403)


# ---------------------------------------------------------------------------- sign-in routes


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(min_length=1, max_length=16384, description=(
        "An API key or an OpenID Connect access token."))


def _require_csrf_header(request: Request) -> None:
    if request.headers.get(CSRF_HEADER.lower()) != "1":
        raise HTTPException(status_code=403, detail=(
            f"send the {CSRF_HEADER}: 1 header (the dashboard's sign-in does)"))


def auth_router(access: Access) -> APIRouter:
    """``/auth/session`` (who am I), ``/auth/login`` (credential -> session cookie) and
    ``/auth/logout``, for the dashboard."""
    router = APIRouter(prefix="/auth", tags=["sign-in"])

    @router.get("/session", summary="The signed-in principal, its roles and scopes",
                dependencies=[Depends(Require(SIGNED_IN))])
    async def session(who: Caller) -> dict[str, Any]:
        return {"auth": "open" if access.open_mode else "on", "principal": who.public()}

    @router.post("/login", summary="Trade an API key or a token for a session cookie",
                 dependencies=[Depends(Public())])
    async def login(request: Request, body: LoginIn) -> JSONResponse:
        """Sets an HttpOnly, SameSite=Strict session cookie signed by VOC_SESSION_SECRET. Needs
        the X-Tingjian-CSRF: 1 header, so another site cannot sign a browser into its account."""
        _require_csrf_header(request)
        if access.open_mode:
            raise HTTPException(status_code=409, detail=(
                "authentication is off (no credentials configured): there is nothing to sign "
                "in to"))
        try:
            principal = await access.verify(body.credential.strip())
        except AuthError as exc:
            limits = getattr(request.state, "limits", None)
            address = getattr(request.state, "client_address", "-")
            retry = await limits.over(limits.failures, f"failed:{address}") if limits else None
            log.info("sign-in failed", reason=str(exc), limited=retry is not None)
            if retry is not None:
                raise HTTPException(status_code=429, headers={"Retry-After": str(retry)},
                                    detail="too many failed sign-ins from this address; retry "
                                           f"in {retry}s") from exc
            raise HTTPException(status_code=401, detail=str(exc)) from exc
        response = JSONResponse({"auth": "on", "principal": principal.public()})
        response.set_cookie(SESSION_COOKIE, access.sessions.issue(principal),
                            max_age=access.sessions.max_age_s, path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        log.info("signed in", who=principal.name, kind=principal.kind)
        return response

    @router.post("/logout", status_code=204, summary="End the dashboard session",
                 dependencies=[Depends(Public())])
    async def logout(request: Request) -> Response:
        _require_csrf_header(request)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    return router


# ------------------------------------------------------------------------------ route audit

OPEN_PROBES = frozenset({"/healthz", "/readyz"})
"""The only routes that need no declaration: liveness and readiness, open on purpose."""
_STRICTNESS = {"public": 0, SIGNED_IN: 1, "ingest": 2, "viewer": 2, "operator": 3, "admin": 4}


def _declared(dependant: Any) -> set[str]:
    found: set[str] = set()
    for dependency in getattr(dependant, "dependencies", []):
        if isinstance(dependency.call, Declared):
            found.add(dependency.call.role)
        found |= _declared(dependency)
    return found


def _flat_routes(app: Any) -> list[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazily included routers: app.routes is already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def route_roles(app: Any) -> dict[tuple[str, str], str]:
    """(method, path) -> the role each route declares (the strictest, when it declares several).

    Raises ValueError naming every route that declares none, so an app with such a route is
    never served (``services/api.py``) and the suite fails (tests/e2e/test_access_matrix.py).
    """
    roles: dict[tuple[str, str], str] = {}
    undeclared = []
    for route in _flat_routes(app):
        path = getattr(route, "path", None)
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            if path not in OPEN_PROBES:
                undeclared.append(f"{path} (not a FastAPI route, so it cannot declare a role)")
            continue
        declared = _declared(dependant)
        for method in sorted(route.methods or []):
            if declared:
                roles[(method, str(path))] = max(declared, key=_STRICTNESS.__getitem__)
            else:
                undeclared.append(f"{method} {path}")
    if undeclared:
        raise ValueError(f"routes without a declared role: {undeclared}; add "
                         "Depends(Require(role)) or Depends(Public()) to each")
    return roles

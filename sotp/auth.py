"""Authentication and authorization for ``sotp serve``: bearer tokens with scopes, optionally bound to a tenant.

A token looks like ``sotp_<id>_<secret>``: ``id`` (12 hex digits) names the record, ``secret`` is 32 random
bytes in URL-safe base64. Only the SHA-256 of the whole token is stored (``auth.tokens_file``, default
``./data/tokens.json``, mode 0600); the raw token is printed once by ``sotp token create`` and never
stored or logged. A request is checked by finding the record by ``id`` and comparing hashes with
:func:`hmac.compare_digest`, so the comparison time does not depend on how much of the secret matched.

Scopes are ``read`` (query and discovery API), ``write`` (remote write, push gateway, JSON ingest),
``configs`` (device configuration backups, which ``read`` does not grant: they hold a network's design)
and ``admin`` (everything, including admin endpoints). A token may be bound to a tenant label
(``--tenant team=a``): writers force that label onto every written series and the query API adds it to
every selector, so one tenant can neither write as nor read another.

Credentials are taken from ``Authorization: Bearer <token>`` or, for Grafana's basic-auth data source
setting, ``Authorization: Basic`` with the token as the password (the user name is ignored).

When tokens are required (:func:`auth_required`, the one rule): ``auth.enabled`` when set; otherwise
whenever ``server.listen`` is not a loopback address **or the tokens file holds an active token** (a token
someone created is never silently ignored). The rule is evaluated per request against the tokens file, so
``sotp token create`` on a loopback server turns authentication on at its next request.

:func:`setup` (first in ``sotp serve``'s component list) sets ``ctx.authenticate`` and adds a middleware
that (1) requires a valid token on every path except ``auth.public_paths`` while auth is on (default-deny,
so an endpoint that forgets :func:`sotp.web.authorize` is still not open), (2) while auth is off, applies
the browser guards of :mod:`sotp.browser` (``Host`` allow-list against DNS rebinding, no cross-site or
simple-content-type writes from browsers), and (3) turns :class:`AuthError` raised by any handler into
401/403 with a ``WWW-Authenticate`` challenge. :func:`guard_app` installs the same on another aiohttp
application (the worker's status port).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from sotp.browser import allowed_host_names, check_host, check_write_origin
from sotp.config import Config, from_dict
from sotp.errors import AuthError, ConfigError
from sotp.model import InvalidLabels, validate_label_name
from sotp.web import Handler, ServerContext, json_response, text_error

log = logging.getLogger("sotp.auth")

SCOPES: Final = ("read", "write", "configs", "admin")
DEFAULT_TOKENS_FILE: Final = "./data/tokens.json"
TOKEN_PREFIX: Final = "sotp_"
_TOKEN_RE: Final = re.compile(r"^sotp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: Compared against when the token id is unknown, so unknown and wrong tokens cost the same.
_DUMMY_HASH: Final = hashlib.sha256(b"sotp-unknown-token").hexdigest()


@dataclasses.dataclass
class AuthConfig:
    """``auth:`` section of ``sotp.yml``."""

    #: ``None`` (default): on unless ``server.listen`` is a loopback address.
    enabled: bool | None = None
    tokens_file: str = DEFAULT_TOKENS_FILE
    #: Paths answered without credentials (exact match). Add ``/metrics`` to let an unauthenticated
    #: Prometheus scrape the self-metrics.
    public_paths: list[str] = dataclasses.field(default_factory=lambda: ["/-/healthy", "/-/ready"])
    realm: str = "sotp"
    #: Host names accepted in the ``Host`` header while auth is off, besides IP literals, ``localhost``
    #: and the listen host (DNS rebinding protection). ``"*"`` accepts any.
    allowed_hosts: list[str] = dataclasses.field(default_factory=list)

    def validate(self, path: str) -> None:
        prefix = f"{path}." if path else ""
        if not self.tokens_file:
            raise ConfigError(f"{prefix}tokens_file: must not be empty (default {DEFAULT_TOKENS_FILE})")
        for i, p in enumerate(self.public_paths):
            if not p.startswith("/"):
                raise ConfigError(f"{prefix}public_paths[{i}]: {p!r} must start with '/'")
        if not re.fullmatch(r"[A-Za-z0-9 ._-]+", self.realm):
            raise ConfigError(f"{prefix}realm: {self.realm!r} may only hold letters, digits, space, '.', '_', '-'")


def auth_config(config: Config) -> AuthConfig:
    """The validated ``auth:`` section."""
    return from_dict(AuthConfig, config.auth, "auth")


def is_loopback_listen(listen: str) -> bool:
    """Whether ``host:port`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    host = listen.rpartition(":")[0].strip("[]") if ":" in listen else listen
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an empty host (all interfaces): not provably local


def auth_required(cfg: AuthConfig, listen: str, store: TokenStore) -> tuple[bool, str]:
    """Whether a server listening on ``listen`` requires tokens now, and why (for its log).

    ``auth.enabled`` wins when set; otherwise tokens are required on a non-loopback address and, on
    loopback, as soon as ``store`` holds an active token. Cheap: the store re-reads its file only when it
    changed (one ``stat``).
    """
    if cfg.enabled is not None:
        return cfg.enabled, f"auth.enabled is {str(cfg.enabled).lower()}"
    if not is_loopback_listen(listen):
        return True, f"{listen} is not a loopback address"
    active = store.active_count()
    if active:
        return True, f"{store.path} holds {active} active token(s)"
    return False, f"{listen} is a loopback address and {store.path} holds no active token"


def auth_enabled(config: Config) -> bool:
    """Whether ``sotp serve`` with this config requires tokens right now (see :func:`auth_required`)."""
    cfg = auth_config(config)
    return auth_required(cfg, config.server.listen, TokenStore(cfg.tokens_file))[0]


# --------------------------------------------------------------------------------------------- tokens


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and id, its scopes and its tenant binding."""

    name: str
    token_id: str
    scopes: frozenset[str]
    #: ``(label name, value)`` forced onto written series and read selectors, or ``None``.
    tenant: tuple[str, str] | None = None

    def allows(self, scope: str | None) -> bool:
        """Whether this principal may act with ``scope`` (``None``: any valid token). Admin implies all."""
        return scope is None or "admin" in self.scopes or scope in self.scopes


@dataclasses.dataclass
class TokenRecord:
    """One stored token: never the token itself, only its SHA-256."""

    id: str
    name: str
    scopes: list[str]
    sha256: str
    created: float
    tenant: list[str] | None = None
    revoked: float | None = None

    def principal(self) -> Principal:
        tenant = (self.tenant[0], self.tenant[1]) if self.tenant else None
        return Principal(self.name, self.id, frozenset(self.scopes), tenant)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tenant(text: str) -> tuple[str, str]:
    """``team=a`` → ``("team", "a")``; the label name must be valid and not reserved (``__``)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not value:
        raise ConfigError(f"tenant {text!r}: use label=value, e.g. --tenant team=a")
    try:
        validate_label_name(name)
    except InvalidLabels as err:
        raise ConfigError(f"tenant {text!r}: {err}") from None
    if name.startswith("__") or name in ("job", "instance"):
        raise ConfigError(f"tenant {text!r}: label {name!r} is reserved; choose another name, e.g. tenant=a")
    return name, value


class TokenStore:
    """The tokens file. Readers re-read it when it changes (a revoke takes effect on the next request);
    writers take an exclusive ``flock`` and replace the file atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, TokenRecord] = {}

    # -- reading

    def _load_file(self) -> list[TokenRecord]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read tokens file {self.path}: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ConfigError(f"tokens file {self.path}: expected {{\"version\": 1, \"tokens\": [...]}}")
        out = []
        for i, raw in enumerate(data["tokens"]):
            try:
                out.append(TokenRecord(**raw))
            except TypeError as err:
                raise ConfigError(f"tokens file {self.path}: tokens[{i}]: {err}") from None
        return out

    def records(self) -> list[TokenRecord]:
        """Every record (revoked ones included), reloading the file if it changed."""
        self._refresh()
        return list(self._by_id.values())

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and (stamp is not None or not self._by_id):
            return
        self._by_id = {r.id: r for r in self._load_file()}
        self._stamp = stamp

    def active_count(self) -> int:
        """How many tokens are not revoked (reloading the file if it changed)."""
        self._refresh()
        return sum(1 for r in self._by_id.values() if r.revoked is None)

    def lookup(self, token: str) -> TokenRecord | None:
        """The active record for ``token``, or ``None`` (unknown, wrong or revoked)."""
        self._refresh()
        m = _TOKEN_RE.match(token)
        rec = self._by_id.get(m.group(1)) if m else None
        expected = rec.sha256 if rec is not None else _DUMMY_HASH
        ok = hmac.compare_digest(hash_token(token).encode(), expected.encode())
        if rec is None or not ok or rec.revoked is not None:
            return None
        return rec

    # -- writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[TokenRecord]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._load_file()
            yield records
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": 1, "tokens": [dataclasses.asdict(r) for r in records]}, fh, indent=1)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)

    def create(self, name: str, scopes: list[str], tenant: tuple[str, str] | None = None) -> tuple[str, TokenRecord]:
        """A new token: returns ``(token, record)``. The token is not recoverable afterwards."""
        if not name or not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
            raise ConfigError(f"token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        bad = sorted(set(scopes) - set(SCOPES))
        if not scopes or bad:
            raise ConfigError(f"token scopes {bad or scopes!r}: choose from {', '.join(SCOPES)}")
        with self._locked() as records:
            if any(r.name == name and r.revoked is None for r in records):
                raise ConfigError(f"an active token named {name!r} exists: revoke it first or pick another name")
            ids = {r.id for r in records}
            token_id = secrets.token_hex(6)
            while token_id in ids:
                token_id = secrets.token_hex(6)
            secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            token = f"{TOKEN_PREFIX}{token_id}_{secret}"
            rec = TokenRecord(
                id=token_id,
                name=name,
                scopes=sorted(set(scopes), key=SCOPES.index),
                sha256=hash_token(token),
                created=time.time(),
                tenant=list(tenant) if tenant else None,
            )
            records.append(rec)
        return token, rec

    def revoke(self, key: str) -> TokenRecord:
        """Revoke the active token with this id or name; returns its record."""
        with self._locked() as records:
            hits = [r for r in records if r.revoked is None and key in (r.id, r.name)]
            if not hits:
                raise ConfigError(f"no active token with id or name {key!r} in {self.path} (see: sotp token list)")
            hits[0].revoked = time.time()
            return hits[0]


# ------------------------------------------------------------------------------------------- requests


class ScopeError(AuthError):
    """A valid token without the scope the endpoint needs (403)."""

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message, status=403)
        self.scope = scope


def extract_token(authorization: str | None) -> str:
    """The token from an ``Authorization`` header (Bearer, or Basic with the token as password)."""
    if not authorization:
        raise AuthError(
            "missing credentials: send 'Authorization: Bearer <token>' (create one with: sotp token create)"
        )
    kind, _, cred = authorization.strip().partition(" ")
    kind = kind.lower()
    cred = cred.strip()
    if kind == "bearer" and cred:
        return cred
    if kind == "basic" and cred:
        try:
            decoded = base64.b64decode(cred, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed basic credentials: expected base64 of 'user:token'") from None
        _, sep, password = decoded.partition(":")
        if sep and password:
            return password
        raise AuthError("basic credentials carry no password: put the token in the password field")
    raise AuthError("unsupported Authorization header: use 'Bearer <token>' or basic auth with the token as password")


def check(store: TokenStore, authorization: str | None, scope: str | None) -> Principal:
    """Authenticate an ``Authorization`` header and authorize ``scope``; raises :class:`AuthError`."""
    rec = store.lookup(extract_token(authorization))
    if rec is None:
        raise AuthError("invalid or revoked token")
    principal = rec.principal()
    if not principal.allows(scope):
        assert scope is not None
        raise ScopeError(
            f"token {principal.name!r} has scope(s) {', '.join(sorted(principal.scopes))}; "
            f"this endpoint needs {scope!r} (or admin)",
            scope,
        )
    return principal


def challenge_headers(err: AuthError, realm: str = "sotp") -> dict[str, str]:
    """``WWW-Authenticate`` for a 401 (Bearer and Basic, so browsers and Grafana can log in) or a 403."""
    if isinstance(err, ScopeError):
        return {"WWW-Authenticate": f'Bearer realm="{realm}", error="insufficient_scope", scope="{err.scope}"'}
    if err.status == 401:
        return {"WWW-Authenticate": f'Bearer realm="{realm}", Basic realm="{realm}"'}
    return {}


def describe(rec: TokenRecord) -> dict[str, Any]:
    """A record as shown by ``sotp token list --json`` (no hash)."""
    return {
        "id": rec.id,
        "name": rec.name,
        "scopes": rec.scopes,
        "tenant": "=".join(rec.tenant) if rec.tenant else None,
        "created": rec.created,
        "revoked": rec.revoked,
    }


# ---------------------------------------------------------------------------------------- aiohttp side

PRINCIPAL = web.RequestKey("sotp_principal", Principal)
#: Whether the gate required tokens for this request (set by the middleware before any handler runs).
AUTH_ON = web.RequestKey("sotp_auth_on", bool)


def challenge_response(request: web.Request, err: AuthError, realm: str) -> web.Response:
    """401/403 for ``err``: the Prometheus JSON envelope on the read API (Grafana shows ``error``),
    one line of text elsewhere (what remote-write and push clients log)."""
    headers = challenge_headers(err, realm)
    path = request.path
    if path.startswith("/api/v1/") and path not in ("/api/v1/write", "/api/v1/ingest"):
        kind = "forbidden" if err.status == 403 else "unauthorized"
        return json_response({"status": "error", "errorType": kind, "error": str(err)}, err.status, headers)
    return text_error(err.status, str(err), headers)


class Gate:
    """The per-request decision of one listening server: tokens required or not, and the browser guards.

    ``required()`` re-evaluates :func:`auth_required` (one ``stat`` of the tokens file) and logs each
    change of mode once, so the log says when a created or revoked token switched authentication.
    """

    def __init__(self, cfg: AuthConfig, listen: str, what: str = "sotp serve") -> None:
        self.cfg = cfg
        self.listen = listen
        self.what = what
        self.store = TokenStore(cfg.tokens_file)
        self.public = frozenset(cfg.public_paths)
        host = listen.rpartition(":")[0] if ":" in listen else listen
        self.allowed_hosts = allowed_host_names(host, cfg.allowed_hosts)
        self._mode: bool | None = None

    def required(self) -> bool:
        on, why = auth_required(self.cfg, self.listen, self.store)
        if on != self._mode:
            self._mode = on
            self._log_mode(on, why)
        return on

    def _log_mode(self, on: bool, why: str) -> None:
        if not on:
            log.warning("%s: authentication is OFF (%s): every request is accepted; requests naming another "
                        "host and browser writes are refused; create a token (sotp token create) or set "
                        "auth.enabled: true to require tokens", self.what, why)
            if not is_loopback_listen(self.listen):
                log.warning("%s: authentication is OFF while listening on non-loopback %s: anyone who can reach "
                            "it can read and write", self.what, self.listen)
            return
        active = self.store.active_count()
        if active:
            log.info("%s: authentication is on (%s): %d active token(s) in %s", self.what, why, active,
                     self.store.path)
        else:
            log.warning(
                "%s: authentication is on (%s) but %s holds no active token: every request is refused (401); "
                "create one with: sotp token create --name <name> --scope write",
                self.what, why, self.store.path,
            )

    def principal(self, request: web.Request, scope: str | None) -> Principal:
        """The request's principal for ``scope`` (cached on the request); raises :class:`AuthError`."""
        principal = request.get(PRINCIPAL)
        if principal is None:
            principal = check(self.store, request.headers.get("Authorization"), scope)
            request[PRINCIPAL] = principal
        elif not principal.allows(scope):
            assert scope is not None
            raise ScopeError(
                f"token {principal.name!r} has scope(s) {', '.join(sorted(principal.scopes))}; "
                f"this endpoint needs {scope!r} (or admin)",
                scope,
            )
        return principal

    async def authenticate(self, request: web.Request, scope: str) -> Principal | None:
        """:data:`sotp.web.ServerContext.authenticate`: the principal, or ``None`` while auth is off."""
        if not request.get(AUTH_ON, True):
            return None
        return self.principal(request, scope)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            on = self.required()
            request[AUTH_ON] = on
            if not on:
                check_host(request.headers.get("Host"), self.allowed_hosts)
                check_write_origin(request.method, request.headers, simple_types_too=True)
            else:
                authz = request.headers.get("Authorization", "")
                if authz[:6].lower() == "basic ":  # a browser may replay cached basic credentials
                    check_write_origin(request.method, request.headers, simple_types_too=False)
                if request.path not in self.public:
                    # Default-deny: any valid token is needed before a handler runs; the handler then
                    # checks its own scope through sotp.web.authorize.
                    request[PRINCIPAL] = check(self.store, request.headers.get("Authorization"), None)
            return await handler(request)
        except AuthError as err:
            log.debug("refused %s %s: %s", request.method, request.path, err)
            return challenge_response(request, err, self.cfg.realm)


def guard_app(app: web.Application, cfg: AuthConfig, listen: str, what: str) -> Gate:
    """Install the gate's middleware on ``app`` (first); returns the gate (its ``authenticate`` for handlers)."""
    gate = Gate(cfg, listen, what)
    gate.required()  # log the starting mode now, not at the first request
    app.middlewares.insert(0, gate.middleware)
    return gate


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Install authentication on ``sotp serve`` (must run before every other component)."""
    gate = guard_app(app, auth_config(ctx.config), ctx.config.server.listen, "sotp serve")
    ctx.authenticate = gate.authenticate


__all__ = [
    "AUTH_ON",
    "SCOPES",
    "AuthConfig",
    "Gate",
    "Principal",
    "ScopeError",
    "TokenRecord",
    "TokenStore",
    "auth_config",
    "auth_enabled",
    "auth_required",
    "challenge_headers",
    "challenge_response",
    "check",
    "extract_token",
    "guard_app",
    "hash_token",
    "is_loopback_listen",
    "parse_tenant",
    "setup",
]

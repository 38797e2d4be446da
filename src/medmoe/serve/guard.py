"""ASGI middleware that every request of ``medmoe serve`` passes, outermost first:

1. :class:`SecurityHeaders`: CSP (``frame-ancestors 'none'``), X-Frame-Options, Referrer-Policy
   and nosniff on every reply, errors included.
2. :class:`HostGuard`: the ``Host`` must name this server (421 otherwise), which defeats DNS
   rebinding: a page on ``attacker.example`` whose name now resolves to 127.0.0.1 still sends
   ``Host: attacker.example``. A state-changing request (POST, PUT, PATCH, DELETE) from a browser
   page of another origin gets 403, so a web page cannot upload to or fill the server.
3. :class:`BearerAuth` (with ``--auth``): a valid bearer token on every path but the page's files
   and the login, for HTTP and websocket connections alike.

Plain ASGI rather than Starlette's ``TrustedHostMiddleware``: that one knows neither IP literals
nor the same-origin rule for ``Origin``, and answers 400 where RFC 9110 names 421.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse

from medmoe.errors import MedmoeError
from medmoe.serve.auth import Authenticator, may

PUBLIC_PATHS = frozenset({"/", "/viewer.js", "/auth/", "/auth/token"})  # no token needed
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode("ascii")),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def host_name(netloc: str) -> str:
    """The lower-case host of a ``Host`` header value or URL netloc, without port or brackets."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):  # [v6]:port
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    if netloc.count(":") == 1:
        return netloc.partition(":")[0]
    return netloc  # a name, an IPv4 address, or a bare IPv6 address


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` and ``Origin`` values a server bound to ``bind_host`` accepts: loopback
    names and addresses, the bound address, the hosts of ``public_urls``; with a wildcard bind
    (``0.0.0.0``, ``::``) also any IP literal (an IP in the Host cannot come from DNS, so it is
    no rebinding). ``origins`` are the extra origins allowed to send state-changing requests
    (the ``--cors-origin`` list, which also gets CORS)."""

    def __init__(
        self, *, bind_host: str, public_urls: Iterable[str] = (), origins: Iterable[str] = ()
    ) -> None:
        bind = host_name(bind_host)
        self.any_ip = bind in WILDCARD_HOSTS
        urls = [urlsplit(u) for u in public_urls]
        self.names = frozenset(LOOPBACK_NAMES | {bind} | {host_name(u.netloc) for u in urls})
        self.origins = frozenset(o.rstrip("/").lower() for o in origins) | {
            f"{u.scheme}://{u.netloc}".lower() for u in urls
        }

    def host_ok(self, host: str | None) -> bool:
        if not host:
            return False
        name = host_name(host)
        if name in self.names:
            return True
        return _is_ip(name) and (self.any_ip or ipaddress.ip_address(name).is_loopback)

    def origin_ok(self, origin: str, host: str) -> bool:
        """Same origin as the request's own ``Host``, or one of the allowed origins."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope, receive, send, status: int, detail: str, headers=None) -> None:
    if scope["type"] == "websocket":  # closing before accept: the client sees HTTP 403
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send
    )


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP reply."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """421 for a foreign ``Host``; 403 for a state-changing request from a foreign origin."""

    def __init__(self, app, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.policy.host_ok(host):
            await _refuse(scope, receive, send, 421, "misdirected request: unknown Host header")
            return
        origin = _header(scope, b"origin")
        unsafe = scope["type"] == "websocket" or scope.get("method") in UNSAFE_METHODS
        if unsafe and origin is not None and not self.policy.origin_ok(origin, host):
            await _refuse(scope, receive, send, 403, "cross-origin request refused")
            return
        await self.app(scope, receive, send)


class BearerAuth:
    """A request to any path outside ``PUBLIC_PATHS`` needs a valid ``Authorization: Bearer
    <token>``, websocket connections too; the user goes to ``scope["state"]["user"]``."""

    def __init__(self, app, *, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or (kind == "http" and scope["path"] in PUBLIC_PATHS):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        user = self.auth.user_of_header(header)
        if user is None:
            detail = "missing token" if header is None else "invalid or expired token"
            await _refuse(
                scope,
                receive,
                send,
                401,
                f"not authenticated: {detail}",
                headers={"WWW-Authenticate": "Bearer"},
            )
            return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


class Forbidden(MedmoeError, PermissionError):
    """The user's role does not allow this (HTTP 403)."""


def require(request: Request, action: str) -> None:
    """Refuse (403) unless the request's user may do ``action`` (see ``auth.may``); without
    ``--auth`` there is one local user, who may do everything."""
    auth: Authenticator | None = request.app.state.auth
    if auth is None:
        return
    user = getattr(request.state, "user", None)
    role = auth.role_of(user) if user else None
    if role is None or not may(role, action):
        raise Forbidden(f"user {user!r} (role {role}) may not {action.replace('_', ' ')}")

"""The admin listener's gate: who a request is, what it may open, and the headers every
answer carries.

Order, for anything but the probes (``/healthz``, ``/readyz``, ``/metrics``) and the
login routes (which guard themselves, :mod:`.admin_login`):

1. without ``ADMIN_TOKEN``, a direct loopback client is the admin;
2. a session cookie found in ``admin_sessions`` is its admin or reviewer;
3. an ``Authorization`` header: the failed-attempt limit is checked **first** (a blocked
   client gets 429 whatever it sends), then the admin token (constant time), then the
   reviewers' tokens (by hash); a miss is recorded as a failure;
4. nobody: a browser gets the login page, a script 401.

A reviewer may open ``/review`` and ``/api/review/*`` only (403 elsewhere). A request
that changes state and is not authenticated by a bearer header (the cookie, loopback
trust) must come from our own origin and carry ``X-CSRF-Token`` (the session's, for a
session): neither a cross-site form nor another site's script can send it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web

from shadowproxy.proxy.admin_auth import (
    COOKIE,
    Principal,
    ProxyTrust,
    same_origin,
    token_matches,
    trusted_without_token,
)
from shadowproxy.proxy.admin_login import database_unavailable, login_response
from shadowproxy.store.admin_sessions import SessionKeys
from shadowproxy.store.login_failures import FailureLimits, record_failure, retry_after
from shadowproxy.store.pool import DATABASE_ERRORS, LazyPool
from shadowproxy.store.reviewers import find_reviewer

__all__ = ["PRINCIPAL", "AdminAccess", "AdminGuard", "csrf_token_of", "security_headers",
           "utc_now"]

PRINCIPAL = web.RequestKey("shadowproxy_principal", Principal)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/favicon.ico"})
LOGIN_PATHS = frozenset({"/login", "/logout"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# Every admin response: no framing, no sniffing, no referrer, no caching.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AdminAccess:
    """How the admin listener decides who is asking (from settings; tests pass a clock)."""

    token: str | None
    trust: ProxyTrust = field(default_factory=ProxyTrust)
    cookie_secure: Literal["auto", "always"] = "auto"
    limits: FailureLimits = field(default_factory=FailureLimits)
    clock: Callable[[], datetime] = utc_now


def is_review_path(path: str) -> bool:
    return path == "/review" or path.startswith(("/review/", "/api/review/"))


def csrf_token_of(request: web.Request) -> str | None:
    """The signed-in browser's CSRF token, for a form the page renders (sign-out)."""
    principal = request.get(PRINCIPAL)
    return principal.csrf_token if principal is not None else None


def too_many(wait: float, *, browser: bool, next_path: str) -> web.Response:
    """429 for the whole block; it says when, never who (no client address)."""
    seconds = str(int(wait + 0.999))
    message = f"Too many failed sign-in attempts; try again in {seconds} s."
    if browser:
        return login_response(next_path, status=429, message=message,
                              headers={"Retry-After": seconds})
    return web.Response(status=429, text=message + "\n", headers={"Retry-After": seconds})


class AdminGuard:
    def __init__(self, access: AdminAccess, pool: LazyPool, sessions: SessionKeys) -> None:
        self.access = access
        self.pool = pool
        self.sessions = sessions

    def client(self, request: web.Request) -> str:
        return self.access.trust.client(request.remote, request.headers)

    def host(self, request: web.Request) -> str:
        return self.access.trust.host(request.remote, request.headers)

    def from_our_origin(self, request: web.Request) -> bool:
        return same_origin(request.headers.get("Origin"),
                           request.headers.get("Sec-Fetch-Site"), self.host(request))

    async def blocked(self, request: web.Request, next_path: str) -> web.Response | None:
        """The limit, checked before any token is compared."""
        pool = await self.pool.get()
        wait = await retry_after(pool, self.client(request), self.access.clock(),
                                 self.access.limits)
        if not wait:
            return None
        return too_many(wait, browser=request.method == "POST" and request.path == "/login",
                        next_path=next_path)

    async def failed(self, request: web.Request) -> None:
        await record_failure(await self.pool.get(), self.client(request),
                             self.access.clock(), self.access.limits)

    async def by_token(self, given: str) -> Principal | None:
        """The admin or the reviewer a token belongs to (no limit check: see callers)."""
        token = self.access.token
        if token is not None and token_matches(given.encode("utf-8", "surrogateescape"),
                                               token):
            return Principal(None, "bearer")
        name = await find_reviewer(await self.pool.get(), given)
        return Principal(name, "bearer") if name is not None else None

    async def identify(self, request: web.Request) -> Principal | web.Response | None:
        token = self.access.token
        if token is None and trusted_without_token(
                request.remote, {h.lower() for h in request.headers}, self.host(request)):
            return Principal(None, "loopback")
        cookie = request.cookies.get(COOKIE)
        if cookie:
            session = await self.sessions.find(await self.pool.get(), cookie,
                                               self.access.clock())
            if session is not None:
                return Principal(session.reviewer, "session", session.csrf_token)
        raw = request.headers.get("authorization")
        if raw is None:
            return None
        limited = await self.blocked(request, "/dashboard")
        if limited is not None:
            return limited
        try:
            raw.encode("utf-8")  # aiohttp keeps undecodable bytes as surrogates
        except UnicodeEncodeError:
            raise web.HTTPBadRequest(text="Authorization header is not valid UTF-8\n") from None
        scheme, _, given = raw.partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            principal = await self.by_token(given.strip())
            if principal is not None:
                return principal
        await self.failed(request)
        raise web.HTTPUnauthorized(text="that token is neither the admin token nor a "
                                        "reviewer's\n", headers={"WWW-Authenticate": "Bearer"})

    def refuse_anonymous(self, request: web.Request) -> web.StreamResponse:
        review = is_review_path(request.path)
        if self.access.token is None and not review and "authorization" not in request.headers:
            raise web.HTTPForbidden(text=(
                "without SHADOWPROXY_ADMIN_TOKEN the dashboard and admin API answer only "
                "a direct connection from 127.0.0.1 or ::1 (no forwarding headers); "
                "set SHADOWPROXY_ADMIN_TOKEN to use them through a proxy or sidecar\n"))
        if request.method in ("GET", "HEAD") and not request.path.startswith("/api/"):
            # A browser: the login page, then back here.
            return login_response(request.path_qs, status=401)
        raise web.HTTPUnauthorized(text="bearer token required (or sign in at /login)\n",
                                   headers={"WWW-Authenticate": "Bearer"})

    def check_state_change(self, request: web.Request, principal: Principal) -> None:
        """CSRF: our origin and our token, unless a bearer header (never ambient)."""
        if request.method in SAFE_METHODS or principal.via == "bearer":
            return
        if not self.from_our_origin(request):
            raise web.HTTPForbidden(text="cross-origin request refused\n")
        sent = request.headers.get(CSRF_HEADER)
        if sent is None or (principal.csrf_token is not None and not token_matches(
                sent.encode("utf-8", "surrogateescape"), principal.csrf_token)):
            raise web.HTTPForbidden(text=f"missing or wrong {CSRF_HEADER} (reload the page)\n")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.path in LOGIN_PATHS:
            return await handler(request)
        try:
            found = await self.identify(request)
        except DATABASE_ERRORS as exc:
            raise database_unavailable(exc) from None
        if isinstance(found, web.Response):
            return found
        if found is None:
            return self.refuse_anonymous(request)
        if not found.is_admin and not is_review_path(request.path):
            raise web.HTTPForbidden(text="a reviewer's token opens only the review page "
                                         "(/review) and /api/review\n")
        self.check_state_change(request, found)
        request[PRINCIPAL] = found
        return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """One set of headers on every admin response (an ``on_response_prepare`` signal)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" even
    # on our own forms, and the origin check could not tell them from another site's.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    csp = headers.get("Content-Security-Policy")
    if csp is None:
        headers["Content-Security-Policy"] = DEFAULT_CSP
    elif "frame-ancestors" not in csp:
        headers["Content-Security-Policy"] = csp + "; frame-ancestors 'none'"
    if request.path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"
    else:
        headers.setdefault("Cache-Control", "no-store")

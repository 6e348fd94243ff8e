"""The admin listener: health, readiness and metrics, never on the proxy's port.

``/healthz``, ``/readyz`` and ``/metrics`` need no token (orchestrators and Prometheus
call them); anything else under the admin listener needs ``ADMIN_TOKEN`` — as a bearer
header, or as the session cookie the login page (``/login``) gives a browser — or, when
no token is configured, a direct connection from 127.0.0.1 or ::1
(see :mod:`shadowproxy.proxy.admin_auth`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from shadowproxy.proxy.admin_auth import (
    COOKIE,
    LOGIN_CSP,
    FailedLogins,
    Sessions,
    login_page,
    safe_next,
    token_matches,
    trusted_without_token,
)

ReadyProbe = Callable[[], Awaitable[dict[str, Any]]]
MetricsRender = Callable[[], tuple[bytes, str]]

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_LOGIN_PATHS = frozenset({"/login", "/logout"})


def _login_response(next_path: str, *, status: int, message: str | None = None,
                    headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=login_page(next_path=next_path, message=message), status=status,
        content_type="text/html",
        headers={"Content-Security-Policy": LOGIN_CSP, "Cache-Control": "no-store",
                 "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                 **(headers or {})},
    )


def _authorization(request: web.Request) -> bytes | None:
    raw = request.headers.get("authorization")
    if raw is None:
        return None
    try:
        return raw.encode("utf-8")  # aiohttp keeps undecodable bytes as surrogates
    except UnicodeEncodeError:
        raise web.HTTPBadRequest(text="Authorization header is not valid UTF-8\n") from None


def make_admin_app(
    *,
    ready: ReadyProbe,
    metrics: MetricsRender,
    token: str | None,
    extra_routes: list[web.RouteDef] | None = None,
    extra_cleanup: Sequence[Callable[[web.Application], AsyncIterator[None]]] = (),
    sessions: Sessions | None = None,
    failures: FailedLogins | None = None,
) -> web.Application:
    sessions = sessions or Sessions()
    failures = failures or FailedLogins()

    def too_many(peer: str, next_path: str) -> web.Response | None:
        wait = failures.retry_after(peer)
        if not wait:
            return None
        return _login_response(
            next_path, status=429, headers={"Retry-After": str(int(wait + 0.999))},
            message=f"Too many failed attempts from {peer}; try again in {wait:.0f} s.")

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        if token is None:
            if not trusted_without_token(request.remote, {h.lower() for h in request.headers}):
                raise web.HTTPForbidden(text=(
                    "without SHADOWPROXY_ADMIN_TOKEN the dashboard and admin API answer only "
                    "a direct connection from 127.0.0.1 or ::1 (no forwarding headers); "
                    "set SHADOWPROXY_ADMIN_TOKEN to use them through a proxy or sidecar\n"))
            return await handler(request)
        if request.path in _LOGIN_PATHS:
            return await handler(request)
        given = _authorization(request)
        peer = request.remote or "unknown"
        if given is not None:
            if given.startswith(b"Bearer ") and token_matches(given[7:], token):
                return await handler(request)
            limited = too_many(peer, "/dashboard")
            if limited is not None:
                return limited
            failures.failed(peer)
        elif sessions.valid(request.cookies.get(COOKIE)):
            return await handler(request)
        if request.method in ("GET", "HEAD") and not request.path.startswith("/api/"):
            # A browser: the login page, then back here.
            return _login_response(safe_next(request.path_qs), status=401)
        raise web.HTTPUnauthorized(text="bearer token required (or sign in at /login)\n",
                                   headers={"WWW-Authenticate": "Bearer"})

    async def login_form(request: web.Request) -> web.Response:
        return _login_response(safe_next(request.query.get("next")), status=200)

    async def login(request: web.Request) -> web.StreamResponse:
        assert token is not None
        peer = request.remote or "unknown"
        form = await request.post()
        next_path = safe_next(str(form.get("next") or ""))
        limited = too_many(peer, next_path)
        if limited is not None:
            return limited
        given = form.get("token")
        if isinstance(given, str) and token_matches(
                given.encode("utf-8", "surrogateescape"), token):
            failures.succeeded(peer)
            response = web.HTTPSeeOther(next_path)
            response.set_cookie(COOKIE, sessions.create(), max_age=int(sessions.ttl_s),
                                path="/", httponly=True, samesite="Strict",
                                secure=request.secure)
            raise response
        failures.failed(peer)
        return _login_response(next_path, status=401,
                               message="That token is not the admin token.")

    async def logout(request: web.Request) -> web.StreamResponse:
        sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        state = await ready()
        return web.json_response(state, status=200 if state.get("ready") else 503)

    async def metrics_handler(_: web.Request) -> web.Response:
        body, content_type = metrics()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    app = web.Application(middlewares=[guard])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    if token is not None:
        app.router.add_get("/login", login_form)
        app.router.add_post("/login", login)
        app.router.add_post("/logout", logout)
    if extra_routes:
        app.router.add_routes(extra_routes)
    app.cleanup_ctx.extend(extra_cleanup)
    return app

"""The admin listener: health, readiness and metrics, never on the proxy's port.

``/healthz``, ``/readyz`` and ``/metrics`` need no token (orchestrators and Prometheus
call them); anything else under the admin listener needs ``ADMIN_TOKEN`` as a bearer
token, or a loopback peer when no token is configured.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

ReadyProbe = Callable[[], Awaitable[dict[str, Any]]]
MetricsRender = Callable[[], tuple[bytes, str]]

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _is_loopback(request: web.Request) -> bool:
    peer = request.remote
    if not peer:
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return peer.startswith("unix") or peer == ""


def make_admin_app(
    *,
    ready: ReadyProbe,
    metrics: MetricsRender,
    token: str | None,
    extra_routes: list[web.RouteDef] | None = None,
) -> web.Application:
    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        if token is None:
            if not _is_loopback(request):
                raise web.HTTPForbidden(text="admin API answers only on loopback without "
                                             "SHADOWPROXY_ADMIN_TOKEN\n")
        else:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise web.HTTPUnauthorized(text="bearer token required\n",
                                           headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

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
    if extra_routes:
        app.router.add_routes(extra_routes)
    return app

"""The admin listener: health, readiness and metrics, never on the proxy's port; the
dashboard and admin API; the review page and review API.

``/healthz``, ``/readyz`` and ``/metrics`` need no token (orchestrators and Prometheus
call them). Everything else passes :class:`~.admin_guard.AdminGuard`: the admin token
(bearer header or a signed-in browser) opens everything, a reviewer's token the review
page and API only; without ``ADMIN_TOKEN`` a direct connection from 127.0.0.1 or ::1 is
the admin. Sessions, reviewers and the failed-attempt limit live in the database, so
every worker and replica agrees on them. Every response carries the same security
headers (:func:`~.admin_guard.security_headers`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from shadowproxy.proxy.admin_guard import AdminAccess, AdminGuard, security_headers
from shadowproxy.proxy.admin_login import Login
from shadowproxy.proxy.review_api import ReviewApi
from shadowproxy.proxy.review_page import ReviewPage
from shadowproxy.store.admin_sessions import SessionKeys
from shadowproxy.store.pool import LazyPool
from shadowproxy.store.review_queue import QueueRules, ReviewQueue

__all__ = ["AdminAccess", "make_admin_app"]

ReadyProbe = Callable[[], Awaitable[dict[str, Any]]]
MetricsRender = Callable[[], tuple[bytes, str]]


async def no_icon(_: web.Request) -> web.Response:
    return web.Response(status=204)


def make_admin_app(
    *,
    ready: ReadyProbe,
    metrics: MetricsRender,
    token: str | None,
    database_url: str,
    access: AdminAccess | None = None,
    review: QueueRules | None = None,
    extra_routes: list[web.RouteDef] | None = None,
    extra_cleanup: Sequence[Callable[[web.Application], AsyncIterator[None]]] = (),
) -> web.Application:
    """``access`` (trusted proxies, cookie policy, limits, clock) defaults to none of
    them trusted; its ``token`` is replaced by ``token``."""
    access = replace(access, token=token) if access else AdminAccess(token=token)
    pool = LazyPool(database_url)
    # Session ids are stored keyed by the admin token: changing it signs everyone out.
    sessions = SessionKeys((token or "").encode("utf-8", "surrogateescape"))
    guard = AdminGuard(access, pool, sessions)

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

    async def close_pool(_: web.Application) -> AsyncIterator[None]:
        yield
        await pool.close()

    app = web.Application(middlewares=[guard.middleware])
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    # Browsers ask for it on every page; "nothing" beats a 401 or 403 in their console.
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_routes(Login(guard).routes())
    app.router.add_routes(ReviewPage().routes())
    app.router.add_routes(ReviewApi(pool, ReviewQueue(review or QueueRules()),
                                    access.clock).routes())
    if extra_routes:
        app.router.add_routes(extra_routes)
    app.cleanup_ctx.append(close_pool)
    app.cleanup_ctx.extend(extra_cleanup)
    return app

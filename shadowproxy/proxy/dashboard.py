"""The dashboard and the admin API on the admin listener (behind ``ADMIN_TOKEN``, or
loopback only without one): the same report ``shadowproxy report`` writes, live.

The report code is imported on the first request, not when the proxy starts, so a proxy
nobody looks at does not carry it; it reads with asyncpg, never SQLAlchemy, which the
proxy process does not load (an import contract checks it). Each filter's report is
computed at most once per refresh period, whatever the number of viewers
(:mod:`shadowproxy.proxy.report_cache`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from shadowproxy.decision.since import parse_since
from shadowproxy.proxy.admin_guard import csrf_token_of
from shadowproxy.proxy.report_cache import ReportCache
from shadowproxy.store.urls import asyncpg_dsn

# Connections the dashboard may hold: a page is two or three queries, one at a time.
_POOL_SIZE = 2
# The dashboard reloads itself (the Refresh header: no script, so the CSP stays closed).
REFRESH_S = 30
# Above the report: that it reloads itself, and for a browser signed in with the login
# page, a way out.
_BAR = ('<form method="post" action="/logout" style="margin:0;padding:.4rem 1rem;'
        'background:#eef1f5;font:14px system-ui,sans-serif;text-align:right">'
        f'Live: reloads every {REFRESH_S} s{{sign_out}}</form>')
_SIGN_OUT = (' · <input type="hidden" name="csrf" value="{csrf}">'
             '<button type="submit" style="font:inherit">Sign out</button>')

if TYPE_CHECKING:
    from shadowproxy.decision.report_model import Report
    from shadowproxy.lifecycle import LifecycleView


class Dashboard:
    """The live report's routes and the one connection pool they share.

    The pool opens on the first request (a proxy nobody looks at holds no database
    connection for it) and closes with the admin app (:meth:`cleanup`, a cleanup_ctx).
    """

    def __init__(self, database_url: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 lifecycle: Callable[[], LifecycleView] | None = None) -> None:
        """``lifecycle`` gives the day and the end-of-life data at each report (serve
        passes the real clock and the installed data); without it, no notices."""
        self._url = database_url
        self._lifecycle = lifecycle
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._reports: ReportCache[Report] = ReportCache(REFRESH_S, clock=clock)
        self._pages: ReportCache[str] = ReportCache(REFRESH_S, clock=clock)

    async def _source(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    asyncpg_dsn(self._url), min_size=0, max_size=_POOL_SIZE)
            return self._pool

    async def cleanup(self, _: web.Application) -> AsyncIterator[None]:
        yield
        await self._pages.close()
        await self._reports.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.dashboard), web.get("/dashboard", self.dashboard),
                web.get("/api/report", self.report_json)]

    async def build(self, request: web.Request) -> Report:
        try:
            since = parse_since(request.query.get("since"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"since: {exc}\n") from None
        tag = request.query.get("tag")
        if tag is not None and ("\x00" in tag or len(tag) > 1000):
            # PostgreSQL text cannot hold NUL; no stored tag can match it.
            raise web.HTTPBadRequest(text="tag: must not contain NUL or exceed 1000 chars\n")
        # --since given as an age moves with the clock: the cache keys on the text.
        return await self._reports.get((request.query.get("since"), tag),
                                        lambda: self._report(since, tag))

    async def _report(self, since: datetime | None, tag: str | None) -> Report:
        from shadowproxy.decision.report import build_report

        lifecycle = self._lifecycle() if self._lifecycle is not None else None
        return await build_report(await self._source(), since=since, tag=tag,
                                  lifecycle=lifecycle)

    async def _page(self, request: web.Request) -> str:
        from shadowproxy.decision.report_html import render_html

        return render_html(await self.build(request))

    async def dashboard(self, request: web.Request) -> web.Response:
        html = await self._pages.get((request.query.get("since"), request.query.get("tag")),
                                     lambda: self._page(request))
        csrf = csrf_token_of(request)  # a signed-in browser's: sign-out needs it
        bar = _BAR.format(sign_out=_SIGN_OUT.format(csrf=escape(csrf)) if csrf else "")
        html = html.replace("<body>", "<body>" + bar, 1)
        return web.Response(text=html, content_type="text/html", headers={
            "Cache-Control": "no-store",
            "Refresh": str(REFRESH_S),
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src data:",
        })

    async def report_json(self, request: web.Request) -> web.Response:
        return web.json_response((await self.build(request)).to_json(), dumps=_dumps)


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)

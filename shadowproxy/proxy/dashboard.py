"""The dashboard and the admin API on the admin listener (behind ``ADMIN_TOKEN``, or
loopback only without one): the same report ``shadowproxy report`` writes, live.

The report code (and SQLAlchemy with it) is imported on the first request, not when the
proxy starts, so a proxy nobody looks at does not carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from shadowproxy.decision.since import parse_since
from shadowproxy.proxy.admin_auth import COOKIE

# The dashboard reloads itself (the Refresh header: no script, so the CSP stays closed).
REFRESH_S = 30
# Above the report: that it reloads itself, and for a browser signed in with the login
# page, a way out.
_BAR = ('<form method="post" action="/logout" style="margin:0;padding:.4rem 1rem;'
        'background:#eef1f5;font:14px system-ui,sans-serif;text-align:right">'
        f'Live: reloads every {REFRESH_S} s{{sign_out}}</form>')
_SIGN_OUT = ' · <button type="submit" style="font:inherit">Sign out</button>'

if TYPE_CHECKING:
    from shadowproxy.decision.report_model import Report


def dashboard_routes(database_url: str) -> list[web.RouteDef]:
    async def build(request: web.Request) -> Report:
        from shadowproxy.decision.report import build_report

        try:
            since = parse_since(request.query.get("since"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"since: {exc}\n") from None
        tag = request.query.get("tag")
        if tag is not None and ("\x00" in tag or len(tag) > 1000):
            # PostgreSQL text cannot hold NUL; no stored tag can match it.
            raise web.HTTPBadRequest(text="tag: must not contain NUL or exceed 1000 chars\n")
        return await build_report(database_url, since=since, tag=tag)

    async def dashboard(request: web.Request) -> web.Response:
        from shadowproxy.decision.report_html import render_html

        html = render_html(await build(request))
        bar = _BAR.format(sign_out=_SIGN_OUT if request.cookies.get(COOKIE) else "")
        html = html.replace("<body>", "<body>" + bar, 1)
        return web.Response(text=html, content_type="text/html", headers={
            "Cache-Control": "no-store",
            "Refresh": str(REFRESH_S),
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src data:",
        })

    async def report_json(request: web.Request) -> web.Response:
        return web.json_response((await build(request)).to_json(), dumps=_dumps)

    return [web.get("/", dashboard), web.get("/dashboard", dashboard),
            web.get("/api/report", report_json)]


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)

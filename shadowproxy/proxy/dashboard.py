"""The dashboard and the admin API on the admin listener (behind ``ADMIN_TOKEN``, or
loopback only without one): the same report ``shadowproxy report`` writes, live.

The report code (and SQLAlchemy with it) is imported on the first request, not when the
proxy starts, so a proxy nobody looks at does not carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from shadowproxy.decision.since import parse_since

if TYPE_CHECKING:
    from shadowproxy.decision.report_model import Report


def dashboard_routes(database_url: str) -> list[web.RouteDef]:
    async def build(request: web.Request) -> Report:
        from shadowproxy.decision.report import build_report

        try:
            since = parse_since(request.query.get("since"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"since: {exc}\n") from None
        return await build_report(database_url, since=since, tag=request.query.get("tag"))

    async def dashboard(request: web.Request) -> web.Response:
        from shadowproxy.decision.report_html import render_html

        html = render_html(await build(request))
        return web.Response(text=html, content_type="text/html", headers={
            "Cache-Control": "no-store",
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

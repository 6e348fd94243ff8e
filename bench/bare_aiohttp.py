"""A bare aiohttp passthrough (no mirroring, no metrics, no header policy): the floor an
aiohttp proxy cannot go below on this machine, measured beside shadowproxy.

    python bench/bare_aiohttp.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM, PORT = sys.argv[1].rstrip("/"), int(sys.argv[2])
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
_DROP = frozenset({"host", "content-length", "connection", "transfer-encoding"})


async def relay(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
    async with request.app[SESSION].request(
        request.method, UPSTREAM + request.raw_path, data=body, headers=headers
    ) as upstream:
        data = await upstream.read()
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
        return web.Response(status=upstream.status, body=data, headers=out)


async def session(app: web.Application):  # type: ignore[no-untyped-def]
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         auto_decompress=False)
    yield
    await app[SESSION].close()


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_route("*", "/{tail:.*}", relay)
web.run_app(app, host="127.0.0.1", port=PORT, access_log=None,
            loop=uvloop.new_event_loop(), print=None)

"""Small things that looked broken to a new user: HEAD answers kept their length, and an
Anthropic ``"stream": "false"`` (a string) does not make the shadow stream."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.server import make_proxy_app
from shadowproxy.settings import Settings
from tests.fakes.providers import SimulatedProvider


async def test_head_answers_keep_the_upstream_content_length(aiohttp_server: Any) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1234, content_type="application/json")

    upstream_app = web.Application()
    upstream_app.router.add_get("/v1/models", models)  # aiohttp answers HEAD for it too
    upstream = await aiohttp_server(upstream_app)
    proxy = await aiohttp_server(make_proxy_app(
        primary_url=str(upstream.make_url("")).rstrip("/"), mirror=None,
        tag_header="x-shadow-tag", max_body_bytes=1 << 20))
    async with aiohttp.ClientSession() as http:
        async with http.head(upstream.make_url("/v1/models")) as direct:
            assert direct.headers["Content-Length"] == "1234"
        async with http.head(proxy.make_url("/v1/models")) as resp:
            assert resp.status == 200
            assert resp.headers.get("Content-Length") == "1234"
            assert await resp.read() == b""
        async with http.get(proxy.make_url("/v1/models")) as resp:
            assert len(await resp.read()) == 1234


async def test_a_string_stream_false_does_not_make_the_shadow_stream(
    simulator: SimulatedProvider,
) -> None:
    """An Anthropic body with ``"stream": "false"`` (a string): the primary refuses it, and
    the shadow must not turn it into a streamed call (``bool("false")`` is True)."""
    settings = Settings.model_validate({
        "shadow_base_url": simulator.url, "shadow_api_key": SecretStr("sk-ant-shadow"),
        "shadow_max_retries": 0, "shadow_timeout_s": 10,
    })
    caller = ShadowCaller(settings)
    try:
        for sent, streamed in (("false", False), (True, True), ("true", False), (1, False)):
            await caller.call({"model": "claude-haiku-4-5", "max_tokens": 50, "stream": sent,
                               "messages": [{"role": "user", "content": "hi"}]}, {})
            body = simulator.last("/v1/messages").json
            assert body.get("stream", False) is streamed, (sent, body.get("stream"))
    finally:
        await caller.close()

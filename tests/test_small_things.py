"""Small things that looked broken to a new user: HEAD answers kept their length, and an
Anthropic ``"stream": "false"`` (a string) does not make the shadow stream."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.settings import Settings
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from tests.fakes.database import make_pair
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


async def test_a_database_outage_in_the_log_names_host_and_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+asyncpg://app:hunter2@127.0.0.1:{port}/shadow"
    writer = PairWriter(url, Spool(tmp_path, max_bytes=1 << 20))
    await writer.start()
    caplog.set_level(logging.WARNING, logger="shadowproxy")
    writer.submit(make_pair())
    await writer.close(timeout_s=5)
    said = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert said, caplog.text
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)" in said[0]
    assert "hunter2" not in caplog.text

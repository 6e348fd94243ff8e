"""The user's path: byte-exact passthrough, streaming, and every failure the proxy answers."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowproxy.proxy.app import make_proxy_app

Upstream = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_proxy(aiohttp_server: Any) -> Callable[..., Awaitable[TestServer]]:
    async def start(primary_url: str, **kw: Any) -> TestServer:
        app = make_proxy_app(
            primary_url=primary_url,
            mirror=kw.pop("mirror", None),
            tag_header=kw.pop("tag_header", "x-shadow-tag"),
            max_body_bytes=kw.pop("max_body_bytes", 1 << 20),
            **kw,
        )
        server: TestServer = await aiohttp_server(app)
        return server

    return start


@pytest.fixture
async def raw_client() -> Any:
    session = aiohttp.ClientSession(auto_decompress=False)
    yield session
    await session.close()


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stream_cancelled = asyncio.Event()
        self.release = asyncio.Event()


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[TestServer, Recorder]:
    rec = Recorder()

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        rec.requests.append({
            "method": request.method, "raw_path": request.raw_path,
            "headers": dict(request.headers), "body": body,
        })
        return web.Response(
            status=201, body=b"\x00binary\xffbody" + body,
            headers={"X-Upstream": "yes", "Content-Type": "application/octet-stream",
                     "request-id": "req_123"},
        )

    async def gz(request: web.Request) -> web.Response:
        payload = gzip.compress(json.dumps({"hello": "world" * 50}).encode())
        return web.Response(body=payload, headers={
            "Content-Encoding": "gzip", "Content-Type": "application/json"})

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'event: message_start\ndata: {"type":"message_start"}\n\n')
        # Hold the rest until the test has seen the first event at the client.
        await asyncio.wait_for(rec.release.wait(), 5)
        await resp.write(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        await resp.write_eof()
        return resp

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"data: {}\n\n")
                await asyncio.sleep(0.02)
        except (asyncio.CancelledError, ConnectionError):
            rec.stream_cancelled.set()
            raise

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "2")))
        return web.json_response({"slow": True})

    async def error(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            status=429, headers={"retry-after": "7", "x-should-retry": "true"})

    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/gzip", gz)
    app.router.add_post("/v1/sse", sse)
    app.router.add_get("/endless", endless)
    app.router.add_get("/slow", slow)
    app.router.add_post("/v1/error", error)
    server: TestServer = await aiohttp_server(app)
    return server, rec


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_every_method_path_and_query_reaches_the_primary_unchanged(
    method: str, upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server))
    async with raw_client.request(
        method, f"{base(proxy)}/echo/a%2Fb/c?q=%20x&q=2&empty=",
        data=b"payload" if method not in ("GET", "OPTIONS") else None,
        headers={"X-Custom": "1", "Authorization": "Bearer app-key"},
    ) as resp:
        body = await resp.read()
        assert resp.status == 201
        assert resp.headers["X-Upstream"] == "yes"
        assert resp.headers["request-id"] == "req_123"
    sent = rec.requests[-1]
    assert sent["method"] == method
    assert sent["raw_path"] == "/echo/a%2Fb/c?q=%20x&q=2&empty="
    assert sent["headers"]["X-Custom"] == "1"
    assert sent["headers"]["Authorization"] == "Bearer app-key"
    expected = b"payload" if method not in ("GET", "OPTIONS") else b""
    assert body == b"\x00binary\xffbody" + expected


async def test_base_path_of_primary_url_is_kept(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server) + "/echo/prefix")
    async with raw_client.get(f"{base(proxy)}/v1/models?x=1") as resp:
        assert resp.status == 201
    assert rec.requests[-1]["raw_path"] == "/echo/prefix/v1/models?x=1"


async def test_hop_by_hop_and_tag_headers_are_not_forwarded(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server))
    async with raw_client.post(
        f"{base(proxy)}/echo/x", data=b"{}",
        headers={"X-Shadow-Tag": "billing", "Proxy-Authorization": "Basic abc",
                 "Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "1", "TE": "trailers"},
    ) as resp:
        await resp.read()
    sent = {k.lower() for k in rec.requests[-1]["headers"]}
    assert not sent & {"x-shadow-tag", "proxy-authorization", "x-drop-me", "te"}


async def test_compressed_bodies_pass_through_compressed(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, _ = upstream
    proxy = await start_proxy(base(server))
    async with raw_client.get(f"{base(server)}/gzip") as direct:
        direct_bytes = await direct.read()
    async with raw_client.get(f"{base(proxy)}/gzip", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        proxied = await r.read()
    assert proxied == direct_bytes
    assert json.loads(gzip.decompress(proxied))["hello"].startswith("world")


async def test_first_stream_event_reaches_client_while_upstream_still_sending(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server))
    async with raw_client.post(f"{base(proxy)}/v1/sse", data=b"{}") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 3)
        assert b"message_start" in first
        assert not rec.release.is_set()  # the upstream is still holding the rest
        rec.release.set()
        rest = await resp.read()
    assert rest == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


async def test_provider_errors_and_retry_after_pass_through(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, _ = upstream
    proxy = await start_proxy(base(server))
    async with raw_client.post(f"{base(proxy)}/v1/error", data=b"{}") as resp:
        assert resp.status == 429
        assert resp.headers["retry-after"] == "7"
        assert resp.headers["x-should-retry"] == "true"
        assert (await resp.json())["error"]["type"] == "rate_limit_error"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")],
)
async def test_unreachable_upstream_is_a_502_in_the_apis_shape(
    path: str, shape: str, start_proxy: Any, raw_client: Any
) -> None:
    proxy = await start_proxy(f"http://127.0.0.1:{_free_port()}")
    async with raw_client.post(f"{base(proxy)}{path}", json={"model": "m"}) as resp:
        assert resp.status == 502
        body = await resp.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
    else:
        assert body["error"]["message"] and body["error"]["type"]


async def test_slow_upstream_is_a_504(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, _ = upstream
    proxy = await start_proxy(base(server), read_timeout_s=0.3)
    async with raw_client.get(f"{base(proxy)}/slow?s=3") as resp:
        assert resp.status == 504
        assert "did not answer in time" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_limit_is_413_and_never_reaches_upstream(
    chunked: bool, upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server), max_body_bytes=1000)
    big = b"x" * 5000

    async def gen() -> Any:
        yield big

    async with raw_client.post(
        f"{base(proxy)}/echo/v1/messages", data=gen() if chunked else big,
        headers={"anthropic-version": "2023-06-01"},
    ) as resp:
        assert resp.status == 413
        body = await resp.json()
    assert body["error"]["type"] == "request_too_large"
    assert rec.requests == []


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET http://example.com/echo/x HTTP/1.1\r\nHost: example.com\r\n\r\n", b"400"),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", b"405"),
    ],
)
async def test_no_open_proxy(
    request_line: bytes, status: bytes, upstream: tuple[TestServer, Recorder],
    start_proxy: Any,
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server))
    answer = await _raw_exchange(proxy.port, request_line)  # type: ignore[arg-type]
    assert answer.split(b" ", 2)[1] == status
    assert b"not an open proxy" in answer
    assert rec.requests == []


async def test_client_hangup_mid_stream_cancels_upstream_and_proxy_stays_healthy(
    upstream: tuple[TestServer, Recorder], start_proxy: Any, raw_client: Any
) -> None:
    server, rec = upstream
    proxy = await start_proxy(base(server))
    resp = await raw_client.get(f"{base(proxy)}/endless")
    await resp.content.readuntil(b"\n\n")
    resp.close()  # the application hangs up
    await asyncio.wait_for(rec.stream_cancelled.wait(), 5)
    async with raw_client.get(f"{base(proxy)}/echo/after") as again:
        assert again.status == 201

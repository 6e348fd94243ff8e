"""The dashboard in a browser once ADMIN_TOKEN is set: a login page, a session cookie that
is not the token, a limit on guessing, sign-out; and who is trusted without a token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowproxy.proxy.admin import make_admin_app
from shadowproxy.proxy.admin_auth import COOKIE, MAX_FAILURES, FailedLogins, Sessions
from shadowproxy.proxy.dashboard import Dashboard

TOKEN = "admin-secret-token-0123456789"


async def ready() -> dict[str, Any]:
    return {"ready": True}


def admin_app(database_url: str, token: str | None, **kwargs: Any) -> web.Application:
    return make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"), token=token,
                          **_dashboard(database_url), **kwargs)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[TestServer]:
    srv = TestServer(admin_app(database_url, TOKEN), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No cookie jar: the test carries the cookie by hand, as it reads every attribute.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def login(http: aiohttp.ClientSession, server: TestServer, token: str,
                next_path: str = "/dashboard") -> aiohttp.ClientResponse:
    async with http.post(url(server, "/login"), data={"token": token, "next": next_path},
                         allow_redirects=False) as resp:
        await resp.read()
        return resp


async def test_a_browser_gets_a_login_page_then_a_session_cookie_not_the_token(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(url(server, "/dashboard?since=24h"),
                        headers={"Accept": "text/html"}) as resp:
        page = await resp.text()
        assert resp.status == 401 and resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert '<form method="post" action="/login">' in page
    assert 'name="next" value="/dashboard?since=24h"' in page
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)

    wrong = await login(http, server, "not-the-token")
    assert wrong.status == 401 and COOKIE not in wrong.cookies

    ok = await login(http, server, TOKEN, "/dashboard?since=24h")
    assert ok.status == 303 and ok.headers["Location"] == "/dashboard?since=24h"
    cookie = SimpleCookie(ok.headers["Set-Cookie"])[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert int(cookie["max-age"]) > 0
    assert TOKEN not in cookie.value and len(cookie.value) >= 32

    sent = {"Cookie": f"{COOKIE}={cookie.value}"}
    async with http.get(url(server, "/dashboard"), headers=sent) as resp:
        assert resp.status == 200
        assert "shadowproxy report" in await resp.text()
        assert int(resp.headers["Refresh"]) > 0  # it reloads itself
    async with http.get(url(server, "/api/report"), headers=sent) as resp:
        assert resp.status == 200
    # Scripts keep the bearer header; a forged cookie is nobody.
    async with http.get(url(server, "/api/report"),
                        headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
    async with http.get(url(server, "/api/report"),
                        headers={"Cookie": f"{COOKIE}={TOKEN}"}) as resp:
        assert resp.status == 401

    async with http.post(url(server, "/logout"), headers=sent,
                         allow_redirects=False) as resp:
        assert resp.status == 303
        assert SimpleCookie(resp.headers["Set-Cookie"])[COOKIE].value == ""
    async with http.get(url(server, "/api/report"), headers=sent) as resp:
        assert resp.status == 401  # the session ended on the server, not only in the browser


async def test_failed_logins_are_limited_per_peer(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for _ in range(MAX_FAILURES):
        assert (await login(http, server, "guess")).status == 401
    limited = await login(http, server, "guess")
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    # While limited, even the right token waits: guessing gains nothing.
    assert (await login(http, server, TOKEN)).status == 429
    async with http.get(url(server, "/api/report"),
                        headers={"Authorization": "Bearer guess"}) as resp:
        assert resp.status == 429


async def test_the_limit_and_the_session_expire_with_time(database_url: str) -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60, clock=lambda: now[0])
    failures = FailedLogins(limit=2, window_s=30, clock=lambda: now[0])
    sid = sessions.create()
    assert sessions.valid(sid)
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    assert failures.retry_after("10.0.0.1") == 30 and failures.retry_after("10.0.0.2") == 0
    now[0] += 31
    assert failures.retry_after("10.0.0.1") == 0
    now[0] += 30
    assert not sessions.valid(sid)


async def test_login_redirects_only_to_this_listener(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = await login(http, server, TOKEN, target)
        assert resp.status == 303 and resp.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("forwarding", [
    {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
    {"X-Real-IP": "203.0.113.9"},
])
async def test_without_a_token_forwarded_requests_are_refused(
    database_url: str, forwarding: dict[str, str], http: aiohttp.ClientSession
) -> None:
    srv = TestServer(admin_app(database_url, None), host="127.0.0.1")
    await srv.start_server()
    try:
        async with http.get(url(srv, "/api/report")) as resp:
            assert resp.status == 200  # a direct local client, as before
        async with http.get(url(srv, "/api/report"), headers=forwarding) as resp:
            assert resp.status == 403
            assert "SHADOWPROXY_ADMIN_TOKEN" in await resp.text()
        async with http.get(url(srv, "/healthz"), headers=forwarding) as resp:
            assert resp.status == 200  # probes stay open
    finally:
        await srv.close()


async def test_without_a_token_a_sidecar_address_on_127_8_is_refused(database_url: str) -> None:
    srv = TestServer(admin_app(database_url, None), host="127.0.0.1")
    await srv.start_server()
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.6", 0))
    try:
        async with aiohttp.ClientSession(connector=connector) as sidecar, \
                sidecar.get(url(srv, "/api/report")) as resp:
            assert resp.status == 403
    finally:
        await srv.close()


async def raw_get(server: TestServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return head


async def test_bad_input_is_a_400_not_a_500(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    head = await raw_get(server, b"GET /api/report HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for query in ("since=99999999d", "tag=%00"):
        async with http.get(url(server, f"/api/report?{query}"), headers=auth) as resp:
            assert resp.status == 400, query
        async with http.get(url(server, f"/dashboard?{query}"), headers=auth) as resp:
            assert resp.status == 400, query


def _dashboard(database_url: str) -> dict[str, Any]:
    dashboard = Dashboard(database_url)
    return {"extra_routes": dashboard.routes(), "extra_cleanup": [dashboard.cleanup]}

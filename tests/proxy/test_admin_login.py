"""The admin listener as an attacker and as a browser see it (issue 20): a login page, a
session cookie that is not the token and is shared by every worker and replica, a limit
on guessing checked before any token, CSRF on every cookie-authenticated change, one set
of security headers, and who is trusted without a token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from shadowproxy.proxy.admin_auth import COOKIE, ProxyTrust, parse_networks
from shadowproxy.store.login_failures import FailureLimits
from tests.fakes.review import ADMIN_TOKEN as TOKEN
from tests.fakes.review import Rig, reviewer

LOCAL = ProxyTrust(parse_networks(["127.0.0.1"]))  # the test client is the trusted proxy


@pytest.fixture
def rig(database_url: str) -> Rig:
    return Rig(database_url)


async def start(rig: Rig) -> TestServer:
    srv = TestServer(rig.app(), host="127.0.0.1")
    await srv.start_server()
    return srv


@pytest.fixture
async def server(rig: Rig) -> AsyncIterator[TestServer]:
    srv = await start(rig)
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
                next_path: str = "/dashboard", headers: dict[str, str] | None = None
                ) -> aiohttp.ClientResponse:
    async with http.post(url(server, "/login"), data={"token": token, "next": next_path},
                         headers=headers, allow_redirects=False) as resp:
        await resp.read()
        return resp


def session_of(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={SimpleCookie(resp.headers['Set-Cookie'])[COOKIE].value}"}


async def csrf_of(http: aiohttp.ClientSession, server: TestServer, sent: dict[str, str]) -> str:
    async with http.get(url(server, "/review"), headers=sent) as resp:
        match = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert match is not None
    return match[1]


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
    assert int(cookie["max-age"]) > 0 and not cookie["secure"]  # plain http, no proxy
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

    csrf = await csrf_of(http, server, sent)
    async with http.post(url(server, "/logout"), headers=sent, data={"csrf": csrf},
                         allow_redirects=False) as resp:
        assert resp.status == 303
        assert SimpleCookie(resp.headers["Set-Cookie"])[COOKIE].value == ""
    async with http.get(url(server, "/api/report"), headers=sent) as resp:
        assert resp.status == 401  # the session ended on the server, not only in the browser


async def test_the_dashboard_signs_out_with_its_csrf_token(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    sent = session_of(await login(http, server, TOKEN))
    async with http.get(url(server, "/dashboard"), headers=sent) as resp:
        page = await resp.text()
    match = re.search(r'<form method="post" action="/logout".*?name="csrf" value="([^"]+)"',
                      page, flags=re.S)
    assert match is not None
    async with http.post(url(server, "/logout"), headers=sent, data={"csrf": match[1]},
                         allow_redirects=False) as resp:
        assert resp.status == 303


async def test_logout_and_review_posts_need_the_csrf_token_and_our_origin(
    rig: Rig, server: TestServer, http: aiohttp.ClientSession
) -> None:
    sent = session_of(await login(http, server, TOKEN))
    csrf = await csrf_of(http, server, sent)
    for extra in ({}, {"csrf": "forged"}):
        async with http.post(url(server, "/logout"), headers=sent, data=extra,
                             allow_redirects=False) as resp:
            assert resp.status == 403
    async with http.post(url(server, "/logout"), data={"csrf": csrf},
                         headers={**sent, "Origin": "https://evil.example"},
                         allow_redirects=False) as resp:
        assert resp.status == 403
    # A review label through the cookie: the header, from our origin, or nothing.
    for headers in ({}, {"X-CSRF-Token": "forged"},
                    {"X-CSRF-Token": csrf, "Origin": "http://evil.example:1"},
                    {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}):
        async with http.post(url(server, "/api/review/someitem"), json={"choice": "1"},
                             headers={**sent, **headers}) as resp:
            assert resp.status == 403, headers
    own = f"http://127.0.0.1:{server.port}"
    async with http.post(url(server, "/api/review/someitem"), json={"choice": "1"},
                         headers={**sent, "X-CSRF-Token": csrf, "Origin": own}) as resp:
        assert resp.status == 404  # past the gate: there is no such item
    async with http.get(url(server, "/api/report"), headers=sent) as resp:
        assert resp.status == 200  # none of the refused sign-outs signed us out
    # A cross-site sign-in form is refused too (login CSRF).
    resp = await login(http, server, TOKEN, headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_a_blocked_client_gets_429_whatever_it_sends_for_the_whole_block(
    rig: Rig, server: TestServer, http: aiohttp.ClientSession
) -> None:
    """Issue 20.1: the limit is checked before the token is compared."""
    wrong = {"Authorization": "Bearer guess"}
    right = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(5):
        async with http.get(url(server, "/api/report"), headers=wrong) as resp:
            assert resp.status == 401
    for _ in range(3):
        for headers in (wrong, right):
            async with http.get(url(server, "/api/report"), headers=headers) as resp:
                assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert (await login(http, server, TOKEN)).status == 429
        rig.clock.advance(seconds=90)  # still inside the five-minute window
    rig.clock.advance(seconds=31)
    async with http.get(url(server, "/api/report"), headers=right) as resp:
        assert resp.status == 200


async def test_the_limit_is_shared_by_workers_and_replicas(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    one, two = await start(rig), await start(rig)
    try:
        for _ in range(5):
            assert (await login(http, one, "guess")).status == 401
        assert (await login(http, two, TOKEN)).status == 429
        # A session made on one is good on the other, and ends on both.
        rig.clock.advance(minutes=6)
        sent = session_of(await login(http, one, TOKEN))
        async with http.get(url(two, "/api/report"), headers=sent) as resp:
            assert resp.status == 200
        csrf = await csrf_of(http, two, sent)
        async with http.post(url(two, "/logout"), headers=sent, data={"csrf": csrf},
                             allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.get(url(one, "/api/report"), headers=sent) as resp:
            assert resp.status == 401
    finally:
        await one.close()
        await two.close()


async def test_rotating_addresses_meets_an_overall_cap(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """Issue 20.2: behind a trusted proxy each client has its own count, and all of them
    together at most `overall` failures a minute."""
    rig.access = {"trust": LOCAL, "limits": FailureLimits(per_client=5, overall=12)}
    srv = await start(rig)
    try:
        for i in range(12):
            resp = await login(http, srv, "guess", headers={"X-Forwarded-For": f"198.51.100.{i}"})
            assert resp.status == 401, i
        fresh = {"X-Forwarded-For": "203.0.113.77"}
        resp = await login(http, srv, TOKEN, headers=fresh)
        assert resp.status == 429
        rig.clock.advance(seconds=61)
        assert (await login(http, srv, TOKEN, headers=fresh)).status == 303
    finally:
        await srv.close()


async def test_forwarded_addresses_count_only_from_trusted_proxies(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    # Untrusted (the default): the header is ignored, the peer is the client.
    srv = await start(rig)
    try:
        for i in range(5):
            await login(http, srv, "guess", headers={"X-Forwarded-For": f"198.51.100.{i}"})
        resp = await login(http, srv, TOKEN, headers={"X-Forwarded-For": "203.0.113.9"})
        assert resp.status == 429
    finally:
        await srv.close()
    # Trusted: one user's mistakes do not lock out the others behind the same proxy.
    rig.clock.advance(minutes=6)
    rig.access = {"trust": LOCAL}
    srv = await start(rig)
    try:
        for _ in range(5):
            await login(http, srv, "guess", headers={"Forwarded": 'for="198.51.100.1"'})
        assert (await login(http, srv, TOKEN,
                            headers={"Forwarded": "for=198.51.100.1"})).status == 429
        assert (await login(http, srv, TOKEN,
                            headers={"Forwarded": "for=198.51.100.2"})).status == 303
    finally:
        await srv.close()


async def test_the_429_page_does_not_echo_the_client_address(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    rig.access = {"trust": LOCAL}
    srv = await start(rig)
    try:
        address = {"X-Forwarded-For": "198.51.100.23"}
        for _ in range(5):
            await login(http, srv, "guess", headers=address)
        async with http.post(url(srv, "/login"), data={"token": "x", "next": "/dashboard"},
                             headers=address, allow_redirects=False) as resp:
            page = await resp.text()
        assert resp.status == 429 and "Too many failed sign-in attempts" in page
        assert "198.51.100.23" not in page and "127.0.0.1" not in page
    finally:
        await srv.close()


@pytest.mark.parametrize(("trusted", "setting", "headers", "secure"), [
    (False, "auto", {}, False),
    (False, "auto", {"X-Forwarded-Proto": "https"}, False),  # anyone can send it
    (True, "auto", {"X-Forwarded-Proto": "https"}, True),
    (True, "auto", {"Forwarded": "for=198.51.100.1;proto=https"}, True),
    (True, "auto", {"X-Forwarded-Proto": "http"}, False),
    (False, "always", {}, True),
])
async def test_the_cookie_is_secure_behind_tls_termination(
    rig: Rig, http: aiohttp.ClientSession, trusted: bool, setting: str,
    headers: dict[str, str], secure: bool
) -> None:
    rig.access = {"cookie_secure": setting, **({"trust": LOCAL} if trusted else {})}
    srv = await start(rig)
    try:
        resp = await login(http, srv, TOKEN, headers=headers)
        assert resp.status == 303
        assert bool(SimpleCookie(resp.headers["Set-Cookie"])[COOKIE]["secure"]) is secure
    finally:
        await srv.close()


async def test_changing_the_admin_token_signs_everyone_out(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    srv = await start(rig)
    try:
        sent = session_of(await login(http, srv, TOKEN))
    finally:
        await srv.close()
    rig.token = "a-new-admin-token-after-a-leak"
    srv = await start(rig)
    try:
        async with http.get(url(srv, "/api/report"), headers=sent) as resp:
            assert resp.status == 401
    finally:
        await srv.close()


async def test_one_set_of_security_headers_on_every_admin_response(
    rig: Rig, server: TestServer, http: aiohttp.ClientSession
) -> None:
    """Issue 20.5: the dashboard and the admin API had none of the login page's."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    reviewer_token = await reviewer(rig.database_url, "alice")
    cases = [
        ("/dashboard", admin, 200), ("/api/report", admin, 200), ("/login", {}, 200),
        ("/review", admin, 200), ("/review/app.js", admin, 200),
        ("/api/review/progress", {"Authorization": f"Bearer {reviewer_token}"}, 200),
        ("/api/report", {"Authorization": f"Bearer {reviewer_token}"}, 403),
        ("/api/report", {}, 401), ("/dashboard", {}, 401), ("/nowhere", admin, 404),
        ("/healthz", {}, 200), ("/metrics", {}, 200),
    ]
    for path, headers, status in cases:
        async with http.get(url(server, path), headers=headers) as resp:
            assert resp.status == status, path
            h = resp.headers
            assert h["X-Frame-Options"] == "DENY", path
            assert h["X-Content-Type-Options"] == "nosniff", path
            assert h["Referrer-Policy"] == "same-origin", path
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
            assert h["Cache-Control"] == "no-store", path


@pytest.mark.parametrize("forwarding", [
    {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
    {"X-Real-IP": "203.0.113.9"}, {"X-Forwarded-Proto": "https"},
    {"CF-Connecting-IP": "203.0.113.9"}, {"True-Client-IP": "203.0.113.9"},
    {"X-Client-IP": "203.0.113.9"}, {"X-Forwarded-Host": "admin.example"},
])
async def test_without_a_token_forwarded_requests_are_refused(
    rig: Rig, forwarding: dict[str, str], http: aiohttp.ClientSession
) -> None:
    rig.token = None
    srv = await start(rig)
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


async def test_without_a_token_a_page_under_another_name_is_refused(
    rig: Rig, http: aiohttp.ClientSession
) -> None:
    """A web page whose name was re-bound to 127.0.0.1 would reach the dashboard through
    the user's own browser; it asks for its own host name, not a loopback one."""
    rig.token = None
    srv = await start(rig)
    try:
        async with http.get(url(srv, "/api/report"), headers={"Host": "evil.example"}) as resp:
            assert resp.status == 403
        async with http.get(url(srv, "/api/report"),
                            headers={"Host": f"localhost:{srv.port}"}) as resp:
            assert resp.status == 200
    finally:
        await srv.close()


async def test_without_a_token_a_sidecar_address_on_127_8_is_refused(rig: Rig) -> None:
    rig.token = None
    srv = await start(rig)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.6", 0))
    try:
        async with aiohttp.ClientSession(connector=connector) as sidecar, \
                sidecar.get(url(srv, "/api/report")) as resp:
            assert resp.status == 403
    finally:
        await srv.close()


async def test_login_redirects_only_to_this_listener(
    server: TestServer, http: aiohttp.ClientSession
) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = await login(http, server, TOKEN, target)
        assert resp.status == 303 and resp.headers["Location"] == "/dashboard"


async def test_a_reviewer_signs_in_to_the_review_page_only(
    rig: Rig, server: TestServer, http: aiohttp.ClientSession
) -> None:
    token = await reviewer(rig.database_url, "alice")
    resp = await login(http, server, token, "/dashboard")
    assert resp.status == 303 and resp.headers["Location"] == "/review"
    sent = session_of(resp)
    async with http.get(url(server, "/review"), headers=sent) as page:
        assert page.status == 200 and "alice" in await page.text()
    async with http.get(url(server, "/dashboard"), headers=sent) as page:
        assert page.status == 403


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


def test_the_forwarded_header_parser_takes_anything() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    trust = LOCAL

    @given(st.text(max_size=200), st.text(max_size=200))
    def check(forwarded: str, xff: str) -> None:
        headers = {"forwarded": forwarded, "x-forwarded-for": xff}
        client = trust.client("127.0.0.1", headers)
        assert isinstance(client, str) and len(client) <= 64
        trust.https("127.0.0.1", headers, tls=False)
        trust.host("127.0.0.1", headers)

    check()


def test_the_client_is_the_nearest_untrusted_hop() -> None:
    trust = ProxyTrust(parse_networks(["10.0.0.0/8"]))
    headers = {"x-forwarded-for": "203.0.113.5, 198.51.100.7, 10.1.2.3"}
    assert trust.client("10.0.0.1", headers) == "198.51.100.7"  # the leftmost can be forged
    assert trust.client("192.0.2.1", headers) == "192.0.2.1"  # not a trusted peer
    assert trust.client("10.0.0.1", {"forwarded": 'for="[2001:db8::1]:4711"'}) == "2001:db8::1"

"""Assembling and running the proxy: apps, resources, listeners, graceful shutdown.

Every resource is opened in a ``cleanup_ctx`` generator and closed after its ``yield``,
in reverse order. Shutdown on SIGTERM: stop accepting, let in-flight requests finish
within ``GRACE_S``, then give the mirror what is left of the grace period to finish its
shadows and flush (what it cannot write, it spools for the next start).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import aiohttp
from aiohttp import web

from shadowproxy.proxy.handler import MirrorLink, Proxy
from shadowproxy.proxy.sockets import LISTEN_BACKLOG, start_listening

if TYPE_CHECKING:
    from shadowproxy.proxy.cutover_serve import Cutover

log = logging.getLogger("shadowproxy.proxy.app")

PROXY: web.AppKey[Proxy] = web.AppKey("proxy", Proxy)
Observe = Callable[[str, int, float, float], None]


def make_upstream_session(
    *, connect_timeout_s: float, read_timeout_s: float
) -> aiohttp.ClientSession:
    """The one HTTP client to the primary: bytes untouched (no decompression, no cookies)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout_s, sock_read=read_timeout_s
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def make_proxy_app(
    *,
    primary_url: str,
    mirror: MirrorLink | None,
    tag_header: str,
    max_body_bytes: int,
    sample_rate: float = 1.0,
    replay_rate: float = 0.0,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 600.0,
    observe: Observe | None = None,
    on_refused: Callable[[], None] | None = None,
    on_lost: Callable[[str], None] | None = None,
    capture_budget_bytes: int = 256 << 20,
    conversation_header: str = "x-shadow-conversation",
    body_timeout_s: float = 60.0,
    cutover: Cutover | None = None,
    grace_left: Callable[[], float] = lambda: 30.0,
) -> web.Application:
    """The proxy application. Every method and path goes to the proxy, including the
    ones no router would match (absolute-form targets, CONNECT), so it can refuse them."""

    @web.middleware
    async def everything_to_proxy(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        return await request.app[PROXY].handle(request)

    async def upstream(app: web.Application) -> AsyncIterator[None]:
        session = make_upstream_session(
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
        )
        app[PROXY] = Proxy(
            primary_url=primary_url, session=session, mirror=mirror, tag_header=tag_header,
            max_body_bytes=max_body_bytes, sample_rate=sample_rate, replay_rate=replay_rate,
            observe=observe, on_refused=on_refused, on_lost=on_lost,
            capture_budget_bytes=capture_budget_bytes,
            conversation_header=conversation_header,
            body_timeout_s=body_timeout_s,
            cutover=cutover,
        )
        yield
        # The primaries asked after the shadow served (cutover) finish, for their pairs.
        await app[PROXY].drain_background(grace_left())
        await session.close()

    app = web.Application(client_max_size=max_body_bytes, middlewares=[everything_to_proxy])
    if cutover is not None:
        app.cleanup_ctx.append(cutover.lifecycle)
    app.cleanup_ctx.append(upstream)
    return app


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """What one slow or hostile client may hold. ``header_timeout_s`` bounds a new
    connection's wait for its first complete request head; ``idle_timeout_s`` (aiohttp's
    keep-alive timeout) bounds the wait for every later one; past ``max_connections``
    a new connection gets a 503 and is closed, so descriptors stay for the admin
    listener, which has limits of its own."""

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    max_connections: int = 4096


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to enforce :class:`ListenerLimits`."""

    __slots__ = ("_counted", "_inner", "_site", "_tail", "_timer", "_transport")

    _BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
             b"Content-Type: text/plain\r\nContent-Length: 26\r\n\r\n"
             b"too many open connections\n")

    def __init__(self, inner: asyncio.Protocol, site: GuardedSockSite) -> None:
        self._inner = inner
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        site = self._site
        if site.open_connections >= site.limits.max_connections:
            site.refused += 1
            self._transport.write(self._BUSY)
            self._transport.close()
            return
        site.open_connections += 1
        self._counted = True
        self._timer = asyncio.get_running_loop().call_later(
            site.limits.header_timeout_s, self._too_slow)
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        self._site.timed_out += 1
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            # The head is complete at the first blank line; keep the last 3 bytes so a
            # CRLFCRLF split across reads is still seen.
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._counted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._site.open_connections -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


# Raised (PEP 578) just before a listener makes its port accept: tools and tests can
# watch, or hold, the moment a port opens. Arguments: the socket's address.
LISTEN_AUDIT_EVENT = "shadowproxy.listen"


class GuardedSockSite(web.SockSite):
    """A site on an inherited, bound socket, with :class:`ListenerLimits`. The socket
    listens only here, once this process is ready to accept (:mod:`.sockets`)."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket,
                 limits: ListenerLimits) -> None:
        super().__init__(runner, sock, backlog=LISTEN_BACKLOG)
        self.limits = limits
        self.open_connections = 0
        self.refused = 0
        self.timed_out = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        sys.audit(LISTEN_AUDIT_EVENT, self._sock.getsockname())
        start_listening(self._sock, self._backlog)
        # Accepting starts in the same step of the loop as listening: no handshake
        # completes while nothing here would take the connection.
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(server(), self), sock=self._sock, backlog=self._backlog)


class Listener:
    """One aiohttp app on one bound socket, with limits and the shutdown order we need."""

    def __init__(self, app: web.Application, *, grace_s: float,
                 limits: ListenerLimits | None = None) -> None:
        self.limits = limits or ListenerLimits()
        self.runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=grace_s,
            keepalive_timeout=self.limits.idle_timeout_s,
        )
        self.site: GuardedSockSite | None = None

    async def start(self, sock: socket.socket) -> int:
        await self.runner.setup()
        self.site = GuardedSockSite(self.runner, sock, self.limits)
        await self.site.start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        await self.runner.cleanup()


async def wait_for_stop_signal() -> str:
    """The first SIGTERM/SIGINT starts the graceful stop; later ones are logged and
    ignored so a second signal cannot cut the grace period short."""
    return await stop_signals()


def stop_signals() -> asyncio.Future[str]:
    """From now on SIGTERM/SIGINT resolve the returned future with the signal's name
    (see :func:`wait_for_stop_signal`): for a process that must stop gracefully while
    it is still starting."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if stopped.done():
            log.warning("%s ignored: already stopping gracefully", sig.name)
        else:
            stopped.set_result(sig.name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return stopped


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

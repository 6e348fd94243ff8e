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
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from shadowproxy.proxy.handler import MirrorLink, Proxy

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
        )
        yield
        await session.close()

    app = web.Application(client_max_size=max_body_bytes, middlewares=[everything_to_proxy])
    app.cleanup_ctx.append(upstream)
    return app


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A socket several worker processes can each bind to one port (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(1024)
    sock.setblocking(False)
    return sock


class Listener:
    """One aiohttp app on one address, with the shutdown order we need."""

    def __init__(self, app: web.Application, *, grace_s: float) -> None:
        self.runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=grace_s
        )

    async def start(self, host: str, port: int, *, sock: socket.socket | None = None) -> int:
        await self.runner.setup()
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(self.runner, sock)
        else:
            site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        await self.runner.cleanup()


async def wait_for_stop_signal() -> str:
    """The first SIGTERM/SIGINT starts the graceful stop; later ones are logged and
    ignored so a second signal cannot cut the grace period short."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if stopped.done():
            log.warning("%s ignored: already stopping gracefully", sig.name)
        else:
            stopped.set_result(sig.name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return await stopped


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

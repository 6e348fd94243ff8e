"""One proxy worker: its listener, its supervised mirror, its admin listener (when it owns
the admin port), until SIGTERM. ``python -m shadowproxy.proxy.worker`` is the entry of a
worker started by :mod:`.supervisor` (settings and the inherited socket on stdin)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from shadowproxy.children import StatusPipe
from shadowproxy.proxy.banner import banner
from shadowproxy.proxy.mirror_child import Backoff
from shadowproxy.settings import Settings
from shadowproxy.tasks import cancel_and_wait, spawn

if TYPE_CHECKING:
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import Listener, ListenerLimits

log = logging.getLogger("shadowproxy.proxy.worker")
Announce = Callable[[str], None]
# Once both listeners are up: (proxy port, admin port), for a parent that started serve.
Listening = Callable[[int, int], None]


def not_watched(_proxy_port: int, _admin_port: int) -> None:
    """No parent is waiting for serve's ready message."""


def print_line(line: str) -> None:
    print(line, flush=True)


def proxy_limits(settings: Settings) -> ListenerLimits:
    from shadowproxy.proxy.app import ListenerLimits

    return ListenerLimits(header_timeout_s=settings.header_timeout_s,
                          idle_timeout_s=settings.idle_timeout_s,
                          max_connections=settings.max_connections)

def admin_listener_for(
    settings: Settings, metrics: Metrics, serving: Callable[[], dict[str, Any]]
) -> Listener:
    """Health, readiness, metrics and the dashboard, for whichever process owns the port."""
    from shadowproxy.lifecycle_sources import current_lifecycle
    from shadowproxy.proxy.admin import AdminAccess, make_admin_app
    from shadowproxy.proxy.admin_auth import ProxyTrust, parse_networks
    from shadowproxy.proxy.app import Listener, ListenerLimits
    from shadowproxy.proxy.dashboard import Dashboard
    from shadowproxy.proxy.readiness import Readiness
    from shadowproxy.store.review_queue import QueueRules

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    dashboard = Dashboard(url, lifecycle=current_lifecycle)
    access = AdminAccess(token=token, cookie_secure=settings.admin_cookie_secure,
                         trust=ProxyTrust(parse_networks(settings.admin_trusted_proxies)))
    app = make_admin_app(ready=Readiness(url, settings.data_dir, serving),
                         metrics=metrics.render, token=token, database_url=url, access=access,
                         review=QueueRules(overlap=settings.review_overlap),
                         extra_routes=dashboard.routes(), extra_cleanup=[dashboard.cleanup])
    limits = ListenerLimits(header_timeout_s=settings.header_timeout_s,
                            idle_timeout_s=settings.idle_timeout_s,
                            max_connections=settings.admin_max_connections)
    return Listener(app, grace_s=1.0, limits=limits)

async def run_worker(
    settings: Settings,
    *,
    worker: int,
    proxy_sock: socket.socket,
    admin_sock: socket.socket | None = None,
    announce: Announce = print_line,
    listening: Listening = not_watched,
    status: StatusPipe | None = None,
) -> int:
    """One proxy worker and its supervised mirror process, until SIGTERM/SIGINT.

    The proxy port listens as soon as this worker accepts; its mirror starts after, in
    the background, and what users send meanwhile is held for it. The banner, the
    ``listening`` call and the ready message to a supervisor come once the mirror is up
    too; a status message ``{"serving": true}`` says the port is served before that.
    """
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import Deadline, Listener, make_proxy_app, stop_signals
    from shadowproxy.proxy.mirror_child import MirrorState, SupervisedMirror

    primary_url = settings.require_primary_url()
    assert settings.database_url is not None
    metrics = Metrics()
    deadline: Deadline | None = None
    # Zero from the start, so an alert on their increase has a series to watch.
    metrics.restarts.labels("mirror")
    metrics.pairs_lost.labels("restart_gap")
    metrics.pairs_lost.labels("start_gap")

    def mirror_changed(state: MirrorState) -> None:
        metrics.mirror_up.set(1 if state == MirrorState.UP else 0)
        if status is not None:
            status.send(**mirror.status())

    mirror = SupervisedMirror(
        settings, worker,
        on_restart=metrics.restarts.labels("mirror").inc,
        on_lost=metrics.pairs_lost.labels("restart_gap").inc,
        on_lost_at_start=metrics.pairs_lost.labels("start_gap").inc,
        on_refused=metrics.mirror_refused.inc,
        on_change=mirror_changed,
        stall_s=settings.mirror_stall_s,
        backoff=Backoff(max_s=settings.restart_backoff_max_s),
    )
    from shadowproxy.proxy.cutover_serve import cutover_for

    app = make_proxy_app(
        cutover=cutover_for(settings, metrics),
        grace_left=lambda: deadline.left() if deadline else settings.grace_s,
        primary_url=primary_url, mirror=mirror, tag_header=settings.tag_header,
        max_body_bytes=settings.max_body_bytes, sample_rate=settings.sample_rate,
        replay_rate=settings.replay_rate,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        read_timeout_s=settings.upstream_timeout_s, body_timeout_s=settings.body_timeout_s,
        observe=metrics.observe_request, on_lost=metrics.count_lost,
        capture_budget_bytes=int(settings.capture_budget_mb * (1 << 20)),
        conversation_header=settings.conversation_header,
    )

    async def mirror_lifecycle(_: object) -> AsyncIterator[None]:
        # Entered before the listener accepts (it only launches the start); stopped
        # after in-flight requests ended, with what is left of the grace period.
        async with mirror:
            yield
            await mirror.stop(deadline.left() if deadline else settings.grace_s)

    app.cleanup_ctx.insert(0, mirror_lifecycle)
    proxy = Listener(app, grace_s=settings.grace_s, limits=proxy_limits(settings))
    # A stop signal while the mirror starts is a graceful stop too: users are served.
    stopped = stop_signals()
    async with AsyncExitStack() as stack:
        port = await proxy.start(proxy_sock)
        stack.push_async_callback(proxy.stop)
        if status is not None:
            status.send(serving=True, port=port)
        admin_port = None
        if admin_sock is not None:  # its imports (dashboard, readiness) come after
            admin_listener = admin_listener_for(
                settings, metrics, lambda: {"ready": True, "workers": 1, **mirror.status()})
            admin_port = await admin_listener.start(admin_sock)
            stack.push_async_callback(admin_listener.stop)
        first_mirror: asyncio.Future[Any] = mirror.started()
        await asyncio.wait([stopped, first_mirror], return_when=asyncio.FIRST_COMPLETED)
        if not stopped.done():
            if (failed := first_mirror.exception()) is not None:
                print(f"shadowproxy: error: {failed}", file=sys.stderr, flush=True)
                return 1
            if admin_port is not None:
                announce(banner(settings, port=port, admin_port=admin_port, worker=worker))
                listening(port, admin_port)
            if status is not None:
                status.ready(port=port, **mirror.status())
                stack.push_async_callback(cancel_and_wait, spawn(
                    _report_changes(status, mirror.status), name=f"worker-{worker}-status"))
        signame = await stopped
        log.info("%s: stopping; in-flight requests have %.0fs", signame, settings.grace_s)
        deadline = Deadline(settings.grace_s)
    return 0

async def _report_changes(status: StatusPipe, current: Callable[[], dict[str, Any]]) -> None:
    """Tell the supervisor when the mirror's or its writer's state changes (its /readyz
    shows every worker's)."""
    last = current()
    while True:
        await asyncio.sleep(1.0)
        if (now := current()) != last:
            status.send(**now)
            last = now

def _worker_main() -> None:
    """``python -m shadowproxy.proxy.worker``: one worker under a supervisor (payload on stdin)."""
    status = StatusPipe.from_stdin(death_signal=signal.SIGTERM)
    settings = Settings(**status.payload["settings"])
    index = int(status.payload["worker"])
    from shadowproxy.logs import setup_logging

    setup_logging(settings, process=f"worker-{index}")
    sock = socket.socket(fileno=int(status.payload["proxy_fd"]))
    sock.setblocking(False)
    from shadowproxy.tasks import run_async

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run_async(run_worker(settings, worker=index, proxy_sock=sock,
                                      status=status)))

if __name__ == "__main__":
    _worker_main()

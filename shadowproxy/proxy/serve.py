"""``shadowproxy serve``: listeners, database, migrations, workers (each with its mirror
process), the admin listener, supervision and the graceful stop.

The proxy and admin sockets are bound first, once, here: a busy port ends the command
before anything else starts. One worker runs in this process. With ``--workers N`` this
process supervises N worker processes that inherit the one proxy socket (the kernel
hands each accepted connection to one of them), restarts any that dies, and serves the
admin listener itself; every process writes its metrics to ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` adds them up. Each worker supervises its own mirror the same way
(:class:`shadowproxy.proxy.mirror_child.SupervisedMirror`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shadowproxy.children import Child, ChildFailed, StatusPipe, start_child
from shadowproxy.proxy.banner import banner
from shadowproxy.proxy.mirror_child import Backoff, describe_exit, settings_payload
from shadowproxy.proxy.sockets import ListenError, bind_listener, bound_port, raise_open_files_limit
from shadowproxy.settings import Settings
from shadowproxy.tasks import cancel_and_wait, spawn

if TYPE_CHECKING:
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import Listener, ListenerLimits

log = logging.getLogger("shadowproxy.proxy.serve")
Announce = Callable[[str], None]


def prepare_metrics_dir(data_dir: Path) -> None:
    """Must run before prometheus_client is imported: it picks its storage at import."""
    path = data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose ``database_url`` is usable: the given one, or an embedded server
    in ``DATA_DIR`` (reused across starts, stopped on exit)."""
    if settings.database_url is not None:
        yield settings
        return
    from shadowproxy.store.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(embedded.start, settings.data_dir)
    log.debug("embedded PostgreSQL in %s", settings.data_dir / "pg")
    try:
        yield settings.model_copy(update={"database_url": SecretStr(url)})
    finally:
        await asyncio.to_thread(embedded.stop)


async def migrate_in_child(database_url: str) -> None:
    """Apply migrations in a short-lived child: Alembic and SQLAlchemy then never load
    into the long-running proxy process (tens of MB it would keep for nothing)."""
    env = {**os.environ, "SHADOWPROXY_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "migrate", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise MigrationFailed(err.decode(errors="replace").strip().splitlines()[-1:] or
                              [f"exit {proc.returncode}"])


class MigrationFailed(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("migrations failed: " + " ".join(lines))


def _print(line: str) -> None:
    print(line, flush=True)


async def run_serve(settings: Settings, *, migrate: bool = True,
                    announce: Announce = _print) -> int:
    settings.require_primary_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    async with AsyncExitStack() as stack:
        try:
            proxy_sock = stack.enter_context(
                bind_listener(settings.host, settings.port, what="proxy"))
            admin_sock = stack.enter_context(
                bind_listener(settings.admin_host, settings.admin_port, what="admin"))
        except ListenError as exc:
            print(f"shadowproxy: error: {exc}", file=sys.stderr, flush=True)
            return 2
        resolved = await stack.enter_async_context(database(settings))
        assert resolved.database_url is not None
        if migrate:
            await migrate_in_child(resolved.database_url.get_secret_value())
        if resolved.workers is None:
            resolved = resolved.model_copy(update={"workers": os.cpu_count() or 1})
        if resolved.workers == 1:
            return await run_worker(resolved, worker=0, proxy_sock=proxy_sock,
                                    admin_sock=admin_sock, announce=announce)
        return await supervise(resolved, proxy_sock=proxy_sock, admin_sock=admin_sock,
                               announce=announce)
    raise AssertionError("unreachable")  # pragma: no cover - mypy cannot see the return


def proxy_limits(settings: Settings) -> ListenerLimits:
    from shadowproxy.proxy.app import ListenerLimits

    return ListenerLimits(header_timeout_s=settings.header_timeout_s,
                          idle_timeout_s=settings.idle_timeout_s,
                          max_connections=settings.max_connections)


def admin_listener_for(
    settings: Settings, metrics: Metrics, serving: Callable[[], dict[str, Any]]
) -> Listener:
    """Health, readiness, metrics and the dashboard, for whichever process owns the port."""
    from shadowproxy.proxy.admin import make_admin_app
    from shadowproxy.proxy.app import Listener, ListenerLimits
    from shadowproxy.proxy.dashboard import dashboard_routes
    from shadowproxy.proxy.readiness import Readiness

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    app = make_admin_app(ready=Readiness(url, settings.data_dir, serving),
                         metrics=metrics.render, token=token,
                         extra_routes=dashboard_routes(url))
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
    announce: Announce = _print,
    status: StatusPipe | None = None,
) -> int:
    """One proxy worker and its supervised mirror process, until SIGTERM/SIGINT."""
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import Deadline, Listener, make_proxy_app, wait_for_stop_signal
    from shadowproxy.proxy.mirror_child import MirrorState, SupervisedMirror

    primary_url = settings.require_primary_url()
    assert settings.database_url is not None
    metrics = Metrics()
    deadline: Deadline | None = None
    # Zero from the start, so an alert on their increase has a series to watch.
    metrics.restarts.labels("mirror")
    metrics.pairs_lost.labels("restart_gap")

    def mirror_changed(state: MirrorState) -> None:
        metrics.mirror_up.set(1 if state == MirrorState.UP else 0)
        if status is not None:
            status.send(**mirror.status())

    mirror = SupervisedMirror(
        settings, worker,
        on_restart=metrics.restarts.labels("mirror").inc,
        on_lost=metrics.pairs_lost.labels("restart_gap").inc,
        on_refused=metrics.mirror_refused.inc,
        on_change=mirror_changed,
        stall_s=settings.mirror_stall_s,
        backoff=Backoff(max_s=settings.restart_backoff_max_s),
    )
    app = make_proxy_app(
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
        # Started before the listener accepts; stopped after in-flight requests ended,
        # with what is left of the grace period.
        async with mirror:
            yield
            await mirror.stop(deadline.left() if deadline else settings.grace_s)

    app.cleanup_ctx.insert(0, mirror_lifecycle)
    proxy = Listener(app, grace_s=settings.grace_s, limits=proxy_limits(settings))
    admin_listener = admin_listener_for(
        settings, metrics, lambda: {"ready": True, "workers": 1, **mirror.status()},
    ) if admin_sock is not None else None
    async with AsyncExitStack() as stack:
        try:
            port = await proxy.start(proxy_sock)
        except ChildFailed as exc:
            print(f"shadowproxy: error: {exc}", file=sys.stderr, flush=True)
            return 1
        stack.push_async_callback(proxy.stop)
        if admin_listener is not None and admin_sock is not None:
            admin_port = await admin_listener.start(admin_sock)
            stack.push_async_callback(admin_listener.stop)
            announce(banner(settings, port=port, admin_port=admin_port, worker=worker))
        if status is not None:
            status.ready(port=port, **mirror.status())
            stack.push_async_callback(cancel_and_wait, spawn(
                _report_changes(status, mirror.status), name=f"worker-{worker}-status"))
        signame = await wait_for_stop_signal()
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


# -- several workers ------------------------------------------------------------------


@dataclass
class WorkerSlot:
    """One worker's place under the supervisor: its current process and what it said."""

    index: int
    child: Child | None = None
    mirror: str = "restarting"
    mirror_pid: int | None = None
    writer: str = "unknown"
    restarts: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive


class Supervisor:
    """Starts N workers on the shared proxy socket and restarts any that dies (with
    backoff, counted in ``shadowproxy_restarts_total{process="worker"}``), the way
    gunicorn's arbiter keeps its worker count: a watcher per worker instead of a
    SIGCHLD loop, since asyncio already reaps the children."""

    def __init__(self, settings: Settings, proxy_sock: socket.socket, metrics: Metrics) -> None:
        self._settings = settings
        self._sock = proxy_sock
        self._metrics = metrics
        self._backoff = Backoff(max_s=settings.restart_backoff_max_s)
        self.slots = [WorkerSlot(i) for i in range(settings.workers or 1)]
        self.stopping = False

    async def _spawn(self, slot: WorkerSlot) -> None:
        child = await start_child(
            f"worker {slot.index}", "shadowproxy.proxy.serve",
            {"settings": settings_payload(self._settings), "worker": slot.index,
             "proxy_fd": self._sock.fileno()},
            pass_fds=(self._sock.fileno(),),
        )
        slot.child = child
        self._update(slot, child.ready)
        slot.watcher = spawn(self._watch(slot, child), name=f"worker-{slot.index}-watch")

    async def start(self) -> None:
        results = await asyncio.gather(*(self._spawn(slot) for slot in self.slots),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                await self.stop()
                raise result

    def status(self) -> dict[str, Any]:
        alive = [s for s in self.slots if s.alive]
        mirrors = [s.mirror if s.alive else "restarting" for s in self.slots]
        return {
            # Users are served while any worker holds the port.
            "ready": bool(alive),
            "workers": len(alive), "workers_expected": len(self.slots),
            "worker_restarts": sum(s.restarts for s in self.slots),
            "worker_pids": [s.child.pid if s.alive and s.child else None for s in self.slots],
            "mirror": "up" if all(m == "up" for m in mirrors) else "degraded",
            "mirrors": mirrors,
            "writers": [s.writer if s.alive else "unknown" for s in self.slots],
        }

    @staticmethod
    def _update(slot: WorkerSlot, message: dict[str, Any]) -> None:
        if "mirror" in message:
            slot.mirror = str(message["mirror"])
            slot.mirror_pid = message.get("mirror_pid")
            slot.writer = str(message.get("writer", "unknown"))

    async def _watch(self, slot: WorkerSlot, child: Child) -> None:
        async for message in child.messages():
            self._update(slot, message)
        code = await child.proc.wait()
        child.close_pipe()
        if self.stopping:
            return
        self._forget(child.pid)
        log.error("worker %d (pid %d) died: %s; restarting", slot.index, child.pid,
                  describe_exit(code))
        await self._restart(slot)

    def _forget(self, pid: int) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

    async def _wait_for_orphan(self, pid: int | None) -> None:
        """The dead worker's mirror drains and exits on its own (its socket closed);
        the next mirror for this slot shares its spool, so it starts only after."""
        if pid is None:
            return
        deadline = time.monotonic() + self._settings.grace_s + 35
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            await asyncio.sleep(0.1)
        self._forget(pid)

    async def _restart(self, slot: WorkerSlot) -> None:
        await self._wait_for_orphan(slot.mirror_pid)
        failures, last = 0, time.monotonic()
        while not self.stopping:
            failures += 1
            if time.monotonic() - last > self._backoff.reset_after_s:
                failures = 1
            await asyncio.sleep(self._backoff.delay(failures))
            last = time.monotonic()
            try:
                await self._spawn(slot)
            except ChildFailed as exc:
                log.error("worker %d: restart failed: %s", slot.index, exc)
                continue
            slot.restarts += 1
            self._metrics.restarts.labels("worker").inc()
            log.warning("worker %d restarted (pid %s)", slot.index,
                        slot.child.pid if slot.child else None)
            return

    async def stop(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.child is not None and slot.child.alive:
                with contextlib.suppress(ProcessLookupError):
                    slot.child.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.child is not None:
                await slot.child.stop(signal.SIGTERM, self._settings.grace_s + 45)
            await cancel_and_wait(slot.watcher)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def supervise(
    settings: Settings,
    *,
    proxy_sock: socket.socket,
    admin_sock: socket.socket,
    announce: Announce = _print,
) -> int:
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import wait_for_stop_signal

    assert settings.database_url is not None
    metrics = Metrics()
    metrics.restarts.labels("worker")
    supervisor = Supervisor(settings, proxy_sock, metrics)
    async with AsyncExitStack() as stack:
        try:
            await supervisor.start()
        except ChildFailed as exc:
            print(f"shadowproxy: error: {exc}", file=sys.stderr, flush=True)
            return 1
        stack.push_async_callback(supervisor.stop)
        admin = admin_listener_for(settings, metrics, supervisor.status)
        admin_port = await admin.start(admin_sock)
        stack.push_async_callback(admin.stop)
        announce(banner(settings, port=bound_port(proxy_sock), admin_port=admin_port,
                        workers=len(supervisor.slots)))
        await wait_for_stop_signal()
    return 0


def _worker_main() -> None:
    """``python -m shadowproxy.proxy.serve``: one worker under a supervisor (payload on stdin)."""
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

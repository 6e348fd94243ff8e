"""``serve --workers N``: N worker processes that inherit the one proxy socket, restarted
with backoff when they die; this process serves the admin listener and adds up the
workers' state for ``/readyz``.

The port listens while a worker serves it, and only then. A worker makes it listen when
it starts accepting (:mod:`.sockets`) and says ``{"serving": true}``; when the last
serving worker dies, this process stops the port listening (connections are refused,
not queued for nobody) until a restarted worker serves again; on SIGTERM it stops it
first, before the workers finish what they hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shadowproxy.children import Child, ChildFailed, start_child
from shadowproxy.proxy.banner import banner
from shadowproxy.proxy.mirror_child import Backoff, describe_exit, settings_payload
from shadowproxy.proxy.sockets import bound_port, start_listening, stop_listening
from shadowproxy.proxy.worker import (
    Announce,
    Listening,
    admin_listener_for,
    not_watched,
    print_line,
)
from shadowproxy.settings import Settings
from shadowproxy.tasks import cancel_and_wait, spawn

if TYPE_CHECKING:
    from shadowproxy.metrics import Metrics

log = logging.getLogger("shadowproxy.proxy.supervisor")


@dataclass
class WorkerSlot:
    """One worker's place under the supervisor: its current process and what it said."""

    index: int
    child: Child | None = None
    serving: bool = False  # its current process accepts on the port
    serving_now: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    mirror: str = "starting"
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

    def __init__(self, settings: Settings, proxy_sock: socket.socket) -> None:
        self._settings = settings
        self._sock = proxy_sock
        self._metrics: Metrics | None = None  # once the workers run (:meth:`count_with`)
        self._backoff = Backoff(max_s=settings.restart_backoff_max_s)
        self.slots = [WorkerSlot(i) for i in range(settings.workers or 1)]
        self.stopping = False

    async def _spawn(self, slot: WorkerSlot) -> None:
        def before_ready(message: dict[str, Any]) -> None:
            if message.get("serving") is True:
                slot.serving = True
                slot.serving_now.set()
                # It listened already; this undoes a stop that raced with it (the last
                # other worker died just as it started accepting).
                start_listening(self._sock)
            self._update(slot, message)

        try:
            child = await start_child(
                f"worker {slot.index}", "shadowproxy.proxy.worker",
                {"settings": settings_payload(self._settings), "worker": slot.index,
                 "proxy_fd": self._sock.fileno()},
                pass_fds=(self._sock.fileno(),), on_status=before_ready,
            )
        except BaseException:
            self._gone(slot)  # it may have served before it failed
            raise
        slot.child = child
        self._update(slot, child.ready)
        slot.watcher = spawn(self._watch(slot, child), name=f"worker-{slot.index}-watch")

    async def start(self) -> None:
        """All workers, up with their mirrors. The first starts alone and the others
        once it serves: N interpreters starting at once share the cores, and the port
        would wait for the slowest of them."""
        first, rest = self.slots[0], self.slots[1:]
        starting = spawn(self._spawn(first), name="worker-0-start")
        await serving_or_done(first.serving_now, starting)
        if starting.done():  # it failed (or came up whole) before saying it served
            rest = [] if starting.exception() is not None else rest
        results = await asyncio.gather(starting, *(self._spawn(slot) for slot in rest),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                await self.stop()
                raise result

    def count_with(self, metrics: Metrics) -> None:
        """Count restarts in ``metrics`` from now on, and those that came before."""
        metrics.restarts.labels("worker").inc(sum(s.restarts for s in self.slots))
        self._metrics = metrics

    def status(self) -> dict[str, Any]:
        alive = [s for s in self.slots if s.alive]
        mirrors = [s.mirror if s.alive else "restarting" for s in self.slots]
        return {
            # Users are served while any worker serves the port.
            "ready": any(s.serving for s in self.slots),
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
        self._gone(slot)
        if self.stopping:
            return
        self._forget(child.pid)
        log.error("worker %d (pid %d) died: %s; restarting", slot.index, child.pid,
                  describe_exit(code))
        await self._restart(slot)

    def _gone(self, slot: WorkerSlot) -> None:
        """The slot's process no longer serves; if no other does, the port stops
        listening until one does."""
        slot.serving = False
        slot.serving_now.clear()
        if self.stopping or any(s.serving for s in self.slots):
            return
        if stop_listening(self._sock):
            log.error("no worker serves the proxy port: it refuses connections until one "
                      "is back")

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
            if self._metrics is not None:
                self._metrics.restarts.labels("worker").inc()
            log.warning("worker %d restarted (pid %s)", slot.index,
                        slot.child.pid if slot.child else None)
            return

    async def stop(self) -> None:
        self.stopping = True
        # New connections are refused from now on; the workers finish what they accepted.
        stop_listening(self._sock)
        for slot in self.slots:
            if slot.child is not None and slot.child.alive:
                with contextlib.suppress(ProcessLookupError):
                    slot.child.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.child is not None:
                await slot.child.stop(signal.SIGTERM, self._settings.grace_s + 45)
            await cancel_and_wait(slot.watcher)

async def serving_or_done(serving: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Until ``serving`` is set or ``task`` ended, whichever comes first."""
    waiting = spawn(serving.wait(), name="until-serving")
    try:
        await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(waiting)


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
    announce: Announce = print_line,
    listening: Listening = not_watched,
) -> int:
    assert settings.database_url is not None
    supervisor = Supervisor(settings, proxy_sock)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(supervisor.stop)
        starting = spawn(supervisor.start(), name="workers-start")
        stack.push_async_callback(cancel_and_wait, starting)
        # The admin listener (/readyz) once the first worker serves: this process's own
        # imports (prometheus_client, aiohttp) would only take CPU from that worker's.
        await serving_or_done(supervisor.slots[0].serving_now, starting)
        if not (starting.done() and starting.exception() is not None):
            from shadowproxy.metrics import Metrics

            metrics = Metrics()
            supervisor.count_with(metrics)
            admin = admin_listener_for(settings, metrics, supervisor.status)
            admin_port = await admin.start(admin_sock)
            stack.push_async_callback(admin.stop)
        try:
            await starting
        except ChildFailed as exc:
            print(f"shadowproxy: error: {exc}", file=sys.stderr, flush=True)
            return 1
        from shadowproxy.proxy.app import wait_for_stop_signal

        announce(banner(settings, port=bound_port(proxy_sock), admin_port=admin_port,
                        workers=len(supervisor.slots)))
        listening(bound_port(proxy_sock), admin_port)
        await wait_for_stop_signal()
    return 0

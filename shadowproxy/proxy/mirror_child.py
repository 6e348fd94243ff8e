"""The proxy's handle on its mirror child process, kept free of the mirror's imports
(the SDK, SQLAlchemy, asyncpg) so the proxy process stays small.

:class:`MirrorProcess` is one child: started with :func:`shadowproxy.children.start_child`
(settings on stdin, a JSON ready message on the status pipe), then connected with a
:class:`SocketMirrorLink`. :class:`SupervisedMirror` is what the proxy holds: the link
that outlives any one child. It starts the first mirror in the background (the proxy
serves before its mirror is up), restarts a mirror that died or stopped beating, with
backoff, counts each restart and the pairs lost with it, and holds the exchanges that
arrive while no mirror is there, at start or during a restart (up to ``HOLD_BYTES``), for
the next one; past that they are refused and counted. Users are served all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shadowproxy.children import Child, ChildFailed, start_child
from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.proxy.mirror_link import SocketMirrorLink
from shadowproxy.settings import Settings
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("shadowproxy.proxy.mirror_child")


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings as JSON for the child, secrets revealed (they travel over a pipe)."""
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        out[name] = value
    return out



class MirrorProcess:
    """Parent-side handle on one mirror child."""

    def __init__(self, settings: Settings, worker: int = 0) -> None:
        self._settings = settings
        self._worker = worker
        self._dir = tempfile.mkdtemp(prefix="shadowproxy-mirror-")
        self.socket_path = os.path.join(self._dir, "mirror.sock")
        self.child: Child | None = None
        self.link: SocketMirrorLink | None = None
        self.watching: asyncio.Task[None] | None = None

    async def start(self) -> SocketMirrorLink:
        self.child = await start_child(
            "mirror", "shadowproxy.mirror.process",
            {"settings": settings_payload(self._settings), "socket_path": self.socket_path,
             "worker": self._worker},
        )
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
            link = self.link = SocketMirrorLink(reader, writer)
            self.watching = spawn(link.watch(), name=f"mirror-{self.child.pid}-heartbeats")
            # Up means its loop runs: the first heartbeat, not just a listening socket.
            await asyncio.wait_for(link.first_beat.wait(), 60)
        except (OSError, TimeoutError) as exc:
            await self.kill()
            raise ChildFailed(f"the mirror process did not connect: {exc}") from None
        return link

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    async def stop(self, grace_s: float) -> int | None:
        if self.link is not None:
            await self.link.close(grace_s)
        if self.child is None:
            return None
        # SIGTERM is ignored by the mirror: the close frame asked it to stop. It needs the
        # grace period plus time to spool what it could not write; then it is killed.
        code = await self.child.stop(signal.SIGTERM, grace_s + 30)
        await cancel_and_wait(self.watching)
        self.forget()
        return code

    async def kill(self) -> int | None:
        if self.link is not None:
            self.link.abort()
        await cancel_and_wait(self.watching)
        code = await self.child.stop(signal.SIGKILL, 5.0) if self.child is not None else None
        self.forget()
        return code

    def forget(self) -> None:
        """Drop what the dead child left: its live gauges, its socket."""
        if self.child is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(self.child.pid)  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


# What the proxy keeps for the next mirror while one restarts: the same bound as a slow
# mirror's socket buffer, so a restart costs no more memory than a slow mirror.
HOLD_BYTES = 64 << 20


def _size(item: ExchangeStart | ExchangeEnd) -> int:
    if isinstance(item, ExchangeStart):
        return len(item.body) + 1024
    return sum(len(chunk) for _, chunk in item.chunks) + 1024


class MirrorState(StrEnum):
    STARTING = "starting"  # the first mirror is on its way; the proxy already serves
    UP = "up"
    RESTARTING = "restarting"
    STOPPED = "stopped"


# While no mirror is there, exchanges are held for the next one.
_WAITING = (MirrorState.STARTING, MirrorState.RESTARTING)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: the first restart is immediate (a kill or a crash is usually a
    one-off); each further one within ``reset_after_s`` of the last doubles, up to
    ``max_s``, so a child that cannot start does not spin."""

    first_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, failures: int) -> float:
        if failures <= 1:
            return 0.0
        return float(min(self.max_s, self.first_s * 2 ** (failures - 2)))


class SupervisedMirror:
    """The proxy's :class:`~shadowproxy.proxy.MirrorLink`, kept alive across mirror deaths.

    ``on_restart()`` is called for each restart, ``on_lost(n)`` with the pairs a death or
    a restart gap cost, ``on_lost_at_start(n)`` with the exchanges held for a first
    mirror that never came (a stop or a failure before it was up), ``on_refused()`` for an
    exchange a live but busy mirror refused, and ``on_change(state)`` whenever the state
    changes (readiness, the supervisor).

    Entering it returns at once; :meth:`started` is the first mirror's start.
    """

    def __init__(
        self,
        settings: Settings,
        worker: int = 0,
        *,
        on_restart: Callable[[], None] = lambda: None,
        on_lost: Callable[[int], None] = lambda n: None,
        on_lost_at_start: Callable[[int], None] = lambda n: None,
        on_refused: Callable[[], None] = lambda: None,
        on_change: Callable[[MirrorState], None] = lambda state: None,
        stall_s: float = 15.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._settings = settings
        self._worker = worker
        self._on_restart = on_restart
        self._on_lost = on_lost
        self._on_lost_at_start = on_lost_at_start
        self._on_refused = on_refused
        self._on_change = on_change
        self._stall_s = stall_s
        self._backoff = backoff or Backoff()
        self._process: MirrorProcess | None = None
        self._link: SocketMirrorLink | None = None
        self._open: set[str] = set()  # exchanges started on the current link
        # Exchanges that arrived during a restart, in order, for the next mirror.
        self._held: list[ExchangeStart | ExchangeEnd] = []
        self._held_ids: set[str] = set()
        self._held_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._stopping = False
        self.state = MirrorState.STOPPED
        self.restarts = 0

    # -- the MirrorLink the proxy calls ------------------------------------------------

    def start(self, start: ExchangeStart) -> bool:
        link = self._link
        if link is None:
            return self._hold(start)
        if not link.start(start):
            self._on_refused()
            return False
        self._open.add(start.exchange_id)
        return True

    def end(self, end: ExchangeEnd) -> None:
        if end.exchange_id in self._open:
            self._open.discard(end.exchange_id)
            if self._link is not None:
                self._link.end(end)
        elif end.exchange_id in self._held_ids and not self._hold(end):
            # Too big to keep: its start goes too, and the pair is lost to the restart.
            self._held = [i for i in self._held if i.exchange_id != end.exchange_id]
            self._held_ids.discard(end.exchange_id)

    def _hold(self, item: ExchangeStart | ExchangeEnd) -> bool:
        if self.state not in _WAITING or self._held_bytes + _size(item) > HOLD_BYTES:
            # Refused: the proxy counts a refused start; a restart also counts its gap.
            if self.state == MirrorState.RESTARTING:
                self._on_lost(1)
            return False
        self._held.append(item)
        self._held_ids.add(item.exchange_id)
        self._held_bytes += _size(item)
        return True

    def _hand_over(self) -> None:
        """Give the new mirror what arrived while there was none."""
        held, self._held, self._held_ids, self._held_bytes = self._held, [], set(), 0
        for item in held:
            if isinstance(item, ExchangeStart):
                self.start(item)
            else:
                self.end(item)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: the mirror's state and its writer's, as last heard."""
        out: dict[str, Any] = {"mirror": self.state.value, "mirror_pid": self.pid,
                               "mirror_restarts": self.restarts}
        beat = self._link.beat if self._link is not None else {}
        if self.state == MirrorState.UP and beat:
            out["writer"] = "up" if beat.get("database_up") else "spooling"
        else:
            out["writer"] = "unknown"
        return out

    async def __aenter__(self) -> SupervisedMirror:
        """Start the first mirror in the background and return at once: its start (a
        Python process importing the SDK) is not on the proxy's way to serving."""
        self._first = asyncio.get_running_loop().create_future()
        self._set(MirrorState.STARTING)
        self._task = spawn(self._run(self._first), name=f"mirror-supervisor-{self._worker}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(self._settings.grace_s)

    def started(self) -> asyncio.Future[None]:
        """Done once the first mirror is up; its exception if it could not start
        (:class:`ChildFailed`). Later deaths are restarts, not failures."""
        assert self._first is not None, "enter the mirror first"
        return self._first

    async def _run(self, first: asyncio.Future[None]) -> None:
        try:
            await self._launch()
        except Exception as exc:
            first.set_exception(exc)
            return
        except asyncio.CancelledError:
            first.cancel()
            raise
        first.set_result(None)
        await self._supervise()

    async def stop(self, grace_s: float) -> int | None:
        self._stopping = True
        await cancel_and_wait(self._task)
        if self._first is not None and self._first.done() and not self._first.cancelled():
            self._first.exception()  # a failed start nobody waited for is no news at stop
        if held := sum(isinstance(i, ExchangeStart) for i in self._held):
            # Stopped before a mirror came for them: at start, or during a restart.
            lost = self._on_lost_at_start if self.state == MirrorState.STARTING else self._on_lost
            lost(held)
        self._held, self._held_ids, self._held_bytes = [], set(), 0
        self._link = None
        self._set(MirrorState.STOPPED)
        if self._process is None:
            return None
        process, self._process = self._process, None
        return await process.stop(grace_s)

    def _set(self, state: MirrorState) -> None:
        if state != self.state:
            self.state = state
            self._on_change(state)

    async def _launch(self) -> None:
        process = MirrorProcess(self._settings, self._worker)
        try:
            link = await process.start()
        except BaseException:
            # A stop during the start must not leave a half-started mirror behind.
            await process.kill()
            raise
        self._process, self._link = process, link
        self._open = set()
        self._set(MirrorState.UP)
        self._hand_over()

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            reason = await self._wait_for_trouble()
            if self._stopping:
                return
            await self._bury(reason)
            if time.monotonic() - started > self._backoff.reset_after_s:
                failures = 0
            while not self._stopping:
                failures += 1
                await asyncio.sleep(self._backoff.delay(failures))
                try:
                    await self._launch()
                except ChildFailed as exc:
                    log.error("mirror for worker %d: restart failed: %s", self._worker, exc)
                    continue
                self.restarts += 1
                self._on_restart()
                log.warning("mirror for worker %d restarted (pid %s)", self._worker, self.pid)
                break

    async def _wait_for_trouble(self) -> str:
        """Return why the current mirror must go: it exited, or it stopped beating."""
        process, link = self._process, self._link
        assert process is not None and process.child is not None and link is not None
        assert process.watching is not None
        exited = spawn(process.child.proc.wait(), name="mirror-wait")
        closed = process.watching
        try:
            while True:
                done, _ = await asyncio.wait({exited, closed}, timeout=1.0)
                if exited in done:
                    return f"exited with {describe_exit(exited.result())}"
                if closed in done:
                    # The socket closed: the exit follows, give it a moment to show.
                    with contextlib.suppress(TimeoutError):
                        code = await asyncio.wait_for(asyncio.shield(exited), 5.0)
                        return f"exited with {describe_exit(code)}"
                    return "closed its socket"
                if link.silent_for() > self._stall_s:
                    return f"stuck: no heartbeat for {link.silent_for():.0f}s"
        finally:
            await cancel_and_wait(exited)

    async def _bury(self, reason: str) -> None:
        self._set(MirrorState.RESTARTING)
        link, process = self._link, self._process
        self._link = None
        lost = link.unsettled() if link is not None else 0
        if process is not None:
            await process.kill()
        self._on_lost(lost)
        log.error("mirror for worker %d (pid %s) %s; %d pairs lost with it; restarting",
                  self._worker, process.pid if process else None, reason, lost)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit {code}"

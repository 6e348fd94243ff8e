"""The mirror process: one per proxy worker, so shadow work never shares the proxy's CPU.

Parent side: :class:`MirrorProcess` starts ``python -m shadowproxy.mirror.process``, hands
it the settings on stdin (never in argv or the environment, where secrets would show),
waits for ``ready`` on stdout and connects a :class:`SocketMirrorLink`.

Child side: :func:`run_mirror` owns the SDK client, the engine and the pair writer. It
ignores SIGINT/SIGTERM — the parent decides when to stop by sending a close frame with
the time left; if the parent dies, the socket closes and the child drains the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shadowproxy.metrics import Metrics
from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.exporter import MirrorExporter
from shadowproxy.mirror.link import CLOSE, END, START, SocketMirrorLink, read_frame
from shadowproxy.mirror.replay import Replayer
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.pricing import PriceTable
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings
from shadowproxy.store.retention import RetentionTask
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from shadowproxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("shadowproxy.mirror")


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


def engine_limits(settings: Settings) -> EngineLimits:
    return EngineLimits(
        concurrency=settings.shadow_concurrency,
        queue=settings.shadow_queue,
        default_max_tokens=settings.shadow_default_max_tokens,
        model=settings.shadow_model,
    )


def spool_dir(settings: Settings, worker: int) -> Path:
    return settings.data_dir / "spool" / f"worker-{worker}"


async def run_mirror(
    settings: Settings,
    socket_path: str,
    *,
    worker: int = 0,
    on_ready: Callable[[], None] = lambda: None,
    stats_hook: Callable[[MirrorEngine, PairWriter], None] | None = None,
) -> None:
    assert settings.database_url is not None, "the parent resolves the database first"
    spool = Spool(spool_dir(settings, worker), max_bytes=int(settings.spool_max_mb * (1 << 20)))
    writer = PairWriter(settings.database_url.get_secret_value(), spool)
    await writer.start()
    caller = ShadowCaller(settings)
    replayer = (
        Replayer(settings.primary_url, concurrency=settings.shadow_concurrency,
                 timeout_s=settings.upstream_timeout_s)
        if settings.replay_rate > 0 and settings.primary_url else None
    )
    engine = MirrorEngine(
        caller=caller,
        sink=writer.submit,
        limits=engine_limits(settings),
        redactor=Redactor.from_names(settings.redactors),
        prices=PriceTable.load(settings.prices_file),
        replayer=replayer,
    )
    if stats_hook is not None:
        stats_hook(engine, writer)
    exporting = MirrorExporter(Metrics(), engine, writer)
    exporter = spawn(exporting.run(), name="mirror-metrics")
    # One retention job per deployment process group: worker 0's mirror runs it.
    retention = (RetentionTask(settings.database_url.get_secret_value(),
                               settings.retention_days)
                 if worker == 0 and settings.retention_days > 0 else None)
    if retention is not None:
        retention.start()
    grace = asyncio.get_running_loop().create_future()

    async def serve_connection(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while (frame := await read_frame(reader)) is not None:
            kind, payload = frame
            if kind == START:
                engine.on_start(payload)
            elif kind == END:
                engine.on_end(payload)
            elif kind == CLOSE:
                if not grace.done():
                    grace.set_result(float(payload))
                break
        if not grace.done():  # the parent went away without saying goodbye
            grace.set_result(settings.grace_s)
        w.close()

    server = await asyncio.start_unix_server(serve_connection, path=socket_path)
    on_ready()
    try:
        grace_s = await grace
    finally:
        server.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    await engine.drain(max(0.0, deadline - loop.time()))
    await writer.close(max(1.0, deadline - loop.time()))
    await caller.close()
    if replayer is not None:
        await replayer.close()
    await cancel_and_wait(exporter)
    exporting.export()  # what the drain wrote or spooled in the last second
    if retention is not None:
        await retention.stop()


class MirrorProcess:
    """Parent-side handle on one mirror child."""

    def __init__(self, settings: Settings, worker: int = 0) -> None:
        self._settings = settings
        self._worker = worker
        self._dir = tempfile.mkdtemp(prefix="shadowproxy-mirror-")
        self.socket_path = os.path.join(self._dir, "mirror.sock")
        self._proc: asyncio.subprocess.Process | None = None
        self.link: SocketMirrorLink | None = None

    async def start(self) -> SocketMirrorLink:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy.mirror.process",
            self.socket_path, str(self._worker),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(settings_payload(self._settings)).encode())
        self._proc.stdin.close()
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=60)
        if line.strip() != b"ready":
            code = await self._proc.wait()
            raise RuntimeError(f"the mirror process did not start (exit {code})")
        _reader, writer = await asyncio.open_unix_connection(self.socket_path)
        self.link = SocketMirrorLink(writer)
        return self.link

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def stop(self, grace_s: float) -> int | None:
        if self.link is not None:
            await self.link.close(grace_s)
        if self._proc is None:
            return None
        try:
            # The child needs the grace period plus time to spool what it could not write.
            code = await asyncio.wait_for(self._proc.wait(), timeout=grace_s + 30)
        except TimeoutError:
            self._proc.kill()
            code = await self._proc.wait()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(self._proc.pid)  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._dir)
        return code


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    socket_path, worker = sys.argv[1], int(sys.argv[2])
    settings = Settings(**json.loads(sys.stdin.read()))
    from shadowproxy.logs import setup_logging

    setup_logging(settings, process="mirror")

    def ready() -> None:
        sys.stdout.write("ready\n")
        sys.stdout.flush()

    try:
        import uvloop

        uvloop.run(run_mirror(settings, socket_path, worker=worker, on_ready=ready))
    except ImportError:
        asyncio.run(run_mirror(settings, socket_path, worker=worker, on_ready=ready))


if __name__ == "__main__":
    main()

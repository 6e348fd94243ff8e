"""``shadowproxy serve``: database, migrations, workers (each with its mirror process),
the admin listener, and the graceful stop.

One worker runs in this process. With ``--workers N`` this process supervises N worker
processes that share the port through SO_REUSEPORT and serves the admin listener
itself; every process writes its metrics to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
adds them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shadowproxy.proxy.banner import banner
from shadowproxy.proxy.mirror_child import settings_payload
from shadowproxy.settings import Settings

if TYPE_CHECKING:
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import Listener

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
    async with database(settings) as resolved:
        assert resolved.database_url is not None
        if migrate:
            await migrate_in_child(resolved.database_url.get_secret_value())
        if resolved.workers is None:
            resolved = resolved.model_copy(update={"workers": os.cpu_count() or 1})
        if resolved.workers == 1:
            return await run_worker(resolved, worker=0, admin=True, announce=announce)
        return await supervise(resolved, announce=announce)


def admin_listener_for(
    settings: Settings, metrics: Metrics, serving: Callable[[], dict[str, Any]]
) -> Listener:
    """Health, readiness, metrics and the dashboard, for whichever process owns the port."""
    from shadowproxy.proxy.admin import make_admin_app
    from shadowproxy.proxy.app import Listener
    from shadowproxy.proxy.dashboard import dashboard_routes
    from shadowproxy.proxy.readiness import Readiness

    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    app = make_admin_app(ready=Readiness(url, settings.data_dir, serving),
                         metrics=metrics.render, token=token,
                         extra_routes=dashboard_routes(url))
    return Listener(app, grace_s=1.0)


async def run_worker(
    settings: Settings,
    *,
    worker: int,
    admin: bool,
    announce: Announce = _print,
    sock: socket.socket | None = None,
) -> int:
    """One proxy worker and its mirror process, until SIGTERM/SIGINT."""
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import (
        Deadline,
        Listener,
        make_proxy_app,
        wait_for_stop_signal,
    )
    from shadowproxy.proxy.mirror_child import MirrorProcess

    primary_url = settings.require_primary_url()
    assert settings.database_url is not None
    metrics = Metrics()
    mirror = MirrorProcess(settings, worker)
    link = await mirror.start()
    proxy = Listener(
        make_proxy_app(
            primary_url=primary_url, mirror=link, tag_header=settings.tag_header,
            max_body_bytes=settings.max_body_bytes, sample_rate=settings.sample_rate,
            replay_rate=settings.replay_rate,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_timeout_s, observe=metrics.observe_request,
            on_refused=metrics.mirror_refused.inc, on_lost=metrics.count_lost,
            capture_budget_bytes=int(settings.capture_budget_mb * (1 << 20)),
            conversation_header=settings.conversation_header,
        ),
        grace_s=settings.grace_s,
    )
    admin_listener = admin_listener_for(
        settings, metrics,
        lambda: {"ready": mirror.alive, "mirror_pid": mirror.pid, "workers": 1},
    ) if admin else None
    try:
        port = await proxy.start(settings.host, settings.port, sock=sock)
        admin_port = (await admin_listener.start(settings.admin_host, settings.admin_port)
                      if admin_listener else None)
    except OSError as exc:
        await mirror.stop(0)
        print(f"shadowproxy: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    announce(banner(settings, port=port, admin_port=admin_port, worker=worker))
    signame = await wait_for_stop_signal()
    log.info("%s: stopping; in-flight requests have %.0fs", signame, settings.grace_s)
    deadline = Deadline(settings.grace_s)
    await proxy.stop()
    code = await mirror.stop(deadline.left())
    if admin_listener is not None:
        await admin_listener.stop()
    if code not in (0, None):
        log.warning("mirror process exited with %s", code)
    return 0


# -- several workers ------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, index: int, port: int, settings: Settings) -> None:
        self.index = index
        self._port = port
        self._settings = settings
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy.proxy.serve", str(self.index), str(self._port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(settings_payload(self._settings)).encode())
        self.proc.stdin.close()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if b"proxy on" not in line:
            raise RuntimeError(f"worker {self.index} did not start: {line!r}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


async def supervise(settings: Settings, *, announce: Announce = _print) -> int:
    from shadowproxy.metrics import Metrics
    from shadowproxy.proxy.app import reuse_port_socket, wait_for_stop_signal

    assert settings.database_url is not None
    # Hold the port (bound, not listening) so port 0 resolves once for every worker.
    holder = reuse_port_socket(settings.host, settings.port, listen=False)
    port = int(holder.getsockname()[1])
    workers = [WorkerProcess(i, port, settings) for i in range(settings.workers or 1)]
    await asyncio.gather(*(w.start() for w in workers))
    admin = admin_listener_for(
        settings, Metrics(),
        lambda: {"ready": all(w.alive for w in workers),
                 "workers": sum(w.alive for w in workers)},
    )
    admin_port = await admin.start(settings.admin_host, settings.admin_port)
    announce(banner(settings, port=port, admin_port=admin_port, workers=len(workers)))
    await wait_for_stop_signal()
    for w in workers:
        if w.alive and w.proc is not None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        if w.proc is not None:
            try:
                await asyncio.wait_for(w.proc.wait(), settings.grace_s + 45)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
    await admin.stop()
    holder.close()
    return 0


def _worker_main() -> None:
    """``python -m shadowproxy.proxy.serve INDEX PORT``: one worker under a supervisor."""
    index, port = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings(**json.loads(sys.stdin.read()))
    from shadowproxy.logs import setup_logging
    from shadowproxy.proxy.app import reuse_port_socket

    setup_logging(settings, process=f"worker-{index}")
    sock = reuse_port_socket(settings.host, port)
    from shadowproxy.tasks import run_async

    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run_async(run_worker(settings, worker=index, admin=False, sock=sock)))


if __name__ == "__main__":
    _worker_main()

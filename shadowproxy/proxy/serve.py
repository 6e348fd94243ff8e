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

import logging
import os
import sys
from contextlib import AsyncExitStack

from shadowproxy.proxy.sockets import ListenError, bind_listener, raise_open_files_limit
from shadowproxy.proxy.supervisor import supervise
from shadowproxy.proxy.worker import Announce, Listening, not_watched, print_line, run_worker
from shadowproxy.settings import Settings
from shadowproxy.store.provision import MigrationFailed, database, migrate_if_behind

__all__ = ["MigrationFailed", "run_serve"]

log = logging.getLogger("shadowproxy.proxy.serve")


async def run_serve(settings: Settings, *, migrate: bool = True,
                    announce: Announce = print_line,
                    listening: Listening = not_watched) -> int:
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
            await migrate_if_behind(resolved.database_url.get_secret_value())
        if resolved.workers is None:
            resolved = resolved.model_copy(update={"workers": os.cpu_count() or 1})
        if resolved.workers == 1:
            return await run_worker(resolved, worker=0, proxy_sock=proxy_sock,
                                    admin_sock=admin_sock, announce=announce,
                                    listening=listening)
        return await supervise(resolved, proxy_sock=proxy_sock, admin_sock=admin_sock,
                               announce=announce, listening=listening)
    raise AssertionError("unreachable")  # pragma: no cover - mypy cannot see the return

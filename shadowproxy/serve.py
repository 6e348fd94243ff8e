"""``shadowproxy serve``: database, migrations, mirror process, listeners, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pydantic import SecretStr

from shadowproxy.metrics import Metrics
from shadowproxy.mirror.process import MirrorProcess
from shadowproxy.server import Deadline, Listener, admin_app, make_proxy_app, wait_for_stop_signal
from shadowproxy.settings import Settings
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade

log = logging.getLogger("shadowproxy.serve")


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose ``database_url`` is usable: the given one, or an embedded server
    in ``DATA_DIR`` (reused across starts, stopped on exit)."""
    if settings.database_url is not None:
        yield settings
        return
    embedded = EmbeddedPostgres()
    url = await asyncio.to_thread(embedded.start, settings.data_dir / "pg")
    log.info("embedded PostgreSQL in %s", settings.data_dir / "pg")
    try:
        yield settings.model_copy(update={"database_url": SecretStr(url)})
    finally:
        await asyncio.to_thread(embedded.stop)


async def run_serve(
    settings: Settings,
    *,
    migrate: bool = True,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
) -> int:
    primary_url = settings.require_primary_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with database(settings) as settings:
        assert settings.database_url is not None
        if migrate:
            await upgrade(settings.database_url.get_secret_value())
        metrics = Metrics()
        mirror = MirrorProcess(settings)
        link = await mirror.start()
        proxy = Listener(
            make_proxy_app(
                primary_url=primary_url, mirror=link, tag_header=settings.tag_header,
                max_body_bytes=settings.max_body_bytes, sample_rate=settings.sample_rate,
                replay_rate=settings.replay_rate,
                connect_timeout_s=settings.upstream_connect_timeout_s,
                read_timeout_s=settings.upstream_timeout_s, observe=metrics.observe_request,
            ),
            grace_s=settings.grace_s,
        )

        async def ready() -> dict[str, object]:
            return {"ready": True, "mirror_pid": mirror.pid}

        admin = Listener(
            admin_app(
                ready=ready, metrics=metrics.render,
                token=settings.admin_token.get_secret_value() if settings.admin_token else None,
            ),
            grace_s=1.0,
        )
        try:
            port = await proxy.start(settings.host, settings.port)
            admin_port = await admin.start(settings.admin_host, settings.admin_port)
        except OSError as exc:
            await mirror.stop(0)
            print(f"shadowproxy: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
            return 2
        announce(
            f"shadowproxy: proxy on http://{settings.host}:{port} -> {primary_url}; "
            f"admin on http://{settings.admin_host}:{admin_port}"
        )
        signame = await wait_for_stop_signal()
        log.info("%s: stopping; in-flight requests have %.0fs", signame, settings.grace_s)
        deadline = Deadline(settings.grace_s)
        await proxy.stop()
        code = await mirror.stop(deadline.left())
        await admin.stop()
        if code not in (0, None):
            log.warning("mirror process exited with %s", code)
    return 0

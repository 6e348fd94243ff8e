"""A PostgreSQL of our own when the user gave no ``DATABASE_URL`` (and for tests).

pgserver ships the PostgreSQL 16 binaries as a wheel and runs the server on a unix
socket inside the data directory, so nothing listens on the network and two data
directories never collide. The cluster lives in ``DATA_DIR/pg`` and outlives the
process: the next start (after a clean stop or a crash) reuses it. As root, pgserver
runs the server as an unprivileged ``pgserver`` user, which must be able to reach the
directory, so the directory's ancestors are made traversable.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shadowproxy.store.urls import sqlalchemy_url

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Start, stop and restart one pgserver cluster; the address stays the same."""

    def __init__(self) -> None:
        self._server: Any = None
        self.url: str | None = None

    def start(self, data_dir: Path) -> str:
        """Start the cluster in ``data_dir/pg`` (creating it once); return its asyncpg URL.

        Blocking (initdb takes a few seconds the first time): call it before the event
        loop serves traffic, or via ``asyncio.to_thread``.
        """
        from pgserver.postgres_server import get_server

        pgdata = (data_dir.expanduser() / "pg").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we decide when it stops, not pgserver's atexit hook.
        self._server = get_server(pgdata, cleanup_mode=None)
        # pgserver caches one handle per directory and only starts the server when it
        # creates that handle; after a stop() it must be told to start again.
        with self._server._lock:
            self._server.ensure_postgres_running()
        self.url = sqlalchemy_url(self._server.get_uri())
        log.info("embedded PostgreSQL running in %s", pgdata)
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut); keep the data."""
        if self._server is None:
            return
        import pgserver

        # pgserver generates one function per bundled binary at import time.
        pg_ctl: Callable[..., str] = vars(pgserver)["pg_ctl"]
        try:
            pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=self._server.pgdata,
                user=self._server.system_user,
            )
        except subprocess.CalledProcessError:
            log.info("embedded PostgreSQL was not running")

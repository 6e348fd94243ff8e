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
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from shadowproxy.store.urls import sqlalchemy_url

log = logging.getLogger(__name__)


def _pgserver() -> ModuleType:
    """Import pgserver without platformdirs' ``XDG_RUNTIME_DIR is not set`` warning.

    pgserver asks platformdirs for a runtime directory (for its lock file) while its
    class body runs; where no login session set XDG_RUNTIME_DIR (a container, CI, cron)
    platformdirs warns — with a source line — on every command, and then uses a private
    directory that works. The fallback is fine, so the warning is noise; filtered here,
    only for this import, and only that category.
    """
    from platformdirs import RuntimeDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeDirWarning)
        import pgserver
        import pgserver.postgres_server

    return pgserver


def psql_command(url: str, args: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """``psql`` (the one bundled with pgserver, else the one on PATH) and an environment
    that connects it to ``url``; the password travels in the environment, not argv."""
    from urllib.parse import unquote, urlsplit

    from shadowproxy.store.reach import url_parts

    host, port, database, socket_dir = url_parts(url)
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        user = password = None
    env = dict(os.environ)
    for key, value in (("PGHOST", host or socket_dir), ("PGPORT", port),
                       ("PGUSER", unquote(user) if user else None),
                       ("PGPASSWORD", unquote(password) if password else None),
                       ("PGDATABASE", database)):
        if value:
            env[key] = str(value)
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / "psql"
        binary = str(bundled) if bundled.exists() else (shutil.which("psql") or "psql")
    except ImportError:
        binary = shutil.which("psql") or "psql"
    return [binary, *args], env


def start_failure(exc: BaseException, pgdata: Path) -> str:
    """One line for an embedded server that would not start, pointing at its log."""
    if isinstance(exc, subprocess.TimeoutExpired):
        what = f"{Path(str(exc.cmd[0])).name} did not finish in {exc.timeout:.0f} s"
    elif isinstance(exc, subprocess.CalledProcessError):
        what = f"{Path(str(exc.cmd[0])).name} exited with {exc.returncode}"
    elif isinstance(exc, OSError):
        what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        lines = str(exc).strip().splitlines()
        what = lines[0] if lines else type(exc).__name__
    return f"cannot start the embedded PostgreSQL in {pgdata}: {what} (its log: {pgdata / 'log'})"


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
        get_server = _pgserver().postgres_server.get_server

        pgdata = (data_dir.expanduser() / "pg").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we decide when it stops, not pgserver's atexit hook.
        self._server = get_server(pgdata, cleanup_mode=None)
        # pgserver caches one handle per directory and only starts the server when it
        # creates that handle; after a stop() it must be told to start again.
        with self._server._lock:
            try:
                self._server.ensure_postgres_running()
            except subprocess.TimeoutExpired:
                # pgserver gives pg_ctl 10 s; on a loaded machine the server can be up a
                # moment later. A second look finds it running (or fails for good).
                log.info("pg_ctl timed out; checking whether PostgreSQL came up anyway")
                self._server.ensure_postgres_running()
        self.url = sqlalchemy_url(self._server.get_uri())
        log.debug("embedded PostgreSQL running in %s", pgdata)
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut); keep the data."""
        if self._server is None:
            return
        pgserver = _pgserver()

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

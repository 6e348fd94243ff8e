"""What ``serve`` says first: where it listens, where the data lives, and the one line an
application changes. The first line keeps its shape (``proxy on http://H:P -> URL; admin
on http://H:P``): scripts and the supervisor read the ports from it."""

from __future__ import annotations

from pathlib import Path

from shadowproxy.settings import Settings


def _client_host(host: str) -> str:
    """An address an application on this machine can use, for a wildcard bind."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _pairs_location(settings: Settings) -> str:
    from shadowproxy.store.reach import database_name, where

    if settings.database_url is None:
        return "pairs: not stored (no database)"
    url = settings.database_url.get_secret_value()
    pgdata = (settings.data_dir / "pg").resolve()
    if str(pgdata) in url:
        return (f"pairs: embedded PostgreSQL in {pgdata} "
                "(query: shadowproxy psql; export: shadowproxy export)")
    return f"pairs: PostgreSQL at {where(url)}, database {database_name(url)!r}"


def banner(settings: Settings, *, port: int, admin_port: int | None,
           workers: int | None = None, worker: int = 0) -> str:
    """The lines ``serve`` prints once its listeners are up."""
    first = f"shadowproxy: proxy on http://{settings.host}:{port} -> {settings.primary_url}; "
    if admin_port is None:
        return first + f"worker {worker}"
    first += f"admin on http://{settings.admin_host}:{admin_port}"
    if workers and workers > 1:
        first += f" ({workers} workers)"
    admin = f"http://{_client_host(settings.admin_host)}:{admin_port}"
    proxy = f"http://{_client_host(settings.host)}:{port}"
    access = ("sign in with SHADOWPROXY_ADMIN_TOKEN" if settings.admin_token is not None
              else "this machine only; set SHADOWPROXY_ADMIN_TOKEN to open it elsewhere")
    data_dir: Path = settings.data_dir
    return "\n".join([
        first,
        f"  dashboard: {admin}/dashboard ({access})",
        f"  data: {data_dir} (spool, logs/setup.log); {_pairs_location(settings)}",
        "  in the application, change only the base URL:",
        f'    OpenAI(base_url="{proxy}/v1")   or   Anthropic(base_url="{proxy}")',
    ])

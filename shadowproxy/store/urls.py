"""One place that knows the two spellings of a PostgreSQL URL.

Users may write ``postgresql://``, ``postgres://`` or SQLAlchemy's
``postgresql+asyncpg://``; SQLAlchemy (migrations, ``diff``) needs the last, asyncpg
(the writer, readiness, retention) the first. Pure string work, so the proxy process can
use it without importing SQLAlchemy or Alembic.
"""

from __future__ import annotations

__all__ = ["asyncpg_dsn", "sqlalchemy_url"]

_PREFIXES = ("postgresql+asyncpg://", "postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form of a PostgreSQL URL, whatever form the user gave."""
    for prefix in _PREFIXES:
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("not a PostgreSQL URL (postgresql+asyncpg://…)")


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` form asyncpg speaks (anything else is left alone)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)

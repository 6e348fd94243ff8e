"""One line for a database that cannot be used, naming where it is and what to check.

A command that cannot reach PostgreSQL used to end in a 135-line traceback whose last
line was SQLAlchemy's "Background on this error" link, and a migration child's error was
reduced to that link. :func:`database_problem` walks an exception's causes (SQLAlchemy
wraps asyncpg, asyncpg wraps the socket error) and names the real one with the host and
port, so an operator knows which server, and which setting, to look at.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

CHECK = "check SHADOWPROXY_DATABASE_URL"


def url_parts(url: str) -> tuple[str | None, int | None, str | None, str | None]:
    """host, port, database and socket directory of a PostgreSQL URL. Pure string work:
    the proxy process prints it in its banner and must not load SQLAlchemy for that."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None, None, None
    hosts = parse_qs(parts.query).get("host") or []
    socket_dir = hosts[0] if hosts else None
    database = unquote(parts.path.lstrip("/")) or None
    return parts.hostname, port, database, socket_dir


def where(url: str) -> str:
    """``host:port`` of a PostgreSQL URL (or the socket directory), for messages."""
    host, port, _, socket_dir = url_parts(url)
    if not host and socket_dir:
        return f"the socket in {socket_dir}"
    return f"{host or 'localhost'}:{port or 5432}"


def database_name(url: str) -> str | None:
    return url_parts(url)[2]


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, ``orig``, groups."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        stack.append(orig if isinstance(orig, BaseException) else None)
        stack.extend([current.__cause__, current.__context__])
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def database_problem(exc: BaseException, url: str, *, check: str = CHECK) -> str | None:
    """One line when ``exc`` means the database cannot be used; ``None`` otherwise."""
    import asyncpg

    at = where(url)
    chain = list(causes(exc))
    for cause in chain:
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            name = database_name(url) or "named in the URL"
            return (f"PostgreSQL at {at} has no database {name!r}: create it "
                    f"(createdb {name}) or {check}")
        if isinstance(cause, asyncpg.InvalidPasswordError
                      | asyncpg.InvalidAuthorizationSpecificationError):
            return f"PostgreSQL at {at} refused the login ({_first_line(cause)}): {check}"
        if isinstance(cause, asyncpg.CannotConnectNowError):
            return f"PostgreSQL at {at} is not accepting connections yet ({_first_line(cause)})"
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return f"cannot reach PostgreSQL at {at} (unknown host): {check}"
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and getattr(cause, "filename", None) is None
            and (cause.errno == errno.ECONNREFUSED or "Connect call failed" in str(cause))
        ):
            return f"cannot reach PostgreSQL at {at} (connection refused): is it running? {check}"
        if isinstance(cause, FileNotFoundError) and cause.filename is None \
                and at.startswith("the socket"):
            return f"cannot reach PostgreSQL at {at} (no server socket): is it running? {check}"
        if isinstance(cause, TimeoutError):
            return f"cannot reach PostgreSQL at {at} (timed out): is the host right? {check}"
        if isinstance(cause, asyncpg.ConnectionDoesNotExistError | ConnectionResetError):
            return f"lost the connection to PostgreSQL at {at} ({_first_line(cause)})"
        if isinstance(cause, OSError) and getattr(cause, "filename", None) is None \
                and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT):
            return f"cannot reach PostgreSQL at {at} ({cause.strerror}): {check}"
        if type(cause) is ConnectionError:  # asyncpg's own: "rejected SSL upgrade", …
            return f"cannot talk to PostgreSQL at {at} ({_first_line(cause)}): {check}"
    return None


def sql_problem(exc: BaseException) -> str | None:
    """The server's own words for a failed statement (a migration's, say), one line."""
    import asyncpg

    for cause in causes(exc):
        if isinstance(cause, asyncpg.PostgresError):
            return f"PostgreSQL said: {_first_line(cause)}"
    return None

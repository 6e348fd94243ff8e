"""Listening sockets, bound once by ``serve`` before anything else starts.

Binding first means a busy port ends the command before a database, a migration or a
child process exists: one line, exit 2, nothing to clean up. Workers inherit the bound
socket (its file descriptor) instead of binding their own with SO_REUSEPORT, so a second
``serve`` on the same port is refused rather than silently handed half the traffic.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket


class ListenError(Exception):
    """A listener cannot be opened; the message is the one line the user sees."""


def bind_listener(host: str, port: int, *, what: str, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only lets a restart bind past TIME_WAIT; unlike SO_REUSEPORT it
        # never lets a second listener share the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"{what} port {port} on {host} is already in use "
                              "(another shadowproxy serve?)") from None
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {host}:{port} for the {what}: {reason}") from None
    sock.setblocking(False)
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def raise_open_files_limit() -> int:
    """Lift the soft descriptor limit to the hard one (what servers do): the connection
    cap is only meaningful below it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)

"""Listening sockets: bound once by ``serve`` before anything else starts, listening only
once a worker serves them.

Binding first means a busy port ends the command before a database, a migration or a
child process exists: one line, exit 2, nothing to clean up. Listening last means the
kernel completes no handshake before a worker accepts: until then a connect is refused
(a bound socket that does not listen answers a SYN with a reset), so a load balancer
that checks the TCP port never sends traffic into a start-up wait. The worker's listener
calls :func:`start_listening` just before it accepts (:mod:`.app`).

Workers inherit the bound socket (its file descriptor) instead of binding their own with
SO_REUSEPORT, so a second ``serve`` on the same port is refused rather than silently
handed half the traffic. While bound but not listening, SO_REUSEADDR is off: Linux lets
two SO_REUSEADDR sockets bind one port as long as neither listens, so a second ``serve``
started during our start-up would otherwise bind too.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket

# The accept queue. Every listen() on the socket sets it, whichever process calls it.
LISTEN_BACKLOG = 1024


class ListenError(Exception):
    """A listener cannot be opened; the message is the one line the user sees."""


def bind_listener(host: str, port: int, *, what: str) -> socket.socket:
    """A socket bound to ``host:port`` that does not listen yet (connects are refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets a restart bind past the TIME_WAIT connections of the last run;
        # it is turned off until listen (module docstring), and never lets a second
        # listener share the port, unlike SO_REUSEPORT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"{what} port {port} on {host} is already in use "
                              "(another shadowproxy serve?)") from None
        reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen on {host}:{port} for the {what}: {reason}") from None
    sock.setblocking(False)
    return sock


def start_listening(sock: socket.socket, backlog: int = LISTEN_BACKLOG) -> None:
    """From now on the kernel completes handshakes: call it only where connections are
    accepted. Idempotent; shared by every process holding the socket."""
    # listen() checks the port again, TIME_WAIT connections of an earlier run included.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.listen(backlog)


def stop_listening(sock: socket.socket) -> bool:
    """Back to bound and refusing, for every process holding the socket; connections
    still waiting in the accept queue are reset (their clients retry elsewhere, instead
    of waiting for an answer that would never come).

    Linux does this for ``shutdown(SHUT_RD)`` on a listening socket. The port stays
    ours: a port chosen by the kernel (port 0) is released by it, so it is bound again at
    once. Elsewhere the socket keeps listening; returns whether it stopped.
    """
    address = sock.getsockname()
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    with contextlib.suppress(OSError):  # EINVAL: still bound, as an explicit port stays
        sock.bind(address)
    return True


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

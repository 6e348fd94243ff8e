"""The proxy's listening socket as the kernel sees it: bound early, accepting only once
told to, refusing again when no worker serves, and never shared with another process."""

from __future__ import annotations

import errno
import socket
import time

import pytest

from shadowproxy.proxy.sockets import (
    ListenError,
    bind_listener,
    bound_port,
    start_listening,
    stop_listening,
)


def connect(port: int) -> socket.socket | None:
    """A client whose handshake completed, or None when the port refused it."""
    client = socket.socket()
    client.settimeout(2)
    try:
        client.connect(("127.0.0.1", port))
    except OSError as exc:
        client.close()
        assert exc.errno == errno.ECONNREFUSED
        return None
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("port", [0, "explicit"])
def test_a_bound_port_refuses_until_it_listens_and_again_after(port: int | str) -> None:
    number = free_port() if port == "explicit" else 0
    with bind_listener("127.0.0.1", number, what="proxy") as sock:
        chosen = bound_port(sock)
        assert connect(chosen) is None
        start_listening(sock)
        client = connect(chosen)
        assert client is not None
        client.close()
        assert stop_listening(sock)
        assert connect(chosen) is None
        assert bound_port(sock) == chosen  # still ours, also a port the kernel chose
        start_listening(sock)
        client = connect(chosen)
        assert client is not None
        client.close()


def test_stopping_resets_what_waits_in_the_queue_instead_of_leaving_it_unanswered() -> None:
    with bind_listener("127.0.0.1", 0, what="proxy") as sock:
        start_listening(sock)
        waiting = connect(bound_port(sock))  # accepted by the kernel, by no process
        assert waiting is not None
        stop_listening(sock)
        with waiting, pytest.raises(ConnectionResetError):
            waiting.recv(1)


def test_no_other_process_can_bind_the_port_while_it_does_not_listen_yet() -> None:
    with bind_listener("127.0.0.1", 0, what="proxy") as sock:
        port = bound_port(sock)
        with pytest.raises(ListenError, match=f"proxy port {port} on 127.0.0.1 is already in use"):
            bind_listener("127.0.0.1", port, what="proxy")
        # Nor a program that asks for SO_REUSEADDR itself.
        with socket.socket() as other, pytest.raises(OSError) as refused:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE


def test_a_restart_binds_and_listens_past_the_last_runs_time_wait_connections() -> None:
    with bind_listener("127.0.0.1", 0, what="proxy") as first:
        port = bound_port(first)
        start_listening(first)
        client = connect(port)
        assert client is not None
        accepted, _ = first.accept()
        accepted.close()  # the server closes first: its side waits in TIME_WAIT
        time.sleep(0.05)
        client.close()
    with bind_listener("127.0.0.1", port, what="proxy") as second:
        start_listening(second)
        client = connect(port)
        assert client is not None
        client.close()


def test_stop_listening_on_a_socket_that_does_not_listen_changes_nothing() -> None:
    with bind_listener("127.0.0.1", 0, what="proxy") as sock:
        assert not stop_listening(sock)
        start_listening(sock)
        client = connect(bound_port(sock))
        assert client is not None
        client.close()

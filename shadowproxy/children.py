"""Starting our own child processes (workers, mirrors) and the child's side of it.

One helper for every child: the parent runs ``python -m MODULE``, writes a JSON payload
(the settings, secrets included) to its stdin — never argv or the environment, where
secrets would show — and gives it a *status pipe*: a dedicated file descriptor on which
the child writes JSON lines. The first line is the machine-readable ready message
(``{"ready": true, ...}``); later lines report state changes (a worker's mirror
restarting). stdout and stderr stay for humans and logs, so nobody parses prose.

A child never outlives its parent: it asks the kernel for a signal when the parent dies
(``PR_SET_PDEATHSIG`` on Linux), and checks the parent is still the one that started it
(the parent may have died before the request was made).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

_PR_SET_PDEATHSIG = 1


class ChildFailed(Exception):
    """The child exited or went quiet before saying it was ready."""


def set_parent_death_signal(sig: signal.Signals) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # libc is already in this process: its symbols are found without a path.
        # (``ctypes.util.find_library`` would run ``ldconfig -p``: a process per child.)
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return int(prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0


@dataclass
class Child:
    """Parent-side handle: the process and its status pipe."""

    name: str
    proc: asyncio.subprocess.Process
    status: asyncio.StreamReader
    ready: dict[str, Any] = field(default_factory=dict)
    _transport: asyncio.BaseTransport | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Status messages after the ready one, until the child closes the pipe."""
        while line := await self.status.readline():
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    yield message

    async def stop(self, sig: signal.Signals, timeout_s: float) -> int:
        """Signal, wait ``timeout_s``, then SIGKILL: the child is gone on return."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        code = await self.proc.wait()
        self.close_pipe()
        return code

    def close_pipe(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


async def start_child(
    name: str,
    module: str,
    payload: dict[str, Any],
    *,
    ready_timeout_s: float = 60.0,
    pass_fds: tuple[int, ...] = (),
    args: tuple[str, ...] = (),
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> Child:
    """Start ``python -m module``, hand it ``payload`` and wait for its ready message;
    ``on_status`` sees what the child reports before it (a worker already serving).

    Raises :class:`ChildFailed` (the child is killed and reaped) if it exits or stays
    silent for ``ready_timeout_s``; cancelled, it kills and reaps the child too.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args,
            stdin=asyncio.subprocess.PIPE, pass_fds=(write_fd, *pass_fds),
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
    child = Child(name, proc, reader, _transport=transport)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({**payload, "status_fd": write_fd,
                                 "parent_pid": os.getpid()}).encode())
    with contextlib.suppress(ConnectionError):
        await proc.stdin.drain()
    proc.stdin.close()
    try:
        message = await asyncio.wait_for(_ready_message(reader, on_status), ready_timeout_s)
    except TimeoutError:
        message = None
    except asyncio.CancelledError:
        await child.stop(signal.SIGKILL, 5.0)
        raise
    if message is None:
        code = await child.stop(signal.SIGKILL, 5.0)
        raise ChildFailed(f"the {name} process did not start (exit {code})")
    child.ready = message
    return child


async def _ready_message(
    reader: asyncio.StreamReader, on_status: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any] | None:
    """The ready message; state reported before it goes to ``on_status`` (the ready
    message supersedes it)."""
    while line := await reader.readline():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("ready") is True:
                return message
            if isinstance(message, dict) and on_status is not None:
                on_status(message)
    return None


class StatusPipe:
    """Child-side: the payload from the parent and the status pipe back to it."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self._fd: int | None = payload.get("status_fd")

    @classmethod
    def from_stdin(cls, death_signal: signal.Signals | None = signal.SIGTERM) -> StatusPipe:
        """Read the payload, and die with the parent from now on."""
        payload = json.loads(sys.stdin.read())
        if death_signal is not None:
            set_parent_death_signal(death_signal)
            if os.getppid() != payload.get("parent_pid", os.getppid()):
                os.kill(os.getpid(), death_signal)  # the parent died before we asked
        return cls(payload)

    def send(self, **message: Any) -> None:
        """One JSON line to the parent; a parent gone away is not our problem here."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, (json.dumps(message) + "\n").encode())
        except OSError:
            self._fd = None

    def ready(self, **details: Any) -> None:
        self.send(ready=True, **details)

"""Hold points for a real ``serve`` (``tests/fakes/hold_point/sitecustomize.py``), and a
client that tells a refused connection from an accepted one left without an answer."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent / "hold_point"


@dataclass
class Holds:
    """The files the hook watches. ``gate(point)`` before the process gets there makes it
    wait; ``release(point)`` lets it go on."""

    directory: Path

    def env(self, listen_port: int) -> dict[str, str]:
        return {"PYTHONPATH": str(HOOK_DIR), "HOLD_DIR": str(self.directory),
                "HOLD_LISTEN_PORT": str(listen_port)}

    def gate(self, point: str) -> None:
        (self.directory / f"hold-{point}").touch()

    def release(self, point: str) -> None:
        (self.directory / f"hold-{point}").unlink(missing_ok=True)

    def held(self, point: str) -> list[int]:
        """Processes waiting (or that waited) at ``point``, by pid."""
        return [int(p.name.rsplit("-", 1)[1]) for p in self.directory.glob(f"held-{point}-*")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


REFUSED = "refused"
ANSWERED = "answered"
UNANSWERED = "accepted, not answered"

_BODY = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "knock"}]}'
_REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
            b"Authorization: Bearer sk-app-knock\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s") % (len(_BODY), _BODY)


async def knock(port: int, answer_within_s: float = 20.0) -> str:
    """One fresh connection with one proxied request: refused by the kernel, answered
    with a 200, or accepted and then left without a (whole) answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return REFUSED
        raise
    try:
        writer.write(_REQUEST)
        answer = await asyncio.wait_for(reader.read(), answer_within_s)
    except (OSError, TimeoutError):
        return UNANSWERED
    finally:
        writer.close()
    return ANSWERED if answer.startswith(b"HTTP/1.1 200") else UNANSWERED


async def knocks_until(port: int, wanted: str, timeout_s: float = 60.0) -> list[str]:
    """Knock every 20 ms until one gets ``wanted``; every outcome seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not seen or seen[-1] != wanted:
        assert time.monotonic() < deadline, f"never {wanted}: {seen[-5:]}"
        seen.append(await knock(port))
        await asyncio.sleep(0.02)
    return seen


async def until_held(holds: Holds, point: str, port: int, timeout_s: float = 60.0) -> list[str]:
    """Knock while waiting for a process to reach ``point``; what the knocks got."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not holds.held(point):
        assert time.monotonic() < deadline, f"nothing reached the {point} hold: {seen[-5:]}"
        seen.append(await knock(port, answer_within_s=2.0))
        await asyncio.sleep(0.02)
    return seen


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

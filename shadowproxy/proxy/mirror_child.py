"""The proxy's handle on its mirror child process, kept free of the mirror's imports
(the SDK, SQLAlchemy, asyncpg) so the proxy process stays small.

:class:`MirrorProcess` starts ``python -m shadowproxy.mirror.process``, hands it the
settings on stdin (never in argv or the environment, where secrets would show), waits for
``ready`` on stdout and connects a :class:`SocketMirrorLink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from shadowproxy.proxy.mirror_link import SocketMirrorLink
from shadowproxy.settings import Settings


def settings_payload(settings: Settings) -> dict[str, Any]:
    """Settings as JSON for the child, secrets revealed (they travel over a pipe)."""
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = str(value)
        out[name] = value
    return out



class MirrorProcess:
    """Parent-side handle on one mirror child."""

    def __init__(self, settings: Settings, worker: int = 0) -> None:
        self._settings = settings
        self._worker = worker
        self._dir = tempfile.mkdtemp(prefix="shadowproxy-mirror-")
        self.socket_path = os.path.join(self._dir, "mirror.sock")
        self._proc: asyncio.subprocess.Process | None = None
        self.link: SocketMirrorLink | None = None

    async def start(self) -> SocketMirrorLink:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy.mirror.process",
            self.socket_path, str(self._worker),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(settings_payload(self._settings)).encode())
        self._proc.stdin.close()
        line = await asyncio.wait_for(self._proc.stdout.readline(), timeout=60)
        if line.strip() != b"ready":
            code = await self._proc.wait()
            raise RuntimeError(f"the mirror process did not start (exit {code})")
        _reader, writer = await asyncio.open_unix_connection(self.socket_path)
        self.link = SocketMirrorLink(writer)
        return self.link

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def stop(self, grace_s: float) -> int | None:
        if self.link is not None:
            await self.link.close(grace_s)
        if self._proc is None:
            return None
        try:
            # The child needs the grace period plus time to spool what it could not write.
            code = await asyncio.wait_for(self._proc.wait(), timeout=grace_s + 30)
        except TimeoutError:
            self._proc.kill()
            code = await self._proc.wait()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(self._proc.pid)  # type: ignore[no-untyped-call]
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._dir)
        return code

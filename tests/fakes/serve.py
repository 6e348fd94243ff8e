"""``shadowproxy serve`` as a real child process, for tests that need the whole thing:
the mirror process, the writer, signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANNOUNCE = re.compile(rb"proxy on http://([\d.]+):(\d+) .*admin on http://([\d.]+):(\d+)")


@dataclass
class ServeProcess:
    proc: asyncio.subprocess.Process
    url: str
    admin_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self, timeout: float = 60) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)


def serve_env(tmp_path: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.update({
        "SHADOWPROXY_PORT": "0", "SHADOWPROXY_ADMIN_PORT": "0",
        "SHADOWPROXY_DATA_DIR": str(tmp_path / "data"),
        "SHADOWPROXY_SHADOW_MAX_RETRIES": "0",
        "SHADOWPROXY_WORKERS": "1",
    })
    env.update({f"SHADOWPROXY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@asynccontextmanager
async def running_serve(
    tmp_path: Path, *args: str, **settings: Any
) -> AsyncIterator[ServeProcess]:
    log_path = tmp_path / f"serve-{len(list(tmp_path.glob('serve-*.log')))}.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy", "serve", *args,
            env=serve_env(tmp_path, **settings),
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        match = ANNOUNCE.search(line)
        if match is None:
            await asyncio.wait_for(proc.wait(), 10)
            raise AssertionError(f"serve did not start: {line!r}\n{log_path.read_text()}")
        server = ServeProcess(
            proc,
            f"http://{match[1].decode()}:{match[2].decode()}",
            f"http://{match[3].decode()}:{match[4].decode()}",
            log_path,
        )
        yield server
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()

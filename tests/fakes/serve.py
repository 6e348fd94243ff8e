"""``shadowproxy serve`` as a real child process, for tests that need the whole thing:
the mirror process, the writer, signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The first line of serve's banner, for tests about what people see (programs use
# --ready-fd instead).
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
    read_end, write_end = os.pipe()
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shadowproxy", "serve", "--ready-fd", str(write_end), *args,
            env=serve_env(tmp_path, **settings),
            stdout=asyncio.subprocess.PIPE, stderr=log, pass_fds=(write_end,),
        )
    os.close(write_end)
    assert proc.stdout is not None
    try:
        # serve's machine-readable ready message (the banner on stdout is for people).
        with os.fdopen(read_end, "rb") as pipe:
            line = await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60)
        if not line:
            await asyncio.wait_for(proc.wait(), 10)
            raise AssertionError(f"serve did not start\n{log_path.read_text()}")
        ready = json.loads(line)
        host = settings.get("host", "127.0.0.1")
        admin_host = settings.get("admin_host", "127.0.0.1")
        server = ServeProcess(
            proc,
            f"http://{host}:{ready['proxy_port']}",
            f"http://{admin_host}:{ready['admin_port']}",
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

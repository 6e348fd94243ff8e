"""Processes and load for the benchmarks: simulator, a real ``shadowproxy serve``, and an
open-loop load generator that measures the proxy and the simulator directly in the same
run, interleaved, so machine noise hits both alike."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def simulator(latency_ms: float = 0, shadow_latency_ms: float | None = None,
              chunk_ms: float = 0) -> Iterator[str]:
    port = free_port()
    cmd = [PY, "-m", "shadowproxy.simulator", "--port", str(port),
           "--latency-ms", str(latency_ms), "--chunk-ms", str(chunk_ms)]
    if shadow_latency_ms is not None:
        cmd += ["--shadow-latency-ms", str(shadow_latency_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Served:
    url: str
    admin: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve(primary: str, database_url: str, **env: Any) -> Iterator[Served]:
    port, admin = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="shadowproxy-bench-")
    full_env = {
        **os.environ,
        "SHADOWPROXY_PRIMARY_URL": primary,
        "SHADOWPROXY_SHADOW_BASE_URL": primary,
        "SHADOWPROXY_SHADOW_API_KEY": "sk-ant-bench",
        "SHADOWPROXY_DATABASE_URL": database_url,
        "SHADOWPROXY_PORT": str(port),
        "SHADOWPROXY_ADMIN_PORT": str(admin),
        "SHADOWPROXY_DATA_DIR": data_dir,
        "SHADOWPROXY_LOG_LEVEL": "WARNING",
        **{f"SHADOWPROXY_{k.upper()}": str(v) for k, v in env.items()},
    }
    log = Path(data_dir) / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([PY, "-m", "shadowproxy", "serve"], env=full_env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 60)
        wait_port(admin, 10)
        yield Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def chat_body(i: int, *, stream: bool = False, prompt: str = "") -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini", "max_tokens": 64,
        "messages": [{"role": "user", "content": f"benchmark request {i} {prompt}"}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


HEADERS = {"Authorization": "Bearer sk-bench-app", "Content-Type": "application/json"}


@dataclass
class Samples:
    latency_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    errors: int = 0


async def one(session: aiohttp.ClientSession, url: str, body: bytes, out: Samples,
              stream: bool) -> None:
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=HEADERS) as resp:
            if stream:
                first = None
                async for _chunk in resp.content.iter_any():
                    if first is None:
                        first = time.perf_counter()
                if first is not None:
                    out.ttft_ms.append((first - start) * 1000)
            else:
                await resp.read()
            if resp.status != 200:
                out.errors += 1
                return
    except aiohttp.ClientError:
        out.errors += 1
        return
    out.latency_ms.append((time.perf_counter() - start) * 1000)


async def open_loop(targets: dict[str, str], *, rate: float, duration: float,
                    stream: bool = False, prompt: str = "",
                    warmup: float = 1.0) -> dict[str, Samples]:
    """``rate`` requests per second to each target, interleaved, for ``duration`` s."""
    results = {name: Samples() for name in targets}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the pools and both processes up.
        warm = {name: Samples() for name in targets}
        for i in range(int(warmup * rate)):
            for name, base in targets.items():
                await one(session, base + "/v1/chat/completions", chat_body(i), warm[name],
                          stream)
        tasks: list[asyncio.Task[None]] = []
        interval = 1.0 / rate
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = int(duration * rate)
        names = list(targets)
        for i in range(n):
            for k, name in enumerate(names):
                at = t0 + i * interval + k * interval / len(names)
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(
                    one(session, targets[name] + "/v1/chat/completions",
                        chat_body(i, stream=stream, prompt=prompt), results[name], stream)))
        await asyncio.gather(*tasks)
    return results


async def closed_loop(base: str, *, concurrency: int, duration: float,
                      prompt: str = "") -> tuple[int, float]:
    """Requests completed and elapsed seconds with ``concurrency`` clients in a loop."""
    done = 0
    end = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            out = Samples()
            while time.perf_counter() < end:
                await one(session, base + "/v1/chat/completions",
                          chat_body(w * 1_000_000 + i, prompt=prompt), out, False)
                i += 1
            done += len(out.latency_ms)

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return done, time.perf_counter() - start


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = (len(ordered) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)}

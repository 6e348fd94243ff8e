"""Processes and load for the benchmarks: the simulator, a real ``shadowproxy serve``
(or nginx), and load generators that measure the proxy and the simulator directly in the
same run, interleaved, so machine noise hits both alike.

The load generator is one Python process. It can run out of CPU before the proxy does,
so every open-loop run reports the rate it actually achieved, how late it sent, and how
busy it was (:class:`Pacing`); a figure measured by a saturated generator says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
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

from shadowproxy.tasks import spawn

PY = sys.executable
CHAT_PATH = "/v1/chat/completions"
HEADERS = {"Authorization": "Bearer sk-bench-app", "Content-Type": "application/json"}
# The first OpenAI chunk carries only the role; the first token is the first non-empty
# content delta.
_FIRST_TOKEN = re.compile(rb'"content":"[^"]')
# Responses API streams: the first typed text delta (created/in_progress/item events
# come before generation).
RESPONSES_PATH = "/v1/responses"
_FIRST_RESPONSES_TOKEN = re.compile(rb"event: response\.output_text\.delta")
# Below this share of the target rate the generator, not the proxy, set the pace.
SATURATION_SHARE = 0.97


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


# -- processes under test ----------------------------------------------------------------


@dataclass(frozen=True)
class Simulated:
    url: str
    pid: int

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextlib.contextmanager
def simulator(latency_ms: float = 0, shadow_latency_ms: float | None = None,
              chunk_ms: float = 0) -> Iterator[Simulated]:
    port = free_port()
    cmd = [PY, "-m", "shadowproxy.simulator", "--port", str(port),
           "--latency-ms", str(latency_ms), "--chunk-ms", str(chunk_ms)]
    if shadow_latency_ms is not None:
        cmd += ["--shadow-latency-ms", str(shadow_latency_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield Simulated(f"http://127.0.0.1:{port}", proc.pid)
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
def serve(primary: str, database_url: str, *, code: Path | None = None,
          args: tuple[str, ...] = (), **env: Any) -> Iterator[Served]:
    """``shadowproxy serve`` configured by environment; one worker unless ``workers=``.

    One worker makes the process tree simple to account for: the serve process is the
    proxy worker and its only child is the mirror process. ``code`` runs another copy of
    the package (a baseline release, bench_cutover.baseline_code) instead of this one.
    """
    port, admin = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="shadowproxy-bench-")
    env.setdefault("workers", 1)
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
    if code is not None:
        full_env["PYTHONPATH"] = str(code)
    log = Path(data_dir) / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([PY, "-m", "shadowproxy", "serve", *args], env=full_env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_port(port, 60)
        wait_port(admin, 10)
        yield Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream primary {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://primary;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx")


@contextlib.contextmanager
def nginx(primary: str) -> Iterator[str]:
    """A minimal ``proxy_pass`` nginx (one worker, keep-alive upstream) in a temp dir."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        upstream = primary.removeprefix("http://")
        conf.write_text(NGINX_CONF.format(dir=tmp, upstream=upstream, port=port))
        proc = subprocess.Popen([binary, "-p", tmp, "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 10)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def bare_aiohttp(primary: str) -> Iterator[str]:
    """bench/bare_aiohttp.py in front of ``primary``: aiohttp's own floor."""
    port = free_port()
    script = Path(__file__).with_name("bare_aiohttp.py")
    proc = subprocess.Popen([PY, str(script), primary, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


# -- what /proc says about a process tree -----------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, found by parent id across /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used (busy time from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def role(pid: int) -> str:
    """What a process in a serve tree is, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    text = b" ".join(argv).decode(errors="replace")
    if "shadowproxy.mirror.process" in text:
        return "mirror"
    if "shadowproxy.proxy.worker" in text:
        return "worker"
    if "serve" in text:
        return "serve"
    return text[:40]


@dataclass
class Memory:
    rss_mb: float
    peak_mb: float  # VmHWM: the high-water mark over the process's life


def memory(pid: int) -> Memory | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return Memory(int(values.get("VmRSS", 0)) / 1024, int(values.get("VmHWM", 0)) / 1024)


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def connections_to(pid: int, port: int) -> int:
    """Established TCP connections from ``pid`` to local ``port``: requests on the wire,
    as opposed to calls a client library holds waiting for a pooled connection."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if remote_port == port and cols[3] == "01" and cols[9] in inodes:
                    count += 1
    return count


# -- the admin listener ---------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


async def scrape(admin: str) -> dict[str, float]:
    """``/metrics`` as ``name{labels}`` -> value (missing when the admin is down)."""
    out: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with aiohttp.ClientSession() as session, session.get(
            admin + "/metrics", timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            text = await resp.text()
        for line in text.splitlines():
            if match := _SAMPLE.match(line):
                with contextlib.suppress(ValueError):
                    out[match[1] + (match[2] or "")] = float(match[3])
    return out


def metric(samples: dict[str, float], name: str) -> float:
    """Sum of a metric over all its label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# -- requests -----------------------------------------------------------------------------


def chat_body(i: int, *, stream: bool = False, prompt: str = "") -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini", "max_tokens": 64,
        "messages": [{"role": "user", "content": f"benchmark request {i} {prompt}"}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def responses_body(i: int, *, stream: bool = False, prompt: str = "") -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4.1-mini", "max_output_tokens": 64,
        "input": f"benchmark request {i} {prompt}",
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


# API → (path, request body builder, first-token pattern of its stream)
APIS = {
    "chat": (CHAT_PATH, chat_body, _FIRST_TOKEN),
    "responses": (RESPONSES_PATH, responses_body, _FIRST_RESPONSES_TOKEN),
}


@dataclass
class Samples:
    latency_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0


async def one(session: aiohttp.ClientSession, url: str, body: bytes, out: Samples,
              stream: bool, first_token: re.Pattern[bytes] = _FIRST_TOKEN,
              headers: dict[str, str] | None = None) -> None:
    """One request; latency to the last byte, and for streams to the first content."""
    out.sent += 1
    start = time.perf_counter()
    try:
        async with session.post(url, data=body,
                                headers={**HEADERS, **headers} if headers else HEADERS) as resp:
            if stream:
                first: float | None = None
                seen = b""
                async for chunk in resp.content.iter_any():
                    if first is None:
                        seen += chunk
                        if first_token.search(seen):
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


@dataclass
class Pacing:
    """How well the generator kept to its schedule (per target)."""

    target_rps: float
    achieved_rps: float
    send_lag_p99_ms: float  # how late requests left, against the schedule
    generator_cpu: float  # share of one core the bench process used while sending
    warmup: int  # requests per target before measuring

    @property
    def saturated(self) -> bool:
        return self.achieved_rps < SATURATION_SHARE * self.target_rps

    def as_dict(self) -> dict[str, Any]:
        return {"target_rps": self.target_rps, "achieved_rps": self.achieved_rps,
                "send_lag_p99_ms": self.send_lag_p99_ms,
                "generator_cpu": self.generator_cpu, "saturated": self.saturated,
                "warmup": self.warmup}


async def _paced(session: aiohttp.ClientSession, targets: dict[str, str],
                 results: dict[str, Samples], *, rate: float, duration: float,
                 first_index: int, stream: bool,
                 prompt: str, api: str = "chat",
                 headers: dict[str, dict[str, str]] | None = None,
                 ) -> tuple[float, list[float], float]:
    """Send on schedule, interleaving targets; return the achieved rate and send lags."""
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    names = list(targets)
    lags: list[float] = []
    t0 = loop.time()
    started = [t0, t0]  # the last request's planned and actual start
    cpu0 = time.process_time()
    cpu = [0.0]
    path, make_body, first_token = APIS[api]

    async def send(at: float, name: str, body: bytes) -> None:
        # Lag is taken when the request really starts: a generator that has fallen
        # behind creates tasks on time but cannot run them.
        now = loop.time()
        lags.append(max(0.0, now - at) * 1000)
        if at >= started[0]:
            started[:] = [at, now]
            cpu[0] = time.process_time() - cpu0
        await one(session, targets[name] + path, body, results[name], stream, first_token,
                  (headers or {}).get(name))

    for i in range(int(duration * rate)):
        for k, name in enumerate(names):
            at = t0 + i * interval + k * interval / len(names)
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            body = make_body(first_index + i, stream=stream, prompt=prompt)
            tasks.append(spawn(send(at, name, body), name=f"bench-{name}-{i}"))
    await asyncio.gather(*tasks)
    planned, actual = started[0] - t0, started[1] - t0
    # The schedule's span over the span it really took: 1.0 when the generator kept up.
    keep_up = planned / actual if actual > 0 else 1.0
    busy = cpu[0] / actual if actual > 0 else 0.0
    return rate * min(1.0, keep_up), lags, busy


async def open_loop(targets: dict[str, str], *, rate: float, duration: float,
                    stream: bool = False, prompt: str = "",
                    warmup: float = 1.0, api: str = "chat",
                    headers: dict[str, dict[str, str]] | None = None,
                    ) -> tuple[dict[str, Samples], Pacing]:
    """``rate`` requests per second to each target, interleaved, for ``duration`` s,
    after ``warmup`` s of the same load whose samples are thrown away; ``headers`` adds
    request headers per target (a tag, say)."""
    results = {name: Samples() for name in targets}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = {name: Samples() for name in targets}
        await _paced(session, targets, warm, rate=rate, duration=warmup, first_index=0,
                     stream=stream, prompt=prompt, api=api, headers=headers)
        achieved, lags, cpu = await _paced(session, targets, results, rate=rate,
                                           duration=duration, first_index=1_000_000,
                                           stream=stream, prompt=prompt, api=api,
                                           headers=headers)
    lag_p99 = percentiles(lags)["p99"]
    return results, Pacing(rate, achieved, lag_p99, cpu, int(warmup * rate))


async def one_client(targets: dict[str, str], *, duration: float,
                     warmup_requests: int = 200, stream: bool = False,
                     headers: dict[str, dict[str, str]] | None = None,
                     ) -> dict[str, Samples]:
    """Concurrency 1: one client, one request at a time, alternating targets (and which
    goes first) so drift and noise land on all; ``headers`` adds headers per target."""
    results = {name: Samples() for name in targets}
    names = list(targets)
    extra = headers or {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        warm = Samples()
        for i in range(warmup_requests):
            for name in names:
                await one(session, targets[name] + CHAT_PATH, chat_body(i, stream=stream),
                          warm, stream, headers=extra.get(name))
        end = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < end:
            for name in names if i % 2 == 0 else names[::-1]:
                await one(session, targets[name] + CHAT_PATH,
                          chat_body(1_000_000 + i, stream=stream), results[name], stream,
                          headers=extra.get(name))
            i += 1
    return results


async def closed_loop(base: str, *, concurrency: int, duration: float, prompt: str = "",
                      tally: Samples | None = None) -> tuple[int, float]:
    """Requests completed and elapsed seconds with ``concurrency`` clients in a loop;
    ``tally`` gets the requests sent and the errors."""
    done = 0
    end = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            out = Samples()
            while time.perf_counter() < end:
                await one(session, base + CHAT_PATH,
                          chat_body(w * 1_000_000 + i, prompt=prompt), out, False)
                i += 1
            done += len(out.latency_ms)
            if tally is not None:
                tally.sent += out.sent
                tally.errors += out.errors

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return done, time.perf_counter() - start


async def burst(base: str, count: int, *, concurrency: int = 64) -> Samples:
    """``count`` requests as fast as ``concurrency`` clients can send them."""
    out = Samples()
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def send(i: int) -> None:
            async with gate:
                await one(session, base + CHAT_PATH, chat_body(i), out, False)

        await asyncio.gather(*(send(i) for i in range(count)))
    return out


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

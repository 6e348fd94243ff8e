"""Cutover in steps, measured beside baselines taken in the same run.

``cutover_no_plan``: a tag without a plan must cost what it costs today. One client, one
request at a time, rotating three targets: the simulator directly, ``serve`` from today's
code (``--baseline``, default ``main``, extracted with ``git archive`` and run with
``--no-migrate`` on the same database) and ``serve`` from this tree while another tag
has a plan at 100% (so its routing table is live). The figure: each proxy's added
latency, and the difference between them.

``cutover_served`` / ``cutover_served_stream``: what a user waits when the shadow
model serves: the same ``serve`` answering a tag without a plan (the primary, relayed)
and a tag at 100% (the shadow, translated back to Chat Completions; the primary then
asked in the background and the pair stored), beside direct calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.harness import (
    CHAT_PATH,
    Samples,
    chat_body,
    one,
    one_client,
    percentiles,
    serve,
    simulator,
)
from shadowproxy.cutover import plans_db

ROOT = Path(__file__).resolve().parent.parent
PLANNED, UNPLANNED = "planned", "unplanned"
Row = dict[str, Any]


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.contextmanager
def baseline_code(ref: str) -> Iterator[Path]:
    """The package as it is at ``ref``, in a directory of its own."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "shadowproxy"],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _prepare(db: str) -> None:
    """No pairs; one plan, for PLANNED at 100%."""
    conn = await asyncpg.connect(_dsn(db))
    try:
        await conn.execute("TRUNCATE pairs CASCADE; DELETE FROM cutover_plans; "
                           "DELETE FROM cutover_events")
        await plans_db.start(conn, PLANNED, (100,), "bench")
    finally:
        await conn.close()


async def _served_counts(db: str) -> dict[str, int]:
    conn = await asyncpg.connect(_dsn(db))
    try:
        rows = await conn.fetch("SELECT served_by, count(*) FROM pairs GROUP BY 1")
    finally:
        await conn.close()
    return {r[0]: r[1] for r in rows}


def _added(direct: dict[str, float], other: dict[str, float]) -> dict[str, float]:
    return {k: other[k] - direct[k] for k in direct}


async def _settle(db: str, expected: int, timeout: float = 60) -> dict[str, int]:
    """Pair counts once ``expected`` are stored (or ``timeout`` passes): the serve is
    stopped only then, as in the other scenarios."""
    deadline = time.monotonic() + timeout
    counts = await _served_counts(db)
    while sum(counts.values()) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        counts = await _served_counts(db)
    return counts


async def no_plan(db: str, duration: float, baseline: str) -> Row:
    """One client, one request at a time, rotating the three targets: the added latency
    itself, without queueing in a loaded machine's run queue."""
    await _prepare(db)
    tagged = {"x-shadow-tag": UNPLANNED}
    with simulator() as sim, baseline_code(baseline) as code, \
            serve(sim.url, db, code=code, args=("--no-migrate",), sample_rate=1.0) as today, \
            serve(sim.url, db, sample_rate=1.0) as branch:
        res = await one_client(
            {"direct": sim.url, "today": today.url, "cutover": branch.url},
            duration=duration, headers={n: tagged for n in ("direct", "today", "cutover")})
        sent = res["today"].sent + res["cutover"].sent + 2 * 200
        pairs = await _settle(db, sent)
    p = {name: percentiles(samples.latency_ms) for name, samples in res.items()}
    return {"baseline": baseline, "direct": p["direct"], "today": p["today"],
            "cutover": p["cutover"], "added_today": _added(p["direct"], p["today"]),
            "added_cutover": _added(p["direct"], p["cutover"]),
            "requests": len(res["cutover"].latency_ms), "pairs": pairs, "proxied": sent,
            "errors": sum(s.errors for s in res.values())}


_HAIKU_FIRST_TOKEN = re.compile(rb'"type":"text_delta"')
_CHAT_FIRST_TOKEN = re.compile(rb'"content":"[^"]')


def _haiku_body(i: int, stream: bool) -> bytes:
    """What the shadow is asked for a ``chat_body`` request (the translation's output)."""
    return json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": stream,
                       "messages": [{"role": "user",
                                     "content": f"benchmark request {i} "}]}).encode()


async def _rotate(targets: dict[str, tuple[str, Callable[[int], bytes], dict[str, str],
                                          re.Pattern[bytes]]],
                  *, duration: float, stream: bool, warmup: int) -> dict[str, Samples]:
    """One client, one request at a time, rotating the targets (and which goes first)."""
    results = {name: Samples() for name in targets}
    names = list(targets)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        warm = Samples()
        for i in range(warmup):
            for url, body, headers, first in targets.values():
                await one(session, url, body(i), warm, stream, first, headers)
        end = time.perf_counter() + duration
        i = 0
        while time.perf_counter() < end:
            for name in names[i % len(names):] + names[:i % len(names)]:
                url, body, headers, first = targets[name]
                await one(session, url, body(1_000_000 + i), results[name], stream, first,
                          headers)
            i += 1
    return results


async def served(db: str, duration: float, *, stream: bool) -> Row:
    """Four targets: the simulated primary and the simulated Haiku directly, and the
    proxy relaying the primary (a tag without a plan) and serving from Haiku (a tag at
    100%): each proxied figure beside the direct call to the provider that answered."""
    await _prepare(db)
    key = "ttft_ms" if stream else "latency_ms"
    warmup = 20 if stream else 200
    with simulator(chunk_ms=5 if stream else 0) as sim, \
            serve(sim.url, db, sample_rate=1.0) as proxy:
        def chat(i: int) -> bytes:
            return chat_body(i, stream=stream)

        res = await _rotate({
            "primary_direct": (sim.url + CHAT_PATH, chat, {}, _CHAT_FIRST_TOKEN),
            "haiku_direct": (sim.url + "/v1/messages", lambda i: _haiku_body(i, stream),
                             {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"},
                             _HAIKU_FIRST_TOKEN),
            "primary": (proxy.url + CHAT_PATH, chat, {"x-shadow-tag": UNPLANNED},
                        _CHAT_FIRST_TOKEN),
            "shadow": (proxy.url + CHAT_PATH, chat, {"x-shadow-tag": PLANNED},
                       _CHAT_FIRST_TOKEN),
        }, duration=duration * (3 if stream else 1), stream=stream, warmup=warmup)
        sent = res["primary"].sent + res["shadow"].sent + 2 * warmup
        pairs = await _settle(db, sent)
    p = {name: percentiles(getattr(samples, key)) for name, samples in res.items()}
    whole = {name: percentiles(samples.latency_ms) for name, samples in res.items()}
    return {"primary_direct": p["primary_direct"], "haiku_direct": p["haiku_direct"],
            "primary": p["primary"], "shadow": p["shadow"],
            "added_primary": _added(p["primary_direct"], p["primary"]),
            "added_shadow": _added(p["haiku_direct"], p["shadow"]),
            "whole_added_shadow": _added(whole["haiku_direct"], whole["shadow"]),
            "served_by": pairs, "proxied": sent, "requests": len(getattr(res["shadow"], key)),
            "errors": sum(s.errors for s in res.values())}

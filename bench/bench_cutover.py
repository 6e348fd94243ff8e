"""Cutover in steps, measured beside baselines taken in the same run.

``cutover_no_plan``: a tag without a plan must cost what it costs today. Three targets
interleaved under one open-loop load: the simulator directly, ``serve`` from today's
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

import contextlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import open_loop, percentiles, serve, simulator
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


async def no_plan(db: str, duration: float, baseline: str, rate: float = 50) -> Row:
    await _prepare(db)
    tagged = {"x-shadow-tag": UNPLANNED}
    with simulator() as sim, baseline_code(baseline) as code, \
            serve(sim.url, db, code=code, args=("--no-migrate",), sample_rate=1.0) as today, \
            serve(sim.url, db, sample_rate=1.0) as branch:
        res, pacing = await open_loop(
            {"direct": sim.url, "today": today.url, "cutover": branch.url}, rate=rate,
            duration=duration, headers={n: tagged for n in ("direct", "today", "cutover")})
    p = {name: percentiles(samples.latency_ms) for name, samples in res.items()}
    return {"baseline": baseline, "direct": p["direct"], "today": p["today"],
            "cutover": p["cutover"], "added_today": _added(p["direct"], p["today"]),
            "added_cutover": _added(p["direct"], p["cutover"]),
            "requests": len(res["cutover"].latency_ms),
            "errors": sum(s.errors for s in res.values()), "pacing": pacing.as_dict()}


async def served(db: str, duration: float, *, stream: bool, rate: float = 25) -> Row:
    await _prepare(db)
    key = "ttft_ms" if stream else "latency_ms"
    with simulator(chunk_ms=20 if stream else 0) as sim, \
            serve(sim.url, db, sample_rate=1.0) as proxy:
        res, pacing = await open_loop(
            {"direct": sim.url, "primary": proxy.url, "shadow": proxy.url}, rate=rate,
            duration=duration, stream=stream,
            headers={"primary": {"x-shadow-tag": UNPLANNED},
                     "shadow": {"x-shadow-tag": PLANNED}})
    p = {name: percentiles(getattr(samples, key)) for name, samples in res.items()}
    whole = {name: percentiles(samples.latency_ms) for name, samples in res.items()}
    return {"direct": p["direct"], "primary": p["primary"], "shadow": p["shadow"],
            "added_primary": _added(p["direct"], p["primary"]),
            "added_shadow": _added(p["direct"], p["shadow"]),
            "whole_added_shadow": _added(whole["direct"], whole["shadow"]),
            "served_by": await _served_counts(db), "requests": len(getattr(res["shadow"], key)),
            "errors": sum(s.errors for s in res.values()), "pacing": pacing.as_dict()}

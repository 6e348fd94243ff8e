"""The benchmark suite: every figure beside direct calls to the same simulated provider,
measured in the same run.

    .venv/bin/python bench/run.py                       # all scenarios, 3 rounds
    .venv/bin/python bench/run.py --only passthrough --rounds 1 --duration 5

Prints a table and writes ``bench/results/latest.json``. Quote medians of rounds: the
machine is shared and a single round is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.harness import (
    closed_loop,
    open_loop,
    percentiles,
    serve,
    simulator,
)
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade

Row = dict[str, Any]


async def count_pairs(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT shadow_outcome, count(*) FROM pairs GROUP BY 1")
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


async def reset(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("TRUNCATE pairs CASCADE")
    finally:
        await conn.close()


def added(direct: dict[str, float], proxied: dict[str, float]) -> dict[str, float]:
    return {k: proxied[k] - direct[k] for k in direct}


async def latency_scenario(
    db: str, *, rate: float, duration: float, sample_rate: float,
    shadow_latency_ms: float | None = None, prompt: str = "", stream: bool = False,
    wait_pairs: bool = True,
) -> Row:
    await reset(db)
    with simulator(shadow_latency_ms=shadow_latency_ms) as sim, serve(
        sim, db, sample_rate=sample_rate, shadow_timeout_s=30
    ) as proxy:
        res = await open_loop({"direct": sim, "proxy": proxy.url}, rate=rate,
                              duration=duration, stream=stream, prompt=prompt)
        # Let the mirror settle so the stored counts are final.
        expected = int(duration * rate) + int(rate)  # + warm-up
        deadline = time.monotonic() + (40 if wait_pairs and sample_rate else 0)
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = await count_pairs(db)
            if sum(counts.values()) >= expected:
                break
            await asyncio.sleep(0.5)
    key = "ttft_ms" if stream else "latency_ms"
    d = percentiles(getattr(res["direct"], key))
    p = percentiles(getattr(res["proxy"], key))
    return {"direct": d, "proxy": p, "added": added(d, p),
            "errors": res["proxy"].errors + res["direct"].errors,
            "requests": len(res["proxy"].latency_ms), "pairs": counts}


async def throughput_scenario(db: str, *, sample_rate: float, duration: float) -> Row:
    await reset(db)
    with simulator() as sim, serve(sim, db, sample_rate=sample_rate) as proxy:
        d_done, d_el = await closed_loop(sim, concurrency=32, duration=duration)
        p_done, p_el = await closed_loop(proxy.url, concurrency=32, duration=duration)
    return {"direct_rps": d_done / d_el, "proxy_rps": p_done / p_el}


SCENARIOS: dict[str, Callable[..., Any]] = {
    "passthrough": lambda db, a: latency_scenario(db, rate=200, duration=a.duration,
                                                  sample_rate=0.0, wait_pairs=False),
    "mirrored": lambda db, a: latency_scenario(db, rate=200, duration=a.duration,
                                               sample_rate=1.0),
    "slow_shadow": lambda db, a: latency_scenario(db, rate=200, duration=a.duration,
                                                  sample_rate=1.0, shadow_latency_ms=2000),
}


def fmt(row: Row) -> str:
    if "direct_rps" in row:
        return f"direct {row['direct_rps']:.0f} req/s | proxy {row['proxy_rps']:.0f} req/s"
    d, p, a = row["direct"], row["proxy"], row["added"]
    return (f"direct p50/p95/p99 {d['p50']:.2f}/{d['p95']:.2f}/{d['p99']:.2f} ms | "
            f"proxy {p['p50']:.2f}/{p['p95']:.2f}/{p['p99']:.2f} | "
            f"added {a['p50']:+.2f}/{a['p95']:+.2f}/{a['p99']:+.2f} | "
            f"n={row['requests']} errors={row['errors']} pairs={row['pairs']}")


def median_row(rows: list[Row]) -> Row:
    if "direct_rps" in rows[0]:
        return {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out: Row = {"requests": rows[0]["requests"], "errors": sum(r["errors"] for r in rows),
                "pairs": rows[-1]["pairs"]}
    for part in ("direct", "proxy", "added"):
        out[part] = {q: statistics.median(r[part][q] for r in rows) for q in rows[0][part]}
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args()
    pg = EmbeddedPostgres()
    db = await asyncio.to_thread(pg.start, Path(tempfile.mkdtemp(prefix="bench-pg-")))
    await upgrade(db)
    results: dict[str, Any] = {}
    try:
        for name in args.only.split(","):
            rounds = []
            for r in range(args.rounds):
                row = await SCENARIOS[name](db, args)
                print(f"{name:14s} round {r + 1}: {fmt(row)}", flush=True)
                rounds.append(row)
            results[name] = {"rounds": rounds, "median": median_row(rounds)}
    finally:
        await asyncio.to_thread(pg.stop)
    print("\nmedian of rounds (ms; added = proxy - direct, same run)")
    for name, res in results.items():
        print(f"{name:14s} {fmt(res['median'])}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

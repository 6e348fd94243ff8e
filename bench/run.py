"""The benchmark suite: every figure beside direct calls to the same simulated provider,
measured in the same run.

    .venv/bin/python bench/run.py                       # all scenarios, 3 rounds
    .venv/bin/python bench/run.py --only c1,ttft --rounds 1 --duration 5

Prints a table and writes ``bench/results/latest.json``. Quote medians of rounds: the
machine is shared and a single round is noisy. bench/README.md says what each figure
means and which goal it is held to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench import bench_cutover
from bench.harness import (
    Memory,
    Samples,
    Served,
    Simulated,
    bare_aiohttp,
    burst,
    children,
    closed_loop,
    connections_to,
    cpu_seconds,
    machine_cpu_seconds,
    memory,
    metric,
    nginx,
    nginx_binary,
    one_client,
    open_loop,
    percentiles,
    role,
    scrape,
    serve,
    simulator,
)
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade
from shadowproxy.tasks import cancel_and_wait, spawn

Row = dict[str, Any]


@dataclass(frozen=True)
class Options:
    duration: float
    pg_pid: Callable[[], int | None]  # the embedded PostgreSQL's postmaster, for CPU
    baseline: str = "main"  # git ref of "today's code" (cutover_no_plan)


@dataclass(frozen=True)
class Line:
    """One row of the printed table."""

    figure: str
    direct: str = ""
    proxy: str = ""
    added: str = ""
    goal: str = ""
    ok: bool | None = None


# -- the database ------------------------------------------------------------------------


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def count_pairs(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch("SELECT shadow_outcome, count(*) FROM pairs GROUP BY 1")
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


async def reset(url: str) -> None:
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute("TRUNCATE pairs CASCADE")
    finally:
        await conn.close()


async def settle(url: str, expected: int, timeout: float) -> dict[str, int]:
    """Pair counts by outcome once ``expected`` rows are stored or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    counts = await count_pairs(url)
    while sum(counts.values()) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        counts = await count_pairs(url)
    return counts


async def losses(proxy: Served) -> dict[str, float]:
    """What the proxy counted but did not store: exchanges refused by a busy mirror,
    pairs that went to the spool, pairs the full spool lost."""
    samples = await scrape(proxy.admin)
    return {
        "mirror_refused": metric(samples, "shadowproxy_mirror_refused_total"),
        "spooled": metric(samples, "shadowproxy_pairs_spooled_total"),
        "spool_dropped": metric(samples, "shadowproxy_spool_dropped_total"),
    }


# -- shared shapes -----------------------------------------------------------------------


def added(direct: dict[str, float], proxied: dict[str, float]) -> dict[str, float]:
    return {k: proxied[k] - direct[k] for k in direct}


def compare(res: dict[str, Samples], key: str = "latency_ms",
            proxy: str = "proxy") -> Row:
    d = percentiles(getattr(res["direct"], key))
    p = percentiles(getattr(res[proxy], key))
    return {"direct": d, "proxy": p, "added": added(d, p),
            "requests": len(getattr(res[proxy], key)),
            "errors": res[proxy].errors + res["direct"].errors}


async def mirrored_run(db: str, *, rate: float, duration: float, sample_rate: float,
                       latency_ms: float = 0, shadow_latency_ms: float | None = None,
                       chunk_ms: float = 0, stream: bool = False,
                       settle_s: float = 30, api: str = "chat", **env: Any) -> Row:
    """Open-loop load at ``rate`` to the simulator and the proxy in front of it, then the
    pairs the database holds for the proxied requests."""
    await reset(db)
    with simulator(latency_ms, shadow_latency_ms, chunk_ms) as sim, serve(
        sim.url, db, sample_rate=sample_rate, **env
    ) as proxy:
        res, pacing = await open_loop({"direct": sim.url, "proxy": proxy.url}, rate=rate,
                                      duration=duration, stream=stream, api=api)
        sent = res["proxy"].sent + pacing.warmup
        if sample_rate:
            await settle(db, sent, settle_s)
        lost = await losses(proxy)
    pairs = await count_pairs(db)  # after the graceful stop: final
    row = compare(res, "ttft_ms" if stream else "latency_ms")
    if stream:  # to the last byte as well: a stream's end is when the answer is usable
        row["latency"] = compare(res, "latency_ms")
    row |= {"pacing": pacing.as_dict(), "pairs": pairs, "proxied": sent,
            "unrecorded": sent - sum(pairs.values()) if sample_rate else 0, **lost}
    return row


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _pct3(p: dict[str, float]) -> str:
    return "/".join(_ms(p[q]) for q in ("p50", "p95", "p99"))


def _added3(p: dict[str, float]) -> str:
    return "/".join("n/a" if math.isnan(p[q]) else f"{p[q]:+.2f}" for q in ("p50", "p95", "p99"))


def _within(value: float, limit: float) -> bool | None:
    return None if math.isnan(value) else value <= limit


def latency_lines(row: Row, label: str, goals: dict[str, float]) -> list[Line]:
    a = row["added"]
    verdicts = [_within(a[q], limit) for q, limit in goals.items()]
    ok = None if not goals or None in verdicts else all(verdicts)
    goal = ", ".join(f"{q} <= {limit:g}" for q, limit in goals.items())
    lines = [Line(f"{label} p50/p95/p99 ms", _pct3(row["direct"]), _pct3(row["proxy"]),
                  _added3(a), goal, ok)]
    if "pacing" in row:
        pace = row["pacing"]
        note = ("LOAD NOT DELIVERED: the generator fell behind (it, or the machine, is "
                "saturated)" if pace["saturated"] else "generator kept up")
        lines.append(Line(
            f"  rate: {pace['achieved_rps']:.0f}/{pace['target_rps']:.0f} req/s per target, "
            f"send lag p99 {pace['send_lag_p99_ms']:.1f} ms, "
            f"bench cpu {pace['generator_cpu']:.0%} ({note})"))
    if "pairs" in row and row.get("proxied") and row["pairs"]:
        lines.append(_pairs_line(row))
    lines.append(Line(f"  n={row['requests']} errors={row['errors']}"))
    return lines


def _pairs_line(row: Row) -> Line:
    pairs = ", ".join(f"{k}={v:g}" for k, v in sorted(row["pairs"].items()))
    silent = row.get("unrecorded", 0)
    return Line(
        f"  pairs: {pairs}; unrecorded {silent:g} of {row['proxied']:g}; "
        f"mirror refused {row.get('mirror_refused', 0):g}, spooled {row.get('spooled', 0):g}",
        goal="no silent drops", ok=silent <= 0)


# -- scenarios ---------------------------------------------------------------------------


async def c1(db: str, opts: Options) -> Row:
    """Concurrency 1 with mirroring and storage on (the default configuration)."""
    await reset(db)
    with simulator() as sim, serve(sim.url, db, sample_rate=1.0) as proxy:
        res = await one_client({"direct": sim.url, "proxy": proxy.url},
                               duration=opts.duration)
    return compare(res)


def c1_lines(row: Row) -> list[Line]:
    return latency_lines(row, "added latency, 1 client", {"p50": 0.3})


async def passthrough(db: str, opts: Options) -> Row:
    return await mirrored_run(db, rate=200, duration=opts.duration, sample_rate=0.0)


def passthrough_lines(row: Row) -> list[Line]:
    return latency_lines(row, "200 req/s, mirroring off", {})


async def mirrored_200(db: str, opts: Options) -> Row:
    return await mirrored_run(db, rate=200, duration=opts.duration, sample_rate=1.0)


def mirrored_200_lines(row: Row) -> list[Line]:
    return latency_lines(row, "200 req/s mirrored+stored", {"p50": 1.0, "p99": 5.0})


async def mirrored_1000(db: str, opts: Options) -> Row:
    return await mirrored_run(db, rate=1000, duration=opts.duration, sample_rate=1.0)


def mirrored_1000_lines(row: Row) -> list[Line]:
    return latency_lines(row, "1000 req/s mirrored+stored", {})


class CpuMeter:
    """CPU used by each process of the run, in cores (CPU seconds per wall second)."""

    def __init__(self, pids: dict[str, int], postmaster: int | None) -> None:
        self._pids = pids
        self._postmaster = postmaster

    def _now(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        used["bench"] = time.process_time()
        if self._postmaster is not None:  # the cluster: postmaster, backends, WAL writer
            used["postgres"] = sum(cpu_seconds(pid) for pid in
                                   [self._postmaster, *children(self._postmaster)])
        # Everything else on a shared machine: other people's tests, the kernel's share.
        used["others"] = machine_cpu_seconds() - sum(used.values())
        return used

    async def measure(self, load: Awaitable[tuple[int, float]]) -> tuple[float, dict[str, float]]:
        """Requests per second of ``load`` and the cores each process used meanwhile."""
        before = self._now()
        done, elapsed = await load
        after = self._now()
        return done / elapsed, {k: (after[k] - before[k]) / elapsed for k in after}


async def _saturate(db: str, sim: Simulated, opts: Options, sample_rate: float,
                    concurrency: int) -> Row:
    window = max(2.0, opts.duration / 2)
    await reset(db)
    with serve(sim.url, db, sample_rate=sample_rate) as proxy:
        pids = {"simulator": sim.pid, "proxy": proxy.proc.pid}
        pids |= {role(pid): pid for pid in children(proxy.proc.pid)}
        meter = CpuMeter(pids, opts.pg_pid())
        direct_rps, direct_cores = await meter.measure(
            closed_loop(sim.url, concurrency=concurrency, duration=window))
        tally = Samples()
        proxy_rps, cores = await meter.measure(
            closed_loop(proxy.url, concurrency=concurrency, duration=window, tally=tally))
        pairs: dict[str, int] = {}
        if sample_rate:
            pairs = await settle(db, tally.sent, 30)
        lost = await losses(proxy)
    used = cores.get("proxy", 0) + cores.get("mirror", 0) + cores.get("postgres", 0)
    return {
        "direct_rps": direct_rps, "proxy_rps": proxy_rps,
        "cores": cores, "direct_cores": direct_cores,
        "rps_per_proxy_core": proxy_rps / cores["proxy"] if cores.get("proxy") else math.nan,
        "rps_per_core": proxy_rps / used if used else math.nan,
        "errors": tally.errors, "pairs": pairs, "proxied": tally.sent if sample_rate else 0,
        "unrecorded": tally.sent - sum(pairs.values()) if sample_rate else 0, **lost,
    }


async def saturated(db: str, opts: Options) -> Row:
    with simulator() as sim:
        # Each window's direct run is its baseline: the simulator warms up between them.
        return {"sample_rate_0": await _saturate(db, sim, opts, 0.0, 64),
                "sample_rate_1": await _saturate(db, sim, opts, 1.0, 64)}


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(cores.items()))


def saturated_lines(row: Row) -> list[Line]:
    lines = []
    for key, label, goal in (("sample_rate_0", "SAMPLE_RATE=0", None),
                             ("sample_rate_1", "SAMPLE_RATE=1", 5000.0)):
        r = row[key]
        c = r["cores"]
        per = r["rps_per_core"]
        lines += [
            Line(f"saturated req/s, 64 clients, {label}", f"{r['direct_rps']:.0f}",
                 f"{r['proxy_rps']:.0f}", f"{r['proxy_rps'] / r['direct_rps'] - 1:+.0%}"),
            Line(f"  per core: {r['rps_per_proxy_core']:.0f} req/s per proxy core; "
                 f"{per:.0f} per core of proxy+mirror+postgres",
                 goal=f">= {goal:g} per core" if goal else "",
                 ok=None if goal is None or math.isnan(per) else per >= goal),
            Line("  cores used via proxy: " + _cores(c)),
            Line("  cores used direct: " + _cores(r["direct_cores"])),
        ]
        if r["proxied"]:
            lines.append(_pairs_line(r))
    return lines


async def slow_shadow_40x(db: str, opts: Options) -> Row:
    """Primary 50 ms, shadow 2,000 ms, 200 req/s; mirroring off, then on."""
    runs = {}
    for name, sample_rate in (("off", 0.0), ("on", 1.0)):
        runs[name] = await mirrored_run(db, rate=200, duration=opts.duration,
                                        sample_rate=sample_rate, latency_ms=50,
                                        shadow_latency_ms=2000, settle_s=0, grace_s=5)
    off, on = runs["off"], runs["on"]
    return {**runs,
            "p99_moved_ms": on["proxy"]["p99"] - off["proxy"]["p99"],
            "added_p99_moved_ms": on["added"]["p99"] - off["added"]["p99"]}


def slow_shadow_40x_lines(row: Row) -> list[Line]:
    off, on = row["off"], row["on"]
    moved = row["added_p99_moved_ms"]
    return [
        Line("shadow 40x slower: user p99 ms, mirroring off",
             _ms(off["direct"]["p99"]), _ms(off["proxy"]["p99"]), f"{off['added']['p99']:+.2f}"),
        Line("shadow 40x slower: user p99 ms, mirroring on",
             _ms(on["direct"]["p99"]), _ms(on["proxy"]["p99"]), f"{on['added']['p99']:+.2f}"),
        Line(f"  user p99 moved {row['p99_moved_ms']:+.2f} ms raw, "
             f"{moved:+.2f} ms against each run's direct baseline",
             goal="moved <= 3", ok=_within(moved, 3.0)),
        _pairs_line(on),
    ]


# Each stream holds its connections ~180 ms and the simulator serves three of them per
# request (direct, primary, shadow): 200 streams/s overloads a shared 2-core machine.
TTFT_RATE = 50


async def ttft(db: str, opts: Options) -> Row:
    """Streams at TTFT_RATE req/s, 20 ms between simulated chunks, mirrored."""
    return await mirrored_run(db, rate=TTFT_RATE, duration=opts.duration, sample_rate=1.0,
                              chunk_ms=20, stream=True)


def ttft_lines(row: Row) -> list[Line]:
    return latency_lines(row, "time to first token, streams", {"p50": 1.0})


async def responses_stream(db: str, opts: Options) -> Row:
    """OpenAI Responses API streams (typed events) at TTFT_RATE req/s, 20 ms between
    simulated chunks, mirrored: TTFT and whole-stream latency beside direct calls."""
    return await mirrored_run(db, rate=TTFT_RATE, duration=opts.duration, sample_rate=1.0,
                              chunk_ms=20, stream=True, api="responses")


def responses_stream_lines(row: Row) -> list[Line]:
    lines = latency_lines(row, "Responses API: time to first token", {"p50": 1.0})
    if "latency" in row:
        lines.insert(1, Line("Responses API: whole stream p50/p95/p99 ms",
                             _pct3(row["latency"]["direct"]), _pct3(row["latency"]["proxy"]),
                             _added3(row["latency"]["added"])))
    return lines


RSS_SHADOWS = 2000


def _mb(m: Memory | None, *, peak: bool) -> float:
    if m is None:
        return math.nan
    return m.peak_mb if peak else m.rss_mb


async def rss(db: str, opts: Options) -> Row:
    """2,000 shadows of 10 s each in flight at once; peak memory per process."""
    await reset(db)
    with simulator(shadow_latency_ms=10_000) as sim, serve(
        sim.url, db, sample_rate=1.0, shadow_concurrency=RSS_SHADOWS, shadow_queue=1000,
        shadow_timeout_s=60, grace_s=30,
    ) as proxy:
        pids = {"proxy": proxy.proc.pid} | {role(p): p for p in children(proxy.proc.pid)}
        idle = {name: memory(pid) for name, pid in pids.items()}
        peak_in_flight = peak_on_wire = 0.0
        sampled = {name: 0.0 for name in pids}

        async def watch() -> None:
            nonlocal peak_in_flight, peak_on_wire
            while True:
                in_flight = metric(await scrape(proxy.admin), "shadowproxy_shadow_in_flight")
                peak_in_flight = max(peak_in_flight, in_flight)
                if "mirror" in pids:
                    wire = connections_to(pids["mirror"], sim.port)
                    peak_on_wire = max(peak_on_wire, wire)
                for name, pid in pids.items():
                    if (m := memory(pid)) is not None:
                        sampled[name] = max(sampled[name], m.rss_mb)
                await asyncio.sleep(0.25)

        watcher = spawn(watch(), name="bench-rss-watch")
        fired = await burst(proxy.url, RSS_SHADOWS)
        pairs = await settle(db, RSS_SHADOWS, 45)
        await cancel_and_wait(watcher)
        peaks = {name: memory(pid) for name, pid in pids.items()}
        lost = await losses(proxy)
    processes = {
        name: {"idle_rss_mb": _mb(idle[name], peak=False), "peak_rss_sampled_mb": sampled[name],
               "vm_hwm_mb": _mb(peaks[name], peak=True)}
        for name in pids
    }
    return {"processes": processes, "fired": len(fired.latency_ms), "errors": fired.errors,
            "peak_shadows_in_flight": peak_in_flight, "peak_shadow_connections": peak_on_wire,
            "pairs": pairs, "proxied": fired.sent,
            "unrecorded": fired.sent - sum(pairs.values()), **lost}


def rss_lines(row: Row) -> list[Line]:
    lines = []
    for name, m in sorted(row["processes"].items()):
        lines.append(Line(
            f"peak RSS MB, {name} (idle {m['idle_rss_mb']:.0f}, "
            f"sampled {m['peak_rss_sampled_mb']:.0f})",
            proxy=f"{m['vm_hwm_mb']:.0f}", goal="<= 100 MB", ok=_within(m["vm_hwm_mb"], 100)))
    total = sum(m["vm_hwm_mb"] for m in row["processes"].values())
    lines.append(Line(f"  worker total (proxy + mirror) {total:.0f} MB; shadows in flight "
                      f"(mirror's gauge) peak {row['peak_shadows_in_flight']:.0f}, "
                      f"on the wire peak {row['peak_shadow_connections']:.0f} of "
                      f"{RSS_SHADOWS}"))
    lines.append(_pairs_line(row))
    return lines


async def bare_passthrough(db: str, opts: Options) -> Row:
    """The same load as ``passthrough``, through a bare aiohttp relay: aiohttp's floor."""
    with simulator() as sim, bare_aiohttp(sim.url) as front:
        res, pacing = await open_loop({"direct": sim.url, "bare": front}, rate=200,
                                      duration=opts.duration)
    return compare(res, proxy="bare") | {"pacing": pacing.as_dict()}


def bare_lines(row: Row) -> list[Line]:
    return latency_lines(row, "bare aiohttp relay, 200 req/s", {})


async def nginx_passthrough(db: str, opts: Options) -> Row:
    """The same load as ``passthrough``, through a minimal nginx ``proxy_pass``."""
    if nginx_binary() is None:
        return {"skipped": "nginx is not on PATH"}
    with simulator() as sim, nginx(sim.url) as front:
        res, pacing = await open_loop({"direct": sim.url, "nginx": front}, rate=200,
                                      duration=opts.duration)
    return compare(res, proxy="nginx") | {"pacing": pacing.as_dict()}


async def cutover_no_plan(db: str, opts: Options) -> Row:
    """A tag without a plan: this tree's proxy beside today's, same load, same run."""
    return await bench_cutover.no_plan(db, opts.duration, opts.baseline)


def cutover_no_plan_lines(row: Row) -> list[Line]:
    today, now = row["added_today"], row["added_cutover"]
    gap = now["p50"] - today["p50"]
    return [
        Line(f"tag without a plan, today ({row['baseline']}) p50/p95/p99 ms",
             _pct3(row["direct"]), _pct3(row["today"]), _added3(today)),
        Line("tag without a plan, with cutover p50/p95/p99 ms", _pct3(row["direct"]),
             _pct3(row["cutover"]), _added3(now)),
        Line(f"  added p50 with cutover minus today: {gap:+.2f} ms",
             goal="within 0.3 ms", ok=None if math.isnan(gap) else abs(gap) <= 0.3),
        Line(f"  one client, n={row['requests']} per target, errors={row['errors']}; pairs "
             f"stored {sum(row['pairs'].values())} of {row['proxied']}"),
    ]


async def cutover_served(db: str, opts: Options) -> Row:
    """JSON answers from the shadow (Chat Completions translated back) beside the same
    proxy relaying the primary, and direct calls."""
    return await bench_cutover.served(db, opts.duration, stream=False)


async def cutover_served_stream(db: str, opts: Options) -> Row:
    """Streams from the shadow: time to first token and to the last byte."""
    return await bench_cutover.served(db, opts.duration, stream=True)


def _served_lines(row: Row, what: str) -> list[Line]:
    served = ", ".join(f"{k}={v}" for k, v in sorted(row["served_by"].items()))
    lines = [
        Line(f"{what}, primary relayed p50/p95/p99 ms (vs primary direct)",
             _pct3(row["primary_direct"]), _pct3(row["primary"]),
             _added3(row["added_primary"])),
        Line(f"{what}, shadow served p50/p95/p99 ms (vs Haiku direct)",
             _pct3(row["haiku_direct"]), _pct3(row["shadow"]), _added3(row["added_shadow"])),
    ]
    if what.startswith("time to first token"):
        lines.append(Line("  shadow served, whole stream added p50/p95/p99 ms",
                          added=_added3(row["whole_added_shadow"])))
    lines.append(Line(f"  one client; pairs stored: {served} of {row['proxied']}; "
                      f"n={row['requests']} errors={row['errors']}"))
    return lines


def cutover_served_lines(row: Row) -> list[Line]:
    return _served_lines(row, "latency, JSON")


def cutover_served_stream_lines(row: Row) -> list[Line]:
    return _served_lines(row, "time to first token, streams")


def nginx_lines(row: Row) -> list[Line]:
    if "skipped" in row:
        return [Line(f"nginx proxy_pass: skipped ({row['skipped']})")]
    return latency_lines(row, "nginx proxy_pass, 200 req/s", {})


@dataclass(frozen=True)
class Scenario:
    run: Callable[[str, Options], Awaitable[Row]]
    lines: Callable[[Row], list[Line]]
    once: bool = False  # a high-water mark, not a noisy latency: one round is enough


SCENARIOS: dict[str, Scenario] = {
    "c1": Scenario(c1, c1_lines),
    "passthrough": Scenario(passthrough, passthrough_lines),
    "mirrored_200": Scenario(mirrored_200, mirrored_200_lines),
    "mirrored_1000": Scenario(mirrored_1000, mirrored_1000_lines),
    "saturated": Scenario(saturated, saturated_lines),
    "slow_shadow_40x": Scenario(slow_shadow_40x, slow_shadow_40x_lines),
    "ttft": Scenario(ttft, ttft_lines),
    "responses_stream": Scenario(responses_stream, responses_stream_lines),
    "rss": Scenario(rss, rss_lines, once=True),
    "bare": Scenario(bare_passthrough, bare_lines),
    "nginx": Scenario(nginx_passthrough, nginx_lines),
    "cutover_no_plan": Scenario(cutover_no_plan, cutover_no_plan_lines),
    "cutover_served": Scenario(cutover_served, cutover_served_lines),
    "cutover_served_stream": Scenario(cutover_served_stream, cutover_served_stream_lines),
}


# -- rounds, medians, the table ----------------------------------------------------------


def median_of(values: list[Any]) -> Any:
    """Medians leaf by leaf over rows of one shape; counts missing from a round are 0,
    flags are true if any round raised them."""
    first = values[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(k for v in values for k in v)
        return {k: median_of([v.get(k, 0) for v in values]) for k in keys}
    if isinstance(first, bool):
        return any(values)
    if isinstance(first, int | float):
        numbers = [float(v) for v in values if not math.isnan(v)]
        if not numbers:
            return math.nan
        med = statistics.median(numbers)
        return int(med) if all(isinstance(v, int) for v in values) and med.is_integer() else med
    return first


def print_table(results: dict[str, Any]) -> None:
    lines = [(name, line) for name, res in results.items()
             for line in SCENARIOS[name].lines(res["median"])]
    header = ("scenario", "figure", "direct", "proxy", "added", "goal", "ok")
    width = [max(len(header[0]), *(len(n) for n, _ in lines))]
    cols = [[line.direct, line.proxy, line.added, line.goal] for _, line in lines]
    width += [max(len(header[i + 2]), *(len(c[i]) for c in cols)) for i in range(4)]
    wide = [n for n, line in lines if line.direct or line.proxy or line.added or line.goal]
    fig_w = max(len(line.figure) for n, line in lines if n in wide) if wide else 10
    fig_w = min(fig_w, 48)

    def ok(v: bool | None) -> str:
        return "" if v is None else ("yes" if v else "NO")

    print(f"{header[0]:{width[0]}}  {header[1]:{fig_w}}  {header[2]:>{width[1]}}  "
          f"{header[3]:>{width[2]}}  {header[4]:>{width[3]}}  {header[5]:{width[4]}}  ok")
    last = ""
    for name, line in lines:
        label = name if name != last else ""
        last = name
        if not (line.direct or line.proxy or line.added):
            tail = f"  [{line.goal}: {ok(line.ok)}]" if line.goal else ""
            print(f"{label:{width[0]}}  {line.figure}{tail}")
            continue
        print(f"{label:{width[0]}}  {line.figure:{fig_w}}  {line.direct:>{width[1]}}  "
              f"{line.proxy:>{width[2]}}  {line.added:>{width[3]}}  "
              f"{line.goal:{width[4]}}  {ok(line.ok)}")


def _finite(value: Any) -> Any:
    """NaN (no samples) as null, so the file is JSON any tool can read."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _postmaster(pgdata: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    return None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per scenario; medians quoted")
    ap.add_argument("--duration", type=float, default=6.0,
                    help="seconds of measured load per run (saturated: half per window)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latest.json",
                    help="where the JSON goes (default bench/results/latest.json)")
    ap.add_argument("--baseline", default="main",
                    help="git ref of today's code for cutover_no_plan (default main)")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := [n for n in names if n not in SCENARIOS]:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    pg = EmbeddedPostgres()
    pg_dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    db = await asyncio.to_thread(pg.start, pg_dir)
    await upgrade(db)
    opts = Options(args.duration, lambda: _postmaster(pg_dir / "pg"), args.baseline)
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
            "python": platform.python_version(), "loadavg_before": os.getloadavg(),
            "rounds": args.rounds, "duration_s": args.duration}
    results: dict[str, Any] = {}
    try:
        for name in names:
            rounds = []
            count = 1 if SCENARIOS[name].once else args.rounds
            for r in range(count):
                started = time.monotonic()
                row = await SCENARIOS[name].run(db, opts)
                rounds.append(row)
                print(f"# {name} round {r + 1}/{count} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
            results[name] = {"rounds": rounds, "median": median_of(rounds)}
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(pg_dir, ignore_errors=True)
    meta["loadavg_after"] = os.getloadavg()
    print(f"\nmedian of {args.rounds} round(s); ms unless stated; added = proxy - direct, "
          f"same run; load average {meta['loadavg_before'][0]:.1f} -> "
          f"{meta['loadavg_after'][0]:.1f} on {meta['cores']} cores\n")
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "scenarios": results}
    args.out.write_text(json.dumps(_finite(report), indent=2, allow_nan=False))
    print(f"\nwrote {args.out}")


def _run() -> None:
    try:
        import uvloop
    except ImportError:  # the generator is slower on the default loop, not wrong
        asyncio.run(main())
        return
    uvloop.run(main())


if __name__ == "__main__":
    _run()

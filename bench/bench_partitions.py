"""Partitioned storage at ten million pairs: retention, and the writer beside it.

    .venv/bin/python bench/bench_partitions.py                       # 10 M pairs, 30 days
    .venv/bin/python bench/bench_partitions.py --pairs 300000 --load-s 20   # a quick look

1. **Retention of one day out of 30**, on the same pairs in the same run, both ways:
   today's code (revision 0003's schema and the statement its retention runs, a
   ``DELETE … LIMIT 5000`` loop, scores by ``ON DELETE CASCADE``) and the partitioned
   store (the day's four partitions detached concurrently and dropped). Seconds, and what
   each leaves behind: the tables' size before and after, and dead rows. Then the hourly
   trim of the partly expired day (one hour of pairs), both ways.
2. **The writer under retention and report**: a real ``serve`` (one worker) in front of
   the simulator, 100 mirrored req/s for ``--load-s`` seconds alone, then as long again
   while retention drops a day every 10 s and ``shadowproxy report --format json
   --since 2d`` runs back to back: pairs lost (proxied requests with no row) and the
   latency the proxy adds (proxy - direct, interleaved in the same run) in both windows.

Everything runs in an embedded PostgreSQL in a temporary directory; each database is
dropped as soon as its part is done, and the directory at the end (it needs about 8 GB
free at 10 M pairs: checked first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.harness import PY, metric, open_loop, scrape, serve, simulator
from bench.partition_data import load
from bench.run import compare
from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.maintenance import maintain
from shadowproxy.store.retention import delete_expired
from shadowproxy.store.urls import asyncpg_dsn
from shadowproxy.tasks import cancel_and_wait, spawn

# Today's retention statement (revision 0003's shadowproxy/store/retention.py), with the
# cutoff as a parameter instead of now() so both ways delete the same rows.
TODAY_DELETE = """
    DELETE FROM pairs WHERE id IN (
        SELECT id FROM pairs WHERE received_at < $1 LIMIT $2
    )
"""
GB = 1 << 30


def say(line: str) -> None:
    print(line, flush=True)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def footprint(url: str) -> dict[str, float]:
    """Bytes on disk and dead rows of pairs and scores (and all their partitions)."""
    await asyncio.sleep(1.5)  # other backends' statistics reach the views within a second
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(
            "WITH rel AS (SELECT 'pairs'::regclass AS relid UNION SELECT 'scores'::regclass "
            "UNION SELECT relid FROM pg_partition_tree('pairs') "
            "UNION SELECT relid FROM pg_partition_tree('scores')) "
            "SELECT sum(pg_total_relation_size(rel.relid)) AS bytes, "
            "sum(coalesce(s.n_dead_tup, 0)) AS dead, sum(coalesce(s.n_live_tup, 0)) AS live "
            "FROM rel LEFT JOIN pg_stat_user_tables s USING (relid)")
    finally:
        await conn.close()
    return {"gb": float(row["bytes"]) / GB, "dead_rows": float(row["dead"]),
            "live_rows": float(row["live"])}


async def today_delete(url: str, cutoff: datetime, batch: int = 5000) -> tuple[float, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        started, deleted = time.perf_counter(), 0
        while True:
            count = int((await conn.execute(TODAY_DELETE, cutoff, batch)).rsplit(" ", 1)[-1])
            deleted += count
            if count < batch:
                return time.perf_counter() - started, deleted
    finally:
        await conn.close()


async def partitioned_retention(url: str, now: datetime) -> tuple[float, int, int]:
    started = time.perf_counter()
    run = await delete_expired(url, 30, now)
    return time.perf_counter() - started, len(run.dropped), run.deleted


async def retention_part(server: EmbeddedPostgres, base_url: str, pairs: int,
                         first_day: date) -> dict[str, Any]:
    """Part 1 on both schemas; returns the figures and leaves the partitioned database."""
    days = 30
    cutoff = midnight(first_day + timedelta(days=1))  # the first day has just expired
    results: dict[str, Any] = {}
    for layout in ("today", "partitioned"):
        url = base_url.replace("/postgres?", f"/bench_{layout}?")
        await admin(base_url, f"DROP DATABASE IF EXISTS bench_{layout} WITH (FORCE)")
        await admin(base_url, f"CREATE DATABASE bench_{layout}")
        await migrate.upgrade(url, "0003" if layout == "today" else "head")
        say(f"loading {pairs:,} pairs over {days} days ({layout} schema)…")
        await load(url, pairs=pairs, days=days, first_day=midnight(first_day),
                   partitioned=layout == "partitioned", say=say)
        before = await footprint(url)
        if layout == "today":
            seconds, deleted = await today_delete(url, cutoff)
            dropped = 0
        else:
            seconds, dropped, deleted = await partitioned_retention(
                url, cutoff + timedelta(days=30))
        after = await footprint(url)
        # An hour later: the next day is partly expired by one hour.
        if layout == "today":
            trim_s, trimmed = await today_delete(url, cutoff + timedelta(hours=1))
        else:
            trim_s, _, trimmed = await partitioned_retention(
                url, cutoff + timedelta(days=30, hours=1))
        results[layout] = {"seconds": seconds, "days_dropped": dropped, "rows_deleted": deleted,
                           "before": before, "after": after,
                           "trim_hour_seconds": trim_s, "trim_hour_rows": trimmed}
        say(f"  {layout}: {deleted:,} rows deleted, {dropped} day(s) dropped in "
            f"{seconds:.2f} s; {before['gb']:.2f} GB -> {after['gb']:.2f} GB, dead rows "
            f"{after['dead_rows']:,.0f}; hourly trim {trimmed:,} rows in {trim_s:.2f} s")
        if layout == "today":
            await admin(base_url, "DROP DATABASE bench_today WITH (FORCE)")
    return results


async def _retention_loop(url: str, now: datetime, runs: list[float]) -> None:
    """A day older each run (the clock is the bench's): each drops one more day and
    trims half an hour of the next."""
    k = 2
    while True:
        started = time.perf_counter()
        await maintain(url, 30, now + timedelta(days=k, minutes=30))
        runs.append(time.perf_counter() - started)
        k += 1
        await asyncio.sleep(10)


async def _report_loop(url: str, runs: list[float]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATABASE_URL"] = url
    while True:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "shadowproxy", "report", "--format", "json", "--since", "2d",
            "--out", os.devnull, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            await proc.wait()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        runs.append(time.perf_counter() - started)


async def _stored_since(url: str, since: datetime) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pairs WHERE received_at >= $1", since))
    finally:
        await conn.close()


async def _window(url: str, rate: float, load_s: float, *, upkeep: datetime | None
                  ) -> dict[str, Any]:
    """One window on a fresh serve; pairs are counted after its graceful stop, so a pair
    still on its way when the load ends is not counted as lost."""
    since = datetime.now(UTC)
    retention_runs: list[float] = []
    report_runs: list[float] = []
    with simulator() as sim, serve(sim.url, url, retention_days=0) as proxy:
        background = [] if upkeep is None else [
            spawn(_retention_loop(url, upkeep, retention_runs), name="retention"),
            spawn(_report_loop(url, report_runs), name="report")]
        try:
            res, pacing = await open_loop({"direct": sim.url, "proxy": proxy.url},
                                          rate=rate, duration=load_s)
        finally:
            for task in background:
                await cancel_and_wait(task)
        samples = await scrape(proxy.admin)
    sent = res["proxy"].sent + pacing.warmup
    stored = await _stored_since(url, since)
    row = compare(res)
    return {"sent": sent, "stored": stored, "lost": sent - stored,
            "pairs_lost_total": metric(samples, "shadowproxy_pairs_lost_total"),
            "spooled": metric(samples, "shadowproxy_pairs_spooled_total"),
            "added": row["added"], "direct": row["direct"], "proxy": row["proxy"],
            "errors": row["errors"], "pacing": pacing.as_dict(),
            "retention_runs": retention_runs, "reports_finished": len(report_runs),
            "report_seconds": report_runs}


async def writer_part(url: str, now: datetime, rate: float, load_s: float) -> dict[str, Any]:
    say(f"writer alone: {rate:g} req/s for {load_s:g} s…")
    alone = await _window(url, rate, load_s, upkeep=None)
    say("writer with retention and report running…")
    busy = await _window(url, rate, load_s, upkeep=now)
    return {"alone": alone, "with_upkeep": busy}


def _free_gb(path: str) -> float:
    usage = shutil.disk_usage(path)
    return usage.free / GB


def print_table(out: dict[str, Any]) -> None:
    pairs = out["pairs"]
    per_day = pairs // 30
    say("")
    say(f"load average before/after: {out['load_before']} / {out['load_after']} "
        f"({os.cpu_count()} cores)")
    if "retention" in out:
        r = out["retention"]
        say(f"retention of one day out of 30 at {pairs:,} pairs ({per_day:,} pairs + scores):")
        for name, label in (("today", "today: batched DELETE      "),
                            ("partitioned", "partitions: drop the day   ")):
            x = r[name]
            say(f"  {label} {x['seconds']:8.2f} s   {x['before']['gb']:.2f} GB -> "
                f"{x['after']['gb']:.2f} GB   dead rows left {x['after']['dead_rows']:>10,.0f}")
        say(f"hourly trim of the partly expired day (~{per_day // 24:,} pairs):")
        say(f"  today: batched DELETE       {r['today']['trim_hour_seconds']:8.2f} s")
        say(f"  partitions: in its partition {r['partitioned']['trim_hour_seconds']:7.2f} s")
    if "writer" in out:
        w = out["writer"]
        say(f"writer at {out['rate']:g} mirrored req/s through serve, {out['load_s']:g} s each:")
        say("                                 sent errors   lost   added p50   added p99")
        for key, label in (("alone", "alone                    "),
                           ("with_upkeep", "+ retention + report     ")):
            x = w[key]
            short = "  LOAD NOT DELIVERED" if x["pacing"]["saturated"] else ""
            say(f"  {label} {x['sent']:6d} {x['errors']:6d} {x['lost']:6d}   "
                f"{x['added']['p50']:7.2f} ms "
                f"{x['added']['p99']:8.2f} ms   (rate {x['pacing']['achieved_rps']:.0f}"
                f"/{out['rate']:g}){short}")
        u = w["with_upkeep"]
        runs = u["retention_runs"]
        say(f"  during it: {len(runs)} retention runs (max {max(runs, default=0):.2f} s), "
            f"{u['reports_finished']} reports finished; pairs_lost_total "
            f"{u['pairs_lost_total']:.0f}, spooled {u['spooled']:.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--load-s", type=float, default=60.0)
    parser.add_argument("--parts", default="retention,writer",
                        help="retention (both schemas), writer (the partitioned one)")
    parser.add_argument("--out", default="bench/results/partitions.json")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-partitions-")
    need = args.pairs / 10_000_000 * 8 + 1
    if _free_gb(tmp) < need:
        raise SystemExit(f"needs about {need:.0f} GB free in {tmp}; "
                         f"{_free_gb(tmp):.0f} GB are")
    out: dict[str, Any] = {"pairs": args.pairs, "rate": args.rate, "load_s": args.load_s,
                           "load_before": os.getloadavg()}
    server = EmbeddedPostgres()
    try:
        base_url = server.start(Path(tmp))
        today = datetime.now(UTC).date()
        first_day = today - timedelta(days=30)  # 30 days ending yesterday; serve writes today
        parts = set(args.parts.split(","))
        parted = base_url.replace("/postgres?", "/bench_partitioned?")
        if "retention" in parts:
            out["retention"] = await retention_part(server, base_url, args.pairs, first_day)
        else:
            await admin(base_url, "CREATE DATABASE bench_partitioned")
            await migrate.upgrade(parted)
            say(f"loading {args.pairs:,} pairs over 30 days (partitioned schema)…")
            await load(parted, pairs=args.pairs, days=30, first_day=midnight(first_day),
                       partitioned=True, say=say)
            await delete_expired(parted, 30, midnight(first_day) + timedelta(days=31))
        if "writer" in parts:
            out["writer"] = await writer_part(parted, midnight(today), args.rate, args.load_s)
        await admin(base_url, "DROP DATABASE IF EXISTS bench_partitioned WITH (FORCE)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_after"] = os.getloadavg()
    print_table(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    asyncio.run(main())

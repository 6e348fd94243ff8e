"""Soak: mirrored traffic for a long time while the mirror is killed and PostgreSQL stops.

    .venv/bin/python bench/soak.py                        # 30 min, 100 req/s, the issue's plan
    .venv/bin/python bench/soak.py --duration 300 --kill-every 150 --db-stops 1

A real ``shadowproxy serve`` (one worker, so the tree is serve + mirror) in front of the
simulator, an embedded PostgreSQL, open-loop load at ``--rate``. Every ``--kill-every`` seconds the
current mirror gets SIGKILL; ``--db-stops`` times, between the kills, PostgreSQL is
stopped for ``--db-down`` seconds. At the end: user errors (anything but a
200), ``/readyz`` answers other than 200, pairs stored against pairs lost by reason (from
``/metrics``; what is neither is unaccounted), restarts, and the peak RSS of every
process (VmHWM, sampled every 2 s; a killed mirror's is its last sample).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.harness import (
    CHAT_PATH,
    HEADERS,
    chat_body,
    children,
    memory,
    role,
    scrape,
    serve,
    simulator,
)
from bench.run import count_pairs
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade
from shadowproxy.tasks import spawn


class Soak:
    def __init__(self, served_pid: int, admin: str) -> None:
        self.served_pid = served_pid
        self.admin = admin
        self.user: Counter[str] = Counter()
        self.readyz: Counter[int] = Counter()
        self.mirror_states: Counter[str] = Counter()
        self.peak_mb: dict[str, float] = {}
        self.events: list[str] = []
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s {what}"
        self.events.append(line)
        print(line, flush=True)

    async def one(self, session: aiohttp.ClientSession, url: str, i: int) -> None:
        try:
            async with session.post(url, data=chat_body(i), headers=HEADERS) as resp:
                await resp.read()
                self.user[str(resp.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.user[type(exc).__name__] += 1

    async def load(self, url: str, rate: float, duration: float) -> None:
        tasks = []
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            t0 = time.monotonic()
            for i in range(int(rate * duration)):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                tasks.append(spawn(self.one(session, url + CHAT_PATH, i), name=f"soak-{i}"))
            await asyncio.gather(*tasks)

    async def watch(self, stop: asyncio.Event) -> None:
        """/readyz every second; peak memory of every process every 2 s."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            tick = 0
            while not stop.is_set():
                try:
                    async with http.get(self.admin + "/readyz") as resp:
                        self.readyz[resp.status] += 1
                        self.mirror_states[(await resp.json()).get("mirror", "?")] += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.readyz[0] += 1
                if tick % 2 == 0:
                    for pid in [self.served_pid, *children(self.served_pid)]:
                        mem = memory(pid)
                        if mem is not None:
                            name = f"{role(pid)}[{pid}]"
                            self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), mem.peak_mb)
                tick += 1
                await asyncio.sleep(1.0)

    async def mirror_pid(self) -> int | None:
        async with aiohttp.ClientSession() as http, http.get(self.admin + "/readyz") as resp:
            pid = (await resp.json()).get("mirror_pid")
            return int(pid) if pid else None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=float, default=1800, help="seconds of load (1800)")
    ap.add_argument("--rate", type=float, default=100, help="requests per second (100)")
    ap.add_argument("--kill-every", type=float, default=300,
                    help="seconds between SIGKILLs of the mirror (300)")
    ap.add_argument("--db-stops", type=int, default=2, help="PostgreSQL stops (2)")
    ap.add_argument("--db-down", type=float, default=30, help="seconds each stop lasts (30)")
    ap.add_argument("--out", type=Path, default=None, help="also write the summary as JSON")
    args = ap.parse_args()

    pg = EmbeddedPostgres()
    pg_dir = Path(tempfile.mkdtemp(prefix="soak-pg-"))
    db = await asyncio.to_thread(pg.start, pg_dir)
    await upgrade(db)
    try:
        with simulator() as sim, serve(sim.url, db, workers=1) as served:
            soak = Soak(served.proc.pid, served.admin)
            stop = asyncio.Event()
            watcher = spawn(soak.watch(stop), name="soak-watch")
            # The plan: a kill every --kill-every s; database stops half a kill interval
            # before the 1st, 2nd… of --db-stops even slices, so none starts on a kill.
            plan: list[tuple[float, str]] = []
            t = args.kill_every
            while t < args.duration:
                plan.append((t, "kill"))
                t += args.kill_every
            for j in range(args.db_stops):
                at = (j + 1) * args.duration / (args.db_stops + 1) - args.kill_every / 2
                plan += [(max(1.0, at), "db-stop"), (max(1.0, at) + args.db_down, "db-start")]
            plan.sort()

            async def chaos() -> None:
                for at, action in plan:
                    await asyncio.sleep(max(0.0, soak.started + at - time.monotonic()))
                    if action == "kill" and (pid := await soak.mirror_pid()) is not None:
                        os.kill(pid, signal.SIGKILL)
                        soak.note(f"SIGKILL mirror {pid}")
                    elif action == "db-stop":
                        soak.note("PostgreSQL stopping")
                        await asyncio.to_thread(pg.stop)
                    elif action == "db-start":
                        await asyncio.to_thread(pg.start, pg_dir)
                        soak.note("PostgreSQL started")

            chaos_task = spawn(chaos(), name="soak-chaos")
            await soak.load(served.url, args.rate, args.duration)
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
            await asyncio.to_thread(pg.start, pg_dir)  # in case the load ended while down
            sent = sum(soak.user.values())
            soak.note(f"load done: {sent} requests; settling")
            # Settle: until stored + lost accounts for every answered request, or 120 s.
            deadline = time.monotonic() + 120
            while True:
                samples = await scrape(served.admin)
                lost = {k.split('reason="', 1)[1].rstrip('"}'): v for k, v in samples.items()
                        if k.startswith("shadowproxy_pairs_lost_total{")}
                stored = sum((await count_pairs(db)).values())
                if stored + sum(lost.values()) >= soak.user["200"] or \
                        time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            stop.set()
            await watcher
            restarts = {k.split('process="', 1)[1].rstrip('"}'): v for k, v in samples.items()
                        if k.startswith("shadowproxy_restarts_total{")}
            summary: dict[str, Any] = {
                "duration_s": args.duration, "rate": args.rate, "kill_every_s": args.kill_every,
                "db_stops": args.db_stops, "db_down_s": args.db_down,
                "requests": sent, "user_answers": dict(soak.user),
                "user_errors": sent - soak.user["200"],
                "readyz": {str(k): v for k, v in soak.readyz.items()},
                "readyz_mirror_states": dict(soak.mirror_states),
                "pairs_stored": stored, "pairs_lost_by_reason": lost,
                "unaccounted": soak.user["200"] - stored - int(sum(lost.values())),
                "restarts": restarts,
                "mirror_refused": samples.get("shadowproxy_mirror_refused_total", 0.0),
                "peak_rss_mb": dict(sorted(soak.peak_mb.items())),
                "events": soak.events,
            }
    finally:
        await asyncio.to_thread(pg.stop)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

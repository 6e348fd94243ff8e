"""Sustained pair writes per second through PairWriter into a real PostgreSQL.

    .venv/bin/python bench/bench_writer.py [--pairs 50000] [--url postgresql+asyncpg://…]

Without ``--url`` (or ``SHADOWPROXY_TEST_DATABASE_URL``) it starts an embedded
PostgreSQL in a temporary directory. Pairs are submitted as fast as the event loop
allows, in slices so the writer's flush task gets turns, and the clock stops when
``close()`` has stored the last one. Goal: at least 5,000 pairs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from tests.fakes.database import make_pair


async def bench(url: str, pairs: int, batch_max: int, spool_dir: Path) -> float:
    await migrate.upgrade(url)
    records = [make_pair() for _ in range(pairs)]
    writer = PairWriter(url, Spool(spool_dir, max_bytes=1 << 30), batch_max=batch_max)
    await writer.start()
    started = time.perf_counter()
    for index, record in enumerate(records):
        writer.submit(record)
        if index % 500 == 499:
            await asyncio.sleep(0)
    await writer.close(timeout_s=120)  # returns once the last pair is stored
    elapsed = time.perf_counter() - started
    assert writer.written == pairs, "the database went away during the benchmark"
    return pairs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--batch-max", type=int, default=500)
    parser.add_argument("--url", default=os.environ.get("SHADOWPROXY_TEST_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        embedded = None
        url = args.url
        if url is None:
            embedded = EmbeddedPostgres()
            url = embedded.start(Path(tmp))
        try:
            rate = asyncio.run(bench(url, args.pairs, args.batch_max, Path(tmp) / "spool"))
        finally:
            if embedded is not None:
                embedded.stop()
    print(f"{rate:,.0f} pairs/s ({args.pairs} pairs, batch_max={args.batch_max})")


if __name__ == "__main__":
    main()

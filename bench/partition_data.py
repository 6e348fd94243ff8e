"""Bulk data for the partitioning benchmark: N pairs over D days, each pair scored.

One day's pairs are built in Python (the test fixtures' realistic shape: a chat request
with a tool, both answers, tokens, costs) and COPied into an unlogged staging table; each
day is then that staging table shifted in time with fresh ids (``INSERT … SELECT``), and
its scores likewise, so ten million pairs take minutes, not the writer's hours. The same
function fills today's unpartitioned schema (revision 0003) and the partitioned one.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shadowproxy.records import Side
from shadowproxy.store.columns import PAIR_COLUMNS
from shadowproxy.store.sink import pair_row
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair

_TAGS = ("support", "billing", "search", None)


def _day_rows(count: int, day_start: datetime) -> list[tuple[object, ...]]:
    step = 86_400 / count
    rows = []
    for i in range(count):
        question = f"Where is my order #{i:07d}? It was due on Friday and has not arrived."
        rows.append(pair_row(make_pair(
            id=uuid.uuid4(), tag=_TAGS[i % len(_TAGS)],
            received_at=day_start + timedelta(seconds=i * step),
            request={"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "You are a helpful support agent."},
                {"role": "user", "content": question}]},
            conversation_id=f"h:{i % 50_000:05d}", turn=1 + i % 4,
            shadow=Side(model="claude-haiku-4-5", status=200, latency_ms=600.0 + i % 400,
                        ttft_ms=None, input_tokens=412, output_tokens=55, cost_usd=0.000687,
                        text=f"Your order {i:07d} is on its way and arrives tomorrow.",
                        stop_reason="end_turn", request_id=f"req_{i:010d}"),
        )))
    return rows


async def load(url: str, *, pairs: int, days: int, first_day: datetime,
               partitioned: bool, say: Callable[[str], None] = print) -> None:
    """``pairs`` pairs over ``days`` days from ``first_day`` (midnight UTC), all scored."""
    per_day = pairs // days
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        started = time.monotonic()
        # Setting up, not measuring: no foreign-key triggers, no waiting for the disk.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("CREATE UNLOGGED TABLE bench_day AS SELECT * FROM pairs LIMIT 0")
        await conn.copy_records_to_table("bench_day", records=_day_rows(per_day, first_day),
                                         columns=PAIR_COLUMNS)
        if partitioned:
            from shadowproxy.store.partitions import ensure_days

            await ensure_days(conn, [(first_day + timedelta(days=d)).date()
                                     for d in range(days)])
        others = [c for c in PAIR_COLUMNS if c not in ("id", "received_at")]
        key = "pair_id, received_at" if partitioned else "pair_id"
        source = "id, received_at" if partitioned else "id"
        for d in range(days):
            await conn.execute(
                f"INSERT INTO pairs (id, received_at, {', '.join(others)}) "
                f"SELECT gen_random_uuid(), received_at + make_interval(days => {d}), "
                f"{', '.join(others)} FROM bench_day")
            start = first_day + timedelta(days=d)
            await conn.execute(
                f"INSERT INTO scores ({key}, exact_match, text_similarity, tool_call_match, "
                "stop_reason_match, refusal, agree, verdict, verdict_method, judge_reason, "
                "judged_at) "
                f"SELECT {source}, false, 0.42, true, true, false, false, "
                "(ARRAY['equivalent','worse','better'])[1 + abs(hashtext(id::text)) % 3], "
                "'judge', 'Both give the delivery date.', received_at FROM pairs "
                "WHERE received_at >= $1 AND received_at < $2",
                start, start + timedelta(days=1))
            say(f"  day {d + 1}/{days} loaded ({time.monotonic() - started:.0f} s)")
        await conn.execute("DROP TABLE bench_day")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()

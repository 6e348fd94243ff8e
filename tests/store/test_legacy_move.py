"""Upgrading a database made by the release before partitioning (revision 0003, with
pairs, scores, reviews and review items in it): no row lost, none doubled, whether the
move runs to the end, is killed with SIGKILL half-way and run again, or races the writer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from shadowproxy.records import PairRecord
from shadowproxy.store import migrate
from shadowproxy.store.columns import PAIR_COLUMNS
from shadowproxy.store.legacy_move import legacy_left, move_legacy
from shadowproxy.store.sink import PairSink, pair_row
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair

START = datetime(2026, 4, 20, 6, tzinfo=UTC)
PAIRS = 240  # an hour apart: 11 days from 20 April 06:00


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(url))


async def _release_0003_with_rows(url: str) -> list[PairRecord]:
    """The schema of the release before partitioning, holding pairs as it stored them,
    two thirds of them scored, some reviewed twice, some offered for review."""
    await migrate.upgrade(url, "0003")
    pairs = [make_pair(id=uuid.uuid4(), received_at=START + timedelta(hours=i),
                       tag=("support", "billing", None)[i % 3]) for i in range(PAIRS)]
    conn = await _connect(url)
    try:
        await conn.copy_records_to_table("pairs", records=[pair_row(p) for p in pairs],
                                         columns=PAIR_COLUMNS)
        await conn.executemany(
            "INSERT INTO scores (pair_id, exact_match, text_similarity, tool_call_match, "
            "stop_reason_match, refusal, agree, verdict, verdict_method, judge_reason) "
            "VALUES ($1, false, 0.4, true, true, false, false, $2, 'judge', 'because')",
            [(p.id, ("worse", "equivalent", "better")[i % 3])
             for i, p in enumerate(pairs) if i % 3])
        await conn.executemany(
            "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, note) "
            "VALUES ($1, $2, '1', 'worse', true, 'n')",
            [(p.id, who) for p in pairs[::7] for who in ("ann", "bob")])
        await conn.executemany(
            "INSERT INTO review_items (id, pair_id, reviewer, shadow_first) "
            "VALUES ($1, $2, 'ann', false)", [(f"it-{p.id}", p.id) for p in pairs[::5]])
    finally:
        await conn.close()
    return pairs


async def _snapshot(url: str) -> dict[str, Any]:
    """Everything an analyst or a later step could read: the view, row for row, its
    columns in order, and each table's rows (moved or not yet; without the partition
    key the moved ones gained)."""
    conn = await _connect(url)
    try:
        view = [dict(r) for r in await conn.fetch("SELECT * FROM comparisons ORDER BY id")]
        columns = [r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'comparisons' ORDER BY ordinal_position")]
        tables: dict[str, list[dict[str, Any]]] = {}
        for table, key in (("scores", "pair_id"), ("reviews", "pair_id, reviewer"),
                           ("review_items", "id")):
            rows = [{k: v for k, v in r.items() if k != "received_at"}
                    for r in await conn.fetch(f"SELECT * FROM {table}")]
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"legacy_{table}"):
                rows += [dict(r) for r in await conn.fetch(f"SELECT * FROM legacy_{table}")]
            tables[table] = sorted(rows, key=lambda r: [str(r[k]) for k in key.split(", ")])
    finally:
        await conn.close()
    return {"view": view, "columns": columns, **tables}


async def test_upgrade_keeps_every_row_visible_then_moves_them_all(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await _release_0003_with_rows(url)
    before = await _snapshot(url)
    assert len(before["view"]) == PAIRS and len(before["scores"]) == 160

    await migrate.upgrade(url)  # the schema only: seconds whatever the size
    assert await _snapshot(url) == before  # unmoved rows still visible, once
    conn = await _connect(url)
    try:
        assert await legacy_left(conn) == PAIRS
    finally:
        await conn.close()

    progress = await move_legacy(url, batch=37)
    assert progress.finished and progress.moved == PAIRS
    assert progress.batches == -(-PAIRS // 37)
    assert await _snapshot(url) == before
    conn = await _connect(url)
    try:
        assert await legacy_left(conn) is None
        leftovers = await conn.fetch("SELECT relname FROM pg_class WHERE relname LIKE 'legacy%' "
                                     "OR relname = 'comparisons_partitioned'")
        days = await conn.fetchval("SELECT count(*) FROM pg_inherits "
                                   "WHERE inhparent = 'pairs'::regclass")
    finally:
        await conn.close()
    assert leftovers == []
    assert days == 11
    assert (await move_legacy(url)).moved == 0


async def test_a_pair_written_again_after_the_upgrade_is_kept_once(
    empty_database_url: str,
) -> None:
    """A spooled copy of a pair stored before the upgrade, replayed after it."""
    url = empty_database_url
    pairs = await _release_0003_with_rows(url)
    await migrate.upgrade(url)
    fresh = make_pair(received_at=START + timedelta(days=20))
    sink = PairSink(url)
    try:
        assert await sink.write([pairs[1], fresh]) == 2  # new tables: not a conflict yet
    finally:
        await sink.close()
    conn = await _connect(url)
    try:
        count = "SELECT count(*) FROM comparisons"
        assert await conn.fetchval(count) == PAIRS + 1
        await move_legacy(url, batch=50)
        assert await conn.fetchval(count) == PAIRS + 1
        (row,) = await conn.fetch("SELECT verdict FROM comparisons WHERE id = $1", pairs[1].id)
    finally:
        await conn.close()
    assert row["verdict"] == "equivalent"  # its score moved over to the copy


async def _kill_the_move_half_way(url: str, tmp_path: Path) -> None:
    script = ("import asyncio, sys\n"
              "from shadowproxy.store.legacy_move import move_legacy\n"
              "asyncio.run(move_legacy(sys.argv[1], batch=3))\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url, stderr=(tmp_path / "move.log").open("wb"))
    conn = await _connect(url)
    try:
        for _ in range(600):
            left = await legacy_left(conn)
            if left is not None and left < PAIRS * 2 // 3:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the move made no progress")
    finally:
        await conn.close()
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()


async def test_a_move_killed_half_way_loses_and_doubles_nothing(
    empty_database_url: str, tmp_path: Path,
) -> None:
    url = empty_database_url
    await _release_0003_with_rows(url)
    before = await _snapshot(url)
    await migrate.upgrade(url)
    await _kill_the_move_half_way(url, tmp_path)
    conn = await _connect(url)
    try:
        left = await legacy_left(conn)
    finally:
        await conn.close()
    assert left is not None and 0 < left < PAIRS
    assert await _snapshot(url) == before  # half moved: still every row, once

    # Run again the way a deploy does: `shadowproxy migrate`, to the end.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATABASE_URL"] = url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "migrate", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert f"moving {left:,} pairs stored before partitioning" in err.decode()
    assert await _snapshot(url) == before

"""Upgrading a database made by the release before partitioning (revision 0005, with
pairs served by primary, shadow and fallback, scores, reviews and review items in it): no
row lost, none doubled, whether the move runs to the end, is killed with SIGKILL half-way
and run again, or races the writer; every index and check kept; the review queue goes on.
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
import pytest

from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.records import PairRecord
from shadowproxy.review_labels import Label
from shadowproxy.store import migrate
from shadowproxy.store.columns import PAIR_COLUMNS
from shadowproxy.store.legacy_move import (
    MoveProgress,
    _move_statements,
    legacy_left,
    move_batch,
    move_legacy,
)
from shadowproxy.store.review_queue import AlreadyLabelled, QueueRules, ReviewQueue
from shadowproxy.store.sink import PairSink, pair_row
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair

START = datetime(2026, 4, 20, 6, tzinfo=UTC)
PAIRS = 240  # an hour apart: 11 days from 20 April 06:00
PAIRS_REVIEWED = range(0, PAIRS, 7)  # by ann (a label) and bob (a skip)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(url))


async def _release_before_partitioning(url: str) -> list[PairRecord]:
    """The schema of the release before partitioning, holding pairs as it stored them,
    two thirds of them scored, some reviewed twice, some offered for review."""
    await migrate.upgrade(url, "0005")
    pairs = [make_pair(id=uuid.uuid4(), received_at=START + timedelta(hours=i),
                       tag=("support", "billing", None)[i % 3],
                       served_by=("primary", "shadow", "fallback")[i % 4 % 3])
             for i in range(PAIRS)]
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
            "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, note, "
            "created_at) VALUES ($1, $2, $3, $4, true, 'n', $5)",
            [(pairs[i].id, who, choice, verdict, START + timedelta(days=20, minutes=i))
             for i in PAIRS_REVIEWED
             for who, choice, verdict in (("ann", "1", "worse"), ("bob", "skip", None))])
        await conn.executemany(
            "INSERT INTO review_items (id, pair_id, reviewer, shadow_first, tag, rank, "
            "overlap, answered_at, labelled) VALUES ($1, $2, 'ann', false, $3, $4, $5, $6, $7)",
            [(f"it-{p.id}", p.id, p.tag, 1000 + i, i % 2 == 0,
              START + timedelta(days=21) if i % 3 else None, i % 3 == 1)
             for i, p in enumerate(pairs[::5])])
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
        labels = [dict(r) for r in await conn.fetch(
            "SELECT * FROM human_reviews ORDER BY pair_id, reviewer")]
        label_columns = [r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'human_reviews' ORDER BY ordinal_position")]
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
    return {"view": view, "columns": columns, "human_reviews": labels,
            "human_reviews_columns": label_columns, **tables}


async def test_upgrade_keeps_every_row_visible_then_moves_them_all(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await _release_before_partitioning(url)
    before = await _snapshot(url)
    assert len(before["view"]) == PAIRS and len(before["scores"]) == 160
    assert {r["served_by"] for r in before["view"]} == {"primary", "shadow", "fallback"}
    assert sum(r["human_labels"] for r in before["view"]) == len(PAIRS_REVIEWED)
    assert len(before["human_reviews"]) == 2 * len(PAIRS_REVIEWED)

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
                                     "OR relname LIKE '%_partitioned'")
        days = await conn.fetchval("SELECT count(*) FROM pg_inherits "
                                   "WHERE inhparent = 'pairs'::regclass")
    finally:
        await conn.close()
    assert leftovers == []
    assert days == 11
    assert (await move_legacy(url)).moved == 0


async def test_a_report_during_the_move_says_so_and_the_next_counts_every_pair(
    empty_database_url: str,
) -> None:
    """A report between two batches counts the pairs moved so far and says how many are
    still moving; once the move ends, the report counts every pair, even in the
    10-minute slot the first batch split (newest first, so the split slot is always the
    oldest one, which a report reads from the pairs instead of its summaries)."""
    url = empty_database_url
    await _release_before_partitioning(url)
    # Five more pairs in the slot of pair 202 (hour 202, minutes 1 to 5): newest first, a
    # batch of 40 takes pairs 239..203 and three of them, leaving two and pair 202.
    split = START + timedelta(hours=202)
    extra = [make_pair(id=uuid.uuid4(), received_at=split + timedelta(minutes=k), tag="support")
             for k in range(1, 6)]
    conn = await _connect(url)
    try:
        await conn.copy_records_to_table("pairs", records=[pair_row(p) for p in extra],
                                         columns=PAIR_COLUMNS)
    finally:
        await conn.close()
    total = PAIRS + len(extra)
    await migrate.upgrade(url)
    conn = await _connect(url)
    try:
        await move_batch(conn, 40, MoveProgress(), await _move_statements(conn))
    finally:
        await conn.close()
    during = (await build_report(url)).to_json()
    assert during["overall"]["pairs_total"] == 40
    assert during["pairs_still_moving"] == total - 40
    html = render_html(await build_report(url))
    assert f"{total - 40:,} pairs stored before the upgrade are still moving" in html

    await move_legacy(url)
    after = (await build_report(url)).to_json()
    assert after["overall"]["pairs_total"] == total
    assert after["pairs_still_moving"] is None


async def test_a_pair_written_again_after_the_upgrade_is_kept_once(
    empty_database_url: str,
) -> None:
    """A spooled copy of a pair stored before the upgrade, replayed after it."""
    url = empty_database_url
    pairs = await _release_before_partitioning(url)
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
    await _release_before_partitioning(url)
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


# What 0003 to 0005 put on the four tables besides their keys: a partitioned table that
# lost one would serve the review queue slowly (an index) or take a label no person gave.
_SHAPE = """
    SELECT t.relname AS table_name, 'index' AS kind, c.relname AS name
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    WHERE t.relname = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
    UNION ALL
    SELECT t.relname, 'check', k.conname FROM pg_constraint k
    JOIN pg_class t ON t.oid = k.conrelid
    WHERE t.relname = ANY($1::text[]) AND k.contype = 'c'
    UNION ALL
    SELECT table_name, 'column ' || data_type || ' ' || coalesce(column_default, '-'),
           column_name
    FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
      AND column_name <> 'received_at'
"""
_TABLES = ["pairs", "scores", "reviews", "review_items"]


async def _shape(url: str) -> set[tuple[str, str, str]]:
    conn = await _connect(url)
    try:
        return {(r[0], r[1], r[2]) for r in await conn.fetch(_SHAPE, _TABLES)}
    finally:
        await conn.close()


@pytest.mark.parametrize("with_rows", [True, False], ids=["with-rows", "empty"])
async def test_the_partitioned_tables_keep_every_column_index_and_check_of_0005(
    empty_database_url: str, with_rows: bool,
) -> None:
    url = empty_database_url
    if with_rows:
        await _release_before_partitioning(url)
    else:
        await migrate.upgrade(url, "0005")
    before = await _shape(url)
    assert ("pairs", "index", "ix_pairs_review_rank") in before
    assert ("reviews", "check", "ck_reviews_choice") in before
    await migrate.upgrade(url)
    await move_legacy(url)
    assert await _shape(url) == before
    conn = await _connect(url)
    try:
        pair = make_pair(received_at=START)
        sink = PairSink(url)
        try:
            await sink.write([pair])  # creates the day
        finally:
            await sink.close()
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO reviews (pair_id, received_at, reviewer, choice, verdict, "
                "shadow_first) VALUES ($1, $2, 'ann', 'skip', 'worse', true)",
                pair.id, pair.received_at)
    finally:
        await conn.close()
    await migrate.downgrade(url, "0005")  # and back: the old tables' shape again
    assert await _shape(url) == before


async def test_the_review_queue_goes_on_with_the_items_and_labels_that_moved(
    empty_database_url: str,
) -> None:
    """ann's open items and her labels from before the upgrade are hers after it: she
    gets her open item back, can label another, and cannot label a pair twice."""
    url = empty_database_url
    pairs = await _release_before_partitioning(url)
    await migrate.upgrade(url)
    await move_legacy(url, batch=50)
    queue = ReviewQueue(QueueRules(frame_cache_s=0))
    now = START + timedelta(days=30)
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
    assert pool is not None
    try:
        offered = await queue.next_item(pool, "ann", "support", now)
        assert offered is not None and offered.item == f"it-{pairs[0].id}"  # lowest rank
        # pairs[15]: offered to ann (open), never labelled.
        assert await queue.label(pool, "ann", f"it-{pairs[15].id}", Label("1", None),
                                 now) == "worse"
        with pytest.raises(AlreadyLabelled):  # pairs[0]: labelled by ann before
            await queue.label(pool, "ann", offered.item, Label("2", None), now)
        row = await pool.fetchrow(
            "SELECT human_verdict, human_labels FROM comparisons WHERE id = $1", pairs[15].id)
        stored = await pool.fetchval(
            "SELECT received_at FROM reviews WHERE pair_id = $1", pairs[15].id)
    finally:
        await pool.close()
    assert (row["human_verdict"], row["human_labels"]) == ("worse", 1)
    assert stored == pairs[15].received_at

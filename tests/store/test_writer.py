"""Pairs reach PostgreSQL once each, in order, whatever the database does meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from shadowproxy.records import PairRecord, Side
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter
from tests.fakes.database import TestPostgres, make_pair

BIG = 100 * 1024 * 1024


async def _stored(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch("SELECT * FROM pairs"))
    finally:
        await conn.close()


async def _eventually(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _writer(url: str, spool_dir: Path, **kwargs: Any) -> PairWriter:
    return PairWriter(url, Spool(spool_dir, max_bytes=BIG), **kwargs)


async def test_a_batch_is_stored_once_with_every_field(database_url: str, tmp_path: Path) -> None:
    writer = _writer(database_url, tmp_path)
    await writer.start()
    pairs = [make_pair(tag=f"tag{i}") for i in range(120)]
    odd = make_pair(
        request=None, tag=None, stream=True, client_disconnected=True,
        shadow=Side(error="overloaded", status=529, text="nul\x00byte"),
        replay=Side(model="gpt-4o-mini", text="again", tool_calls=[]),
        shadow_outcome="error", shadow_reason="529 from the shadow",
    )
    for pair in [*pairs, odd]:
        writer.submit(pair)
    await writer.close(timeout_s=10)

    rows = {r["id"]: r for r in await _stored(database_url)}
    assert len(rows) == 121
    assert writer.written == 121
    assert writer.pending == 0
    assert writer.spool.is_empty()
    first = rows[pairs[0].id]
    assert first["request"] is not None
    assert first["received_at"] == pairs[0].received_at
    assert first["received_at"].tzinfo is not None
    assert first["shadow_text"] == "Let me look that up."
    assert first["primary_cost_usd"] == 0.0000193
    assert first["replay_model"] is None
    stranger = rows[odd.id]
    assert stranger["request"] is None
    assert stranger["shadow_status"] == 529
    assert stranger["shadow_text"] == "nul\ufffdbyte"  # PostgreSQL text cannot hold NUL
    assert stranger["replay_text"] == "again"


async def test_jsonb_round_trips(database_url: str, tmp_path: Path) -> None:
    import json

    pair = make_pair(
        request={"messages": [{"role": "user", "content": "héllo \u2603"}], "n": 1.5},
        primary=Side(tool_calls=[{"name": "f", "arguments": "not json {"}]),
    )
    writer = _writer(database_url, tmp_path)
    await writer.start()
    writer.submit(pair)
    await writer.close(timeout_s=10)
    (row,) = await _stored(database_url)
    assert json.loads(row["request"]) == pair.request
    assert json.loads(row["primary_tool_calls"]) == [{"name": "f", "arguments": "not json {"}]


async def test_the_same_pair_twice_is_stored_once(database_url: str, tmp_path: Path) -> None:
    pair = make_pair()
    writer = _writer(database_url, tmp_path)
    await writer.start()
    writer.submit(pair)
    writer.submit(pair)  # same batch
    await asyncio.sleep(0.3)
    writer.submit(pair)  # a later batch
    await writer.close(timeout_s=10)
    assert len(await _stored(database_url)) == 1
    assert writer.written == 1
    assert writer.duplicates == 2


async def test_an_invalid_pair_does_not_hold_up_the_others(
    database_url: str, tmp_path: Path
) -> None:
    good = [make_pair() for _ in range(3)]
    bad = make_pair(api=None)  # NOT NULL column: the database refuses it
    writer = _writer(database_url, tmp_path)
    await writer.start()
    for pair in [good[0], bad, *good[1:]]:
        writer.submit(pair)
    await writer.close(timeout_s=10)
    assert {r["id"] for r in await _stored(database_url)} == {p.id for p in good}
    assert writer.rejected == 1


async def test_an_outage_loses_nothing_and_keeps_order(
    database_url: str, postgres_server: TestPostgres, tmp_path: Path
) -> None:
    writer = _writer(database_url, tmp_path, probe_max_s=0.5)
    await writer.start()
    submitted: list[PairRecord] = []

    async def arrive(count: int) -> None:
        for _ in range(count):
            pair = make_pair()
            submitted.append(pair)
            writer.submit(pair)
            await asyncio.sleep(0.01)

    await arrive(50)
    await _eventually(lambda: _count_is(database_url, 50))
    await asyncio.to_thread(postgres_server.stop)
    try:
        await arrive(300)  # about 3 s of traffic while the database is gone
        assert not writer.database_up
        assert writer.spooled > 0
    finally:
        await asyncio.to_thread(postgres_server.start)
    await arrive(100)
    await _eventually(lambda: _count_is(database_url, len(submitted)))
    await writer.close(timeout_s=10)

    rows = await _stored(database_url)
    assert len(rows) == len(submitted) == 450  # primary key: each exactly once
    stored_at = {r["id"]: r["stored_at"] for r in rows}
    in_arrival_order = [stored_at[p.id] for p in submitted]
    assert in_arrival_order == sorted(in_arrival_order)
    assert writer.spool.is_empty()
    assert writer.db_errors >= 1


async def _count_is(url: str, expected: int) -> bool:
    try:
        return len(await _stored(url)) == expected
    except (OSError, asyncpg.PostgresError):
        return False


async def test_close_while_down_spools_and_the_next_start_replays_once(
    database_url: str, postgres_server: TestPostgres, tmp_path: Path
) -> None:
    pairs = [make_pair() for _ in range(40)]
    writer = _writer(database_url, tmp_path)
    await writer.start()
    await asyncio.to_thread(postgres_server.stop)
    try:
        for pair in pairs:
            writer.submit(pair)
        await writer.close(timeout_s=2)
        assert writer.spooled == 40
        assert writer.pending == 0
        writer.submit(pairs[0])  # the same pair again, after close: spooled, not lost
    finally:
        await asyncio.to_thread(postgres_server.start)

    spool = Spool(tmp_path, max_bytes=BIG)
    assert [p.id for p in spool.read_all()] == [p.id for p in pairs] + [pairs[0].id]
    successor = PairWriter(database_url, spool)
    await successor.start()
    await successor.close(timeout_s=10)

    assert sorted(r["id"] for r in await _stored(database_url)) == sorted(p.id for p in pairs)
    assert successor.replayed == 41
    assert successor.written == 40
    assert spool.is_empty()

    third = PairWriter(database_url, Spool(tmp_path, max_bytes=BIG))
    await third.start()
    await third.close(timeout_s=10)
    assert third.replayed == 0
    assert len(await _stored(database_url)) == 40


async def test_a_full_spool_counts_what_it_drops(
    database_url: str, postgres_server: TestPostgres, tmp_path: Path
) -> None:
    writer = PairWriter(database_url, Spool(tmp_path, max_bytes=20_000))
    await writer.start()
    await asyncio.to_thread(postgres_server.stop)
    try:
        for _ in range(100):
            writer.submit(make_pair())
        await writer.close(timeout_s=2)
    finally:
        await asyncio.to_thread(postgres_server.start)
    assert writer.spooled > 0
    assert writer.spool_dropped == 100 - writer.spooled


async def test_start_with_the_database_down_does_not_fail(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@/nowhere?host={tmp_path}/no-such-dir"
    writer = _writer(url, tmp_path / "spool")
    await writer.start()
    assert not writer.database_up
    writer.submit(make_pair(id=uuid.uuid4()))
    await writer.close(timeout_s=1)
    assert len(writer.spool.read_all()) == 1


async def test_submit_never_waits(database_url: str, tmp_path: Path) -> None:
    writer = _writer(database_url, tmp_path, max_pending=10)
    for _ in range(25):  # not started: nothing drains the backlog, yet submit returns
        writer.submit(make_pair())
    assert writer.pending == 10
    assert writer.overflow_dropped == 15
    await writer.start()
    await writer.close(timeout_s=10)
    assert len(await _stored(database_url)) == 10


async def test_text_postgresql_cannot_hold_is_repaired_not_dropped(
    database_url: str, tmp_path: Path
) -> None:
    """A lone surrogate (a ``\\ud800`` escape in a request or answer) and an emoji whose
    two UTF-16 halves arrived in two stream deltas are stored, repaired, not dropped."""
    lone = make_pair(
        request={"messages": [{"role": "user", "content": "half \ud800 of a pair"}]},
        primary=Side(status=200, text="answer \udfff", tool_calls=[{"name": "f\ud83d",
                                                                    "arguments": {}}]),
    )
    split_emoji = make_pair(primary=Side(status=200, text="smile " + "\ud83d" + "\ude00"))
    writer = _writer(database_url, tmp_path)
    await writer.start()
    for pair in (lone, split_emoji, make_pair()):
        writer.submit(pair)
    await writer.close(timeout_s=10)
    rows = {r["id"]: r for r in await _stored(database_url)}
    assert len(rows) == 3 and writer.rejected == 0
    assert rows[split_emoji.id]["primary_text"] == "smile \U0001f600"
    assert rows[lone.id]["primary_text"] == "answer \ufffd"
    assert "half \ufffd of a pair" in rows[lone.id]["request"]
    assert "f\ufffd" in rows[lone.id]["primary_tool_calls"]


class _BadDisk:
    """The spool directory made unwritable, then restored. Mode bits do not stop root
    (CI runs as root), so the directory is moved away and a plain file put in its place:
    every create, append and rename under it fails as on a read-only mount."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.away = directory.with_name(directory.name + "-away")

    def break_(self) -> None:
        self.directory.rename(self.away)
        self.directory.write_bytes(b"not a directory")

    def restore(self) -> None:
        self.directory.unlink()
        self.away.rename(self.directory)


async def test_an_unwritable_spool_while_the_database_is_down_recovers_without_restart(
    database_url: str, postgres_server: TestPostgres, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    writer = _writer(database_url, spool_dir, probe_max_s=0.5)
    await writer.start()
    submitted: list[PairRecord] = []

    def arrive(count: int) -> None:
        for _ in range(count):
            submitted.append(make_pair())
            writer.submit(submitted[-1])

    async def spooled_at_least(n: int) -> bool:
        return writer.spooled >= n

    async def spool_refused() -> bool:
        return not writer.spool_writable

    arrive(10)
    await _eventually(lambda: _count_is(database_url, 10))
    disk = _BadDisk(spool_dir)
    await asyncio.to_thread(postgres_server.stop)
    try:
        arrive(10)
        await _eventually(lambda: spooled_at_least(10))
        disk.break_()
        arrive(20)  # neither the database nor the disk takes these
        await _eventually(spool_refused)
        await asyncio.sleep(1.5)  # a few failed rounds: none may leave a phantom segment
        assert writer.spool.size_bytes >= 0
    finally:
        disk.restore()
        await asyncio.to_thread(postgres_server.start)
    arrive(10)
    await _eventually(lambda: _count_is(database_url, 50), timeout_s=30)
    assert writer.spool_writable and writer.database_up
    await writer.close(timeout_s=10)
    assert {r["id"] for r in await _stored(database_url)} == {p.id for p in submitted}
    assert sum(writer.lost.values()) == 0
    assert writer.spool.is_empty() and writer.spool.size_bytes == 0
    assert list(spool_dir.iterdir()) == []


async def test_a_spool_replayed_twice_into_days_without_partitions_stores_each_pair_once(
    database_url: str, tmp_path: Path
) -> None:
    """Pairs spooled days ago (their days have no partition yet), replayed; then the same
    spool replayed again, as after a crash between the commit and the segment's release."""
    import shutil
    from datetime import UTC, datetime, timedelta

    start = datetime(2025, 2, 27, 22, tzinfo=UTC)
    pairs = [make_pair(received_at=start + timedelta(hours=7 * i)) for i in range(12)]
    spool_dir = tmp_path / "spool"
    Spool(spool_dir, max_bytes=BIG).append(pairs)
    shutil.copytree(spool_dir, tmp_path / "copy")

    first = _writer(database_url, spool_dir)
    await first.start()
    await first.close(timeout_s=10)
    shutil.rmtree(spool_dir)
    shutil.copytree(tmp_path / "copy", spool_dir)
    second = _writer(database_url, spool_dir)
    await second.start()
    await second.close(timeout_s=10)

    assert (first.written, first.duplicates) == (12, 0)
    assert (second.written, second.duplicates) == (0, 12)
    stored = await _stored(database_url)
    assert sorted((r["id"], r["received_at"]) for r in stored) == sorted(
        (p.id, p.received_at) for p in pairs)

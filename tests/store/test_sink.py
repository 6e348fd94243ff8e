"""COPY rows carry exactly what PairRecord.to_row() says, in the pairs column order."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from shadowproxy.records import Side
from shadowproxy.store.columns import JSONB_COLUMNS, PAIR_COLUMNS
from shadowproxy.store.sink import PairRejected, PairSink, StoreUnavailable, pair_row
from tests.fakes.database import make_pair


@pytest.mark.parametrize(
    "pair",
    [
        make_pair(),
        make_pair(replay=Side(model="gpt-4o-mini", tool_calls=[{"name": "x", "arguments": "{"}])),
        make_pair(request=None, tag=None, primary=Side(), shadow=Side(error="timeout")),
    ],
)
def test_row_matches_to_row(pair: object) -> None:
    from shadowproxy.records import PairRecord

    assert isinstance(pair, PairRecord)
    row = dict(zip(PAIR_COLUMNS, pair_row(pair), strict=True))
    for column in JSONB_COLUMNS:
        if row[column] is not None:
            row[column] = json.loads(row[column])
    assert row == pair.to_row()


def test_scrub_replaces_nul_in_text_and_json() -> None:
    pair = make_pair(
        request={"messages": [{"content": "a\x00b"}]},
        shadow=Side(text="x\x00y", tool_calls=[{"name": "f", "arguments": {"k": "\x00"}}]),
    )
    row = dict(zip(PAIR_COLUMNS, pair_row(pair, scrub=True), strict=True))
    assert row["shadow_text"] == "x\ufffdy"
    assert json.loads(row["request"]) == {"messages": [{"content": "a\ufffdb"}]}
    assert json.loads(row["shadow_tool_calls"]) == [{"name": "f", "arguments": {"k": "\ufffd"}}]


async def test_duplicates_take_the_idempotent_route(database_url: str) -> None:
    sink = PairSink(database_url)
    first, second = make_pair(), make_pair()
    try:
        assert await sink.write([first]) == 1
        assert await sink.write([first, second, second]) == 1
    finally:
        await sink.close()
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("SELECT count(*) FROM pairs") == 2
    finally:
        await conn.close()


async def test_errors_are_sorted_into_retry_or_reject(database_url: str, tmp_path: Path) -> None:
    sink = PairSink(database_url)
    try:
        with pytest.raises(PairRejected):
            await sink.write([make_pair(shadow_outcome=None)])
        assert await sink.write([make_pair()]) == 1  # the connection is still usable
    finally:
        await sink.close()
    nowhere = PairSink(f"postgresql+asyncpg://postgres@/x?host={tmp_path}", timeout_s=1)
    with pytest.raises(StoreUnavailable):
        await nowhere.write([make_pair()])


async def test_a_pair_whose_day_has_no_partition_is_stored_once(database_url: str) -> None:
    """A spool replayed weeks later, a clock that ran ahead: the day is created on the
    spot; writing the same batch again (a replay) still stores each pair once."""
    from datetime import UTC, datetime

    from shadowproxy.store.partitions import attached_days

    late = make_pair(received_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    ahead = make_pair(received_at=datetime(2031, 6, 7, 23, 59, 59, 999999, tzinfo=UTC))
    sink = PairSink(database_url)
    try:
        assert await sink.write([late, ahead]) == 2
        assert await sink.write([ahead, late]) == 0
    finally:
        await sink.close()
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch("SELECT id, received_at FROM pairs ORDER BY received_at")
        days = await attached_days(conn)
    finally:
        await conn.close()
    assert [(r["id"], r["received_at"]) for r in rows] == [
        (late.id, late.received_at), (ahead.id, ahead.received_at)]
    assert {late.received_at.date(), ahead.received_at.date()} <= days

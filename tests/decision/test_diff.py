"""diff: every stored pair gets exactly one score, however often it runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shadowproxy.decision.diff import run_diff, score_row
from shadowproxy.records import ShadowOutcome, Side
from tests.fakes.database import make_pair
from tests.fakes.traffic import store, traffic


async def fetch(url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(text(sql))).mappings()]
    finally:
        await engine.dispose()


async def test_every_pair_is_scored_once_and_a_second_run_does_nothing(
        database_url: str) -> None:
    await store(database_url, traffic("support", 60, 12))
    first = await run_diff(database_url, batch_size=25, progress=False)
    assert first.scored == 71  # 60 comparable + timeouts, drops, failures, skipped
    assert first.agreed == 48
    again = await run_diff(database_url, progress=False)
    assert again.scored == 0
    counts = await fetch(database_url, "SELECT count(*) AS n, count(scored_at) AS scored "
                                       "FROM comparisons")
    assert counts == [{"n": 71, "scored": 71}]


async def test_new_pairs_after_a_run_are_picked_up_alone(database_url: str) -> None:
    await store(database_url, traffic("support", 10, 0, extras=False))
    await run_diff(database_url, progress=False)
    await store(database_url, traffic("support", 7, 7, first=100, extras=False))
    later = await run_diff(database_url, batch_size=3, progress=False)
    assert (later.scored, later.agreed) == (7, 0)


async def test_pairs_that_cannot_agree_still_get_a_false_score(database_url: str) -> None:
    timeout = make_pair(shadow=Side(error="timeout"), shadow_outcome=ShadowOutcome.TIMEOUT)
    primary_failed = make_pair(primary=Side(status=500, error="api_error: boom"))
    dropped_but_equal = make_pair(shadow_outcome=ShadowOutcome.DROPPED)
    await store(database_url, [timeout, primary_failed, dropped_but_equal])
    assert (await run_diff(database_url, progress=False)).scored == 3
    rows = await fetch(database_url, "SELECT agree FROM comparisons")
    assert [r["agree"] for r in rows] == [False, False, False]


async def test_scores_land_in_the_view(database_url: str) -> None:
    pair = make_pair()  # same tool call on both sides, different words around it
    await store(database_url, [pair])
    await run_diff(database_url, progress=False)
    [row] = await fetch(database_url, "SELECT * FROM comparisons")
    assert row["agree"] is True and row["tool_call_match"] is True
    assert row["stop_reason_match"] is True and row["json_match"] is None
    assert row["replay_agree"] is None and row["scored_at"] is not None


async def test_replayed_primary_is_scored_against_itself(database_url: str) -> None:
    same = make_pair(replay=Side(status=200, text="", stop_reason="tool_use",
                                 tool_calls=[{"name": "lookup_order",
                                              "arguments": {"order_id": "1234"}}]))
    changed = make_pair(replay=Side(status=200, text="Which order do you mean?",
                                    stop_reason="end_turn"))
    failed = make_pair(replay=Side(status=529, error="overloaded_error: busy"))
    await store(database_url, [same, changed, failed])
    await run_diff(database_url, progress=False)
    rows = {r["id"]: r for r in await fetch(
        database_url, "SELECT id, replay_agree, replay_tool_call_match FROM comparisons")}
    assert rows[same.id]["replay_agree"] is True
    assert rows[changed.id]["replay_agree"] is False
    assert rows[changed.id]["replay_tool_call_match"] is False
    assert rows[failed.id]["replay_agree"] is None  # no second answer to compare


def test_score_row_reads_a_plain_pairs_row() -> None:
    row = make_pair(shadow_outcome=ShadowOutcome.ERROR).to_row()
    scored = score_row(row)
    assert scored["pair_id"] == row["id"] and scored["agree"] is False
    assert scored["tool_call_match"] is True

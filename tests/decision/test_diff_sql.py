"""The verdict tier PostgreSQL runs gives every pair it claims exactly the scores row the
Python tiers give it, and diff's processes split the work without changing a row."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowproxy.decision.diff import run_diff, score_row
from shadowproxy.decision.diff_sql import SCORE_COLUMNS
from shadowproxy.records import PairRecord, ShadowOutcome, Side
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import TEMPLATE_DB, TestPostgres, make_pair
from tests.fakes.traffic import store

TEXTS = [
    "", "Your order shipped.", "your ORDER shipped", "Your order, shipped!!", "  ",
    "I'm sorry, but I can't help with that.", "We cannot assist with that request.",
    "Unfortunately I am unable to provide that.", "Sorry - we won't share that.",
    '{"a": 1}', ' \x1c[1, 2]', "[not json", "Café ouvert.", "cafe ouvert",
    "It\u2019s done.", "Its done", "Done \U0001F600", "x" * 450, "X" * 450 + "!",
    "Let me look that up.", "ß straße", "SS STRASSE", "\tline\nbreak\r", "K", "\u212a",
]
CALLS = [
    [], [{"name": "lookup", "arguments": {"id": 1}}],
    [{"name": "lookup", "arguments": {"id": 1.0}}],
    [{"name": "lookup", "arguments": '{"id": 1}'}],
    [{"name": "lookup", "arguments": {"id": True}}],
    [{"name": "lookup", "arguments": {"id": 1}}, {"name": "other", "arguments": {}}],
]
STOPS = ["end_turn", "stop_sequence", "stop", "tool_use", "max_tokens", "refusal", None]


def _side(text: str, calls: list[Any], stop: str | None, failed: bool) -> Side:
    if failed:
        return Side(status=529, error="overloaded_error: busy")
    return Side(model="m", status=200, text=text, tool_calls=calls, stop_reason=stop)


pairs = st.builds(
    lambda pt, st_, pc, sc, ps, ss, outcome, failed, replay: make_pair(
        id=uuid.uuid4(), tag="t",
        primary=_side(TEXTS[pt], CALLS[pc], STOPS[ps], failed == 1),
        shadow=_side(TEXTS[st_], CALLS[sc], STOPS[ss], failed == 2),
        shadow_outcome=outcome,
        replay=_side(TEXTS[pt], CALLS[pc], STOPS[ps], False) if replay else None),
    st.integers(0, len(TEXTS) - 1), st.integers(0, len(TEXTS) - 1),
    st.integers(0, len(CALLS) - 1), st.integers(0, len(CALLS) - 1),
    st.integers(0, len(STOPS) - 1), st.integers(0, len(STOPS) - 1),
    st.sampled_from([ShadowOutcome.OK.value] * 6 + [ShadowOutcome.TIMEOUT.value]),
    st.sampled_from([0] * 8 + [1, 2]), st.sampled_from([False] * 5 + [True]),
)
# Half of the pairs get the primary's own answer back (or its calls): the SQL tier's cases.
twins = pairs.map(lambda p: make_pair(
    id=uuid.uuid4(), tag=p.tag, primary=p.primary,
    shadow=Side(model="m", status=200, text=p.primary.text, tool_calls=p.primary.tool_calls,
                stop_reason=p.primary.stop_reason) if p.primary.error is None else p.shadow,
    shadow_outcome=p.shadow_outcome))


async def _rows(url: str) -> dict[Any, dict[str, Any]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(f"SELECT {', '.join(SCORE_COLUMNS)} FROM scores")
    finally:
        await conn.close()
    return {r["pair_id"]: dict(r) for r in rows}


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["judged_at"] = out["judged_at"] is not None
    if isinstance(out["json_diff_paths"], str):
        out["json_diff_paths"] = json.loads(out["json_diff_paths"])
    return out


async def _round(url: str, records: list[PairRecord], jobs: int = 1) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("TRUNCATE pairs CASCADE")
    finally:
        await conn.close()
    await store(url, records)
    summary = await run_diff(url, progress=False, jobs=jobs, batch_size=7)
    stored = await _rows(url)
    assert len(stored) == len(records)
    for record in records:
        python = _comparable(score_row(record.to_row()))
        assert _comparable(stored[record.id]) == python, (record.primary, record.shadow)
    return summary.scored_in_sql


@pytest.fixture(scope="module")
def url(postgres_server: TestPostgres) -> Iterator[str]:
    """One migrated database for this module's synchronous (hypothesis) tests."""
    name = f"t_diff_sql_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        conn = await postgres_server.admin()
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
    yield postgres_server.url_for(name)
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(pairs, twins), min_size=10, max_size=40))
def test_the_sql_tier_writes_the_rows_python_would(url: str, records: list[PairRecord]
                                                   ) -> None:
    asyncio.run(_round(url, records))


def test_the_sql_tier_claims_identical_answers_and_equal_calls(url: str) -> None:
    call = [{"name": "lookup", "arguments": {"id": 1}}]
    records = [
        make_pair(primary=_side("A long identical answer. " * 40, [], "end_turn", False),
                  shadow=_side("A long identical answer. " * 40, [], "end_turn", False)),
        make_pair(primary=_side("Yes, shipped.", [], "end_turn", False),
                  shadow=_side("yes shipped", [], "stop_sequence", False)),
        make_pair(primary=_side("", call, "tool_use", False),
                  shadow=_side("Let me look that up.", call, "tool_use", False)),
        # Different words: their similarity needs Python.
        make_pair(primary=_side("It ships Friday.", [], "end_turn", False),
                  shadow=_side("It ships on Monday.", [], "end_turn", False)),
    ]
    assert asyncio.run(_round(url, records)) == 3


def test_jobs_split_the_pairs_and_write_the_same_rows(url: str) -> None:
    records = [make_pair(id=uuid.uuid4(), primary=_side(TEXTS[i % len(TEXTS)], [], "end_turn",
                                                        False),
                         shadow=_side(TEXTS[(i * 7) % len(TEXTS)], [], "end_turn", False))
               for i in range(120)]
    asyncio.run(_round(url, records, jobs=2))

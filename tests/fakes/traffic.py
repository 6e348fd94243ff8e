"""Synthetic traffic with a known truth: how often the shadow disagrees, per tag.

Shared by the report, diff, gate and export tests (and the README's SQL check).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowproxy.records import PairRecord, ShadowOutcome, Side
from shadowproxy.store.sink import PairSink
from tests.fakes.database import make_pair

START = datetime(2026, 3, 1, tzinfo=UTC)
ANSWER = "Your order 1234 shipped yesterday and should arrive on Friday."
OTHER = "I could not find any order with that number, sorry."
CALL = {"name": "lookup_order", "arguments": {"order_id": "1234"}}


def _side(text: str = "", calls: Sequence[dict[str, Any]] = (), *, latency: float,
          cost: float, model: str) -> Side:
    return Side(model=model, status=200, latency_ms=latency, ttft_ms=latency / 4,
                input_tokens=50, output_tokens=20, cost_usd=cost, text=text,
                tool_calls=list(calls), stop_reason="tool_use" if calls else "end_turn")


def traffic(tag: str | None, comparable: int, disagree: int, *, first: int = 0,
            extras: bool = True, replay: bool = False) -> list[PairRecord]:
    """``comparable`` pairs where both answered, exactly ``disagree`` of them differing,
    a third of them tool calls; plus pairs that must not count towards agreement:
    5 shadow timeouts, 3 drops, 2 primary failures, 1 skipped request."""
    records: list[PairRecord] = []

    def add(i: int, primary: Side, shadow: Side, outcome: str = ShadowOutcome.OK,
            replay_side: Side | None = None) -> None:
        records.append(make_pair(
            id=uuid.uuid4(), tag=tag, received_at=START + timedelta(minutes=first + i),
            primary=primary, shadow=shadow, shadow_outcome=outcome, replay=replay_side))

    for i in range(comparable):
        tools = i % 3 == 0
        differs = i < disagree
        primary = _side("" if tools else ANSWER, [CALL] if tools else [],
                        latency=1000 + i, cost=0.003, model="gpt-4o")
        if tools:
            call = {"name": "lookup_order", "arguments": {"order_id": "9999" if differs
                                                           else "1234"}}
            shadow_text, calls = "Let me check.", [call]
        else:
            shadow_text, calls = (OTHER if differs else ANSWER.upper()), []
        shadow = _side(shadow_text, calls, latency=600 + i, cost=0.001,
                       model="claude-haiku-4-5")
        add(i, primary, shadow, replay_side=replace(primary) if replay else None)
    if extras:
        base = comparable
        ok = _side(ANSWER, latency=900, cost=0.003, model="gpt-4o")
        for i in range(5):
            add(base + i, ok, Side(error="timeout: shadow took longer than 120s"),
                ShadowOutcome.TIMEOUT)
        for i in range(3):
            add(base + 5 + i, ok, Side(), ShadowOutcome.DROPPED)
        failed = Side(model="gpt-4o", status=500, error="server_error: boom", latency_ms=30)
        for i in range(2):
            add(base + 8 + i, failed, _side(ANSWER, latency=500, cost=0.001, model="haiku"))
        add(base + 10, Side(status=400), Side(), ShadowOutcome.SKIPPED)
    return records


async def store(url: str, records: Sequence[PairRecord]) -> None:
    sink = PairSink(url)
    try:
        await sink.write(records)
    finally:
        await sink.close()


async def seeded(url: str) -> None:
    """support: 240 comparable, 30% disagree; billing: 160 comparable, 5% disagree."""
    await store(url, traffic("support", 240, 72, replay=True)
                + traffic("billing", 160, 8, first=10_000)
                + traffic(None, 20, 0, first=20_000, extras=False))

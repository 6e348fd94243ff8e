"""Pairs with verdicts, written straight into ``pairs`` and ``scores`` as ``diff`` would
leave them, so the report and gate tests know the truth without a judge."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.records import PairRecord, Side
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair
from tests.fakes.traffic import store

START = datetime(2026, 5, 4, 9, tzinfo=UTC)
NO_JUDGE = "no judge configured (set SHADOWPROXY_JUDGE_MODEL)"
BUDGET = "judge budget spent (JUDGE_MAX_USD 5.00)"
JUDGE_MODEL = "gpt-4.1"


@dataclass(frozen=True, slots=True)
class Judged:
    """What ``diff`` wrote for one pair; ``verdict=None`` leaves no scores row at all,
    unless ``scored_only`` (a row from a ``diff`` that predates verdicts)."""

    verdict: str | None
    method: str | None = "judge"
    reason: str | None = "Both answers give the same delivery date."
    judge_model: str | None = JUDGE_MODEL
    cost_usd: float | None = 0.004
    calls: int | None = 2
    position_inconsistent: bool | None = False
    json_diff_paths: Sequence[str] | None = None
    replay_verdict: str | None = None
    scored_only: bool = False


def answered(text: str, *, model: str, latency: float, cost: float) -> Side:
    return Side(model=model, status=200, latency_ms=latency, ttft_ms=latency / 4,
                input_tokens=60, output_tokens=25, cost_usd=cost, text=text, tool_calls=[],
                stop_reason="end_turn")


def pair(tag: str | None, i: int, *, prompt: str = "When will my order arrive?",
         primary_text: str = "It arrives on Friday.", shadow_text: str = "Friday.",
         minutes: float = 1.0, replay: bool = False) -> PairRecord:
    """A free-form pair where both sides answered, ``minutes`` apart from the previous."""
    request = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": f"{prompt} (#{i})"}]}
    primary = answered(primary_text, model="gpt-4o", latency=900 + i, cost=0.0030)
    return make_pair(
        id=uuid.uuid4(), tag=tag, received_at=START + timedelta(minutes=i * minutes),
        request=request, primary=primary,
        shadow=answered(shadow_text, model="claude-haiku-4-5", latency=500 + i, cost=0.0010),
        replay=replace(primary) if replay else None)


def mix(tag: str | None, *, worse: int = 0, better: int = 0, equivalent: int = 0,
        first: int = 0, **judged: Any) -> list[tuple[PairRecord, Judged]]:
    """``worse`` + ``better`` + ``equivalent`` judged pairs of one tag."""
    rows: list[tuple[PairRecord, Judged]] = []
    for verdict, count in (("worse", worse), ("better", better), ("equivalent", equivalent)):
        for _ in range(count):
            i = first + len(rows)
            reason = {"worse": "The shadow gives the wrong date.",
                      "better": "The shadow also gives the tracking link."}.get(
                          verdict, "Same date, different words.")
            rows.append((pair(tag, i), Judged(verdict, reason=reason, **judged)))
    return rows


async def write(url: str, rows: Sequence[tuple[PairRecord, Judged]]) -> None:
    """Store the pairs, then their scores rows as ``diff`` with a judge would."""
    await store(url, [record for record, _ in rows])
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.executemany(
            "INSERT INTO scores (pair_id, received_at, exact_match, text_similarity, "
            "tool_call_match, stop_reason_match, json_match, refusal, length_ratio, agree, "
            "verdict, verdict_method, judge_model, judge_reason, judge_cost_usd, judge_calls, "
            "position_inconsistent, json_diff_paths, judged_at, replay_verdict, "
            "replay_verdict_method, replay_judge_cost_usd, replay_judge_calls) "
            "VALUES ($1, $15, false, 0.3, true, true, NULL, false, 0.5, $2, $3, $4, $5, $6, "
            "$7, $8, $9, $10::jsonb, now(), $11, $12, $13, $14)",
            [(record.id, j.verdict == "equivalent", j.verdict,
              j.method if j.verdict != "unjudged" else None,
              j.judge_model if j.verdict != "unjudged" else None, j.reason,
              j.cost_usd if j.verdict != "unjudged" else None,
              j.calls if j.verdict != "unjudged" else None,
              j.position_inconsistent,
              json.dumps(list(j.json_diff_paths)) if j.json_diff_paths is not None else None,
              j.replay_verdict, "judge" if j.replay_verdict else None,
              0.004 if j.replay_verdict else None, 2 if j.replay_verdict else None,
              record.received_at)
             for record, j in rows if j.verdict is not None or j.scored_only])
    finally:
        await conn.close()

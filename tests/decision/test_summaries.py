"""The report computed in PostgreSQL from stored summaries says what a pair-by-pair
Python computation says, stays right as pairs and verdicts change, and reads only the
part of the table its window needs."""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_model import classify_unjudged
from shadowproxy.decision.summary_sql import cause_sql, summary_select
from shadowproxy.records import PairRecord, ShadowOutcome, Side
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes import report_reference as reference
from tests.fakes.database import make_pair
from tests.fakes.traffic import store

START = datetime(2026, 3, 2, 7, 3, tzinfo=UTC)
TAGS = ["support", "billing", None, ""]
REASONS = [None, "a judge is needed: set SHADOWPROXY_JUDGE_MODEL and run diff again",
           "JUDGE_MAX_USD=5 reached in this run", "overloaded_error; run diff again",
           "not in the judge's sample (SHADOWPROXY_JUDGE_SAMPLE): estimated"]
PATHS = ["$.total", "$.items[0].price", "$.tool_calls[0].arguments.city"]


def _pairs(rng: random.Random, count: int, first_minute: int = 0) -> list[PairRecord]:
    records = []
    for _ in range(count):
        outcome = rng.choice([ShadowOutcome.OK] * 8 + [ShadowOutcome.TIMEOUT,
                                                       ShadowOutcome.DROPPED])
        primary = Side(model=rng.choice(["gpt-4o", "gpt-4.1"]),
                       status=rng.choice([200] * 9 + [500]),
                       latency_ms=rng.uniform(200, 3000), ttft_ms=rng.uniform(50, 500),
                       cost_usd=rng.choice([0.003, 0.002, None]), text="Answer.",
                       tool_calls=[], stop_reason="end_turn")
        if primary.status == 500:
            primary.error = "api_error: boom"
        calls = [{"name": "f", "arguments": {"x": 1}}] if rng.random() < 0.3 else []
        shadow = Side(model="claude-haiku-4-5", status=200, latency_ms=rng.uniform(100, 2000),
                      ttft_ms=rng.uniform(30, 300), cost_usd=0.001, text="Other answer.",
                      tool_calls=calls, stop_reason="tool_use" if calls else "end_turn")
        if outcome != ShadowOutcome.OK:
            shadow = Side(error="timeout")
        conversation = (f"conv-{rng.randrange(count // 4)}", rng.randint(1, 4)) \
            if rng.random() < 0.6 else (None, None)
        records.append(make_pair(
            id=uuid.uuid4(), tag=rng.choice(TAGS), shadow_outcome=outcome.value,
            received_at=START + timedelta(minutes=first_minute + rng.uniform(0, 3 * 24 * 60)),
            primary=primary, shadow=shadow, conversation_id=conversation[0],
            turn=conversation[1]))
    return records


async def _judge_randomly(url: str, records: list[PairRecord], rng: random.Random) -> None:
    """Scores rows as diff with a judge might leave them (some pairs left unscored)."""
    rows = []
    for record in records:
        if rng.random() < 0.1:
            continue  # awaiting diff
        verdict = rng.choice(["equivalent", "better", "worse", "unjudged", None])
        method = {"unjudged": None, None: None}.get(
            verdict, rng.choice(["exact", "structural", "judge"]))  # type: ignore[arg-type]
        reason = rng.choice(REASONS) if verdict in ("unjudged", None) else "judged"
        paths = rng.sample(PATHS, rng.randint(0, 2)) if rng.random() < 0.4 else None
        rows.append((record.id, rng.random() < 0.5, rng.random() < 0.7, verdict, method,
                     "gpt-4.1" if method == "judge" else None, reason,
                     0.004 if method == "judge" else None, 2 if method == "judge" else None,
                     json.dumps(paths) if paths is not None else None, record.tag,
                     record.received_at))
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.executemany(
            "INSERT INTO scores (pair_id, exact_match, text_similarity, tool_call_match, "
            "stop_reason_match, refusal, agree, verdict, verdict_method, judge_model, "
            "judge_reason, judge_cost_usd, judge_calls, json_diff_paths, tag, received_at) "
            "VALUES ($1, false, 0.5, $2, $3, false, false, $4, $5, $6, $7, $8, $9, "
            "$10::jsonb, $11, $12)", rows)
    finally:
        await conn.close()


def _close(ours: Any, theirs: Any, path: str = "$") -> None:
    """Equal, floats to 1e-12: sums over a partitioned table add in partition order."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), path
        for key in ours:
            _close(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _close(a, b, f"{path}[{i}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12), path
    else:
        assert ours == theirs, path


def _same(ours: dict[str, Any], truth: dict[str, Any]) -> None:
    assert ours["pairs_total"] == truth["pairs_total"]
    assert ours["pairs_unscored"] == truth["pairs_unscored"]
    assert ours["verdicts"] == truth["verdicts"]
    assert {u["cause"]: u["pairs"] for u in ours["unjudged"]} == truth["unjudged"]
    assert ours["tool_call_pairs"] == truth["tool_call_pairs"]
    for key in ("tool_call_match", "stop_reason_match", "shadow_error_rate"):
        assert ours[key] == pytest.approx(truth[key]), key
    assert ours["shadow_outcomes"] == truth["shadow_outcomes"]
    assert ours["cost_usd_per_1k"] == pytest.approx(truth["cost_usd_per_1k"])
    for metric in ("latency_ms", "ttft_ms"):
        for side in ("primary", "shadow"):
            assert ours[metric][side] == pytest.approx(truth[metric][side]), (metric, side)
    assert ours["json_diff_paths"] == truth["json_diff_paths"]
    assert ours["models"] == truth["models"]


async def _check(url: str, since: datetime | None = None, tag: str | None = None) -> None:
    report = (await build_report(url, since=since, tag=tag)).to_json()
    rows = await reference.fetch_rows(url, since, tag)
    _same(report["overall"], reference.scope(rows))
    tags = {r["tag"] for r in rows if r["tag"] is not None}
    assert set(report["by_tag"]) == tags
    for name in tags:
        _same(report["by_tag"][name], reference.scope([r for r in rows if r["tag"] == name]))
    truth = reference.conversations(await reference.fetch_rows(url), since, tag)
    assert set(report["conversations"]) == set(truth)
    for name, stats in truth.items():
        ours = report["conversations"][name]
        assert (ours["conversations"], ours["with_worse"]) == (
            stats["conversations"], stats["with_worse"]), name
        assert ours["first_worse_turns"] == stats["turns"], name


async def test_summaries_say_what_a_pair_by_pair_count_says(database_url: str) -> None:
    rng = random.Random(19)
    records = _pairs(rng, 400)
    await store(database_url, records)
    await _judge_randomly(database_url, records, rng)
    await _check(database_url)
    await _check(database_url)  # the second report reads the stored summaries
    # --since inside a slot and a day, and --tag: the same numbers as the pairs say.
    await _check(database_url, since=START + timedelta(hours=30, minutes=7, seconds=13))
    await _check(database_url, tag="support")
    await _check(database_url, since=START + timedelta(hours=40, minutes=1), tag="")


async def test_pairs_stored_late_and_new_verdicts_reach_the_next_report(
        database_url: str) -> None:
    rng = random.Random(5)
    records = _pairs(rng, 150)
    await store(database_url, records)
    await run_diff(database_url, progress=False)
    await _check(database_url)
    # A spool replay: pairs received days ago, stored now, into slots already summarised.
    late = _pairs(rng, 40)
    await store(database_url, late)
    await _check(database_url)
    # diff scores them: their slots are stale, and the report follows.
    await run_diff(database_url, progress=False)
    report = (await build_report(database_url)).to_json()
    assert report["overall"]["pairs_unscored"] == 0
    await _check(database_url)


async def test_a_database_the_report_may_not_write_gives_the_same_numbers(
        database_url: str) -> None:
    rng = random.Random(8)
    records = _pairs(rng, 200)
    await store(database_url, records)
    await _judge_randomly(database_url, records, rng)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("DROP ROLE IF EXISTS report_reader; CREATE ROLE report_reader LOGIN;"
                           "GRANT SELECT ON ALL TABLES IN SCHEMA public TO report_reader")
        reader = make_url(database_url).set(username="report_reader").render_as_string(
            hide_password=False)
        # Nothing summarised yet: the reader reads every pair.
        fresh = (await build_report(reader)).to_json()
        _close(fresh["overall"], (await build_report(database_url)).to_json()["overall"])
        # Summarised, then a verdict changes behind the reader's back.
        await conn.execute("UPDATE scores SET verdict = 'worse', verdict_method = 'judge' "
                           "WHERE verdict = 'equivalent'")
        await conn.execute("INSERT INTO report_stale (slot) SELECT DISTINCT "
                           "to_timestamp(floor(extract(epoch FROM received_at) / 600) * 600)"
                           " FROM pairs")
        stale = (await build_report(reader)).to_json()
        assert stale["overall"]["verdicts"]["equivalent"] == 0
        _close(stale["overall"], (await build_report(database_url)).to_json()["overall"])
    finally:
        await conn.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM report_reader;"
                           "DROP ROLE report_reader")
        await conn.close()


async def test_reports_at_once_build_the_summaries_once(database_url: str) -> None:
    rng = random.Random(3)
    records = _pairs(rng, 150)
    await store(database_url, records)
    await _judge_randomly(database_url, records, rng)
    reports = await asyncio.gather(*(build_report(database_url) for _ in range(4)))
    assert len({json.dumps(r.to_json()["overall"], default=str) for r in reports}) == 1
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT grain, start, tagged, tag FROM report_rollups "
            "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d")
    finally:
        await conn.close()
    assert duplicates == 0


async def test_since_and_tag_read_through_the_indexes(database_url: str) -> None:
    """The pairs a report reads itself (the slot holding --since, slots not yet over)
    come from an index range scan, not from a scan of the table."""
    rng = random.Random(11)
    await store(database_url, _pairs(rng, 3000))
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("ANALYZE pairs; ANALYZE scores")
        since = START + timedelta(hours=20, minutes=3)
        plans = {}
        for name, where in (
                ("since", "p.received_at >= $1 AND p.received_at < $2"),
                ("tag", "p.received_at >= $1 AND p.received_at < $2 AND p.tag = 'support'")):
            rows = await conn.fetch("EXPLAIN " + summary_select(where), since,
                                    since + timedelta(minutes=7))
            plans[name] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    # Each day's partition has its own copy of the index (pairs_pYYYYMMDD_<columns>_idx).
    assert "Seq Scan on pairs" not in plans["since"]
    assert re.search(r"Index Scan (?:using|on) pairs_p\d{8}_received_at_idx", plans["since"])
    assert "Seq Scan on pairs" not in plans["tag"]
    assert re.search(r"Index Scan (?:using|on) pairs_p\d{8}_tag_received_at_idx", plans["tag"])


@pytest.mark.parametrize("reason", [*REASONS, "", "Budget", "JUDGE_MODEL missing",
                                    "judge not configured", "timeout", "ÉCHEC"])
@pytest.mark.parametrize("verdict", ["unjudged", None])
@pytest.mark.parametrize("scored", [True, False])
async def test_the_sql_cause_is_the_python_cause(database_url: str, reason: str | None,
                                                 verdict: str | None, scored: bool) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        got = await conn.fetchval(
            f"SELECT {cause_sql('s')} FROM (SELECT $1::text AS verdict, $2::text AS "
            "judge_reason, CASE WHEN $3 THEN now() END AS scored_at) AS s",
            verdict, reason, scored)
    finally:
        await conn.close()
    assert got == classify_unjudged(verdict, reason, scored).value

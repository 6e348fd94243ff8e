"""``diff`` at scale, beside the old scoring-only path measured in the same run.

    .venv/bin/python bench/bench_diff.py [--pairs 100000] [--judged 240] [--rounds 2]

1. **No judge**: ``run_diff`` on ``--pairs`` stored pairs (a third identical answers, a
   third tool calls, a third free-form answers that differ, plus failures), seconds and
   peak RSS of the process, beside the **baseline**: the scoring-only path that ``diff``
   was before verdicts (``score_pair`` and the 12-column insert, same batching), on the
   same pairs. Each run is a fresh child process (so its peak RSS is its own) on an
   emptied ``scores`` table; the order alternates between rounds.
2. **Judged throughput**: ``--judged`` free-form pairs judged through the anthropic SDK
   against the simulator answering the judge in 500 ms, at ``JUDGE_CONCURRENCY`` 8;
   pairs per minute beside the ceiling (8 calls in flight, 2 calls per pair:
   8 / (2 x 0.5 s) = 8 pairs/s = 480 pairs/min).

Without ``--url`` (or ``SHADOWPROXY_TEST_DATABASE_URL``) it starts an embedded
PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shadowproxy.records import ShadowOutcome, Side
from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.sink import PairSink
from tests.fakes.database import make_pair

JUDGE_LATENCY_S = 0.5
JUDGE_CONCURRENCY = 8


def _pairs(count: int, *, free_form_only: bool = False) -> list[Any]:
    records = []
    call = {"name": "lookup_order", "arguments": {"order_id": "1234"}}
    for i in range(count):
        kind = 2 if free_form_only else i % 3
        question = f"Where is my order {i}?"
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": question}]}
        primary_text = f"Answer to: {question}"
        if kind == 0:
            shadow = Side(model="claude-haiku-4-5", status=200, text=primary_text.upper(),
                          stop_reason="end_turn")
        elif kind == 1:
            shadow = Side(model="claude-haiku-4-5", status=200, text="Checking.",
                          tool_calls=[call], stop_reason="tool_use")
        else:
            shadow = Side(model="claude-haiku-4-5", status=200,
                          text=f"Here is the answer to: {question}", stop_reason="end_turn")
        primary = (Side(model="gpt-4o", status=200, text="", tool_calls=[call],
                        stop_reason="tool_use") if kind == 1 else
                   Side(model="gpt-4o", status=200, text=primary_text, stop_reason="end_turn"))
        outcome = ShadowOutcome.OK.value
        if not free_form_only and i % 50 == 49:
            shadow, outcome = Side(error="timeout"), ShadowOutcome.TIMEOUT.value
        records.append(make_pair(id=uuid.uuid4(), request=request, primary=primary,
                                 shadow=shadow, shadow_outcome=outcome))
    return records


async def _load(url: str, count: int, *, free_form_only: bool = False) -> None:
    sink = PairSink(url)
    try:
        for start in range(0, count, 5_000):
            await sink.write(_pairs(min(5_000, count - start), free_form_only=free_form_only))
    finally:
        await sink.close()


async def _sql(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


# --- the baseline: diff as it was before verdicts (scoring only) ------------------------

_BASELINE_TYPES = (
    ("pair_id", "uuid"), ("received_at", "timestamptz"),
    ("exact_match", "boolean"), ("text_similarity", "float8"),
    ("tool_call_match", "boolean"), ("stop_reason_match", "boolean"),
    ("json_match", "boolean"), ("refusal", "boolean"), ("length_ratio", "float8"),
    ("agree", "boolean"), ("replay_agree", "boolean"),
    ("replay_text_similarity", "float8"), ("replay_tool_call_match", "boolean"),
)


async def _baseline_diff(url: str, batch_size: int = 500) -> int:
    from shadowproxy.decision.scoring import SideView, score_pair

    # The scoring-only diff's own query (before verdicts), kept here with its baseline.
    columns = ", ".join(["p.id", "p.received_at", "p.shadow_outcome"] + [
        f"p.{side}_{f}" for side in ("primary", "shadow", "replay")
        for f in ("text", "tool_calls", "stop_reason", "status", "error")])
    next_batch = text(
        f"SELECT {columns} FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM scores s "
        "WHERE s.pair_id = p.id AND s.received_at = p.received_at) AND p.id > :after "
        "ORDER BY p.id LIMIT :limit")

    insert = text(
        f"INSERT INTO scores ({', '.join(n for n, _ in _BASELINE_TYPES)}) "
        "SELECT * FROM unnest("
        + ", ".join(f"CAST(:{n} AS {t}[])" for n, t in _BASELINE_TYPES)
        + ") ON CONFLICT (pair_id, received_at) DO NOTHING RETURNING agree")
    engine = create_async_engine(url)
    scored = 0
    after = uuid.UUID(int=0)
    try:
        while True:
            async with engine.begin() as conn:
                batch = (await conn.execute(
                    next_batch, {"after": after, "limit": batch_size})).mappings().all()
                if not batch:
                    break
                rows = []
                for row in batch:
                    scores = score_pair(SideView.from_row(row, "primary"),
                                        SideView.from_row(row, "shadow")).as_row()
                    if row["shadow_outcome"] != ShadowOutcome.OK:
                        scores["agree"] = False
                    rows.append({"pair_id": row["id"], "received_at": row["received_at"],
                                 **scores, "replay_agree": None,
                                 "replay_text_similarity": None,
                                 "replay_tool_call_match": None})
                columns = {n: [r[n] for r in rows] for n, _ in _BASELINE_TYPES}
                scored += len((await conn.execute(insert, columns)).all())
            after = batch[-1]["id"]
    finally:
        await engine.dispose()
    return scored


async def _judged_run(url: str) -> dict[str, Any]:
    from aiohttp import web

    from shadowproxy.decision.diff import run_diff
    from shadowproxy.decision.judge import make_judge
    from shadowproxy.settings import Settings
    from shadowproxy.simulator import SimulatorConfig, make_app

    runner = web.AppRunner(make_app(SimulatorConfig(latency_s=JUDGE_LATENCY_S, record=False)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    judge = make_judge(Settings(judge_model="claude-sonnet-4-6", judge_api_key="sk-bench",
                                judge_base_url=f"http://127.0.0.1:{port}",
                                judge_concurrency=JUDGE_CONCURRENCY))
    assert judge is not None
    try:
        await run_diff(url, progress=False)  # scores and tiers: not what is timed here
        started = time.perf_counter()
        summary = await run_diff(url, progress=False, judge=judge, judge_max_usd=1_000,
                                 judge_concurrency=JUDGE_CONCURRENCY)
        seconds = time.perf_counter() - started
    finally:
        await judge.close()
        await runner.cleanup()
    judged = sum(v for k, v in summary.verdicts.items() if k != "unjudged")
    return {"judged": judged, "calls": summary.judge_calls, "seconds": seconds}


def _child(mode: str, url: str) -> None:
    started = time.perf_counter()
    if mode == "baseline":
        scored = asyncio.run(_baseline_diff(url))
        result: dict[str, Any] = {"scored": scored}
    elif mode == "verdicts":
        from shadowproxy.decision.diff import run_diff

        summary = asyncio.run(run_diff(url, progress=False))
        result = {"scored": summary.scored, "verdicts": summary.verdicts}
    else:
        result = asyncio.run(_judged_run(url))
    result.setdefault("seconds", time.perf_counter() - started)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run_child(mode: str, url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url],
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if len(ordered) % 2 else (
        ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2


def bench(url: str, pairs: int, judged: int, rounds: int) -> None:
    asyncio.run(migrate.upgrade(url))
    asyncio.run(_sql(url, "TRUNCATE pairs CASCADE"))
    asyncio.run(_load(url, pairs))
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "verdicts": []}
    for round_no in range(rounds):
        order = ["baseline", "verdicts"] if round_no % 2 == 0 else ["verdicts", "baseline"]
        for mode in order:
            asyncio.run(_sql(url, "TRUNCATE scores"))
            asyncio.run(_sql(url, "ANALYZE pairs"))
            results[mode].append(_run_child(mode, url))
    print(f"diff without a judge on {pairs:,} stored pairs "
          f"(median of {rounds} round(s), load average {os.getloadavg()[0]:.2f}):")
    for mode, label in (("baseline", "scoring only (before verdicts)"),
                        ("verdicts", "scores + verdict tiers (now)")):
        runs = results[mode]
        seconds = _median([r["seconds"] for r in runs])
        rss = _median([r["peak_rss_mb"] for r in runs])
        print(f"  {label:32s} {seconds:7.1f} s  {pairs / seconds:9,.0f} pairs/s  "
              f"peak RSS {rss:6.0f} MB  (scored {runs[0]['scored']:,})")
    print(f"  verdicts: {results['verdicts'][0].get('verdicts')}")
    asyncio.run(_sql(url, "TRUNCATE pairs CASCADE"))
    asyncio.run(_load(url, judged, free_form_only=True))
    run = _run_child("judged", url)
    per_minute = run["judged"] / run["seconds"] * 60
    ceiling = JUDGE_CONCURRENCY / (2 * JUDGE_LATENCY_S) * 60
    print(f"judged throughput, judge answering in {JUDGE_LATENCY_S * 1000:.0f} ms, "
          f"JUDGE_CONCURRENCY={JUDGE_CONCURRENCY}:")
    print(f"  {run['judged']} pairs, {run['calls']} calls in {run['seconds']:.1f} s: "
          f"{per_minute:,.0f} pairs/min (ceiling {ceiling:,.0f} pairs/min, "
          f"{per_minute / ceiling:.0%} of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--judged", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--url", default=os.environ.get("SHADOWPROXY_TEST_DATABASE_URL"))
    parser.add_argument("--child", choices=["baseline", "verdicts", "judged"])
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.url)
        return
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        embedded = None
        url = args.url
        if url is None:
            embedded = EmbeddedPostgres()
            url = embedded.start(Path(tmp))
        try:
            bench(url, args.pairs, args.judged, args.rounds)
        finally:
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    main()

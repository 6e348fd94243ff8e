"""The report with people's labels, at scale, beside the report without them, same run.

    .venv/bin/python bench/bench_report_human.py [--pairs 1000000] [--labels 400] [--rounds 3]

``--pairs`` pairs (four tags and untagged traffic; 60% decided by the judge, 40% exact
matches; 2% with a failed shadow) go in by COPY, with their ``scores`` rows, then
simulated reviewers label about ``--labels`` pairs in the review queue's order (a tenth
of them twice). Each round, in alternating order, times:

1. the whole report **without the human section** (the report as it was before people's
   labels: its three frame counts left out of the one pass over the pairs, no review
   queries) and **with it**: the ratio of the two is the figure (goal: at most +10%,
   median of the rounds' ratios);
2. the three review queries alone (they start from ``reviews`` and reach pairs by
   primary key): the whole of what the section adds, since the frame counts the
   calibration needs come from the report's rollups.

The first report builds the rollups (untimed); the rounds time reports as a user runs
them afterwards.

Without ``--url`` (or ``SHADOWPROXY_TEST_DATABASE_URL``) it starts an embedded PostgreSQL
in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from shadowproxy.decision import report, report_human
from shadowproxy.records import ShadowOutcome, Side
from shadowproxy.simulator.reviewers import QueuedPair, label_in_queue_order
from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.sink import PairSink
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.database import make_pair

TAGS = ("support", "billing", "refunds", "summaries", None)
START = datetime(2026, 11, 2, tzinfo=UTC)
BATCH = 20_000
_SCORE_COLUMNS = ("pair_id", "exact_match", "text_similarity", "tool_call_match",
                  "stop_reason_match", "refusal", "agree", "verdict", "verdict_method",
                  "judge_model", "judge_reason", "judge_cost_usd", "judge_calls",
                  "position_inconsistent", "judged_at", "received_at")


def _pair(i: int) -> tuple[Any, tuple[Any, ...]]:
    """Pair ``i`` and its scores row."""
    tag = TAGS[i % len(TAGS)]
    question = f"Where is my order {i}?"
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": question}]}
    answer = f"Answer to: {question}"
    judged = (i // len(TAGS)) % 5 >= 2  # in every tag
    worse = judged and i % 9 == 0
    shadow_text = (f"Here is the answer to: {question}" if judged else answer)
    primary = Side(model="gpt-4o", status=200, latency_ms=800.0 + i % 400, ttft_ms=200.0,
                   cost_usd=0.002, text=answer, stop_reason="end_turn")
    shadow = Side(model="claude-haiku-4-5", status=200, latency_ms=500.0 + i % 300,
                  ttft_ms=150.0, cost_usd=0.0008, text=shadow_text, stop_reason="end_turn")
    outcome = ShadowOutcome.OK.value
    if i % 50 == 49:
        shadow, outcome = Side(error="timeout"), ShadowOutcome.TIMEOUT.value
    pair_id = uuid.UUID(int=i + 1)
    record = make_pair(id=pair_id, tag=tag, received_at=START + timedelta(seconds=i),
                       request=request, primary=primary, shadow=shadow,
                       shadow_outcome=outcome)
    verdict = "worse" if worse else "equivalent"
    score = (pair_id, not judged, 1.0 if not judged else 0.7, True, True, False, not worse,
             verdict, "judge" if judged else "exact", "sonnet" if judged else None,
             "The shadow misses the date." if worse else "Same answer.",
             0.004 if judged else None, 2 if judged else None, False, START,
             record.received_at)
    return record, score


def _batches(count: int) -> Iterator[range]:
    for start in range(0, count, BATCH):
        yield range(start, min(count, start + BATCH))


async def _load(url: str, count: int) -> None:
    sink = PairSink(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for batch in _batches(count):
            made = [_pair(i) for i in batch]
            await sink.write([record for record, _ in made])
            await conn.copy_records_to_table("scores", records=[s for _, s in made],
                                              columns=_SCORE_COLUMNS)
        await conn.execute("ANALYZE")
    finally:
        await sink.close()
        await conn.close()


@contextlib.contextmanager
def _without_human_section() -> Iterator[None]:
    """The report as before the human section: no review queries, nothing attached (the
    frame counts the calibration needs come from the report's rollups either way)."""
    fetch, attach = report_human.fetch_human, report_human.attach_human

    async def no_reviews(*_: Any) -> dict[str, list[dict[str, Any]]]:
        return {}

    report_human.fetch_human = no_reviews  # type: ignore[assignment]
    report_human.attach_human = lambda built, *_: built  # type: ignore[assignment]
    try:
        yield
    finally:
        report_human.fetch_human, report_human.attach_human = fetch, attach


async def _timed(url: str, baseline: bool) -> float:
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=1)
    try:
        started = time.perf_counter()
        if baseline:
            with _without_human_section():
                built = await report.build_report(pool)
            assert built.overall.human is None
        else:
            built = await report.build_report(pool)
            assert built.overall.human is not None and built.overall.human.labels
        return time.perf_counter() - started
    finally:
        await pool.close()


async def _review_queries(conn: Any) -> float:
    fetch = report._named_fetch(conn, None, None)
    started = time.perf_counter()
    rows = await report_human.fetch_human(fetch, report._comparisons_filter(None, None),
                                          report._both_ok("c"))
    assert rows["cells"]
    return time.perf_counter() - started


def _person(pair: QueuedPair, reviewer: str) -> tuple[str | None, str | None]:
    return ("worse", "wrong date") if int(pair.id) % 7 == 0 else ("equivalent", None)


def _line(name: str, values: list[float], unit: str = "s") -> str:
    scale = 1000 if unit == "ms" else 1
    shown = ", ".join(f"{v * scale:.1f}" for v in values)
    return f"  {name:44s} {statistics.median(values) * scale:8.1f} {unit}  (runs {shown})"


async def _bench(url: str, pairs: int, labels: int, rounds: int) -> None:
    await migrate.upgrade(url)
    started = time.perf_counter()
    await _load(url, pairs)
    print(f"loaded {pairs:,} pairs by COPY in {time.perf_counter() - started:.0f} s")
    per_tag = labels // len(TAGS)
    written = await label_in_queue_order(url, per_tag, _person, overlap=0.1, start=START)
    print(f"{written} labels on {per_tag} pairs per tag (a tenth labelled twice)")
    load_before = os.getloadavg()
    await _timed(url, baseline=False)  # builds the rollups and warms the cache, untimed
    whole: dict[bool, list[float]] = {True: [], False: []}
    queries: list[float] = []
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for round_ in range(rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for baseline in order:
                whole[baseline].append(await _timed(url, baseline=baseline))
            queries.extend([await _review_queries(conn) for _ in range(3)])
    finally:
        await conn.close()
    ratios = [h / b - 1 for h, b in zip(whole[False], whole[True], strict=True)]
    load_after = os.getloadavg()
    print(f"report on {pairs:,} pairs, {rounds} rounds (load average {load_before[0]:.2f} "
          f"before, {load_after[0]:.2f} after; {os.cpu_count()} cores):")
    print(_line("whole report without the human section", whole[True]))
    print(_line("whole report with it", whole[False]))
    print(f"  {'added, median of the rounds':44s} {statistics.median(ratios):+8.1%}     "
          f"(rounds {', '.join(f'{r:+.1%}' for r in ratios)}; goal at most +10%)")
    print(_line("the three review queries", queries, "ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("SHADOWPROXY_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if args.url:
        asyncio.run(_bench(args.url, args.pairs, args.labels, args.rounds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedPostgres()
        url = embedded.start(Path(tmp))
        try:
            asyncio.run(_bench(url, args.pairs, args.labels, args.rounds))
        finally:
            embedded.stop()


if __name__ == "__main__":
    main()

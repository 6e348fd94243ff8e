"""The review queue at scale: ``GET /api/review/next`` with 1M pairs stored, beside
``GET /healthz`` on the same admin listener in the same run.

    .venv/bin/python bench/bench_review.py [--pairs 1000000] [--labelled 2000] [--requests 300]

The pairs are written with COPY: four strata (support 40%, billing 30%, refunds 20%,
untagged 10%), half of them decided by the judge (the frame), the rest ``exact`` or
``structural``; ``--labelled`` pairs of ``support`` already carry a label by other
reviewers, so the queue walks past them as it does in a review under way. Then one
reviewer asks for ``support``'s next item ``--requests`` times, labelling each (the label
is not timed), once with a bearer token and once as a signed-in browser (the session
cookie the page uses). Each figure is the latency a client sees over HTTP on loopback.
The goal: p95 of ``next`` at most 50 ms.

Without ``--url`` (or ``SHADOWPROXY_TEST_DATABASE_URL``) it starts an embedded
PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg
from aiohttp import web

from shadowproxy.decision.review_frame import RANK
from shadowproxy.proxy.admin import make_admin_app
from shadowproxy.store import migrate
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.review_queue import QueueRules
from shadowproxy.store.reviewers import add_reviewer
from shadowproxy.store.urls import asyncpg_dsn

TAGS = [("support", 40), ("billing", 30), ("refunds", 20), (None, 10)]
METHODS = [("judge", 50), ("exact", 30), ("structural", 20)]
START = datetime(2026, 5, 1, tzinfo=UTC)
BATCH = 50_000


def _pick(table: list[tuple[Any, int]], i: int) -> Any:
    slot = i % 100
    for value, share in table:
        if slot < share:
            return value
        slot -= share
    raise AssertionError


def _rows(first: int, count: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    pairs, scores = [], []
    for i in range(first, first + count):
        pair_id = uuid.UUID(bytes=hashlib.md5(f"bench-{i}".encode()).digest())
        tag = _pick(TAGS, i * 7)
        method = _pick(METHODS, i * 13)
        request = json.dumps({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a support agent for Acme."},
            {"role": "user", "content": f"Where is my order {i}? It was due last week."}]})
        pairs.append((pair_id, START + timedelta(seconds=i), "openai.chat",
                      "/v1/chat/completions", tag, False, request, f"{i:064x}", "ok", False,
                      f"Your order {i} ships Friday.", f"Order {i} arrives on Friday.",
                      "[]", "[]"))
        verdict = "worse" if i % 17 == 0 else ("better" if i % 23 == 0 else "equivalent")
        scores.append((pair_id, method == "exact", 0.5, True, True, False, verdict == "equivalent",
                       verdict, method, START + timedelta(seconds=i)))
    return pairs, scores


async def load(url: str, total: int, labelled: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        have = await conn.fetchval("SELECT count(*) FROM pairs")
        if have >= total:
            print(f"  {have:,} pairs already stored")
            return
        began = time.perf_counter()
        for first in range(have, total, BATCH):
            pairs, scores = _rows(first, min(BATCH, total - first))
            await conn.copy_records_to_table(
                "pairs", records=pairs, columns=[
                    "id", "received_at", "api", "path", "tag", "stream", "request",
                    "request_sha256", "shadow_outcome", "client_disconnected", "primary_text",
                    "shadow_text", "primary_tool_calls", "shadow_tool_calls"])
            await conn.copy_records_to_table(
                "scores", records=scores, columns=[
                    "pair_id", "exact_match", "text_similarity", "tool_call_match",
                    "stop_reason_match", "refusal", "agree", "verdict", "verdict_method",
                    "judged_at"])
        # Other reviewers' labels on support's lowest ranks: the queue walks past them.
        await conn.execute(
            "INSERT INTO review_items (id, pair_id, reviewer, shadow_first, offered_at, "
            "answered_at, tag, rank, overlap, labelled) SELECT md5(p.id::text), p.id, "
            "'earlier-' || (n % 3), n % 2 = 0, now(), now(), 'support', rank, false, true "
            f"FROM (SELECT p.id, {RANK} AS rank, row_number() OVER (ORDER BY {RANK}) AS n "
            "FROM pairs p JOIN scores s ON s.pair_id = p.id AND s.verdict_method = 'judge' "
            f"WHERE p.tag = 'support' ORDER BY {RANK} LIMIT $1) AS p", labelled)
        await conn.execute(
            "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, created_at) "
            "SELECT pair_id, reviewer, 'tie', 'equivalent', shadow_first, now() - interval "
            "'1 day' FROM review_items")
        # Autovacuum has run on a table this size in steady state: the visibility map is
        # set, so the queue's walk is index-only.
        await conn.execute("VACUUM ANALYZE")
        print(f"  stored {total:,} pairs and {labelled:,} labels in "
              f"{time.perf_counter() - began:.0f} s")
    finally:
        await conn.close()


def _summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return f"p50 {q[49]:6.1f} ms  p95 {q[94]:6.1f} ms  p99 {q[98]:6.1f} ms  (n={len(ordered)})"


async def measure(url: str, requests: int) -> dict[str, list[float]]:
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    app = make_admin_app(ready=ready, metrics=lambda: (b"", "text/plain"),
                         token="bench-admin-token", database_url=url,
                         # No label-rate limit here: an open item would be answered from
                         # the fast path and flatter the figure.
                         review=QueueRules(labels_per_minute=1_000_000))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("DELETE FROM reviewers WHERE name LIKE 'bench-%'")
        tokens = [await add_reviewer(conn, f"bench-{i}-{uuid.uuid4().hex[:6]}") for i in (1, 2)]
    finally:
        await conn.close()
    out: dict[str, list[float]] = {"healthz": [], "next (bearer)": [], "next (browser)": []}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(f"{base}/login", data={"token": tokens[1], "next": "/review"},
                             allow_redirects=False) as resp:
            cookie = resp.cookies["shadowproxy_session"].value
        async with http.get(f"{base}/review", headers={
                "Cookie": f"shadowproxy_session={cookie}"}) as resp:
            page = await resp.text()
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        browser = {"Cookie": f"shadowproxy_session={cookie}", "X-CSRF-Token": csrf}
        who = {"next (bearer)": {"Authorization": f"Bearer {tokens[0]}"},
               "next (browser)": browser}
        for _ in range(10):  # warm up connections and plans
            async with http.get(f"{base}/healthz") as resp:
                await resp.read()
        for i in range(requests):
            began = time.perf_counter()
            async with http.get(f"{base}/healthz") as resp:
                await resp.read()
            out["healthz"].append((time.perf_counter() - began) * 1000)
            name = "next (bearer)" if i % 2 == 0 else "next (browser)"
            began = time.perf_counter()
            async with http.get(f"{base}/api/review/next?tag=support", headers=who[name]) as resp:
                body = await resp.json()
            out[name].append((time.perf_counter() - began) * 1000)
            async with http.post(f"{base}/api/review/{body['item']}", json={"choice": "tie"},
                                 headers=who[name]) as resp:
                assert resp.status == 201, resp.status
    await runner.cleanup()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--labelled", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--url", default=os.environ.get("SHADOWPROXY_TEST_DATABASE_URL"))
    args = parser.parse_args()
    embedded = None
    url = args.url
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        if url is None:
            embedded = EmbeddedPostgres()
            url = embedded.start(Path(tmp))
        try:
            await migrate.upgrade(url)
            print(f"loading {args.pairs:,} pairs with COPY …")
            await load(url, args.pairs, args.labelled)
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            figures = await measure(url, args.requests)
            for name, samples in figures.items():
                print(f"  {name:<16} {_summary(samples)}")
        finally:
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())

"""Realistic stored pairs for the scale benches, written with binary COPY.

A few thousand pair templates (about 900-character answers, a request of a system
prompt and a question, tool calls, JSON answers, failures, conversations of an agent
tag) are cycled with fresh ids and times, so millions of rows cost one COPY stream and
no per-row Python beyond building a tuple. :func:`load_scores` writes ``scores`` rows
as ``diff`` with a judge sampling each tag would leave them, for the report bench.

The mix (of all pairs): 55% free-form answers that differ (a third of them with a
typographic apostrophe, so not ASCII), 10% identical answers, 5% the same short answer
in other case and punctuation, 18% tool calls (a fifth with other arguments), 5% JSON
answers, 7% failures (shadow timeout, shadow error, primary error, dropped, skipped).
Tags: support 35%, billing 20%, search 15%, agent 15% (conversations of 1-6 turns),
classify 5%, untagged 10%.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.decision.diff_sql import SCORE_COLUMNS
from shadowproxy.decision.sampling import judge_rank
from shadowproxy.store.columns import PAIR_COLUMNS

__all__ = ["Corpus", "load_pairs", "load_scores", "secondary_indexes"]

_PHRASE = (
    "the order will arrive on friday please check your tracking link for details and "
    "contact support if anything looks wrong we apologise for the delay caused by the "
    "carrier your refund has been processed to the original payment method it usually "
    "takes three to five business days to appear on your statement you can change the "
    "delivery address from the account page before the parcel ships our team reviewed "
    "the request and approved an exception this time the invoice lists every item with "
    "its price tax and shipping cost if you need a copy we can send it by email again "
    "the subscription renews automatically unless you cancel at least one day before"
)
_WORDS = tuple(_PHRASE.split())
_TAGS = (("support", 35), ("billing", 20), ("search", 15), ("agent", 15), ("classify", 5),
         (None, 10))
_SYSTEM = ("You are a helpful assistant for an online shop. Answer politely, cite the "
           "order number, never promise what policy does not allow, and keep answers "
           "short unless the customer asks for detail. ") * 2


def _text(rng: random.Random, chars: int, curly: bool = False) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word += rng.choice([",", ".", ";", ":"])
        if curly and rng.random() < 0.02:
            word = "we\u2019ll"
        words.append(word)
        size += len(word) + 1
    text = " ".join(words)[:chars - 1]
    return text[0].upper() + text[1:] + "."


@dataclass(frozen=True, slots=True)
class _Template:
    kind: str
    request: str
    primary: tuple[Any, ...]  # text, tool_calls json, stop_reason, status, error
    shadow: tuple[Any, ...]
    outcome: str


class Corpus:
    """Pair templates and the rows built from them (PAIR_COLUMNS order)."""

    def __init__(self, seed: int = 19, templates: int = 4000) -> None:
        rng = random.Random(seed)
        self.rng = rng
        self.templates = [self._template(rng) for _ in range(templates)]
        self.tags = [tag for tag, weight in _TAGS for _ in range(weight)]

    @staticmethod
    def _template(rng: random.Random) -> _Template:
        question = _text(rng, rng.randint(120, 400))
        request = json.dumps({"model": "gpt-4o", "messages": [
            {"role": "system", "content": _SYSTEM}, {"role": "user", "content": question}]})
        roll = rng.random()
        ok = (None, None)
        call = {"name": "lookup_order", "arguments": {"order_id": str(rng.randint(1000, 9999))}}
        if roll < 0.55:
            curly = rng.random() < 0.33
            primary = (_text(rng, rng.randint(700, 1100), curly), "[]", "end_turn", 200, None)
            shadow = (_text(rng, rng.randint(700, 1100), curly), "[]", "end_turn", 200, None)
            kind = "free"
        elif roll < 0.65:
            answer = _text(rng, rng.randint(700, 1100))
            primary = shadow = (answer, "[]", "end_turn", 200, None)
            kind = "identical"
        elif roll < 0.70:
            answer = _text(rng, rng.randint(20, 120))
            primary = (answer, "[]", "end_turn", 200, None)
            shadow = (answer.upper().replace(",", ""), "[]", "stop_sequence", 200, None)
            kind = "case"
        elif roll < 0.88:
            other = dict(call, arguments={"order_id": "0000"}) if rng.random() < 0.2 else call
            primary = ("", json.dumps([call]), "tool_use", 200, None)
            shadow = ("Let me look that up for you.", json.dumps([other]), "tool_use", 200,
                      None)
            kind = "tools"
        elif roll < 0.93:
            document = {"order": call["arguments"]["order_id"], "items": [
                {"sku": f"A{i}", "price": rng.randint(1, 99)} for i in range(rng.randint(2, 8))]}
            changed = json.loads(json.dumps(document))
            if rng.random() < 0.3:
                changed["items"][0]["price"] += 1
            primary = (json.dumps(document), "[]", "end_turn", 200, None)
            shadow = (json.dumps(changed, indent=1), "[]", "end_turn", 200, None)
            kind = "json"
        else:
            answer = (_text(rng, 800), "[]", "end_turn", 200, None)
            failure = rng.choice(["timeout", "error", "primary", "dropped", "skipped"])
            failed = (None, None, None, None, "timeout")
            if failure == "timeout":
                return _Template("failed", request, answer, failed, "timeout")
            if failure == "error":
                return _Template("failed", request, answer,
                                 (None, None, None, 529, "overloaded_error: busy"), "error")
            if failure == "primary":
                return _Template("failed", request,
                                 (None, None, None, 500, "api_error: boom"), answer, "ok")
            return _Template("failed", request, answer, (None,) * 3 + ok, failure)
        return _Template(kind, request, primary, shadow, "ok")

    def rows(self, count: int, start: datetime, span: timedelta, first: int = 0
             ) -> Iterator[tuple[Any, ...]]:
        """``count`` pairs received evenly over ``span`` from ``start``."""
        rng = self.rng
        step = span / max(1, count)
        conversation: tuple[str, int] | None = None
        for i in range(first, first + count):
            t = self.templates[rng.randrange(len(self.templates))]
            tag = self.tags[rng.randrange(len(self.tags))]
            if tag == "agent":
                if conversation is None or rng.random() < 0.25:
                    conversation = (f"h:{uuid.uuid4().hex}", 1)
                else:
                    conversation = (conversation[0], conversation[1] + 1)
                conv_id, turn = conversation
            else:
                conv_id, turn = f"h:{uuid.uuid4().hex}", 1
            p_latency = rng.lognormvariate(7.1, 0.35)
            s_latency = rng.lognormvariate(6.7, 0.35)
            received = start + step * (i - first)
            yield (
                uuid.uuid4(), received, "openai.chat", "/v1/chat/completions", tag, False,
                t.request, hashlib.sha256(t.request.encode()).hexdigest(), t.outcome, None,
                False, conv_id, turn,
                # primary
                "gpt-4o", t.primary[3], p_latency, p_latency / 4, 900, 220, None, None,
                0.003, t.primary[0], t.primary[1], t.primary[2], t.primary[4],
                f"chatcmpl-{i}",
                # shadow
                "claude-haiku-4-5", t.shadow[3],
                None if t.outcome != "ok" else s_latency,
                None if t.outcome != "ok" else s_latency / 4, 950, 240, 0, 0,
                0.001 if t.outcome == "ok" else None, t.shadow[0], t.shadow[1], t.shadow[2],
                t.shadow[4], f"req_{i}",
                # replay
                *([None] * 14),
            )


async def _async_rows(rows: Iterator[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    for index, row in enumerate(rows):
        if index % 20_000 == 0:
            import asyncio

            await asyncio.sleep(0)
        yield row


async def secondary_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of every index of ``table`` but its primary key."""
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = $1 "
        "AND i.indexname NOT LIKE 'pk_%'", table)
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def load_pairs(dsn: str, count: int, start: datetime, span: timedelta, *,
                     seed: int = 19, chunk: int = 500_000, drop_indexes: bool = False,
                     progress: Any = None) -> None:
    """COPY ``count`` pairs; with ``drop_indexes`` the secondary indexes are dropped
    first and built again at the end (much faster for millions of rows)."""
    corpus = Corpus(seed)
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await secondary_indexes(conn, "pairs") if drop_indexes else []
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        done = 0
        while done < count:
            size = min(chunk, count - done)
            await conn.copy_records_to_table(
                "pairs", records=_async_rows(corpus.rows(size, start + span * done / count,
                                                         span * size / count, first=done)),
                columns=PAIR_COLUMNS)
            done += size
            if progress is not None:
                progress(done)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            await conn.execute(definition)
        await conn.execute("ANALYZE pairs")
    finally:
        await conn.close()


_SCORE_ROWS = """
SELECT p.id, p.tag, p.shadow_outcome,
  (p.primary_error IS NULL AND coalesce(p.primary_status, 0) < 400) AS primary_ok,
  (p.shadow_error IS NULL AND coalesce(p.shadow_status, 0) < 400) AS shadow_ok,
  p.primary_text = p.shadow_text AS same_text,
  coalesce(p.primary_tool_calls, '[]') <> '[]' AS tools,
  coalesce(p.primary_tool_calls, '[]') = coalesce(p.shadow_tool_calls, '[]') AS same_calls,
  left(p.primary_text, 1) = '{' AS json, char_length(p.primary_text) < 130 AS short
FROM pairs p WHERE p.id >= $1 ORDER BY p.id LIMIT $2
"""


def _score(row: Any, rng: random.Random, sample: float, now: datetime) -> tuple[Any, ...]:
    """A scores row as ``diff`` would leave it, by the pair's kind (a synthetic judge
    that finds 8% worse and 10% better among the pairs it samples)."""
    base: list[Any] = [row["id"], False, 0.4, True, True, None, False, 1.0, False, None,
                       None, None]
    ok = row["primary_ok"] and row["shadow_ok"] and row["shadow_outcome"] == "ok"
    if not ok:
        verdict = (None, None, "not judged: the shadow failed (counted in shadow_error_rate)",
                   None, None, None, now)
    elif row["same_text"] or row["short"] or (row["tools"] and row["same_calls"]):
        method = "structural" if row["tools"] and not row["same_text"] else "exact"
        base[1:3] = [method == "exact", 1.0 if method == "exact" else 0.0]
        base[8] = True
        verdict = ("equivalent", method, None, 0.0, 0, None, now)
    elif row["json"] and rng.random() < 0.7:
        base[5] = True
        base[8] = True
        verdict = ("equivalent", "structural", None, 0.0, 0, None, now)
    elif judge_rank(row["id"]) < sample:
        roll = rng.random()
        judged = "worse" if roll < 0.08 else "better" if roll < 0.18 else "equivalent"
        paths = json.dumps(["$.tool_calls[0].arguments.order_id"]) if row["tools"] else None
        verdict = (judged, "judge", "The shadow's answer is as complete.", 0.004, 2, paths,
                   now)
    else:
        verdict = ("unjudged", None, "not in the judge's sample (SHADOWPROXY_JUDGE_SAMPLE)",
                   None, None, None, None)
    v, method, reason, cost, calls, paths, judged_at = verdict
    return (*base, v, method, reason, cost, calls, paths, judged_at, None, None, None, None,
            None, row["tag"])


async def load_scores(dsn: str, *, sample: float = 0.01, seed: int = 23,
                      batch: int = 100_000, unscored_share: float = 0.01,
                      progress: Any = None) -> None:
    """Score every pair as ``diff`` with a sampling judge would (``sample``: the share of
    each tag's frame judged); the newest ``unscored_share`` of pairs is left unscored."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    try:
        now = await conn.fetchval("SELECT now()")
        await conn.execute("CREATE TEMP TABLE bench_scores (LIKE scores INCLUDING DEFAULTS);"
                           "ALTER TABLE bench_scores ALTER COLUMN json_diff_paths TYPE text")
        after = uuid.UUID(int=0)
        done = 0
        while True:
            rows = await conn.fetch(_SCORE_ROWS, after, batch)
            if not rows:
                break
            records = [_score(r, rng, sample, now) for r in rows
                       if rng.random() >= unscored_share]
            await conn.copy_records_to_table("bench_scores", records=records,
                                             columns=SCORE_COLUMNS)
            await conn.execute(
                f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) SELECT "
                + ", ".join("json_diff_paths::jsonb" if c == "json_diff_paths" else c
                            for c in SCORE_COLUMNS) + " FROM bench_scores; TRUNCATE bench_scores")
            after = uuid.UUID(int=rows[-1]["id"].int + 1)
            done += len(rows)
            if progress is not None:
                progress(done)
        await conn.execute("ANALYZE scores")
    finally:
        await conn.close()

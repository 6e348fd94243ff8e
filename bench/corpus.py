"""Realistic stored pairs for the scale benches, written with binary COPY.

A few thousand pair templates (about 900-character answers, a request of a system
prompt and a question, tool calls, JSON answers, failures, conversations of an agent
tag) are cycled with fresh ids and times; :func:`load_pairs` COPYs them from Python.

The mix (of all pairs): 55% free-form answers that differ (a third of them with a
typographic apostrophe, so not ASCII), 10% identical answers, 5% the same short answer
in other case and punctuation, 18% tool calls (a fifth with other arguments), 5% JSON
answers (30% with a changed value), 7% failures (shadow timeout, shadow error, primary
error, dropped, skipped). Tags: support 35%, billing 20%, search 15%, agent 15%
(conversations of several turns), classify 5%, untagged 10%.

Millions of rows: the templates are COPYed once into a temporary table and
:func:`expand` has PostgreSQL copy them into ``pairs`` with fresh ids, times, tags and
conversations (no Python per row, and the texts are not compressed again);
:func:`synthetic_scores` writes ``scores`` as ``diff`` with a sampling judge would.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.store.columns import PAIR_COLUMNS
from shadowproxy.store.partitions import ensure_days

__all__ = ["Corpus", "create_templates", "expand", "load_pairs", "secondary_indexes",
           "synthetic_scores"]

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
            same = rng.random() >= 0.2
            other = call if same else dict(call, arguments={"order_id": "0000"})
            primary = ("", json.dumps([call]), "tool_use", 200, None)
            shadow = ("Let me look that up for you.", json.dumps([other]), "tool_use", 200,
                      None)
            kind = "tools_same" if same else "tools_other"
        elif roll < 0.93:
            document = {"order": call["arguments"]["order_id"], "items": [
                {"sku": f"A{i}", "price": rng.randint(1, 99)} for i in range(rng.randint(2, 8))]}
            changed = json.loads(json.dumps(document))
            same = rng.random() >= 0.3
            if not same:
                changed["items"][0]["price"] += 1
            primary = (json.dumps(document), "[]", "end_turn", 200, None)
            shadow = (json.dumps(changed, indent=1), "[]", "end_turn", 200, None)
            kind = "json_same" if same else "json_changed"
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
            yield self.row(t, i, start + step * (i - first), tag, conv_id, turn)

    def row(self, t: _Template, i: int, received: datetime, tag: str | None,
            conversation: str | None, turn: int | None) -> tuple[Any, ...]:
        """One ``pairs`` row (PAIR_COLUMNS order) from template ``t``."""
        rng = self.rng
        p_latency = rng.lognormvariate(7.1, 0.35)
        s_latency = rng.lognormvariate(6.7, 0.35)
        ok = t.outcome == "ok"
        return (
            uuid.uuid4(), received, "openai.chat", "/v1/chat/completions", tag, False,
            t.request, hashlib.sha256(t.request.encode()).hexdigest(), t.outcome, None,
            False, conversation, turn, "primary",
            # primary
            "gpt-4o", t.primary[3], p_latency, p_latency / 4, 900, 220, None, None,
            0.003, t.primary[0], t.primary[1], t.primary[2], t.primary[4],
            f"chatcmpl-{i}",
            # shadow
            "claude-haiku-4-5", t.shadow[3], s_latency if ok else None,
            s_latency / 4 if ok else None, 950, 240, 0, 0, 0.001 if ok else None,
            t.shadow[0], t.shadow[1], t.shadow[2], t.shadow[4], f"req_{i}",
            # replay
            *([None] * 14),
        )


async def _async_rows(rows: Iterator[tuple[Any, ...]]) -> AsyncIterator[tuple[Any, ...]]:
    for index, row in enumerate(rows):
        if index % 20_000 == 0:
            import asyncio

            await asyncio.sleep(0)
        yield row


async def days_for(conn: asyncpg.Connection, start: datetime, span: timedelta) -> None:
    """The day partitions of pairs received from ``start`` over ``span``."""
    first, last = start.date(), (start + span).date()
    await ensure_days(conn, [first + timedelta(days=d) for d in range((last - first).days + 1)])


async def secondary_indexes(conn: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of every index of ``table`` but its primary key. A partitioned
    table's definitions say ``ON ONLY``: run as they are, they would build the parent's
    index alone, and every day's partition would be left without it."""
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = $1 "
        "AND i.indexname NOT LIKE 'pk_%'", table)
    return [(r["indexname"], r["indexdef"].replace(" ON ONLY ", " ON ", 1)) for r in rows]


async def load_pairs(dsn: str, count: int, start: datetime, span: timedelta, *,
                     seed: int = 19, chunk: int = 500_000, drop_indexes: bool = False,
                     progress: Any = None) -> None:
    """COPY ``count`` pairs; with ``drop_indexes`` the secondary indexes are dropped
    first and built again at the end (much faster for millions of rows)."""
    corpus = Corpus(seed)
    conn = await asyncpg.connect(dsn)
    try:
        await days_for(conn, start, span)
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


# --- millions of rows: templates COPYed once, expanded by PostgreSQL --------------------

_TEMPLATES = "bench_templates"


async def create_templates(conn: asyncpg.Connection, corpus: Corpus) -> int:
    """COPY the corpus's templates into a temporary table of ``pairs``' shape (plus the
    template number ``n`` and its ``kind``); the rows of :func:`expand` copy them."""
    await conn.execute(f"CREATE TEMP TABLE {_TEMPLATES} (LIKE pairs INCLUDING DEFAULTS); "
                       f"ALTER TABLE {_TEMPLATES} ADD COLUMN n int, ADD COLUMN kind text")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    shadow_request_id = PAIR_COLUMNS.index("shadow_request_id")
    records = []
    for n, template in enumerate(corpus.templates):
        row = list(corpus.row(template, n, start, None, None, None))
        row[shadow_request_id] = f"tmpl-{n}"  # how synthetic_scores finds the template
        records.append((*row, n, template.kind))
    await conn.copy_records_to_table(_TEMPLATES, records=records,
                                      columns=[*PAIR_COLUMNS, "n", "kind"])
    return len(records)


def _expand_sql(templates: int) -> str:
    columns = [c for c in PAIR_COLUMNS if c not in ("id", "received_at", "tag",
                                                     "conversation_id", "turn")]
    varied = {"primary_latency_ms": "t.primary_latency_ms * (0.6 + (h % 800) / 1000.0)",
              "shadow_latency_ms": "t.shadow_latency_ms * (0.6 + (h % 700) / 1000.0)",
              "primary_ttft_ms": "t.primary_ttft_ms * (0.5 + (h % 900) / 1000.0)",
              "shadow_ttft_ms": "t.shadow_ttft_ms * (0.5 + (h % 600) / 1000.0)"}
    tag = ("CASE WHEN h % 100 < 35 THEN 'support' WHEN h % 100 < 55 THEN 'billing' "
           "WHEN h % 100 < 70 THEN 'search' WHEN h % 100 < 85 THEN 'agent' "
           "WHEN h % 100 < 90 THEN 'classify' END")
    return f"""
INSERT INTO pairs (id, received_at, stored_at, tag, conversation_id, turn,
                   {', '.join(columns)})
SELECT gen_random_uuid(), $1::timestamptz + g * $2::float8 * interval '1 microsecond',
  $1::timestamptz + g * $2::float8 * interval '1 microsecond' + interval '2 seconds',
  x.tag, CASE WHEN x.tag = 'agent' THEN 'h:a' || (g / 16) ELSE 'h:' || md5(g::text) END,
  CASE WHEN x.tag = 'agent' THEN (g % 16) / 4 + 1 ELSE 1 END,
  {', '.join(varied.get(c, f't.{c}') for c in columns)}
FROM generate_series($3::bigint, $4::bigint) AS g
CROSS JOIN LATERAL (SELECT hashint8(g) & 2147483647 AS h) AS hh
CROSS JOIN LATERAL (SELECT {tag} AS tag) AS x
JOIN {_TEMPLATES} t ON t.n = hh.h % {templates}
"""


async def expand(conn: asyncpg.Connection, templates: int, count: int, start: datetime,
                 span: timedelta, *, first: int = 0, chunk: int = 1_000_000,
                 progress: Any = None) -> None:
    """``count`` pairs received evenly over ``span`` from ``start``, numbered from
    ``first`` (so a second call adds different pairs)."""
    await days_for(conn, start, span)
    step_us = span / timedelta(microseconds=1) / max(1, count)
    sql = _expand_sql(templates)
    done = 0
    while done < count:
        size = min(chunk, count - done)
        await conn.execute(sql, start - first * timedelta(microseconds=step_us), step_us,
                           first + done, first + done + size - 1)
        done += size
        if progress is not None:
            progress(done)


_SYNTHETIC_SCORES = f"""
INSERT INTO scores (pair_id, exact_match, text_similarity, tool_call_match,
  stop_reason_match, json_match, refusal, length_ratio, agree, verdict, verdict_method,
  judge_model, judge_reason, judge_cost_usd, judge_calls, position_inconsistent,
  json_diff_paths, judged_at, tag, received_at)
SELECT p.id, coalesce(v.method = 'exact', FALSE),
  CASE WHEN v.method = 'exact' THEN 1.0 ELSE 0.4 END, t.kind <> 'tools_other', TRUE, NULL,
  FALSE, 1.0, coalesce(v.verdict = 'equivalent' AND v.method <> 'judge', FALSE),
  v.verdict, v.method, CASE WHEN v.method = 'judge' THEN 'gpt-4.1' END, v.reason,
  CASE WHEN v.method = 'judge' THEN 0.004 WHEN v.method IS NOT NULL THEN 0.0 END,
  CASE WHEN v.method = 'judge' THEN 2 WHEN v.method IS NOT NULL THEN 0 END,
  CASE WHEN v.method = 'judge' THEN (h % 20 = 0) END,
  CASE WHEN t.kind = 'tools_other' THEN '["$.tool_calls[0].arguments.order_id"]'::jsonb
       WHEN t.kind = 'json_changed' THEN '["$.items[0].price"]'::jsonb END,
  CASE WHEN v.verdict IS DISTINCT FROM 'unjudged' THEN now() END, p.tag, p.received_at
FROM pairs p JOIN {_TEMPLATES} t ON p.shadow_request_id = 'tmpl-' || t.n
CROSS JOIN LATERAL (SELECT hashtext(p.id::text) & 2147483647 AS h) AS hh
CROSS JOIN LATERAL (SELECT
  CASE WHEN t.kind = 'failed' THEN NULL
       WHEN t.kind IN ('identical', 'case', 'tools_same', 'json_same') THEN 'equivalent'
       WHEN ((('x' || substr(md5('shadowproxy-judge-sample:' || p.id::text), 1, 13)))
             ::bit(52)::bigint::float8 / 4503599627370496.0) < $3
       THEN CASE WHEN h % 100 < 8 THEN 'worse' WHEN h % 100 < 18 THEN 'better'
                 ELSE 'equivalent' END
       ELSE 'unjudged' END AS verdict,
  CASE WHEN t.kind IN ('identical', 'case') THEN 'exact'
       WHEN t.kind IN ('tools_same', 'json_same') THEN 'structural'
       WHEN t.kind = 'failed' THEN NULL
       WHEN ((('x' || substr(md5('shadowproxy-judge-sample:' || p.id::text), 1, 13)))
             ::bit(52)::bigint::float8 / 4503599627370496.0) < $3 THEN 'judge' END AS method,
  CASE WHEN t.kind = 'failed' THEN 'not judged: the shadow failed'
       WHEN t.kind IN ('identical', 'case', 'tools_same', 'json_same') THEN NULL
       WHEN ((('x' || substr(md5('shadowproxy-judge-sample:' || p.id::text), 1, 13)))
             ::bit(52)::bigint::float8 / 4503599627370496.0) < $3
       THEN 'The answers say the same thing.'
       ELSE 'not in the judge''s sample (SHADOWPROXY_JUDGE_SAMPLE)' END AS reason) AS v
WHERE p.received_at >= $1 AND p.received_at < $2 AND h % 200 <> 0
"""


async def synthetic_scores(conn: asyncpg.Connection, low: datetime, high: datetime, *,
                           sample: float = 0.02) -> None:
    """Scores rows for the pairs received in [low, high) as ``diff`` with a judge sampling
    ``sample`` of each tag's frame would leave them (0.5% of pairs left unscored)."""
    await conn.execute(_SYNTHETIC_SCORES, low, high, sample)

"""Simulated reviewers: people who label pairs in the review queue's order, blind.

The demo (and tests) need labels the way the review page would leave them. This
writes them with SQL, as the review API would store them: one ``review_items`` row per
pair offered to a reviewer (with which answer was shown first) and one ``reviews`` row
per label, from the shadow's side. It offers exactly what the queue offers: per tag
(untagged pairs are a tag of their own), the frame is the pairs the judge decided with
both sides answered, in ascending rank ``('x' || left(md5(id::text), 15))::bit(60)::bigint``,
so the first pairs of each tag are a uniform random sample of it. A share of items
(``overlap``, like ``REVIEW_OVERLAP``) goes to a second reviewer too.

:func:`simulated_person` labels from the simulated truth: it grades both answers against
the conversation as the simulator's own judge would without its biases.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.decision.judge_prompt import render_conversation
from shadowproxy.simulator.answers import DISAGREEMENT
from shadowproxy.simulator.variants import Grade, grade
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["QUEUE_RANK", "QueuedPair", "choice_for", "label_in_queue_order",
           "simulated_person"]

QUEUE_RANK = "('x' || left(md5(id::text), 15))::bit(60)::bigint"
_GOLDEN = 0.6180339887498949
_FRAME = (
    "verdict_method = 'judge' AND verdict IN ('worse', 'equivalent', 'better') "
    "AND shadow_outcome = 'ok' AND primary_error IS NULL AND coalesce(primary_status, 0) < 400 "
    "AND shadow_error IS NULL AND coalesce(shadow_status, 0) < 400"
)
_QUEUE = f"""SELECT id, tag, request, primary_text, shadow_text FROM (
    SELECT id, tag, request, primary_text, shadow_text,
           row_number() OVER (PARTITION BY tag ORDER BY {QUEUE_RANK}, id) AS place
    FROM comparisons WHERE {_FRAME}) AS queue
WHERE place <= $1 ORDER BY tag NULLS LAST, place"""


@dataclass(frozen=True, slots=True)
class QueuedPair:
    """What a reviewer sees of a pair (and its id, which they do not)."""

    id: uuid.UUID
    tag: str | None
    request: Any
    primary_text: str
    shadow_text: str


# A person's label of one pair: the verdict from the shadow's side (None: skip), a note.
Label = tuple[str | None, str | None]
Person = Callable[[QueuedPair, str], Label]


_RANK = {Grade.BAD: 0, Grade.UNKNOWN: 1, Grade.GOOD: 2}


def simulated_person(pair: QueuedPair, reviewer: str) -> Label:
    """The simulated truth: the better answer is the one that answers what was asked."""
    conversation = render_conversation(pair.request)
    shadow = _RANK[grade(pair.shadow_text, conversation, DISAGREEMENT)]
    primary = _RANK[grade(pair.primary_text, conversation, DISAGREEMENT)]
    if shadow < primary:
        return "worse", "This answer gets the customer's order wrong."
    if shadow > primary:
        return "better", None
    return "equivalent", None


def choice_for(verdict: str | None, shadow_first: bool) -> str:
    """The key the reviewer pressed: ``1``/``2`` name the answer shown first/second."""
    if verdict is None:
        return "skip"
    if verdict == "equivalent":
        return "tie"
    shadow_won = verdict == "better"
    return "1" if shadow_won == shadow_first else "2"


def _shown_first(pair_id: uuid.UUID, reviewer: str) -> bool:
    return hashlib.sha256(f"{pair_id}/{reviewer}".encode()).digest()[0] % 2 == 0


async def label_in_queue_order(
    db_url: str, per_tag: int, person: Person = simulated_person, *,
    reviewers: Sequence[str] = ("ana", "ben"), overlap: float = 0.1,
    start: datetime, skip_every: int = 0,
) -> int:
    """Label the first ``per_tag`` pairs of every tag in queue order; the labels' times
    run from ``start``, a second apart. ``skip_every``: the n-th item is skipped instead.
    Returns the labels written (skips excluded)."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")
        await conn.executemany(
            "INSERT INTO reviewers (name, token_sha256) VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING",
            # A token nobody holds: simulated people never sign in.
            [(name, hashlib.sha256(secrets.token_bytes(32)).hexdigest())
             for name in reviewers])
        queue = [QueuedPair(r["id"], r["tag"], r["request"], r["primary_text"] or "",
                            r["shadow_text"] or "") for r in await conn.fetch(_QUEUE, per_tag)]
        items: list[tuple[Any, ...]] = []
        labels: list[tuple[Any, ...]] = []
        for i, pair in enumerate(queue):
            who = [reviewers[i % len(reviewers)]]
            if len(reviewers) > 1 and (i * _GOLDEN) % 1.0 < overlap:
                who.append(reviewers[(i + 1) % len(reviewers)])
            for reviewer in who:
                first = _shown_first(pair.id, reviewer)
                verdict, note = person(pair, reviewer)
                if skip_every and (i + 1) % skip_every == 0:
                    verdict, note = None, None
                at = start + timedelta(seconds=len(labels))
                items.append((secrets.token_urlsafe(16), pair.id, reviewer, first, at))
                labels.append((pair.id, reviewer, choice_for(verdict, first), verdict,
                               first, note, at))
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO review_items (id, pair_id, reviewer, shadow_first, offered_at) "
                "VALUES ($1, $2, $3, $4, $5)", items)
            await conn.executemany(
                "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, "
                "note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)", labels)
        return sum(1 for label in labels if label[3] is not None)
    finally:
        await conn.close()


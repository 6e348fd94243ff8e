"""Simulated reviewers: people who label pairs through the review queue, blind.

The demo (and tests) need labels the way the review page leaves them, so simulated
people go through the same queue the review API serves (:mod:`shadowproxy.store.
review_queue`): per tag (untagged pairs are a tag of their own), reviewers take turns
asking for the next item and answer what they are offered, in the order it was shown
(which answer came first is the queue's draw). The queue decides everything else as it
would for people: the frame and its rank order (so the first pairs of each tag are a
uniform random sample of it), which pairs a second reviewer sees (``REVIEW_OVERLAP``),
skipped pairs going to someone else.

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
from shadowproxy.decision.review_frame import FRAME_FROM, rank_of
from shadowproxy.review_labels import Label as ApiLabel
from shadowproxy.simulator.answers import DISAGREEMENT
from shadowproxy.simulator.variants import Grade, grade
from shadowproxy.store.review_queue import QueueRules, ReviewQueue
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["QUEUE_RANK", "QueuedPair", "choice_for", "label_in_queue_order",
           "simulated_person"]

# The rank the queue orders a tag's frame by (decision/review_frame.py), over ``pairs``.
QUEUE_RANK = rank_of("pairs")
_TAGS = f"SELECT DISTINCT p.tag FROM {FRAME_FROM} ORDER BY p.tag NULLS LAST"


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


async def label_in_queue_order(
    db_url: str, per_tag: int, person: Person = simulated_person, *,
    reviewers: Sequence[str] = ("ana", "ben"), overlap: float = 0.1,
    start: datetime, skip_every: int = 0,
) -> int:
    """Per tag, reviewers take turns at the queue until ``per_tag`` pairs have been
    offered and every second look the queue wants among them is done; a reviewer whose
    next offer is a pair beyond those stops there (that offer stays open, as a closed
    tab's does, until the queue's lease gives it to someone else). Labels are timed from
    ``start``, a second apart. ``skip_every``: every n-th answer is a skip instead.
    Returns the labels written (skips excluded)."""
    pool = await asyncpg.create_pool(asyncpg_dsn(db_url), min_size=1, max_size=2,
                                     init=_jsonb)
    try:
        await pool.executemany(
            "INSERT INTO reviewers (name, token_sha256) VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING",
            # A token nobody holds: simulated people never sign in.
            [(name, hashlib.sha256(secrets.token_bytes(32)).hexdigest())
             for name in reviewers])
        queue = ReviewQueue(QueueRules(overlap=overlap, labels_per_minute=1 << 30))
        answers = 0
        labels = 0
        for (tag,) in await pool.fetch(_TAGS):
            seen: set[uuid.UUID] = set()
            done: set[str] = set()
            turn = 0
            while len(done) < len(reviewers):
                reviewer = reviewers[turn % len(reviewers)]
                turn += 1
                if reviewer in done:
                    continue
                now = start + timedelta(seconds=answers)
                offered = await queue.next_item(pool, reviewer, tag, now)
                if offered is None:
                    done.add(reviewer)
                    continue
                pair_id = await pool.fetchval(
                    "SELECT pair_id FROM review_items WHERE id = $1", offered.item)
                if pair_id not in seen and len(seen) >= per_tag:
                    done.add(reviewer)  # beyond this tag's share: stop, as a person would
                    continue
                seen.add(pair_id)
                pair = QueuedPair(pair_id, offered.tag, offered.request,
                                  offered.primary[0] or "", offered.shadow[0] or "")
                verdict, note = person(pair, reviewer)
                answers += 1
                if skip_every and answers % skip_every == 0:
                    verdict, note = None, None
                await queue.label(pool, reviewer, offered.item,
                                  ApiLabel(choice_for(verdict, offered.shadow_first), note),
                                  now)
                labels += verdict is not None
        return labels
    finally:
        await pool.close()


async def _jsonb(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")

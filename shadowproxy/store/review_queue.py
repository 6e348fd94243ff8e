"""The review queue in the database: the next item for a reviewer, their label, progress.

**Next.** A reviewer first gets back their own open item in the tag (a reload, a second
tab: the same item). Otherwise the lowest-ranked of (``decision/review_frame.py``):

- a judged pair never offered to anyone: found from the tag's **floor**
  (``review_floors``: every pair of the frame below it has been offered), so a call does
  not walk past the thousands already labelled; the floor rises to what the walk finds;
- a pair the judge decided after the floor was last checked whose rank is below it (a
  late arrival takes its place by rank), found among the pairs judged lately;
- an offered pair that still needs a label and was never offered to this reviewer: one
  skipped by someone (a skip is no label), an overlap pair's second look, or an offer
  nobody answered within :data:`OFFER_LEASE` (someone who closes the tab does not hold a
  pair for ever).

A pair needs one label, two when its overlap key says so. Calls for one tag take turns
(a transaction-scoped advisory lock), so two reviewers are never handed the pair only
one should label, and the floor moves with the offers.

**Label.** One per item: the first answer is stored (201), a second is refused (409), an
item that is not the caller's or whose pair retention deleted is unknown (404). A
reviewer stores at most :attr:`QueueRules.labels_per_minute` labels a minute; past it
the label is refused with the seconds to wait, stays open, and is stored when sent again.

Every time comes from the caller's clock, so tests set it (the floor's check time is
the database's, as ``diff``'s ``judged_at`` is a wall clock).
"""

from __future__ import annotations

import json
import secrets
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.decision.calibration import VERDICTS, Stratum, labels_needed
from shadowproxy.decision.review_frame import (
    FRAME_FROM,
    OVERLAP_KEY,
    RANK,
    overlap_threshold,
)
from shadowproxy.review_labels import Label, verdict_for
from shadowproxy.store.reviewers import Executor

__all__ = [
    "OFFER_LEASE",
    "AlreadyLabelled",
    "Offered",
    "QueueRules",
    "RateLimited",
    "ReviewQueue",
    "TagProgress",
    "UnknownItem",
]

OFFER_LEASE = timedelta(minutes=30)


def _begin_locked(tag: str | None) -> str:
    """BEGIN and the tag's lock in one round trip (the simple protocol takes two
    statements; the key is an integer computed here, nothing user-written is inlined)."""
    key = zlib.crc32(b"\x00untagged" if tag is None else tag.encode("utf-8", "surrogatepass"))
    # An offer is no label: if the database crashed before it reached the disk, the pair
    # would just be offered again. Not waiting for the WAL flush halves `next` (the flush
    # is most of its time); labels are committed synchronously.
    return (f"BEGIN; SET LOCAL synchronous_commit TO off; "
            f"SELECT pg_advisory_xact_lock(7321, {key - (1 << 31)})")
_REVIEWER_LOCK = "SELECT pg_advisory_xact_lock(7322, hashtext($1))"


def _tag_is(tagged: bool, alias: str = "p") -> str:
    # Two spellings, so the planner can use the (tag, rank) indexes for a tag.
    return f"{alias}.tag = $2" if tagged else f"{alias}.tag IS NULL AND $2::text IS NULL"


def stratum(tag: str | None) -> str:
    """The key of a tag's row in ``review_floors``."""
    return "untagged" if tag is None else f"tag:{tag}"


# Everything ranks below this: the floor of a tag whose whole frame has been offered.
TOP_RANK = 1 << 60
# A pair the judge decided up to this long before a check may still have been invisible
# to it (diff's clock, and its batch committing after the check began).
LATE_MARGIN = timedelta(minutes=15)


def _candidate(tagged: bool) -> str:
    """One row: the item to show and what the tag's floor becomes.

    - ``own``: the reviewer's open item in the tag (a reload, a second tab);
    - ``walk``: the lowest-ranked judged pair never offered to anyone, from the floor up;
    - ``late``: the same below the floor, among pairs judged since the floor was checked;
    - ``again``: an offered pair that still needs a label (a skip, an overlap pair's
      second look, an offer whose lease ended) and was never offered to this reviewer.

    ``item`` NULL with a ``pair_id``: a pair to offer now; ``pair_id`` NULL: nothing.
    Params: $1 reviewer, $2 tag, $3 lease cutoff, $4 overlap threshold, $5 stratum,
    $6 late margin.
    """
    tag, item_tag = _tag_is(tagged), _tag_is(tagged, "i")
    # Joins between the partitioned tables name the day only where they look one pair
    # up: in the walk's scores probe and the frame's join, the planner would multiply
    # the two keys' selectivities (id, then day), expect one row instead of thousands and
    # pick a plan that was 500 times slower at 300k pairs.
    never_offered = ("NOT EXISTS (SELECT 1 FROM review_items AS o "
                     "WHERE o.pair_id = p.id AND o.received_at = p.received_at)")
    return f"""
        WITH f AS (
            SELECT coalesce(max(floor_rank), 0) AS floor,
                   coalesce(max(checked_at), '-infinity') AS checked
            FROM review_floors WHERE stratum = $5
        ), own AS (
            SELECT i.id AS item, i.pair_id, i.received_at, i.shadow_first, i.rank, i.overlap
            FROM review_items AS i
            WHERE i.reviewer = $1 AND i.answered_at IS NULL AND {item_tag}
            ORDER BY i.rank LIMIT 1
        ), walk AS (
            SELECT p.id AS pair_id, p.received_at, {RANK} AS rank,
                   ({OVERLAP_KEY} < $4) AS overlap
            FROM pairs AS p
            WHERE {tag} AND {RANK} >= (SELECT floor FROM f) AND {never_offered}
              AND EXISTS (SELECT 1 FROM scores AS s
                          WHERE s.pair_id = p.id AND s.verdict_method = 'judge')
            ORDER BY {RANK} LIMIT 1
        ), late AS (
            -- The few pairs judged lately first (OFFSET 0 fences keep the planner from
            -- walking the whole rank index instead), then their tag, rank and offers.
            SELECT l.pair_id, l.received_at, l.rank, l.overlap
            FROM (SELECT s.pair_id, s.received_at FROM scores AS s
                  WHERE s.verdict_method = 'judge' AND (SELECT floor FROM f) > 0
                    AND s.judged_at > (SELECT checked FROM f) - $6::interval
                  OFFSET 0) AS recent
            CROSS JOIN LATERAL (
                SELECT p.id AS pair_id, p.received_at, {RANK} AS rank,
                       ({OVERLAP_KEY} < $4) AS overlap
                FROM pairs AS p
                WHERE p.id = recent.pair_id AND p.received_at = recent.received_at
                  AND {tag} AND {RANK} < (SELECT floor FROM f)
                  AND {never_offered}
                OFFSET 0) AS l
            ORDER BY l.rank LIMIT 1
        ), again AS (
            SELECT u.pair_id, u.received_at, u.rank, u.overlap
            FROM (SELECT DISTINCT ON (i.rank, i.pair_id) i.pair_id, i.received_at, i.rank,
                         i.overlap
                  FROM review_items AS i
                  WHERE {item_tag} AND (NOT i.labelled OR i.overlap)
                  ORDER BY i.rank, i.pair_id) AS u
            WHERE NOT EXISTS (SELECT 1 FROM review_items AS m
                              WHERE m.pair_id = u.pair_id AND m.received_at = u.received_at
                                AND m.reviewer = $1)
              AND (SELECT count(*) FROM review_items AS c
                   WHERE c.pair_id = u.pair_id AND c.received_at = u.received_at
                     AND (c.labelled OR (c.answered_at IS NULL AND c.offered_at > $3)))
                  < 1 + u.overlap::int
            ORDER BY u.rank LIMIT 1
        ), pick AS (
            SELECT item, pair_id, received_at, shadow_first, rank, overlap, 0 AS pass
            FROM own
            UNION ALL SELECT NULL, pair_id, received_at, NULL, rank, overlap, 1 FROM walk
            UNION ALL SELECT NULL, pair_id, received_at, NULL, rank, overlap, 1 FROM late
            UNION ALL SELECT NULL, pair_id, received_at, NULL, rank, overlap, 1 FROM again
            ORDER BY pass, rank LIMIT 1
        )
        SELECT pick.item, pick.pair_id, pick.received_at, pick.shadow_first, pick.rank,
               pick.overlap,
               (SELECT rank FROM walk) AS walk_rank, EXISTS (SELECT 1 FROM late) AS late,
               p.tag, p.request, p.primary_text, p.primary_tool_calls, p.shadow_text,
               p.shadow_tool_calls
        FROM (SELECT 1) AS one LEFT JOIN pick ON true
        LEFT JOIN pairs AS p ON p.id = pick.pair_id AND p.received_at = pick.received_at"""


# The floor rises to the walk's find (every judged pair below it has been offered), and
# is checked as of now unless late pairs remain. $1 stratum, $2 floor, $3 late pairs left.
_FLOOR = """
    INSERT INTO review_floors (stratum, floor_rank, checked_at)
    VALUES ($1, $2, CASE WHEN $3 THEN '-infinity'::timestamptz ELSE now() END)
    ON CONFLICT (stratum) DO UPDATE SET floor_rank = EXCLUDED.floor_rank,
        checked_at = CASE WHEN $3 THEN review_floors.checked_at ELSE now() END"""
_OFFER = f"""
    WITH offer AS (
        INSERT INTO review_items (id, pair_id, reviewer, shadow_first, offered_at, tag, rank,
                                  overlap, received_at)
        VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12)
    ) {_FLOOR}"""


_FRAMES = ("SELECT p.tag, count(*) AS frame, "
           + ", ".join(f"count(*) FILTER (WHERE s.verdict = '{v}') AS judge_{v}"
                       for v in VERDICTS)
           + f" FROM {FRAME_FROM} GROUP BY p.tag")
# Each labelled frame pair: the judge's verdict and the first person's (as the report
# counts them), per tag.
_CONFUSION = (f"SELECT p.tag, s.verdict AS judge, f.verdict AS human, count(*) AS pairs "
              "FROM (SELECT DISTINCT ON (pair_id) pair_id, verdict FROM reviews "
              "WHERE verdict IS NOT NULL ORDER BY pair_id, created_at, reviewer) AS f "
              f"JOIN {FRAME_FROM} ON p.id = f.pair_id "
              f"WHERE s.verdict IN {tuple(VERDICTS)!r} GROUP BY p.tag, s.verdict, f.verdict")
_LABELS = (f"SELECT p.tag, count(*) FILTER (WHERE r.verdict IS NOT NULL) AS labels, "
           f"count(DISTINCT r.pair_id) FILTER (WHERE r.verdict IS NOT NULL) AS labelled_pairs, "
           f"count(*) FILTER (WHERE r.verdict IS NULL) AS skips, "
           f"count(*) FILTER (WHERE r.reviewer = $1 AND r.verdict IS NOT NULL) AS mine "
           f"FROM {FRAME_FROM} JOIN reviews AS r ON r.pair_id = p.id GROUP BY p.tag")


class UnknownItem(LookupError):
    """Never offered to this reviewer, or its pair was deleted (retention)."""


class AlreadyLabelled(Exception):
    """This item has its label (another tab, a retry)."""


class RateLimited(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"retry after {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class QueueRules:
    overlap: float = 0.1
    labels_per_minute: int = 60
    lease: timedelta = OFFER_LEASE
    # How long a tag's frame size may be reused (it is a count over every judged pair).
    frame_cache_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Offered:
    """An item as the reviewer will see it; ``shadow_first`` stays on the server."""

    item: str
    tag: str | None
    shadow_first: bool
    request: Any
    primary: tuple[str | None, Any]  # text, tool calls
    shadow: tuple[str | None, Any]


@dataclass(frozen=True, slots=True)
class TagProgress:
    tag: str | None
    frame: int
    labels: int
    labelled_pairs: int
    skips: int
    mine: int
    labels_needed: int

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "frame": self.frame, "labels": self.labels,
                "labelled_pairs": self.labelled_pairs, "skips": self.skips,
                "mine": self.mine, "labels_needed": self.labels_needed,
                "still_needed": max(0, self.labels_needed - self.labelled_pairs)}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class ReviewQueue:
    def __init__(self, rules: QueueRules = QueueRules()) -> None:
        self.rules = rules
        self._frames: list[asyncpg.Record] = []
        self._frames_at = -1e18

    async def next_item(self, pool: asyncpg.Pool, reviewer: str, tag: str | None,
                        now: datetime) -> Offered | None:
        # Four round trips (BEGIN with the lock, the candidate with its content, the offer
        # with the floor, COMMIT): under load each one waits for the CPU.
        key = stratum(tag)
        async with pool.acquire() as conn:
            await conn.execute(_begin_locked(tag))
            try:
                row = await conn.fetchrow(
                    _candidate(tag is not None), reviewer, tag, now - self.rules.lease,
                    overlap_threshold(self.rules.overlap), key, LATE_MARGIN)
                assert row is not None  # one row, always
                floor = (key, row["walk_rank"] if row["walk_rank"] is not None else TOP_RANK,
                         row["late"])
                item, shadow_first = row["item"], row["shadow_first"]
                if row["pair_id"] is None:
                    await conn.execute(_FLOOR, *floor)
                elif item is None:
                    item, shadow_first = secrets.token_urlsafe(16), secrets.randbits(1) == 1
                    await conn.execute(_OFFER, *floor, item, row["pair_id"], reviewer,
                                       shadow_first, now, row["tag"], row["rank"],
                                       row["overlap"], row["received_at"])
                await conn.execute("COMMIT")
            except Exception:
                # (A cancelled call leaves the rollback to the pool's reset on release.)
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
                raise
        if row["pair_id"] is None:
            return None
        return Offered(item, row["tag"], shadow_first, _json(row["request"]),
                       (row["primary_text"], _json(row["primary_tool_calls"])),
                       (row["shadow_text"], _json(row["shadow_tool_calls"])))

    async def label(self, pool: asyncpg.Pool, reviewer: str, item: str, label: Label,
                    now: datetime) -> str | None:
        """Store the label; its verdict from the shadow's side (None for a skip)."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_REVIEWER_LOCK, reviewer)
            row = await conn.fetchrow(
                "SELECT pair_id, received_at, shadow_first, answered_at FROM review_items "
                "WHERE id = $1 AND reviewer = $2 FOR UPDATE", item, reviewer)
            if row is None:
                raise UnknownItem(item)
            if row["answered_at"] is not None:
                raise AlreadyLabelled(item)
            await self._check_rate(conn, reviewer, now)
            verdict = verdict_for(label.choice, row["shadow_first"])
            stored = await conn.fetchval(
                "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, note, "
                "created_at, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (pair_id, received_at, reviewer) DO NOTHING RETURNING pair_id",
                row["pair_id"], reviewer, label.choice, verdict, row["shadow_first"],
                label.note, now, row["received_at"])
            if stored is None:
                raise AlreadyLabelled(item)
            await conn.execute("UPDATE review_items SET answered_at = $2, labelled = $3 "
                               "WHERE id = $1 AND received_at = $4", item, now,
                               verdict is not None, row["received_at"])
        return verdict

    async def _check_rate(self, conn: Executor, reviewer: str, now: datetime
                          ) -> None:
        limit = self.rules.labels_per_minute
        window = timedelta(minutes=1)
        nth: datetime | None = await conn.fetchval(
            "SELECT created_at FROM reviews WHERE reviewer = $1 AND created_at > $2 "
            "ORDER BY created_at DESC OFFSET $3 LIMIT 1", reviewer, now - window, limit - 1)
        if nth is not None:
            raise RateLimited(max(1.0, (nth + window - now).total_seconds()))

    async def progress(self, pool: asyncpg.Pool, reviewer: str) -> list[TagProgress]:
        if time.monotonic() - self._frames_at >= self.rules.frame_cache_s:
            self._frames = await pool.fetch(_FRAMES)
            self._frames_at = time.monotonic()
        labels = {r["tag"]: r for r in await pool.fetch(_LABELS, reviewer)}
        confusion: dict[str | None, dict[tuple[str, str], int]] = {}
        for row in await pool.fetch(_CONFUSION):
            confusion.setdefault(row["tag"], {})[(row["judge"], row["human"])] = row["pairs"]
        out = []
        for frame in self._frames:
            done = labels.get(frame["tag"])
            cells = confusion.get(frame["tag"], {})
            # The calibration's own figure (PPI++, from the labels so far) for ±2 points
            # on the worse rate among the pairs the judge decided; the report's overall
            # interval, which adds the pairs the tiers settled, is narrower still.
            unlabelled = {v: max(0, frame[f"judge_{v}"] - sum(
                n for (judge, _), n in cells.items() if judge == v)) for v in VERDICTS}
            out.append(TagProgress(
                frame["tag"], frame["frame"],
                done["labels"] if done else 0, done["labelled_pairs"] if done else 0,
                done["skips"] if done else 0, done["mine"] if done else 0,
                labels_needed([Stratum(cells, unlabelled, {})])))
        return sorted(out, key=lambda p: (p.tag is None, p.tag or ""))

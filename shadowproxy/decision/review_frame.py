"""The human-review sample: which pairs people may label, and in which order (pure SQL text).

The **frame** of a tag (untagged pairs are a stratum of their own) is its pairs whose
verdict came from the judge, ``scores.verdict_method = 'judge'``: both sides answered and
the judge decided; ``exact`` and ``structural`` equalities are not opinions.

Each pair's **rank** is 60 bits of the MD5 of its id, read as a number: reproducible
(any process, any replica, any analyst with psql computes the same), uniform, and
unrelated to time, tag or content. The queue offers a tag's frame in ascending rank, so
the labelled pairs are always the frame's lowest ranks: a uniform random sample. A pair
that arrives later takes its place by rank (a low one is offered next), so the sample
stays uniform as traffic grows.

**Overlap.** A pair whose *overlap key* (32 other bits of the same MD5, independent of
the rank) is below ``REVIEW_OVERLAP * 2**32`` is offered to a second reviewer, so about that
share of the labelled pairs gets two labels (human-human agreement), spread evenly over
the rank order rather than bunched at its start.

The report (``human`` section) and the review queue both import these strings; the
expression index ``ix_pairs_review_rank`` (migration 0003) is on exactly :data:`RANK`
with ``p`` → ``pairs``, so ``ORDER BY`` rank walks an index.
"""

from __future__ import annotations

import math

__all__ = [
    "FRAME_FROM",
    "OVERLAP_KEY",
    "OVERLAP_SPACE",
    "RANK",
    "overlap_threshold",
    "rank_of",
]

# The rank of pair ``p``: a bigint in [0, 2⁶⁰).
RANK = "('x' || left(md5(p.id::text), 15))::bit(60)::bigint"
# The overlap key of pair ``p``: a bigint in [0, 2³²), from MD5 hex digits 16 to 23.
OVERLAP_KEY = "('x' || substr(md5(p.id::text), 16, 8))::bit(32)::bigint"
OVERLAP_SPACE = 1 << 32

# The frame, as the FROM clause of a query over pairs ``p`` and scores ``s``; a query
# adds its own conditions (``AND p.tag IS NOT DISTINCT FROM $1``).
FRAME_FROM = ("pairs AS p JOIN scores AS s ON s.pair_id = p.id "
              "AND s.verdict_method = 'judge'")


def rank_of(alias: str) -> str:
    """:data:`RANK` for a pairs table called ``alias``."""
    return RANK.replace("p.id", f"{alias}.id")


def overlap_threshold(overlap: float) -> int:
    """Pairs whose overlap key is below this get a second reviewer."""
    return min(OVERLAP_SPACE, max(0, math.floor(overlap * OVERLAP_SPACE)))

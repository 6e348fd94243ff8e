"""``shadowproxy diff``: give every stored pair a ``scores`` row.

Resumable and idempotent: each batch is read with keyset pagination over pairs that have
no score yet and written in its own transaction with ``ON CONFLICT (pair_id) DO NOTHING``,
so an interrupted run loses at most one batch of work and two runs at once never clash.

Every pair gets a row, even one the report will not count (shadow not ``ok``, primary
failed): its ``agree`` is false and it is never rescanned. The report, not the scores,
decides what counts towards agreement. When the primary was asked twice (``replay_*``
filled in and both answers fine) the primary is also scored against itself; that is the
noise floor, how often the current model agrees with its own second answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from tqdm import tqdm

from shadowproxy.decision.scoring import SideView, answered, score_pair
from shadowproxy.records import ShadowOutcome

__all__ = ["DiffSummary", "run_diff", "score_row"]

_SIDE_FIELDS = ("text", "tool_calls", "stop_reason", "status", "error")
_COLUMNS = ", ".join(
    ["p.id", "p.shadow_outcome"]
    + [f"p.{side}_{f}" for side in ("primary", "shadow", "replay") for f in _SIDE_FIELDS]
)
_UNSCORED = "NOT EXISTS (SELECT 1 FROM scores s WHERE s.pair_id = p.id)"
_NEXT_BATCH = text(
    f"SELECT {_COLUMNS} FROM pairs p WHERE {_UNSCORED} AND p.id > :after "
    "ORDER BY p.id LIMIT :limit"
)
_COUNT_UNSCORED = text(f"SELECT count(*) FROM pairs p WHERE {_UNSCORED}")
_SCORE_TYPES = (
    ("pair_id", "uuid"), ("exact_match", "boolean"), ("text_similarity", "float8"),
    ("tool_call_match", "boolean"), ("stop_reason_match", "boolean"),
    ("json_match", "boolean"), ("refusal", "boolean"), ("length_ratio", "float8"),
    ("agree", "boolean"), ("replay_agree", "boolean"),
    ("replay_text_similarity", "float8"), ("replay_tool_call_match", "boolean"),
)
# unnest over one array per column: a fixed statement whatever the batch size, where a
# multi-row VALUES would be compiled anew for every batch.
_INSERT_SCORES = text(
    f"INSERT INTO scores ({', '.join(n for n, _ in _SCORE_TYPES)}) "
    "SELECT * FROM unnest("
    + ", ".join(f"CAST(:{n} AS {t}[])" for n, t in _SCORE_TYPES)
    + ") ON CONFLICT (pair_id) DO NOTHING RETURNING agree"
)


@dataclass(frozen=True, slots=True)
class DiffSummary:
    scored: int  # score rows this run wrote
    agreed: int  # of those, how many agree
    seconds: float


def _replayed(row: Mapping[Any, Any]) -> bool:
    return row.get("replay_status") is not None or row.get("replay_error") is not None or (
        row.get("replay_text") is not None)


def score_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The ``scores`` row for one ``pairs`` row (columns as named in the table)."""
    primary = SideView.from_row(row, "primary")
    scores = score_pair(primary, SideView.from_row(row, "shadow")).as_row()
    if row.get("shadow_outcome") != ShadowOutcome.OK:
        scores["agree"] = False
    replay_agree = replay_similarity = replay_calls = None
    if _replayed(row):
        replay = SideView.from_row(row, "replay")
        if answered(primary.status, primary.error) and answered(replay.status, replay.error):
            noise = score_pair(primary, replay)
            replay_agree = noise.agree
            replay_similarity = noise.text_similarity
            replay_calls = noise.tool_call_match
    return {
        "pair_id": row["id"],
        **scores,
        "replay_agree": replay_agree,
        "replay_text_similarity": replay_similarity,
        "replay_tool_call_match": replay_calls,
    }


async def _store(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """One statement per batch; its text never changes, so it is prepared once."""
    columns = {name: [row[name] for row in rows] for name, _ in _SCORE_TYPES}
    written = (await conn.execute(_INSERT_SCORES, columns)).scalars().all()
    return len(written), sum(1 for agree in written if agree)


async def run_diff(url: str, *, batch_size: int = 500, progress: bool = True) -> DiffSummary:
    """Score every pair without a score; safe to interrupt and to run again."""
    started = time.monotonic()
    engine = create_async_engine(url)
    scored = agreed = 0
    try:
        async with engine.connect() as conn:
            total = int((await conn.execute(_COUNT_UNSCORED)).scalar_one())
            await conn.commit()
        after = uuid.UUID(int=0)
        with tqdm(total=total, unit="pair", desc="scoring", disable=not progress,
                  dynamic_ncols=True) as bar:
            while True:
                async with engine.begin() as conn:
                    batch = (await conn.execute(
                        _NEXT_BATCH, {"after": after, "limit": batch_size})).mappings().all()
                    if not batch:
                        break
                    written, agreeing = await _store(conn, [score_row(r) for r in batch])
                scored += written
                agreed += agreeing
                after = batch[-1]["id"]
                bar.update(len(batch))
    finally:
        await engine.dispose()
    return DiffSummary(scored=scored, agreed=agreed, seconds=time.monotonic() - started)

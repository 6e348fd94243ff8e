"""``shadowproxy diff``: give every stored pair a ``scores`` row and a verdict.

Two passes, both resumable and idempotent (keyset pagination, one transaction per batch):

1. **Scoring**: each pair without a score gets one (``ON CONFLICT (pair_id) DO
   NOTHING``, so two runs at once never clash): the analysts' scores (text similarity,
   tool-call match, ...; they never decide a verdict) and the tiers of
   :mod:`shadowproxy.decision.verdict`. Pairs the tiers settle (``exact``, ``structural``) or that
   are not judged (a side failed: verdict NULL, the reason in ``judge_reason``) get
   ``judged_at``; pairs that need a judge get ``unjudged``.
2. **Judging** (:mod:`shadowproxy.decision.judging`): pairs whose verdict is ``unjudged`` — or
   NULL without ``judged_at``, scored before verdicts existed — are considered again;
   with ``rejudge`` also those a judge decided. A stored verdict is never asked again
   otherwise. Without ``JUDGE_MODEL`` nothing is sent: only the NULL-without-``judged_at``
   rows are considered (by the tiers), and pairs that need a judge stay ``unjudged`` with
   a reason saying so.

When the primary was asked twice (``replay_*``) the replay is compared with the primary
the same way, into the ``replay_*`` columns: the noise floor.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tqdm import tqdm

from shadowproxy.decision.judge import Judge
from shadowproxy.decision.judge_prompt import AnswerText
from shadowproxy.decision.judging import Judged, JudgeRun, needs_judge_reason
from shadowproxy.decision.scoring import SideView, answered, score_pair
from shadowproxy.decision.verdict import Tiered, Verdict, tier
from shadowproxy.records import ShadowOutcome

__all__ = ["DiffSummary", "PairScope", "run_diff", "score_row"]

_SIDE_FIELDS = ("text", "tool_calls", "stop_reason", "status", "error")
_COLUMNS = ", ".join(
    ["p.id", "p.shadow_outcome"]
    + [f"p.{side}_{f}" for side in ("primary", "shadow", "replay") for f in _SIDE_FIELDS]
)
_UNSCORED = "NOT EXISTS (SELECT 1 FROM scores s WHERE s.pair_id = p.id)"


@dataclass(frozen=True, slots=True)
class PairScope:
    """Only a tag's pairs received at or after ``since`` (``cutover advance`` judges the
    pairs of the current step, not the whole table)."""

    tag: str | None = None
    since: datetime | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        clause = ""
        params: dict[str, Any] = {}
        if self.tag is not None:
            clause += " AND p.tag = :scope_tag"
            params["scope_tag"] = self.tag
        if self.since is not None:
            clause += " AND p.received_at >= :scope_since"
            params["scope_since"] = self.since
        return clause, params
_SCORE_TYPES = (
    ("pair_id", "uuid"), ("exact_match", "boolean"), ("text_similarity", "float8"),
    ("tool_call_match", "boolean"), ("stop_reason_match", "boolean"),
    ("json_match", "boolean"), ("refusal", "boolean"), ("length_ratio", "float8"),
    ("agree", "boolean"), ("replay_agree", "boolean"),
    ("replay_text_similarity", "float8"), ("replay_tool_call_match", "boolean"),
    ("verdict", "text"), ("verdict_method", "text"), ("judge_reason", "text"),
    ("judge_cost_usd", "float8"), ("judge_calls", "int4"),
    ("json_diff_paths", "text"), ("judged_at", "timestamptz"),
    ("replay_verdict", "text"), ("replay_verdict_method", "text"),
    ("replay_judge_reason", "text"), ("replay_judge_cost_usd", "float8"),
    ("replay_judge_calls", "int4"),
)
_JSONB = frozenset({"json_diff_paths"})


def _select_list(types: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"CAST(t.{n} AS jsonb)" if n in _JSONB else f"t.{n}" for n, _ in types)


def _unnest(types: Sequence[tuple[str, str]]) -> str:
    arrays = ", ".join(f"CAST(:{n} AS {t}[])" for n, t in types)
    return f"unnest({arrays}) AS t({', '.join(n for n, _ in types)})"


# unnest over one array per column: a fixed statement whatever the batch size, where a
# multi-row VALUES would be compiled anew for every batch.
_INSERT_SCORES = text(
    f"INSERT INTO scores ({', '.join(n for n, _ in _SCORE_TYPES)}) "
    f"SELECT {_select_list(_SCORE_TYPES)} FROM {_unnest(_SCORE_TYPES)} "
    "ON CONFLICT (pair_id) DO NOTHING RETURNING agree"
)

# --- the judging pass -----------------------------------------------------------------

_SHADOW_VERDICT_TYPES = (
    ("pair_id", "uuid"), ("verdict", "text"), ("verdict_method", "text"),
    ("judge_model", "text"), ("judge_reason", "text"), ("judge_cost_usd", "float8"),
    ("judge_calls", "int4"), ("position_inconsistent", "boolean"),
    ("json_diff_paths", "text"), ("judged_at", "timestamptz"),
)
_REPLAY_VERDICT_TYPES = (
    ("pair_id", "uuid"), ("replay_verdict", "text"), ("replay_verdict_method", "text"),
    ("judge_model", "text"), ("replay_judge_reason", "text"),
    ("replay_judge_cost_usd", "float8"), ("replay_judge_calls", "int4"),
    ("replay_position_inconsistent", "boolean"),
)


def _update(types: Sequence[tuple[str, str]]) -> Any:
    sets = ", ".join(
        "judge_model = COALESCE(t.judge_model, s.judge_model)" if n == "judge_model"
        else f"{n} = CAST(t.{n} AS jsonb)" if n in _JSONB else f"{n} = t.{n}"
        for n, _ in types if n != "pair_id"
    )
    return text(f"UPDATE scores s SET {sets} FROM {_unnest(types)} WHERE s.pair_id = t.pair_id")


_UPDATE_SHADOW = _update(_SHADOW_VERDICT_TYPES)
_UPDATE_REPLAY = _update(_REPLAY_VERDICT_TYPES)
_LEGACY = "(s.verdict IS NULL AND s.judged_at IS NULL)"
_RECONSIDER = f"(s.verdict = 'unjudged' OR s.replay_verdict = 'unjudged' OR {_LEGACY})"
_REJUDGE = "(s.verdict_method = 'judge' OR s.replay_verdict_method = 'judge')"
_JUDGE_COLUMNS = (
    "p.tag, p.request, s.verdict AS s_verdict, s.verdict_method AS s_verdict_method, "
    "s.replay_verdict AS s_replay_verdict, "
    "s.replay_verdict_method AS s_replay_verdict_method, s.judged_at AS s_judged_at"
)
_COUNT_VERDICTS = text("SELECT verdict, count(*) AS n FROM scores GROUP BY verdict")


@dataclass(frozen=True, slots=True)
class DiffSummary:
    scored: int  # score rows this run wrote
    agreed: int  # of those, how many agree
    seconds: float
    verdicts: dict[str, int] = field(default_factory=dict)  # whole table, after the run
    judge_calls: int = 0
    judge_usd: float = 0.0
    not_judged: int = 0  # pairs with a failed side (verdict NULL)


def _replayed(row: Mapping[Any, Any]) -> bool:
    return row.get("replay_status") is not None or row.get("replay_error") is not None or (
        row.get("replay_text") is not None)


def _paths_json(tiered: Tiered) -> str | None:
    return json.dumps(list(tiered.diff_paths)) if tiered.diff_paths else None


def _tiers(row: Mapping[Any, Any]) -> tuple[Tiered, Tiered | None]:
    primary = SideView.from_row(row, "primary")
    shadow_ok = row.get("shadow_outcome") == ShadowOutcome.OK
    shadow = tier(primary, SideView.from_row(row, "shadow"), shadow_ok=shadow_ok)
    outcome = row.get("shadow_outcome")
    if not shadow_ok and shadow.reason and "shadow failed" in shadow.reason:
        shadow = Tiered(None, None, False, (), (
            "not judged: the request was not mirrored (skipped)"
            if outcome == ShadowOutcome.SKIPPED else
            f"not judged: the shadow's outcome is {outcome} (counted in shadow_error_rate)"))
    replay = (tier(primary, SideView.from_row(row, "replay"), name="replay")
              if _replayed(row) else None)
    return shadow, replay


def _settled(tiered: Tiered, judge_configured: bool) -> tuple[Any, ...]:
    """``(verdict, method, reason, cost, calls, settled)`` as the tiers leave them."""
    if tiered.needs_judge:
        return (Verdict.UNJUDGED.value, None, needs_judge_reason(judge_configured), None,
                None, False)
    if tiered.verdict is None:  # a side failed: not judged
        return None, None, tiered.reason, None, None, True
    method = tiered.method.value if tiered.method else None
    return tiered.verdict.value, method, None, 0.0, 0, True


def score_row(row: Mapping[Any, Any], *, judge_configured: bool = False,
              now: datetime | None = None) -> dict[str, Any]:
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
    shadow_tier, replay_tier = _tiers(row)
    verdict, method, reason, cost, calls, settled = _settled(shadow_tier, judge_configured)
    r_verdict = r_method = r_reason = r_cost = r_calls = None
    if replay_tier is not None:
        r_verdict, r_method, r_reason, r_cost, r_calls, _ = _settled(
            replay_tier, judge_configured)
    return {
        "pair_id": row["id"],
        **scores,
        "replay_agree": replay_agree,
        "replay_text_similarity": replay_similarity,
        "replay_tool_call_match": replay_calls,
        "verdict": verdict,
        "verdict_method": method,
        "judge_reason": reason,
        "judge_cost_usd": cost,
        "judge_calls": calls,
        "json_diff_paths": _paths_json(shadow_tier),
        "judged_at": (now or datetime.now(UTC)) if settled else None,
        "replay_verdict": r_verdict,
        "replay_verdict_method": r_method,
        "replay_judge_reason": r_reason,
        "replay_judge_cost_usd": r_cost,
        "replay_judge_calls": r_calls,
    }


async def _store(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """One statement per batch; its text never changes, so it is prepared once."""
    columns = {name: [row[name] for row in rows] for name, _ in _SCORE_TYPES}
    written = (await conn.execute(_INSERT_SCORES, columns)).scalars().all()
    return len(written), sum(1 for agree in written if agree)


async def _score_unscored(engine: AsyncEngine, batch_size: int, progress: bool,
                          judge_configured: bool, scope: PairScope) -> tuple[int, int]:
    scored = agreed = 0
    where, scoped = scope.sql()
    next_batch = text(f"SELECT {_COLUMNS} FROM pairs p WHERE {_UNSCORED}{where} "
                      "AND p.id > :after ORDER BY p.id LIMIT :limit")
    async with engine.connect() as conn:
        total = int((await conn.execute(
            text(f"SELECT count(*) FROM pairs p WHERE {_UNSCORED}{where}"), scoped)
        ).scalar_one())
        await conn.commit()
    after = uuid.UUID(int=0)
    with tqdm(total=total, unit="pair", desc="scoring", disable=not progress,
              dynamic_ncols=True) as bar:
        while True:
            async with engine.begin() as conn:
                batch = (await conn.execute(
                    next_batch, {"after": after, "limit": batch_size, **scoped})
                ).mappings().all()
                if not batch:
                    break
                now = datetime.now(UTC)
                rows = [score_row(r, judge_configured=judge_configured, now=now)
                        for r in batch]
                written, agreeing = await _store(conn, rows)
            scored += written
            agreed += agreeing
            after = batch[-1]["id"]
            bar.update(len(batch))
    return scored, agreed


def _answer(row: Mapping[Any, Any], prefix: str) -> AnswerText:
    view = SideView.from_row(row, prefix)
    return AnswerText(view.text, view.tool_calls, view.stop_reason)


def _wants(row: Mapping[Any, Any], side: str, rejudge: bool) -> bool:
    verdict = row[f"s_{'replay_' if side == 'replay' else ''}verdict"]
    method = row[f"s_{'replay_' if side == 'replay' else ''}verdict_method"]
    legacy = row["s_verdict"] is None and row["s_judged_at"] is None
    if side == "replay" and not _replayed(row):
        return False
    return verdict == Verdict.UNJUDGED or legacy or (rejudge and method == "judge")


class _Judging:
    """The judging pass over one batch: tiers first, the judge for what is left."""

    def __init__(self, run: JudgeRun | None) -> None:
        self.run = run

    async def side(self, row: Mapping[Any, Any], side: str, tiered: Tiered
                   ) -> tuple[Any, ...]:
        """``(verdict, method, model, reason, cost, calls, inconsistent, settled)``."""
        if not tiered.needs_judge or self.run is None:
            verdict, method, reason, cost, calls, settled = _settled(
                tiered, self.run is not None)
            return verdict, method, None, reason, cost, calls, None, settled
        judged: Judged = await self.run.judge_pair(
            row["request"], row["tag"], _answer(row, "primary"), _answer(row, side))
        settled = judged.verdict != Verdict.UNJUDGED
        return (judged.verdict.value, judged.method.value if judged.method else None,
                self.run.judge.model if judged.calls else None, judged.reason,
                judged.cost_usd, judged.calls, judged.position_inconsistent, settled)

    async def batch(self, conn: AsyncConnection, batch: Sequence[Mapping[Any, Any]],
                    rejudge: bool) -> None:
        shadow_rows: list[dict[str, Any]] = []
        replay_rows: list[dict[str, Any]] = []

        def keeps(row: Mapping[Any, Any], prefix: str, verdict: Any) -> bool:
            """--rejudge that could not get a new verdict keeps the stored one."""
            return bool(verdict == Verdict.UNJUDGED
                        and row[f"s_{prefix}verdict_method"] == "judge")

        async def one(row: Mapping[Any, Any]) -> None:
            shadow_tier, replay_tier = _tiers(row)
            if _wants(row, "shadow", rejudge):
                v, m, model, reason, cost, calls, inconsistent, settled = await self.side(
                    row, "shadow", shadow_tier)
                if not keeps(row, "", v):
                    shadow_rows.append({
                        "pair_id": row["id"], "verdict": v, "verdict_method": m,
                        "judge_model": model, "judge_reason": reason, "judge_cost_usd": cost,
                        "judge_calls": calls, "position_inconsistent": inconsistent,
                        "json_diff_paths": _paths_json(shadow_tier),
                        "judged_at": datetime.now(UTC) if settled else None,
                    })
            if replay_tier is not None and _wants(row, "replay", rejudge):
                v, m, model, reason, cost, calls, inconsistent, _ = await self.side(
                    row, "replay", replay_tier)
                if not keeps(row, "replay_", v):
                    replay_rows.append({
                        "pair_id": row["id"], "replay_verdict": v, "replay_verdict_method": m,
                        "judge_model": model, "replay_judge_reason": reason,
                        "replay_judge_cost_usd": cost, "replay_judge_calls": calls,
                        "replay_position_inconsistent": inconsistent,
                    })

        await asyncio.gather(*(one(row) for row in batch))
        for statement, types, rows in ((_UPDATE_SHADOW, _SHADOW_VERDICT_TYPES, shadow_rows),
                                       (_UPDATE_REPLAY, _REPLAY_VERDICT_TYPES, replay_rows)):
            if rows:
                await conn.execute(statement, {n: [r[n] for r in rows] for n, _ in types})


async def _judge_pass(engine: AsyncEngine, run: JudgeRun | None, *, rejudge: bool,
                      batch_size: int, progress: bool, scope: PairScope) -> None:
    condition = _RECONSIDER if run is not None else _LEGACY
    if rejudge and run is not None:
        condition = f"({condition} OR {_REJUDGE})"
    where, scoped = scope.sql()
    source = f"FROM pairs p JOIN scores s ON s.pair_id = p.id WHERE {condition}{where}"
    count = text(f"SELECT count(*) {source}")
    select = text(f"SELECT {_COLUMNS}, {_JUDGE_COLUMNS} {source} AND p.id > :after "
                  "ORDER BY p.id LIMIT :limit")
    async with engine.connect() as conn:
        total = int((await conn.execute(count, scoped)).scalar_one())
        await conn.commit()
    if not total:
        return
    judging = _Judging(run)
    with tqdm(total=total, unit="pair", desc="judging", disable=not progress,
              dynamic_ncols=True) as bar:
        if run is not None:
            def show_spend() -> None:
                bar.set_postfix_str(
                    f"{run.calls} calls, ${run.budget.spent_usd:.4f} of "
                    f"${run.budget.cap_usd:g}", refresh=False)
            run.on_call = show_spend
        after = uuid.UUID(int=0)
        while True:
            async with engine.connect() as conn:
                batch = (await conn.execute(
                    select, {"after": after, "limit": batch_size, **scoped})).mappings().all()
                await conn.commit()
            if not batch:
                break
            # The judge's calls happen outside any transaction; the updates in one.
            async with engine.begin() as conn:
                await judging.batch(conn, batch, rejudge)
            after = batch[-1]["id"]
            bar.update(len(batch))


async def run_diff(url: str, *, batch_size: int = 500, progress: bool = True,
                   judge: Judge | None = None, judge_max_usd: float = 5.0,
                   judge_concurrency: int = 8, rubrics: dict[str, str] | None = None,
                   rejudge: bool = False, scope: PairScope | None = None) -> DiffSummary:
    """Score every pair without a score, then judge what the tiers could not settle;
    safe to interrupt and to run again. With ``scope``, only those pairs."""
    scope = scope or PairScope()
    started = time.monotonic()
    engine = create_async_engine(url)
    run = JudgeRun(judge, max_usd=judge_max_usd, concurrency=judge_concurrency,
                   rubrics=rubrics) if judge is not None else None
    try:
        scored, agreed = await _score_unscored(engine, batch_size, progress, judge is not None,
                                               scope)
        await _judge_pass(engine, run, rejudge=rejudge,
                          batch_size=min(batch_size, max(judge_concurrency * 32, 64))
                          if run is not None else batch_size, progress=progress, scope=scope)
        async with engine.connect() as conn:
            counts = {r.verdict: int(r.n) for r in await conn.execute(_COUNT_VERDICTS)}
    finally:
        await engine.dispose()
    not_judged = counts.pop(None, 0)
    return DiffSummary(
        scored=scored, agreed=agreed, seconds=time.monotonic() - started,
        verdicts={str(k): v for k, v in counts.items()},
        judge_calls=run.calls if run else 0,
        judge_usd=run.budget.spent_usd if run else 0.0,
        not_judged=not_judged,
    )

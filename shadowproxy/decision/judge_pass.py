"""``diff``'s second pass: the judge decides its sample of each tag's frame.

Per tag (untagged pairs are a stratum of their own), :func:`planned_sample` says how
many frame pairs the judge should see (``JUDGE_SAMPLE``); the tag's threshold is raised
until that many frame pairs rank below it, and every unjudged pair below it is judged,
all tags interleaved by ``rank / threshold`` so a spent budget leaves each tag as far
along as the others. With ``auto`` the first :data:`~shadowproxy.decision.sampling.PILOT`
pairs of a tag are judged before its observed worse rate sizes the rest. When every
sample is complete and budget is left, the thresholds rise together, in rank order,
as far as the budget goes ("plus whatever the budget allows"); a threshold stops
below the first pair the budget refused, so the pairs below it are all judged.

Thresholds are stored (``judge_samples``) and never lowered while ``JUDGE_SAMPLE``
stays the same, so the sample of any time window is uniform (see
:mod:`shadowproxy.decision.sampling`). Frame pairs above a threshold keep verdict
``unjudged`` with a reason naming ``JUDGE_SAMPLE``. Pairs scored before verdicts
existed get their tiers here first; replays are judged for the pairs in the sample.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from shadowproxy.decision.diff import (
    NOT_SAMPLED,
    _connect,
    _paths_json,
    _replayed,
    settled,
    shadow_tier,
)
from shadowproxy.decision.judge import Judge
from shadowproxy.decision.judge_prompt import AnswerText
from shadowproxy.decision.judging import Judged, JudgeRun, needs_judge_reason
from shadowproxy.decision.sampling import (
    JUDGE_FRAME_SQL,
    JUDGE_RANK_SQL,
    SampleRule,
    planned_sample,
)
from shadowproxy.decision.scoring import SideView
from shadowproxy.decision.summaries import mark_stale_sql
from shadowproxy.decision.summary_sql import slot_sql
from shadowproxy.decision.verdict import Tiered, Verdict, tier

__all__ = ["JudgePassResult", "judge_pass"]

_SIDE_FIELDS = ("text", "tool_calls", "stop_reason", "status", "error")
_PAIR = ", ".join(
    ["p.id", "p.received_at", "p.tag", "p.shadow_outcome", "p.request"]
    + [f"p.{side}_{f}" for side in ("primary", "shadow", "replay") for f in _SIDE_FIELDS]
    + ["s.verdict AS s_verdict", "s.verdict_method AS s_verdict_method",
       "s.replay_verdict AS s_replay_verdict",
       "s.replay_verdict_method AS s_replay_verdict_method", "s.judged_at AS s_judged_at"]
)
_PAIRS_BY_ID = (f"SELECT {_PAIR} FROM pairs p "
                "JOIN scores s ON s.pair_id = p.id AND s.received_at = p.received_at "
                "WHERE p.id = ANY($1::uuid[])")
_JUDGED = "('equivalent', 'better', 'worse')"
_STATS = f"""
SELECT tag IS NOT NULL AS tagged, coalesce(tag, '') AS tag,
  count(*) FILTER (WHERE verdict_method IN ('exact', 'structural')
                   AND verdict IN {_JUDGED}) AS tier,
  count(*) FILTER (WHERE {JUDGE_FRAME_SQL}) AS frame,
  count(*) FILTER (WHERE verdict_method = 'judge' AND verdict IN {_JUDGED}) AS judged,
  count(*) FILTER (WHERE verdict_method = 'judge' AND verdict = 'worse') AS worse
FROM scores GROUP BY 1, 2
"""
_LEGACY = "s.verdict IS NULL AND s.judged_at IS NULL"


def _tag_sql(tagged: bool, first: int) -> str:
    return f"tag = ${first}" if tagged else f"(tag IS NULL AND ${first}::text IS NOT NULL)"


def _nth_rank(tagged: bool) -> str:
    return (f"SELECT {JUDGE_RANK_SQL} AS rank FROM scores WHERE {_tag_sql(tagged, 1)} "
            f"AND ({JUDGE_FRAME_SQL}) ORDER BY {JUDGE_RANK_SQL} OFFSET $2 LIMIT 1")


def _candidates(tagged: bool) -> str:
    """Frame pairs of one tag between two ranks that want the judge, in rank order."""
    return (f"SELECT pair_id, {JUDGE_RANK_SQL} AS rank, verdict FROM scores "
            f"WHERE {_tag_sql(tagged, 1)} AND ({JUDGE_FRAME_SQL}) "
            f"AND {JUDGE_RANK_SQL} >= $2 AND {JUDGE_RANK_SQL} < $3 "
            "AND (verdict = 'unjudged' OR ($4 AND verdict_method = 'judge')) "
            f"ORDER BY {JUDGE_RANK_SQL} LIMIT $5")


def _mark_not_sampled(tagged: bool) -> str:
    return (f"UPDATE scores SET judge_reason = $3 WHERE {_tag_sql(tagged, 1)} "
            f"AND verdict = 'unjudged' AND ({JUDGE_FRAME_SQL}) AND {JUDGE_RANK_SQL} >= $2 "
            "AND judge_reason IS DISTINCT FROM $3")


_UPDATE_SHADOW = """
UPDATE scores s SET verdict = t.verdict, verdict_method = t.method,
  judge_model = coalesce(t.model, s.judge_model), judge_reason = t.reason,
  judge_cost_usd = t.cost, judge_calls = t.calls, position_inconsistent = t.inconsistent,
  json_diff_paths = t.paths::jsonb, judged_at = t.judged_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[],
            $7::int[], $8::bool[], $9::text[], $10::timestamptz[])
  AS t(pair_id, verdict, method, model, reason, cost, calls, inconsistent, paths, judged_at)
WHERE s.pair_id = t.pair_id
"""
_UPDATE_REPLAY = """
UPDATE scores s SET replay_verdict = t.verdict, replay_verdict_method = t.method,
  judge_model = coalesce(t.model, s.judge_model), replay_judge_reason = t.reason,
  replay_judge_cost_usd = t.cost, replay_judge_calls = t.calls,
  replay_position_inconsistent = t.inconsistent
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[],
            $7::int[], $8::bool[]) AS t(pair_id, verdict, method, model, reason, cost,
                                         calls, inconsistent)
WHERE s.pair_id = t.pair_id
"""
_MARK_STALE = mark_stale_sql("$1::timestamptz[]")
# A worse verdict changes the conversation's numbers, kept at its first pair's slot.
_MARK_OPENERS = f"""
INSERT INTO report_stale (slot)
SELECT DISTINCT {slot_sql('o.received_at')} FROM pairs p
CROSS JOIN LATERAL (SELECT q.received_at FROM pairs q
  WHERE q.conversation_id = p.conversation_id AND q.tag IS NOT DISTINCT FROM p.tag
  ORDER BY q.received_at, q.id LIMIT 1) o
WHERE p.id = ANY($1::uuid[]) AND p.conversation_id IS NOT NULL
ON CONFLICT DO NOTHING
"""
_SAVE = ("INSERT INTO judge_samples (tagged, tag, threshold, updated_at) "
         "VALUES ($1, $2, $3, now()) ON CONFLICT (tagged, tag) "
         "DO UPDATE SET threshold = excluded.threshold, updated_at = now()")


@dataclass(slots=True)
class JudgePassResult:
    calls: int = 0
    spent_usd: float = 0.0


@dataclass(slots=True)
class _Tag:
    tagged: bool
    tag: str
    tier: int = 0
    frame: int = 0
    judged: int = 0
    worse: int = 0
    threshold: float = 0.0
    stored: float | None = None
    done: set[Any] = field(default_factory=set)  # pairs this run already asked about
    frozen: bool = False  # the budget (or the judge) stopped its extension

    @property
    def name(self) -> str | None:
        return self.tag if self.tagged else None


def _answer(row: Mapping[Any, Any], prefix: str) -> AnswerText:
    view = SideView.from_row(row, prefix)
    return AnswerText(view.text, view.tool_calls, view.stop_reason)


class _Judging:
    """One batch of pairs: the judge for what the tiers left, then one update."""

    def __init__(self, run: JudgeRun, rejudge: bool) -> None:
        self.run = run
        self.rejudge = rejudge

    async def _side(self, row: Mapping[Any, Any], side: str, tiered: Tiered
                    ) -> tuple[Any, ...]:
        """``(verdict, method, model, reason, cost, calls, inconsistent, settled)``."""
        if not tiered.needs_judge:
            verdict, method, reason, cost, calls, done = settled(tiered, "")
            return verdict, method, None, reason, cost, calls, None, done
        judged: Judged = await self.run.judge_pair(
            row["request"], row["tag"], _answer(row, "primary"), _answer(row, side))
        done = judged.verdict != Verdict.UNJUDGED
        return (judged.verdict.value, judged.method.value if judged.method else None,
                self.run.judge.model if judged.calls else None, judged.reason,
                judged.cost_usd, judged.calls, judged.position_inconsistent, done)

    def _wants(self, row: Mapping[Any, Any], prefix: str) -> bool:
        verdict, method = row[f"s_{prefix}verdict"], row[f"s_{prefix}verdict_method"]
        return verdict == Verdict.UNJUDGED or (self.rejudge and method == "judge")

    async def batch(self, conn: Any, rows: Sequence[Mapping[Any, Any]], *,
                    judge_shadow: bool = True) -> dict[Any, str | None]:
        """Judge ``rows``; the shadow verdict each pair has afterwards."""
        shadow: list[tuple[Any, ...]] = []
        replay: list[tuple[Any, ...]] = []
        outcome: dict[Any, str | None] = {}

        async def one(row: Mapping[Any, Any]) -> None:
            primary = SideView.from_row(row, "primary")
            outcome[row["id"]] = row["s_verdict"]
            if judge_shadow and self._wants(row, ""):
                tiered = shadow_tier(row, primary, SideView.from_row(row, "shadow"))
                v, m, model, reason, cost, calls, inconsistent, done = await self._side(
                    row, "shadow", tiered)
                # A --rejudge that got no new verdict keeps the stored one.
                if not (v == Verdict.UNJUDGED and row["s_verdict_method"] == "judge"):
                    paths = _paths_json(tiered)
                    shadow.append((row["id"], v, m, model, reason, cost, calls, inconsistent,
                                   paths,
                                   datetime.now(UTC) if done else None))
                    outcome[row["id"]] = v
            if _replayed(row) and self._wants(row, "replay_"):
                tiered = tier(primary, SideView.from_row(row, "replay"), name="replay")
                v, m, model, reason, cost, calls, inconsistent, _ = await self._side(
                    row, "replay", tiered)
                if not (v == Verdict.UNJUDGED and row["s_replay_verdict_method"] == "judge"):
                    replay.append((row["id"], v, m, model, reason, cost, calls, inconsistent))

        await asyncio.gather(*(one(row) for row in rows))
        async with conn.transaction():
            for statement, updates in ((_UPDATE_SHADOW, shadow), (_UPDATE_REPLAY, replay)):
                if updates:
                    await conn.execute(statement, *(list(c) for c in zip(*updates,
                                                                          strict=True)))
            await conn.execute(_MARK_STALE, [row["received_at"] for row in rows])
            await conn.execute(_MARK_OPENERS, [row["id"] for row in rows])
        return outcome


async def _settle_legacy(conn: Any, judge_configured: bool, batch_size: int) -> None:
    """Pairs scored before verdicts existed: their tiers, and a verdict."""
    reason = needs_judge_reason(judge_configured)
    while True:
        rows = await conn.fetch(
            f"SELECT {_PAIR} FROM pairs p "
            "JOIN scores s ON s.pair_id = p.id AND s.received_at = p.received_at "
            f"WHERE {_LEGACY} LIMIT $1", batch_size)
        if not rows:
            return
        updates = []
        for row in rows:
            tiered = shadow_tier(row, SideView.from_row(row, "primary"),
                                 SideView.from_row(row, "shadow"))
            verdict, method, why, cost, calls, done = settled(tiered, reason)
            paths = _paths_json(tiered)
            updates.append((row["id"], verdict, method, None, why, cost, calls, None,
                            paths,
                            datetime.now(UTC) if done else None))
        async with conn.transaction():
            await conn.execute(_UPDATE_SHADOW, *(list(c) for c in zip(*updates, strict=True)))
            await conn.execute(_MARK_STALE, [row["received_at"] for row in rows])


async def _tags(conn: Any) -> list[_Tag]:
    stored = {(r["tagged"], r["tag"]): float(r["threshold"])
              for r in await conn.fetch("SELECT tagged, tag, threshold FROM judge_samples")}
    found = []
    for r in await conn.fetch(_STATS):
        key = (r["tagged"], r["tag"])
        found.append(_Tag(r["tagged"], r["tag"], int(r["tier"]), int(r["frame"]),
                          int(r["judged"]), int(r["worse"]), stored.get(key, 0.0),
                          stored.get(key)))
    return [t for t in found if t.frame]


async def _refresh_stats(conn: Any, tags: list[_Tag]) -> None:
    fresh = {(t.tagged, t.tag): t for t in await _tags(conn)}
    for t in tags:
        now = fresh.get((t.tagged, t.tag))
        if now is not None:
            t.tier, t.frame, t.judged, t.worse = now.tier, now.frame, now.judged, now.worse


async def _raise_threshold(conn: Any, t: _Tag, rule: SampleRule) -> None:
    wanted = planned_sample(rule, tier=t.tier, frame=t.frame, judged=t.judged,
                            worse=t.worse)
    if wanted >= t.frame:
        needed = 1.0
    elif wanted <= 0:
        needed = 0.0
    else:
        rank = await conn.fetchval(_nth_rank(t.tagged), t.tag, wanted - 1)
        needed = math.nextafter(float(rank), 1.0) if rank is not None else 1.0
    t.threshold = max(t.threshold, needed)


async def _fetch_candidates(conn: Any, t: _Tag, low: float, high: float, rejudge: bool,
                            limit: int) -> list[tuple[float, Any]]:
    rows = await conn.fetch(_candidates(t.tagged), t.tag, low, high, rejudge,
                            limit + len(t.done))
    return [(float(r["rank"]), r["pair_id"]) for r in rows
            if r["pair_id"] not in t.done][:limit]


async def _judge_ids(conn: Any, judging: _Judging, ids: Sequence[Any], bar: Any
                     ) -> dict[Any, str | None]:
    rows = await conn.fetch(_PAIRS_BY_ID, list(ids))
    outcome = await judging.batch(conn, rows)
    bar.update(len(rows))
    return outcome


_MARK_REFUSED = (f"UPDATE scores SET judge_reason = $3 WHERE {{tag}} AND ({JUDGE_FRAME_SQL}) "
                 f"AND verdict = 'unjudged' AND {JUDGE_RANK_SQL} < $2 "
                 "AND judge_reason IS DISTINCT FROM $3")


async def _sample_rounds(conn: Any, tags: list[_Tag], judging: _Judging, rule: SampleRule,
                         batch_size: int, bar: Any) -> None:
    """Judge every tag's sample (re-planned after each round: the pilot sizes ``auto``);
    once the budget is spent, the sample's unjudged pairs say so."""
    while not judging.run.budget.exhausted:
        queue: list[tuple[float, _Tag, Any]] = []
        for t in tags:
            await _raise_threshold(conn, t, rule)
            for rank, pair_id in await _fetch_candidates(conn, t, 0.0, t.threshold,
                                                         judging.rejudge, batch_size * 4):
                queue.append((rank / t.threshold if t.threshold else 1.0, t, pair_id))
        if not queue:
            return
        queue.sort(key=lambda item: item[0])
        for start in range(0, len(queue), batch_size):
            chunk = queue[start:start + batch_size]
            for _, t, pair_id in chunk:
                t.done.add(pair_id)
            await _judge_ids(conn, judging, [pair_id for _, _, pair_id in chunk], bar)
        await _refresh_stats(conn, tags)
    for t in tags:  # the budget is spent: the rest of the sample waits for the next run
        await conn.execute(_MARK_REFUSED.format(tag=_tag_sql(t.tagged, 1)), t.tag,
                           t.threshold, judging.run.cap_reason)


async def _extend(conn: Any, tags: list[_Tag], judging: _Judging, batch_size: int,
                  bar: Any) -> None:
    """Budget left after every sample: raise the thresholds together, in rank order,
    each only past pairs it got a verdict for."""
    while not judging.run.budget.exhausted:
        queue: list[tuple[float, _Tag, Any]] = []
        for t in tags:
            if t.threshold < 1.0 and not t.frozen:
                queue += [(rank, t, pair_id) for rank, pair_id in await _fetch_candidates(
                    conn, t, t.threshold, 1.0, False, batch_size)]
        if not queue:
            return
        queue.sort(key=lambda item: item[0])
        chunk = queue[:batch_size]
        for _, t, pair_id in chunk:
            t.done.add(pair_id)
        outcome = await _judge_ids(conn, judging, [p for _, _, p in chunk], bar)
        for t in tags:
            for rank, owner, pair_id in chunk:
                if owner is not t or t.frozen:
                    continue
                if outcome.get(pair_id) in (None, Verdict.UNJUDGED):
                    t.frozen = True  # the first pair without a verdict: stop below it
                else:
                    t.threshold = max(t.threshold, math.nextafter(rank, 1.0))


async def judge_pass(url: str, judge: Judge | None, *, rule: SampleRule, max_usd: float,
                     concurrency: int, rubrics: dict[str, str] | None, rejudge: bool,
                     batch_size: int, progress: bool,
                     scope: tuple[str | None, datetime | None] | None = None
                     ) -> JudgePassResult:
    """``scope`` (tag, since): judge that tag's frame pairs received since then, in rank
    order as far as the budget goes, instead of every tag's sample."""
    conn = await _connect(url)
    try:
        await _settle_legacy(conn, judge is not None, batch_size)
        if judge is None:
            return JudgePassResult()
        run = JudgeRun(judge, max_usd=max_usd, concurrency=concurrency, rubrics=rubrics)
        judging = _Judging(run, rejudge)
        tags = await _tags(conn)
        if rule.mode == "all":
            for t in tags:
                t.threshold = 1.0
        batch = min(batch_size, max(concurrency * 32, 64))
        with tqdm(unit="pair", desc="judging", disable=not progress,
                  dynamic_ncols=True) as bar:
            def show_spend() -> None:
                bar.set_postfix_str(f"{run.calls} calls, ${run.budget.spent_usd:.4f} of "
                                    f"${run.budget.cap_usd:g}", refresh=False)
            run.on_call = show_spend
            if scope is not None:
                await _judge_scope(conn, judging, scope, batch, bar)
                return JudgePassResult(run.calls, run.budget.spent_usd)
            await _sample_rounds(conn, tags, judging, rule, batch, bar)
            if rule.mode == "auto":  # "plus whatever the budget allows beyond it"
                await _extend(conn, tags, judging, batch, bar)
            await _judge_replays(conn, tags, judging, batch, bar)
        for t in tags:
            if t.stored is None:
                # A tag's first sample: its pairs above the threshold were scored
                # before the threshold existed (later ones are marked when scored).
                await conn.execute(_mark_not_sampled(t.tagged), t.tag, t.threshold,
                                   NOT_SAMPLED)
            if t.threshold != t.stored:
                await conn.execute(_SAVE, t.tagged, t.tag, t.threshold)
        return JudgePassResult(run.calls, run.budget.spent_usd)
    finally:
        await conn.close()


async def _judge_replays(conn: Any, tags: list[_Tag], judging: _Judging, batch_size: int,
                         bar: Any) -> None:
    """Replays wanting the judge whose pair is in its tag's sample (the shadow side was
    settled by the tiers, or judged above)."""
    thresholds = {(t.tagged, t.tag): t.threshold for t in tags}
    rows = await conn.fetch(
        f"SELECT pair_id, tag, {JUDGE_RANK_SQL} AS rank FROM scores "
        "WHERE replay_verdict = 'unjudged' OR ($1 AND replay_verdict_method = 'judge')",
        judging.rejudge)
    wanted = [r["pair_id"] for r in rows
              if r["rank"] < thresholds.get((r["tag"] is not None, r["tag"] or ""), 1.0)]
    for start in range(0, len(wanted), batch_size):
        if judging.run.budget.exhausted:
            return
        ids = wanted[start:start + batch_size]
        fetched = await conn.fetch(_PAIRS_BY_ID, ids)
        await judging.batch(conn, fetched, judge_shadow=False)
        bar.update(len(fetched))


_SCOPE_CANDIDATES = (
    f"SELECT s.pair_id FROM scores s "
    f"JOIN pairs p ON p.id = s.pair_id AND p.received_at = s.received_at "
    f"WHERE p.tag IS NOT DISTINCT FROM $1 AND ($2::timestamptz IS NULL "
    f"OR p.received_at >= $2) AND s.verdict = 'unjudged' "
    f"AND NOT (s.pair_id = ANY($3::uuid[])) "
    f"ORDER BY {JUDGE_RANK_SQL.replace('pair_id', 's.pair_id')} LIMIT $4")


async def _judge_scope(conn: Any, judging: _Judging,
                       scope: tuple[str | None, datetime | None], batch_size: int,
                       bar: Any) -> None:
    """Every unjudged frame pair of the scope, in rank order (so a budget that runs out
    leaves a uniform sample of it judged)."""
    tag, since = scope
    tried: list[Any] = []
    while not judging.run.budget.exhausted:
        ids = [r["pair_id"] for r in await conn.fetch(_SCOPE_CANDIDATES, tag, since, tried,
                                                       batch_size)]
        if not ids:
            return
        tried += ids  # a pair the judge could not decide is not asked again in this run
        await _judge_ids(conn, judging, ids, bar)

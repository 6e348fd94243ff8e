"""``shadowproxy diff``: give every stored pair a ``scores`` row and a verdict.

Two passes, both resumable and idempotent (keyset pagination, one transaction per batch):

1. **Scoring** (this module): each pair without a score gets one (``ON CONFLICT
   (pair_id, received_at) DO NOTHING``, so two runs at once never clash; a score carries
   its pair's ``received_at``, the key both tables are partitioned by): the analysts' scores (text
   similarity, tool-call match, ...; they never decide a verdict) and the tiers of
   :mod:`shadowproxy.decision.verdict`. A batch first lets PostgreSQL score the pairs
   its SQL tier settles exactly (:mod:`shadowproxy.decision.diff_sql`), then scores the
   rest in Python and writes them with one binary ``COPY``. ``jobs`` processes split
   the pairs by id range. Pairs the tiers settle (``exact``, ``structural``) or that are
   not judged (a side failed: verdict NULL, the reason in ``judge_reason``) get
   ``judged_at``; pairs that need a judge get ``unjudged``, with a reason saying whether
   they wait for the judge, lack one, or fall outside the judge's sample.
2. **Judging** (:mod:`shadowproxy.decision.judge_pass`): the judge's sample of each tag
   (:mod:`shadowproxy.decision.sampling`), plus what the budget allows beyond it.

Every batch marks the 10-minute slots it changed in ``report_stale``, in the same
transaction, and the run ends by bringing the report's summaries up to date.

When the primary was asked twice (``replay_*``) the replay is compared with the primary
the same way, into the ``replay_*`` columns: the noise floor.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from tqdm import tqdm

from shadowproxy.decision.diff_sql import BATCH, SCORE_COLUMNS, UNSCORED
from shadowproxy.decision.judge import Judge
from shadowproxy.decision.judging import needs_judge_reason
from shadowproxy.decision.sampling import SampleRule, judge_rank, parse_sample_rule
from shadowproxy.decision.scoring import SideView, answered, compare, score_pair
from shadowproxy.decision.summaries import refresh
from shadowproxy.decision.verdict import Tiered, Verdict, tier
from shadowproxy.records import ShadowOutcome
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["NOT_SAMPLED", "DiffSummary", "PairScope", "run_diff", "score_row"]

# The reason of a pair left out of the judge's sample (the report's cause keyword:
# "judge_sample").
NOT_SAMPLED = ("not in the judge's sample (SHADOWPROXY_JUDGE_SAMPLE): the report "
               "estimates the shares from the judged sample")


@dataclass(frozen=True, slots=True)
class PairScope:
    """Only a tag's pairs received at or after ``since``: ``cutover advance`` judges the
    pairs of the current step, every one the budget allows, not the tag's sample."""

    tag: str | None = None
    since: datetime | None = None


_SIDE_FIELDS = ("text", "tool_calls", "stop_reason", "status", "error")
_COLUMNS = ", ".join(
    ["p.id", "p.received_at", "p.tag", "p.shadow_outcome"]
    + [f"p.{side}_{f}" for side in ("primary", "shadow", "replay") for f in _SIDE_FIELDS]
)
_COUNT_UNSCORED = f"SELECT count(*) FROM pairs p WHERE {UNSCORED}"
_STAGE = "diff_scores"
# The staging table takes the JSON paths as text: COPY's binary format has no jsonb
# encoder once the connection decodes jsonb to Python values.
_CREATE_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
                 "(LIKE scores INCLUDING DEFAULTS) ON COMMIT DELETE ROWS; "
                 f"ALTER TABLE {_STAGE} ALTER COLUMN json_diff_paths TYPE text")
_FROM_STAGE = (f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) "
               "SELECT " + ", ".join("json_diff_paths::jsonb" if c == "json_diff_paths"
                                     else c for c in SCORE_COLUMNS) + f" FROM {_STAGE} "
               "ON CONFLICT (pair_id, received_at) DO NOTHING RETURNING agree")
_THRESHOLDS = "SELECT tagged, tag, threshold FROM judge_samples"
_MAX_ID = uuid.UUID(int=(1 << 128) - 1)


@dataclass(frozen=True, slots=True)
class DiffSummary:
    scored: int  # score rows this run wrote
    agreed: int  # of those, how many agree
    seconds: float
    verdicts: dict[str, int] = field(default_factory=dict)  # whole table, after the run
    judge_calls: int = 0
    judge_usd: float = 0.0
    not_judged: int = 0  # pairs with a failed side (verdict NULL)
    scored_in_sql: int = 0  # of ``scored``, settled by the SQL tier
    summary_seconds: float = 0.0  # bringing the report's summaries up to date


def _replayed(row: Mapping[Any, Any]) -> bool:
    return row.get("replay_status") is not None or row.get("replay_error") is not None or (
        row.get("replay_text") is not None)


def _paths_json(tiered: Tiered) -> str | None:
    return json.dumps(list(tiered.diff_paths)) if tiered.diff_paths else None


def shadow_tier(row: Mapping[Any, Any], primary: SideView, shadow: SideView,
                comparison: Any = None) -> Tiered:
    """The shadow's tier, with a failed shadow's reason naming its outcome."""
    shadow_ok = row.get("shadow_outcome") == ShadowOutcome.OK
    tiered = tier(primary, shadow, shadow_ok=shadow_ok, comparison=comparison)
    outcome = row.get("shadow_outcome")
    if not shadow_ok and tiered.reason and "shadow failed" in tiered.reason:
        tiered = Tiered(None, None, False, (), (
            "not judged: the request was not mirrored (skipped)"
            if outcome == ShadowOutcome.SKIPPED else
            f"not judged: the shadow's outcome is {outcome} (counted in shadow_error_rate)"))
    return tiered


def settled(tiered: Tiered, waiting_reason: str) -> tuple[Any, ...]:
    """``(verdict, method, reason, cost, calls, settled)`` as the tiers leave them."""
    if tiered.needs_judge:
        return Verdict.UNJUDGED.value, None, waiting_reason, None, None, False
    if tiered.verdict is None:  # a side failed: not judged
        return None, None, tiered.reason, None, None, True
    method = tiered.method.value if tiered.method else None
    return tiered.verdict.value, method, None, 0.0, 0, True


@dataclass(frozen=True, slots=True)
class _Sampling:
    """What the scoring pass needs to know of the judge: whether there is one, and
    each tag's sample threshold so far ((tagged, tag) -> threshold)."""

    judge_configured: bool = False
    thresholds: Mapping[tuple[bool, str], float] = field(default_factory=dict)

    def reason(self, row: Mapping[Any, Any]) -> str:
        """Why a pair the tiers left to the judge is unjudged: above its tag's sample
        threshold it never will be (judge or not); below it, it waits for a judge."""
        tag = row.get("tag")
        threshold = self.thresholds.get((tag is not None, tag or ""))
        if threshold is not None and judge_rank(row["id"]) >= threshold:
            return NOT_SAMPLED
        return needs_judge_reason(self.judge_configured)


def score_record(row: Mapping[Any, Any], sampling: _Sampling, now: datetime
                 ) -> tuple[Any, ...]:
    """One ``scores`` row for a ``pairs`` row, in :data:`SCORE_COLUMNS` order."""
    primary = SideView.from_row(row, "primary")
    shadow = SideView.from_row(row, "shadow")
    comparison = compare(primary, shadow)
    s = score_pair(primary, shadow, comparison)
    agree = s.agree and row.get("shadow_outcome") == ShadowOutcome.OK
    replay_agree = replay_similarity = replay_calls = None
    r_verdict = r_method = r_reason = r_cost = r_calls = None
    if _replayed(row):
        replay = SideView.from_row(row, "replay")
        if answered(primary.status, primary.error) and answered(replay.status, replay.error):
            noise = score_pair(primary, replay)
            replay_agree = noise.agree
            replay_similarity = noise.text_similarity
            replay_calls = noise.tool_call_match
        r_verdict, r_method, r_reason, r_cost, r_calls, _ = settled(
            tier(primary, replay, name="replay"),
            needs_judge_reason(sampling.judge_configured))
    tiered = shadow_tier(row, primary, shadow, comparison)
    verdict, method, reason, cost, calls, done = settled(
        tiered, sampling.reason(row) if tiered.needs_judge else "")
    return (
        row["id"], s.exact_match, s.text_similarity, s.tool_call_match, s.stop_reason_match,
        s.json_match, s.refusal, s.length_ratio, agree, replay_agree, replay_similarity,
        replay_calls, verdict, method, reason, cost, calls, _paths_json(tiered),
        now if done else None, r_verdict, r_method, r_reason, r_cost, r_calls,
        row.get("tag"), row["received_at"],
    )


def score_row(row: Mapping[Any, Any], *, judge_configured: bool = False,
              now: datetime | None = None) -> dict[str, Any]:
    """The ``scores`` row for one ``pairs`` row (columns as named in the table)."""
    record = score_record(row, _Sampling(judge_configured), now or datetime.now(UTC))
    return dict(zip(SCORE_COLUMNS, record, strict=True))


async def _connect(url: str) -> Any:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")
    # diff is resumable: a crash may lose the last batches' commits, never their
    # consistency, so it need not wait for each commit to reach the disk.
    await conn.execute("SET synchronous_commit = off")
    return conn


async def _thresholds(conn: Any) -> dict[tuple[bool, str], float]:
    return {(r["tagged"], r["tag"]): float(r["threshold"])
            for r in await conn.fetch(_THRESHOLDS)}


async def _score_batch(conn: Any, start: uuid.UUID, last: uuid.UUID, limit: int,
                       sampling: _Sampling) -> tuple[int, int, int, uuid.UUID | None]:
    """Score the next ``limit`` unscored pairs from ``start``: ``(written, agreeing,
    written in SQL, id after the batch)`` (None: nothing left in the range)."""
    async with conn.transaction():
        batch = await conn.fetch(BATCH, start, last, limit)
        if not batch:
            return 0, 0, 0, None
        in_sql = int(batch[0]["scored_in_sql"])
        now = datetime.now(UTC)
        records = [score_record(row, sampling, now) for row in batch if not row["in_sql"]]
        agreeing = 0
        written = in_sql
        if records:
            await conn.copy_records_to_table(_STAGE, records=records, columns=SCORE_COLUMNS)
            stored = await conn.fetch(_FROM_STAGE)
            written += len(stored)
            agreeing = sum(1 for r in stored if r["agree"])
    high = batch[-1]["id"]
    after = None if high.int == last.int else uuid.UUID(int=high.int + 1)
    return written, agreeing + in_sql, in_sql, after


async def _score_range(url: str, first: uuid.UUID, last: uuid.UUID, batch_size: int,
                       sampling: _Sampling, progress: Any = None) -> tuple[int, int, int]:
    conn = await _connect(url)
    try:
        await conn.execute(_CREATE_STAGE)
        scored = agreed = in_sql = 0
        start: uuid.UUID | None = first
        while start is not None:
            written, agreeing, sql, start = await _score_batch(conn, start, last, batch_size,
                                                               sampling)
            scored, agreed, in_sql = scored + written, agreed + agreeing, in_sql + sql
            if progress is not None:
                progress(written)
        return scored, agreed, in_sql
    finally:
        await conn.close()


def _job(url: str, first: int, last: int, batch_size: int, sampling: _Sampling,
         counter: Any, results: Any) -> None:
    """One ``--jobs`` process: score an id range, counting progress in ``counter``."""
    def tick(written: int) -> None:
        with counter.get_lock():
            counter.value += written

    try:
        results.put(("ok", asyncio.run(_score_range(
            url, uuid.UUID(int=first), uuid.UUID(int=last), batch_size, sampling, tick))))
    except BaseException as exc:  # reported to the parent, which raises it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


class DiffJobFailed(RuntimeError):
    """A ``--jobs`` process failed; the message is its error."""


async def _score_in_processes(url: str, jobs: int, batch_size: int, sampling: _Sampling,
                              bar: tqdm[Any]) -> tuple[int, int, int]:
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    results = context.Queue()
    step = (1 << 128) // jobs
    bounds = [(i * step, (i + 1) * step - 1 if i < jobs - 1 else (1 << 128) - 1)
              for i in range(jobs)]
    workers = [context.Process(target=_job, name=f"shadowproxy-diff-{i}", args=(
        url, low, high, batch_size, sampling, counter, results)) for i, (low, high)
        in enumerate(bounds)]
    for worker in workers:
        worker.start()
    totals = [0, 0, 0]
    errors: list[str] = []
    try:
        pending = len(workers)
        while pending:
            await asyncio.sleep(0.2)
            bar.n = counter.value
            bar.refresh()
            while not results.empty():
                kind, value = results.get()
                pending -= 1
                if kind == "ok":
                    totals = [a + b for a, b in zip(totals, value, strict=True)]
                else:
                    errors.append(value)
            if pending and not any(w.is_alive() for w in workers) and results.empty():
                errors.append("a diff job exited without a result")
                break
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    if errors:
        raise DiffJobFailed(errors[0])
    return totals[0], totals[1], totals[2]


async def _score_unscored(url: str, batch_size: int, progress: bool, sampling: _Sampling,
                          jobs: int) -> tuple[int, int, int]:
    conn = await _connect(url)
    try:
        total = int(await conn.fetchval(_COUNT_UNSCORED))
    finally:
        await conn.close()
    with tqdm(total=total, unit="pair", desc="scoring", disable=not progress,
              dynamic_ncols=True) as bar:
        if jobs > 1 and total > batch_size:
            return await _score_in_processes(url, jobs, batch_size, sampling, bar)
        return await _score_range(url, uuid.UUID(int=0), _MAX_ID, batch_size, sampling,
                                  bar.update)


async def run_diff(url: str, *, batch_size: int = 2000, progress: bool = True,
                   judge: Judge | None = None, judge_max_usd: float = 5.0,
                   judge_concurrency: int = 8, rubrics: dict[str, str] | None = None,
                   rejudge: bool = False, jobs: int = 1,
                   sample: SampleRule | str = "auto",
                   scope: PairScope | None = None) -> DiffSummary:
    """Score every pair without a score, then judge the judge's sample of what the
    tiers could not settle; safe to interrupt and to run again. With ``scope``, the
    judge sees that scope's pairs instead of the samples (scoring is for every pair:
    it is cheap and the same whoever asks)."""
    from shadowproxy.decision.judge_pass import judge_pass

    started = time.monotonic()
    rule = sample if isinstance(sample, SampleRule) else parse_sample_rule(sample)
    conn = await _connect(url)
    try:
        thresholds = await _thresholds(conn)
    finally:
        await conn.close()
    sampling = _Sampling(judge is not None, thresholds if rule.mode != "all" else {})
    scored, agreed, in_sql = await _score_unscored(url, batch_size, progress, sampling, jobs)
    run = await judge_pass(url, judge, rule=rule, max_usd=judge_max_usd,
                           concurrency=judge_concurrency, rubrics=rubrics, rejudge=rejudge,
                           batch_size=batch_size, progress=progress,
                           scope=(scope.tag, scope.since) if scope is not None else None)
    conn = await _connect(url)
    try:
        summary_started = time.monotonic()
        await refresh(conn)
        summary_seconds = time.monotonic() - summary_started
        counts = {r["verdict"]: int(r["n"]) for r in await conn.fetch(
            "SELECT verdict, count(*) AS n FROM scores GROUP BY verdict")}
    finally:
        await conn.close()
    not_judged = counts.pop(None, 0)
    return DiffSummary(
        scored=scored, agreed=agreed, seconds=time.monotonic() - started,
        verdicts={str(k): v for k, v in counts.items()},
        judge_calls=run.calls, judge_usd=run.spent_usd, not_judged=not_judged,
        scored_in_sql=in_sql, summary_seconds=summary_seconds,
    )

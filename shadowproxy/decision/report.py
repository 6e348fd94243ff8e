"""``shadowproxy report``: the numbers of the ``comparisons`` view as a typed
:class:`~shadowproxy.decision.report_model.Report` (rendered to JSON and HTML elsewhere).

Which pairs count for what is documented on the model
(:mod:`shadowproxy.decision.report_model`). In short: verdict shares are over pairs where
both sides answered and that have a verdict other than ``unjudged``; pairs without one
are counted per cause (awaiting ``diff``, no judge, outside the judge's sample, budget
spent, judge failed) so the report can say what to do. Untagged pairs count in
``overall`` only.

Everything is computed in PostgreSQL (:mod:`shadowproxy.decision.summaries`): counts,
sums, latency histograms and conversation counts per tag come back as one row per tag;
the pairs judged worse are a ``LIMIT``ed query; percentiles of a scope with at most
:data:`~shadowproxy.decision.histogram.EXACT_UP_TO` values are ``percentile_cont``.
Python holds a few hundred numbers per tag, never one value per pair.

Other report sections hook in through :data:`SECTIONS`: an async function of the
connection and the :class:`Window` that returns a value for ``Report.sections``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shadowproxy.cutover.report_section import cutover_section
from shadowproxy.decision import report_human
from shadowproxy.decision.calibration import VERDICTS
from shadowproxy.decision.histogram import (
    EXACT_UP_TO,
    cdf_from_buckets,
    percentiles_from_buckets,
)
from shadowproxy.decision.lifecycle_notices import LifecycleNotice, fetch_lifecycle_notices
from shadowproxy.decision.report_model import (
    PROJECTION_DAYS,
    Answer,
    ConversationSummary,
    Costs,
    JudgeSummary,
    Models,
    NoiseFloor,
    PathCount,
    Percentiles,
    Report,
    ScopeSummary,
    Series,
    Strata,
    Timing,
    Unjudged,
    UnjudgedCause,
    Verdicts,
    Window,
    WorstPair,
    project,
)
from shadowproxy.decision.summaries import TagFacts, read, refresh
from shadowproxy.decision.summary_sql import METRICS
from shadowproxy.lifecycle import LifecycleView
from shadowproxy.records import ShadowOutcome
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["SECTIONS", "WORST_DEFAULT", "Distribution", "ReportWindow", "assemble_report",
           "build_report", "last_user_turn"]

WORST_DEFAULT = 20
TOP_PATHS = 5
_CDF_POINTS = 100


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """What a report covers: pairs received at or after ``since`` (all when None), with
    ``tag`` (all when None), as of ``now`` (the database's clock)."""

    since: datetime | None
    tag: str | None
    now: datetime

    def pair_filter(self, alias: str = "p", first: int = 1) -> tuple[str, list[Any]]:
        """SQL on ``pairs {alias}`` for this window, with its ``$first``… arguments;
        served by ``ix_pairs_received_at`` / ``ix_pairs_tag_received_at``."""
        clauses: list[str] = ["TRUE"]
        args: list[Any] = []
        if self.since is not None:
            args.append(self.since)
            clauses.append(f"{alias}.received_at >= ${first + len(args) - 1}")
        if self.tag is not None:
            args.append(self.tag)
            clauses.append(f"{alias}.tag = ${first + len(args) - 1}")
        return " AND ".join(clauses), args


# Extra report sections (name -> builder), each run once per report on its connection.
SECTIONS: dict[str, Callable[[Any, ReportWindow], Awaitable[Any]]] = {}


@dataclass(frozen=True, slots=True)
class Distribution:
    """A scope's exact percentiles and CDF points for one metric (small scopes)."""

    p50: float | None
    p95: float | None
    p99: float | None
    cdf: tuple[tuple[float, float], ...]
    samples: int


def _both_ok(alias: str = "p") -> str:
    def ok(side: str) -> str:
        return f"({alias}.{side}_error IS NULL AND coalesce({alias}.{side}_status, 0) < 400)"
    return f"({ok('primary')} AND {alias}.shadow_outcome = 'ok' AND {ok('shadow')})"


_EXACT = """
WITH samples AS (
  {union}),
ranked AS (
  SELECT metric, v, row_number() OVER (PARTITION BY metric ORDER BY v) AS rn,
         count(*) OVER (PARTITION BY metric) AS n FROM samples)
SELECT metric, NULL::float8[] AS q, v, rn, n FROM ranked
WHERE rn = 1 OR rn = n OR rn % greatest(1, ceil(n / {points}.0)::int) = 0
UNION ALL
SELECT metric, percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY v), NULL,
       NULL, count(*) FROM samples GROUP BY metric
"""

# Pairs judged worse, spread across tags: the newest of each tag, then the next…
_WORST = """
SELECT w.* FROM unnest($1::text[], $2::bool[]) AS t(tag, tagged)
CROSS JOIN LATERAL (
  SELECT p.id, p.tag, p.received_at, p.request, p.primary_model, p.shadow_model,
    p.primary_text, p.shadow_text, p.primary_tool_calls, p.shadow_tool_calls,
    p.primary_stop_reason, p.shadow_stop_reason, s.verdict_method, s.judge_model,
    s.judge_reason, s.json_diff_paths,
    row_number() OVER (ORDER BY p.received_at DESC, p.id) AS rank
  FROM pairs p JOIN scores s ON s.pair_id = p.id AND s.received_at = p.received_at
  WHERE (CASE WHEN t.tagged THEN p.tag = t.tag ELSE p.tag IS NULL END)
    AND s.verdict = 'worse' AND {both_ok} AND {where}
  ORDER BY p.received_at DESC, p.id LIMIT $3) AS w
ORDER BY w.rank, w.tag NULLS LAST LIMIT $3
"""


async def _exact(conn: Any, window: ReportWindow, tag: str | None, scoped: bool
                 ) -> dict[str, Distribution]:
    """Exact percentiles and CDF points of each metric over a small scope (the whole
    window, or one tag's pairs in it)."""
    where, args = window.pair_filter("p")
    if scoped:
        args.append(tag)
        where += f" AND p.tag = ${len(args)}"
    union = "\n  UNION ALL ".join(
        f"SELECT '{m}' AS metric, p.{m} AS v FROM pairs p "
        f"WHERE {where} AND {_both_ok()} AND p.{m} IS NOT NULL" for m in METRICS)
    rows = await conn.fetch(_EXACT.format(union=union, points=_CDF_POINTS), *args)
    points: dict[str, list[tuple[int, float, int]]] = {}
    quantiles: dict[str, tuple[list[float], int]] = {}
    for row in rows:
        if row["q"] is not None:
            quantiles[row["metric"]] = (list(row["q"]), int(row["n"]))
        else:
            points.setdefault(row["metric"], []).append(
                (int(row["rn"]), float(row["v"]), int(row["n"])))
    found: dict[str, Distribution] = {}
    for metric, (q, n) in quantiles.items():
        ranked = sorted(points.get(metric, []))
        cdf = [(ranked[0][1], 0.0)] + [(v, rn / n) for rn, v, _ in ranked]
        found[metric] = Distribution(q[0], q[1], q[2], tuple(cdf), n)
    return found


def _facts_of(tags: Sequence[TagFacts]) -> Counter[str]:
    total: Counter[str] = Counter()
    for facts in tags:
        total.update(facts.facts)
    return total


def _prefixed(facts: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix):]: v for k, v in facts.items() if k.startswith(prefix) and v}


def _histogram(facts: Mapping[str, float], metric: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in _prefixed(facts, f"h.{metric}.").items()}


def _strata(tag: TagFacts) -> Strata:
    f = tag.facts
    return Strata(int(f.get("n.tier", 0)), int(f.get("n.frame", 0)),
                  int(f.get("n.frame.equivalent", 0)), int(f.get("n.frame.better", 0)),
                  int(f.get("n.frame.worse", 0)))


def _replay_strata(tag: TagFacts) -> Strata:
    f = tag.facts
    judged, worse = int(f.get("n.replay_frame.judged", 0)), int(f.get("n.replay_frame.worse", 0))
    # Only the worse share of the noise floor is reported: equivalent stands for the rest.
    return Strata(int(f.get("n.replay_tier", 0)), int(f.get("n.replay_frame", 0)),
                  judged - worse, 0, worse)


def _scope(tags: Sequence[TagFacts], hours: float | None,
           exact: Mapping[str, Distribution]) -> ScopeSummary:
    f = _facts_of(tags)

    def n(name: str) -> int:
        return int(f.get(f"n.{name}", 0))

    def per_1k(side: str) -> float | None:
        count = f.get(f"usd.{side}.n", 0)
        return f.get(f"usd.{side}", 0.0) / count * 1000 if count else None

    def timing(metric: str) -> Timing:
        def side(name: str) -> Percentiles:
            key = f"{name}_{metric}"
            if key in exact:
                d = exact[key]
                return Percentiles(d.p50, d.p95, d.p99)
            return Percentiles(**percentiles_from_buckets(_histogram(f, key)))
        return Timing(side("primary"), side("shadow"))

    def series(metric: str) -> Series:
        sides = []
        for name in ("primary", "shadow"):
            key = f"{name}_{metric}"
            if key in exact:
                sides.append((exact[key].cdf, exact[key].samples))
            else:
                buckets = _histogram(f, key)
                sides.append((tuple(cdf_from_buckets(buckets, _CDF_POINTS)),
                              sum(buckets.values())))
        return Series(sides[0][0], sides[1][0], max(sides[0][1], sides[1][1]))

    unjudged = {UnjudgedCause(k): int(v) for k, v in _prefixed(f, "unjudged.").items()}
    examples: dict[str, str] = {}
    for facts in tags:
        for cause, reason in facts.examples.items():
            examples[cause] = min(examples.get(cause, reason), reason)
    models: dict[str, set[str]] = {"primary": set(), "shadow": set(), "judge": set()}
    for facts in tags:
        for entry in facts.models:
            side, _, name = entry.partition(":")
            models.setdefault(side, set()).add(name)
    paths = sorted(_prefixed(f, "path.").items(), key=lambda item: (-item[1], item[0]))
    outcomes = {o.value: n(f"outcome.{o.value}") for o in ShadowOutcome
                if n(f"outcome.{o.value}")}
    costs = Costs(per_1k("primary"), per_1k("shadow"))
    replays = n("replays")
    return ScopeSummary(
        pairs_total=n("total"),
        pairs_unscored=n("unscored"),
        verdicts=Verdicts(n("verdict.equivalent"), n("verdict.better"), n("verdict.worse"),
                          sum(unjudged.values())),
        unjudged=tuple(Unjudged(cause, unjudged[cause], examples.get(cause.value))
                       for cause in UnjudgedCause if unjudged.get(cause)),
        judge=JudgeSummary(tuple(sorted(models["judge"])), n("judge_calls"),
                           float(f.get("usd.judge", 0.0)), n("judge_pairs"),
                           n("position_inconsistent")),
        noise_floor=NoiseFloor(replays, n("replay_worse"),
                               tuple(_replay_strata(t) for t in tags)) if replays else None,
        tool_call_pairs=n("tool_pairs"), tool_call_matched=n("tool_matched"),
        stop_reason_pairs=n("scored"), stop_reason_matched=n("stop_matched"),
        shadow_attempted=n("attempted"), shadow_failed=n("shadow_failed"),
        mirrored=n("total") - n("outcome.skipped"),
        shadow_outcomes=dict(sorted(outcomes.items())),
        latency_ms=timing("latency_ms"),
        ttft_ms=timing("ttft_ms"),
        cost_usd_per_1k=costs,
        projection=project(costs, n("total"), hours),
        json_diff_paths=tuple(PathCount(p, int(c)) for p, c in paths[:TOP_PATHS]),
        models=Models(tuple(sorted(models["primary"])), tuple(sorted(models["shadow"]))),
        latency_cdf=series("latency_ms"),
        ttft_cdf=series("ttft_ms"),
        strata=tuple(_strata(t) for t in tags),
    )


def _conversations(tags: Sequence[TagFacts]) -> dict[str, ConversationSummary]:
    """Per tag, and across all traffic under "" (each tag's conversations counted; a tag
    named "" has no scope of its own here, its key being taken)."""
    found: dict[str, ConversationSummary] = {}
    scopes: list[tuple[str, Sequence[TagFacts]]] = [("", tags)]
    scopes += [(t.tag, [t]) for t in tags if t.tag]
    for name, members in scopes:
        f = _facts_of(members)
        opened = int(f.get("conv.opened", 0))
        if not opened:
            continue
        turns = {int(k): int(v) for k, v in _prefixed(f, "conv.turn.").items()}
        found[name] = ConversationSummary(opened, int(f.get("conv.worse", 0)),
                                          dict(sorted(turns.items())))
    return found


def _content_text(content: Any) -> str:
    """Text of one message's content: a string, or a list of parts (images named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif kind in ("image", "image_url", "input_image"):
            parts.append("[image]")
        elif kind == "tool_result":
            parts.append(f"[tool result] {_content_text(part.get('content'))}".rstrip())
    return "\n".join(parts)


def last_user_turn(request: Any) -> str:
    """What the user last said, from a stored OpenAI or Anthropic request body."""
    if not isinstance(request, Mapping):
        return ""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _worst_entry(row: Mapping[Any, Any]) -> WorstPair:
    def answer(side: str) -> Answer:
        calls = row[f"{side}_tool_calls"]
        return Answer(row[f"{side}_model"], row[f"{side}_text"] or "",
                      tuple(calls) if isinstance(calls, list) else (),
                      row[f"{side}_stop_reason"])

    paths = row["json_diff_paths"]
    return WorstPair(
        id=str(row["id"]), tag=row["tag"], received_at=row["received_at"],
        prompt=last_user_turn(row["request"]), primary=answer("primary"),
        shadow=answer("shadow"), verdict_method=row["verdict_method"],
        judge_model=row["judge_model"], judge_reason=row["judge_reason"],
        json_diff_paths=tuple(str(p) for p in paths) if isinstance(paths, list) else (),
    )


def _small(tags: Sequence[TagFacts]) -> bool:
    """At most EXACT_UP_TO values of every metric over these tags."""
    return all(sum(sum(_histogram(t.facts, m).values()) for t in tags) <= EXACT_UP_TO
               for m in METRICS)


async def build_report(
    source: str | asyncpg.Pool, *, since: datetime | None = None, tag: str | None = None,
    worst: int = WORST_DEFAULT, summarise: bool = True,
    lifecycle: LifecycleView | None = None,
) -> Report:
    """The report for pairs received at or after ``since`` (and with ``tag``, if given).

    ``lifecycle`` (the day and the end-of-life data; the CLI and the dashboard pass the
    real ones) adds a notice for every deprecated or retired model the pairs name.

    ``source`` is a database URL (a connection for this call) or a pool the caller keeps,
    as the dashboard does. asyncpg rather than SQLAlchemy: the dashboard runs this inside
    the proxy process, which stays free of SQLAlchemy (an import contract checks it).
    ``summarise=False`` skips bringing the stored summaries up to date first (they are
    then read as they are, stale slots included).
    """
    async with contextlib.AsyncExitStack() as stack:
        conn: Any
        if isinstance(source, str):
            conn = await asyncpg.connect(asyncpg_dsn(source))
            stack.push_async_callback(conn.close)
        else:
            conn = await stack.enter_async_context(source.acquire())
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")
        refreshed = await refresh(conn) if summarise else None
        window = ReportWindow(since, tag, await conn.fetchval("SELECT now()"))
        tags = await read(conn, since=since, tag=tag, now=window.now, refreshed=refreshed)
        # Small scopes get exact percentiles: a handful of requests reads as a handful.
        exact: dict[str | None, dict[str, Distribution]] = {}
        if tags and _small(tags):
            exact[None] = await _exact(conn, window, None, scoped=False)
        for facts in tags:
            if facts.tag is not None and _small([facts]):
                exact[facts.tag] = await _exact(conn, window, facts.tag, scoped=True)
        where, args = window.pair_filter("p", first=4)
        worst_rows = [dict(r) for r in await conn.fetch(
            _WORST.format(both_ok=_both_ok(), where=where),
            [t.tag or "" for t in tags], [t.tag is not None for t in tags], worst, *args)]
        sections = {name: await section(conn, window) for name, section in SECTIONS.items()}
        fetch = _named_fetch(conn, since, tag)
        where = _comparisons_filter(since, tag)
        # People's labels: small queries that start from ``reviews`` (report_human).
        human = await report_human.fetch_human(fetch, where, _both_ok("c"))
        notices = (await fetch_lifecycle_notices(fetch, where, _named_models(tags),
                                                 lifecycle)
                   if lifecycle is not None else ())
        cutover = await cutover_section(conn, tag=tag, since=since)
        moving = (await conn.fetchval("SELECT count(*) FROM legacy_pairs")
                  if await conn.fetchval("SELECT to_regclass('legacy_pairs') IS NOT NULL")
                  else None)
    report = assemble_report(tags, worst_rows, exact=exact, since=since, tag=tag,
                             now=window.now, sections=sections, lifecycle=notices)
    report = report_human.attach_human(report, _judge_frames(tags), human)
    return dataclasses.replace(report, cutover=cutover, pairs_still_moving=moving)


def _named_models(tags: Sequence[TagFacts]) -> dict[str, list[str]]:
    """Every model id the pairs name per role, answered or not (a retired model's pairs
    are all errors; its id comes from the request)."""
    named: dict[str, set[str]] = {"primary": set(), "shadow": set(), "judge": set()}
    for facts in tags:
        for entry in facts.models:
            role, _, name = entry.partition(":")
            if role.startswith("named-"):
                named.setdefault(role[len("named-"):], set()).add(name)
            elif role == "judge":
                named["judge"].add(name)
    return {role: sorted(names) for role, names in named.items()}


def _judge_frames(tags: Sequence[TagFacts]) -> list[dict[str, Any]]:
    """Per tag, what the calibration needs from the summaries: the judge's verdicts
    (``judge_frame_<v>``) and all verdicts (``verdict_<v>``). When the judge saw a
    sample of its frame, the tiers' verdicts are scaled to the sample's share so the
    two strata keep the weights they have among the pairs."""
    rows: list[dict[str, Any]] = []
    for t in tags:
        f = t.facts
        judged = {v: float(f.get(f"n.frame.{v}", 0)) for v in VERDICTS}
        eligible = float(f.get("n.frame", 0))
        share = sum(judged.values()) / eligible if eligible else 1.0
        row: dict[str, Any] = {"tag": t.tag}
        for v in VERDICTS:
            row[f"judge_frame_{v}"] = int(judged[v])
            row[f"verdict_{v}"] = judged[v] + (float(f.get(f"n.verdict.{v}", 0))
                                               - judged[v]) * share
        rows.append(row)
    return rows


def _comparisons_filter(since: datetime | None, tag: str | None) -> str:
    """The window over ``comparisons`` with ``:since`` / ``:tag`` parameters."""
    clauses = ["TRUE"]
    if since is not None:
        clauses.append("received_at >= :since")
    if tag is not None:
        clauses.append("tag = :tag")
    return " AND ".join(clauses)


_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def _named_fetch(conn: Any, since: datetime | None, tag: str | None
                 ) -> report_human.Fetch:
    """A query function taking ``:name`` parameters (the window's and the caller's),
    bound as asyncpg's ``$n``, each name once."""
    params: dict[str, Any] = {"since": since, "tag": tag}

    async def fetch(sql: str, extra: Mapping[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
        bound = {**params, **(extra or {})}
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in order:
                order.append(name)
            return f"${order.index(name) + 1}"

        query = _NAMED.sub(number, sql)
        return [dict(row) for row in await conn.fetch(query, *[bound[n] for n in order])]

    return fetch


def assemble_report(
    tags: Sequence[TagFacts], worst_rows: Sequence[Mapping[Any, Any]], *,
    exact: Mapping[str | None, Mapping[str, Distribution]] | None = None,
    since: datetime | None = None, tag: str | None = None,
    now: datetime | None = None, sections: Mapping[str, Any] | None = None,
    lifecycle: Sequence[LifecycleNotice] = (),
) -> Report:
    """The report from each tag's summed facts (``tag`` None: untagged), the pairs
    judged worse, and exact distributions of small scopes (key None: overall)."""
    exact = exact or {}
    firsts = [t.first_at for t in tags if t.first_at is not None]
    lasts = [t.last_at for t in tags if t.last_at is not None]
    window = Window(since, min(firsts) if firsts else None, max(lasts) if lasts else None)
    hours = window.hours
    overall = _scope(tags, hours, exact.get(None, {}))
    by_tag = {t.tag: _scope([t], hours, exact.get(t.tag, {}))
              for t in sorted(tags, key=lambda t: t.tag or "") if t.tag is not None}
    generated = now or datetime.now(UTC)
    return Report(
        generated_at=generated,
        window=window,
        tag_filter=tag,
        overall=overall,
        by_tag=by_tag,
        worst=tuple(_worst_entry(r) for r in worst_rows),
        projection_days=PROJECTION_DAYS,
        conversations=_conversations(tags),
        lifecycle=tuple(lifecycle),
        sections=dict(sections or {}),
    )


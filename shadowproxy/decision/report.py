"""``shadowproxy report``: read the ``comparisons`` view into a typed
:class:`~shadowproxy.decision.report_model.Report` (rendered to JSON and HTML elsewhere).

Which pairs count for what is documented on the model
(:mod:`shadowproxy.decision.report_model`). In short: verdict shares are over pairs where both
sides answered and that have a verdict other than ``unjudged``; pairs without one are
counted per cause (awaiting ``diff``, no judge, budget spent, judge failed) so the
report can say what to do. Untagged pairs count in ``overall`` only.

PostgreSQL does the counting (one ``GROUP BY tag`` pass over ``comparisons``) and hands
back the latency, TTFT and cost samples as arrays; percentiles and CDFs are computed in
Python from those, so 100k pairs take a second or two rather than a row-by-row loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

import asyncpg

from shadowproxy.conversations import worse_conversations_by_tag
from shadowproxy.cutover.report_section import cutover_section
from shadowproxy.decision import report_human
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
    Timing,
    Unjudged,
    UnjudgedCause,
    Verdicts,
    Window,
    WorstPair,
    classify_unjudged,
    project,
)
from shadowproxy.decision.stats import cdf_points, percentiles
from shadowproxy.lifecycle import LifecycleView
from shadowproxy.records import ShadowOutcome
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["WORST_DEFAULT", "assemble_report", "build_report", "last_user_turn"]

WORST_DEFAULT = 20
TOP_PATHS = 5


def _tool_flag(column: str) -> str:
    return (f"(CASE WHEN jsonb_typeof({column}) = 'array' "
            f"THEN jsonb_array_length({column}) ELSE 0 END > 0)")


def _answered_sql(side: str) -> str:
    """SQL twin of :func:`shadowproxy.decision.scoring.answered`."""
    return f"({side}_error IS NULL AND coalesce({side}_status, 0) < 400)"


_PRIMARY_OK = _answered_sql("primary")
_SHADOW_OK = f"(shadow_outcome = 'ok' AND {_answered_sql('shadow')})"
_BOTH_OK = f"({_PRIMARY_OK} AND {_SHADOW_OK})"
_SCORED = f"({_BOTH_OK} AND scored_at IS NOT NULL)"
_NO_VERDICT = f"({_BOTH_OK} AND (verdict IS NULL OR verdict NOT IN "\
              "('equivalent', 'better', 'worse')))"
_USED_TOOLS = f"({_tool_flag('primary_tool_calls')} OR {_tool_flag('shadow_tool_calls')})"
_ATTEMPTED_SQL = "shadow_outcome IN ('ok', 'error', 'timeout')"
_REPLAY_JUDGED = f"({_PRIMARY_OK} AND replay_verdict IN ('equivalent', 'better', 'worse'))"
_SAMPLED = [f"{side}_{metric}" for metric in ("latency_ms", "ttft_ms", "cost_usd")
            for side in ("primary", "shadow")]
_MODELS = {"primary_models": ("primary_model", _PRIMARY_OK),
           "shadow_models": ("shadow_model", _SHADOW_OK),
           "judge_models": ("judge_model", "verdict_method = 'judge'")}

# One row per tag (NULL: untagged); counts and the raw samples for percentiles.
_GROUP_COLUMNS = ", ".join([
    "tag",
    "count(*) AS total",
    "count(*) FILTER (WHERE scored_at IS NULL) AS unscored",
    *(f"count(*) FILTER (WHERE shadow_outcome = '{o.value}') AS outcome_{o.value}"
      for o in ShadowOutcome),
    *(f"count(*) FILTER (WHERE {_BOTH_OK} AND verdict = '{v}') AS verdict_{v}"
      for v in ("equivalent", "better", "worse")),
    f"count(*) FILTER (WHERE {_SCORED}) AS scored",
    f"count(*) FILTER (WHERE {_SCORED} AND stop_reason_match) AS stop_matched",
    f"count(*) FILTER (WHERE {_SCORED} AND {_USED_TOOLS}) AS tool_pairs",
    f"count(*) FILTER (WHERE {_SCORED} AND {_USED_TOOLS} AND tool_call_match) AS tool_matched",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND {_ATTEMPTED_SQL}) AS attempted",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND {_ATTEMPTED_SQL} AND NOT {_SHADOW_OK}) "
    "AS shadow_failed",
    f"count(*) FILTER (WHERE {_REPLAY_JUDGED}) AS replays",
    f"count(*) FILTER (WHERE {_REPLAY_JUDGED} AND replay_verdict = 'worse') AS replay_worse",
    "coalesce(sum(coalesce(judge_calls, 0) + coalesce(replay_judge_calls, 0)), 0) "
    "AS judge_calls",
    "coalesce(sum(coalesce(judge_cost_usd, 0) + coalesce(replay_judge_cost_usd, 0)), 0) "
    "AS judge_cost_usd",
    f"count(*) FILTER (WHERE {_BOTH_OK} AND verdict_method = 'judge') AS judge_pairs",
    f"count(*) FILTER (WHERE {_BOTH_OK} AND verdict_method = 'judge' "
    "AND position_inconsistent) AS position_inconsistent",
    "min(received_at) AS first",
    "max(received_at) AS last",
    *(f"array_agg(DISTINCT {column}) FILTER (WHERE {where}) AS {name}"
      for name, (column, where) in _MODELS.items()),
    *(f"array_agg({c}) FILTER (WHERE {_BOTH_OK} AND {c} IS NOT NULL) AS {c}"
      for c in _SAMPLED),
    *report_human.frame_columns(_BOTH_OK),
])
_COUNTS = ("total", "unscored", "verdict_equivalent", "verdict_better", "verdict_worse",
           "scored", "stop_matched", "tool_pairs", "tool_matched", "attempted",
           "shadow_failed", "replays", "replay_worse", "judge_calls", "judge_pairs",
           "position_inconsistent")
# Pairs without a verdict, by what they are waiting for.
_UNJUDGED_QUERY = (
    "SELECT tag, verdict, judge_reason, scored_at IS NOT NULL AS scored, count(*) AS pairs "
    f"FROM comparisons WHERE {{where}} AND {_NO_VERDICT} "
    "GROUP BY tag, verdict, judge_reason, scored_at IS NOT NULL"
)
_PATHS_QUERY = (
    "SELECT tag, diff_path, count(DISTINCT id) AS pairs FROM comparisons, "
    "jsonb_array_elements_text(CASE WHEN jsonb_typeof(json_diff_paths) = 'array' "
    "THEN json_diff_paths ELSE '[]'::jsonb END) AS diff_path "
    f"WHERE {{where}} AND {_BOTH_OK} GROUP BY tag, diff_path"
)
# Pairs judged worse, spread across tags: the newest of each tag, then the next…
_WORST_QUERY = (
    "SELECT * FROM (SELECT id, tag, received_at, request, primary_model, shadow_model, "
    "primary_text, shadow_text, primary_tool_calls, shadow_tool_calls, "
    "primary_stop_reason, shadow_stop_reason, verdict_method, judge_model, judge_reason, "
    "json_diff_paths, row_number() OVER (PARTITION BY tag ORDER BY received_at DESC, id) "
    "AS rank FROM comparisons "
    f"WHERE {{where}} AND {_BOTH_OK} AND verdict = 'worse') AS ranked "
    "ORDER BY rank, tag NULLS LAST LIMIT :worst"
)


@dataclass(slots=True)
class _Tally:
    """Counts and samples for one scope: one tag's group, or all groups for overall."""

    counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[float]] = field(default_factory=dict)
    models: dict[str, set[str]] = field(default_factory=dict)
    judge_cost: float = 0.0
    unjudged: Counter[UnjudgedCause] = field(default_factory=Counter)
    unjudged_example: dict[UnjudgedCause, str] = field(default_factory=dict)
    paths: Counter[str] = field(default_factory=Counter)

    def absorb(self, group: Mapping[Any, Any]) -> None:
        for name in _COUNTS:
            self.counts[name] += int(group[name] or 0)
        self.judge_cost += float(group["judge_cost_usd"] or 0)
        for outcome in ShadowOutcome:
            if group[f"outcome_{outcome.value}"]:
                self.outcomes[outcome.value] += int(group[f"outcome_{outcome.value}"])
        for column in _SAMPLED:
            self.samples.setdefault(column, []).extend(group[column] or ())
        for name in _MODELS:
            self.models.setdefault(name, set()).update(m for m in group[name] or () if m)

    def absorb_unjudged(self, row: Mapping[Any, Any]) -> None:
        cause = classify_unjudged(row["verdict"], row["judge_reason"], bool(row["scored"]))
        self.unjudged[cause] += int(row["pairs"])
        if row["judge_reason"] and cause not in self.unjudged_example:
            self.unjudged_example[cause] = str(row["judge_reason"])[:200]

    def summary(self, hours: float | None) -> ScopeSummary:
        c = self.counts
        costs = Costs(self._per_1k("primary"), self._per_1k("shadow"))
        return ScopeSummary(
            pairs_total=c["total"],
            pairs_unscored=c["unscored"],
            verdicts=Verdicts(c["verdict_equivalent"], c["verdict_better"],
                              c["verdict_worse"], sum(self.unjudged.values())),
            unjudged=tuple(Unjudged(cause, self.unjudged[cause],
                                    self.unjudged_example.get(cause))
                           for cause in UnjudgedCause if self.unjudged[cause]),
            judge=JudgeSummary(tuple(sorted(self.models.get("judge_models", ()))),
                               c["judge_calls"], self.judge_cost, c["judge_pairs"],
                               c["position_inconsistent"]),
            noise_floor=NoiseFloor(c["replays"], c["replay_worse"]) if c["replays"] else None,
            tool_call_pairs=c["tool_pairs"], tool_call_matched=c["tool_matched"],
            stop_reason_pairs=c["scored"], stop_reason_matched=c["stop_matched"],
            shadow_attempted=c["attempted"], shadow_failed=c["shadow_failed"],
            mirrored=c["total"] - self.outcomes[ShadowOutcome.SKIPPED],
            shadow_outcomes=dict(sorted(self.outcomes.items())),
            latency_ms=self._timing("latency_ms"),
            ttft_ms=self._timing("ttft_ms"),
            cost_usd_per_1k=costs,
            projection=project(costs, c["total"], hours),
            json_diff_paths=tuple(PathCount(p, n) for p, n in sorted(
                self.paths.items(), key=lambda item: (-item[1], item[0]))[:TOP_PATHS]),
            models=Models(tuple(sorted(self.models.get("primary_models", ()))),
                          tuple(sorted(self.models.get("shadow_models", ())))),
            latency_cdf=self._series("latency_ms"),
            ttft_cdf=self._series("ttft_ms"),
        )

    def _timing(self, metric: str) -> Timing:
        def side(name: str) -> Percentiles:
            return Percentiles(**percentiles(self.samples.get(f"{name}_{metric}", [])))

        return Timing(side("primary"), side("shadow"))

    def _series(self, metric: str) -> Series:
        primary = self.samples.get(f"primary_{metric}", [])
        shadow = self.samples.get(f"shadow_{metric}", [])
        return Series(tuple(cdf_points(primary)), tuple(cdf_points(shadow)),
                      max(len(primary), len(shadow)))

    def _per_1k(self, side: str) -> float | None:
        costs = self.samples.get(f"{side}_cost_usd")
        return fmean(costs) * 1000 if costs else None


def _filters(since: datetime | None, tag: str | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append("received_at >= :since")
        params["since"] = since
    if tag is not None:
        clauses.append("tag = :tag")
        params["tag"] = tag
    return " AND ".join(clauses), params


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


async def build_report(
    source: str | asyncpg.Pool, *, since: datetime | None = None, tag: str | None = None,
    worst: int = WORST_DEFAULT, lifecycle: LifecycleView | None = None,
) -> Report:
    """The report for pairs received at or after ``since`` (and with ``tag``, if given).

    ``lifecycle`` (the day and the end-of-life data; the CLI and the dashboard pass the
    real ones) adds a notice for every deprecated or retired model the pairs name.

    ``source`` is a database URL (a connection for this call) or a pool the caller keeps,
    as the dashboard does. asyncpg rather than SQLAlchemy: the dashboard runs this inside
    the proxy process, which stays free of SQLAlchemy (an import contract checks it).
    """
    where, params = _filters(since, tag)
    async with contextlib.AsyncExitStack() as stack:
        conn: Any
        if isinstance(source, str):
            conn = await asyncpg.connect(asyncpg_dsn(source))
            stack.push_async_callback(conn.close)
        else:
            conn = await stack.enter_async_context(source.acquire())
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")

        async def fetch(sql: str, extra: Mapping[str, Any] | None = None
                        ) -> list[dict[str, Any]]:
            query, args = _positional(sql, {**params, **(extra or {})})
            return [dict(row) for row in await conn.fetch(query, *args)]

        groups = await fetch(
            f"SELECT {_GROUP_COLUMNS} FROM comparisons WHERE {where} GROUP BY tag")
        unjudged = await fetch(_UNJUDGED_QUERY.format(where=where))
        paths = await fetch(_PATHS_QUERY.format(where=where))
        worst_rows = await fetch(_WORST_QUERY.format(where=where), {"worst": worst})
        turns = await fetch(
            "SELECT tag, conversation_id, turn, verdict FROM comparisons "
            f"WHERE {where} AND conversation_id IS NOT NULL")
        cutover = await cutover_section(conn, tag=tag, since=since)
        human = await report_human.fetch_human(fetch, where, _BOTH_OK)
        notices = (await fetch_lifecycle_notices(fetch, where, lifecycle)
                   if lifecycle is not None else ())
    report = assemble_report(groups, worst_rows, unjudged=unjudged, paths=paths,
                             turns=turns, since=since, tag=tag, lifecycle=notices)
    report = report_human.attach_human(report, groups, human)
    return dataclasses.replace(report, cutover=cutover)


_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def _positional(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``:name`` parameters as asyncpg's ``$n``, each name bound once."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _NAMED.sub(number, sql), [params[name] for name in order]


def assemble_report(
    groups: Sequence[Mapping[Any, Any]], worst_rows: Sequence[Mapping[Any, Any]], *,
    unjudged: Sequence[Mapping[Any, Any]] = (), paths: Sequence[Mapping[Any, Any]] = (),
    turns: Sequence[Mapping[Any, Any]] = (),
    since: datetime | None = None, tag: str | None = None,
    lifecycle: Sequence[LifecycleNotice] = (),
) -> Report:
    """The report from the fetched rows: per-tag groups, unjudged causes, JSON paths
    that differ, and the pairs judged worse."""
    overall = _Tally()
    by_tag: dict[str, _Tally] = {}

    def tallies(row_tag: str | None) -> list[_Tally]:
        if row_tag is None:
            return [overall]
        return [overall, by_tag.setdefault(row_tag, _Tally())]

    for group in groups:
        for tally in tallies(group["tag"]):
            tally.absorb(group)
    for row in unjudged:
        for tally in tallies(row["tag"]):
            tally.absorb_unjudged(row)
    for row in paths:
        for tally in tallies(row["tag"]):
            tally.paths[str(row["diff_path"])] += int(row["pairs"])
    firsts = [g["first"] for g in groups if g["first"] is not None]
    lasts = [g["last"] for g in groups if g["last"] is not None]
    window = Window(since, min(firsts) if firsts else None, max(lasts) if lasts else None)
    hours = window.hours
    summary = overall.summary(hours)
    now = datetime.now(UTC)
    return Report(
        generated_at=now,
        window=window,
        tag_filter=tag,
        overall=summary,
        by_tag={name: tally.summary(hours) for name, tally in sorted(by_tag.items())},
        worst=tuple(_worst_entry(r) for r in worst_rows),
        projection_days=PROJECTION_DAYS,
        conversations=_conversations(turns),
        lifecycle=tuple(lifecycle),
    )


def _conversations(rows: Sequence[Mapping[Any, Any]]) -> dict[str, ConversationSummary]:
    """Per tag, and across all traffic under "" (a conversation counted once there)."""
    every = [{**row, "tag": ""} for row in rows]
    found = worse_conversations_by_tag([*rows, *every])
    return {tag: ConversationSummary(c.conversations, c.with_worse,
                                     dict(c.first_worse_turns))
            for tag, c in found.items() if tag is not None}

"""``shadowproxy report``: the evidence as one JSON-able dict (rendered to HTML elsewhere).

Which pairs count for what (every share below has its own denominator):

* ``pairs`` / ``agreement`` / ``tool_call_match``: scored pairs where both sides answered
  (primary without error, shadow outcome ``ok`` without error). A failed primary has no
  reference answer; a failed shadow is counted in ``shadow_error_rate`` instead.
  ``tool_call_match`` only looks at pairs where either side called a tool (null if none).
* ``shadow_error_rate``: of pairs whose primary answered and whose shadow was attempted
  (not dropped, not skipped), the share whose shadow errored or timed out.
* ``shadow_drop_rate``: of mirrored pairs (all but ``skipped``), the share ``dropped``.
* latency, TTFT and cost: pairs where both sides answered, scored or not, so both
  columns describe the same requests. Costs ignore pairs whose price is unknown.
* ``projected_saving_usd``: (primary - shadow) cost per request times the number of
  recorded pairs per 30 days at the rate seen between the first and last pair. Recorded
  pairs only: divide by ``SAMPLE_RATE`` for the full traffic.

Untagged pairs count in ``overall`` only; ``by_tag`` holds one entry per named tag.

PostgreSQL does the counting (one ``GROUP BY tag`` pass over ``comparisons``) and hands
back the latency, TTFT and cost samples as arrays; percentiles and CDFs are computed in
Python from those, so 100k pairs take a second or two rather than a row-by-row loop.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

import asyncpg

from shadowproxy.decision.scoring import TEXT_SIMILARITY_THRESHOLD
from shadowproxy.decision.stats import cdf_points, percentiles, wilson_interval
from shadowproxy.records import ShadowOutcome
from shadowproxy.store.urls import asyncpg_dsn

__all__ = ["PROJECTION_DAYS", "assemble_report", "build_report", "summarize"]

PROJECTION_DAYS = 30
WORST_DEFAULT = 20


def _tool_flag(column: str) -> str:
    return (f"(CASE WHEN jsonb_typeof({column}) = 'array' "
            f"THEN jsonb_array_length({column}) ELSE 0 END > 0)")


def _answered_sql(side: str) -> str:
    """SQL twin of :func:`shadowproxy.decision.scoring.answered`."""
    return f"({side}_error IS NULL AND coalesce({side}_status, 0) < 400)"


_PRIMARY_OK = _answered_sql("primary")
_SHADOW_OK = f"(shadow_outcome = 'ok' AND {_answered_sql('shadow')})"
_BOTH_OK = f"({_PRIMARY_OK} AND {_SHADOW_OK})"
_JUDGED = f"({_BOTH_OK} AND scored_at IS NOT NULL)"
_USED_TOOLS = f"({_tool_flag('primary_tool_calls')} OR {_tool_flag('shadow_tool_calls')})"
_ATTEMPTED_SQL = "shadow_outcome IN ('ok', 'error', 'timeout')"
_SAMPLED = [f"{side}_{metric}" for metric in ("latency_ms", "ttft_ms", "cost_usd")
            for side in ("primary", "shadow")]

# One row per tag (NULL: untagged); counts and the raw samples for percentiles.
_GROUP_COLUMNS = ", ".join([
    "tag",
    "count(*) AS total",
    "count(*) FILTER (WHERE scored_at IS NULL) AS unscored",
    *(f"count(*) FILTER (WHERE shadow_outcome = '{o.value}') AS outcome_{o.value}"
      for o in ShadowOutcome),
    f"count(*) FILTER (WHERE {_JUDGED}) AS judged",
    f"count(*) FILTER (WHERE {_JUDGED} AND agree) AS agreed",
    f"count(*) FILTER (WHERE {_JUDGED} AND stop_reason_match) AS stop_matched",
    f"count(*) FILTER (WHERE {_JUDGED} AND {_USED_TOOLS}) AS tool_pairs",
    f"count(*) FILTER (WHERE {_JUDGED} AND {_USED_TOOLS} AND tool_call_match) AS tool_matched",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND {_ATTEMPTED_SQL}) AS attempted",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND {_ATTEMPTED_SQL} AND NOT {_SHADOW_OK}) "
    "AS shadow_failed",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND replay_agree IS NOT NULL) AS replays",
    f"count(*) FILTER (WHERE {_PRIMARY_OK} AND replay_agree) AS replay_agreed",
    "min(received_at) AS first",
    "max(received_at) AS last",
    *(f"array_agg({c}) FILTER (WHERE {_BOTH_OK} AND {c} IS NOT NULL) AS {c}"
      for c in _SAMPLED),
])
_COUNTS = ("total", "unscored", "judged", "agreed", "stop_matched", "tool_pairs",
           "tool_matched", "attempted", "shadow_failed", "replays", "replay_agreed")
_WORST_COLUMNS = (
    "id, tag, received_at, text_similarity, primary_text, shadow_text, primary_tool_calls, "
    "shadow_tool_calls, primary_stop_reason, shadow_stop_reason"
)


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


@dataclass(slots=True)
class _Tally:
    """Counts and samples for one scope: one tag's group, or all groups for overall."""

    counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def absorb(self, group: Mapping[Any, Any]) -> None:
        for name in _COUNTS:
            self.counts[name] += int(group[name])
        for outcome in ShadowOutcome:
            if group[f"outcome_{outcome.value}"]:
                self.outcomes[outcome.value] += int(group[f"outcome_{outcome.value}"])
        for column in _SAMPLED:
            self.samples.setdefault(column, []).extend(group[column] or ())

    def summary(self, window_days: float | None) -> dict[str, Any]:
        c = self.counts
        mirrored = c["total"] - self.outcomes[ShadowOutcome.SKIPPED]
        cost = {side: self._per_1k(side) for side in ("primary", "shadow")}
        saving = None
        if cost["primary"] is not None and cost["shadow"] is not None and window_days:
            per_request = (cost["primary"] - cost["shadow"]) / 1000
            saving = per_request * c["total"] / window_days * PROJECTION_DAYS
        return {
            "pairs": c["judged"],
            "pairs_total": c["total"],
            "pairs_unscored": c["unscored"],
            "agreement": _share(c["agreed"], c["judged"]),
            "agreement_ci95": (list(wilson_interval(c["agreed"], c["judged"]))
                               if c["judged"] else None),
            "tool_call_match": _share(c["tool_matched"], c["tool_pairs"]),
            "tool_call_pairs": c["tool_pairs"],
            "stop_reason_match": _share(c["stop_matched"], c["judged"]),
            "shadow_error_rate": _share(c["shadow_failed"], c["attempted"]),
            "shadow_drop_rate": _share(self.outcomes[ShadowOutcome.DROPPED], mirrored),
            "shadow_outcomes": dict(sorted(self.outcomes.items())),
            "latency_ms": self._percentiles("latency_ms"),
            "ttft_ms": self._percentiles("ttft_ms"),
            "cost_usd_per_1k": cost,
            "projected_saving_usd": saving,
            "noise_floor": ({
                "pairs": c["replays"],
                "agreement": c["replay_agreed"] / c["replays"],
                "agreement_ci95": list(wilson_interval(c["replay_agreed"], c["replays"])),
            } if c["replays"] else None),
            "cdf": {metric: {side: [list(p) for p in cdf_points(
                         self.samples.get(f"{side}_{metric}", []))]
                             for side in ("primary", "shadow")}
                    for metric in ("latency_ms", "ttft_ms")},
        }

    def _percentiles(self, metric: str) -> dict[str, dict[str, float | None]]:
        return {side: percentiles(self.samples.get(f"{side}_{metric}", []))
                for side in ("primary", "shadow")}

    def _per_1k(self, side: str) -> float | None:
        costs = self.samples.get(f"{side}_cost_usd")
        return fmean(costs) * 1000 if costs else None


def summarize(groups: Sequence[Mapping[Any, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(overall and by_tag, window) from the per-tag group rows of the summary query."""
    overall = _Tally()
    by_tag: dict[str, _Tally] = {}
    for group in groups:
        overall.absorb(group)
        if group["tag"] is not None:
            by_tag.setdefault(group["tag"], _Tally()).absorb(group)
    firsts = [g["first"] for g in groups if g["first"] is not None]
    lasts = [g["last"] for g in groups if g["last"] is not None]
    first: datetime | None = min(firsts) if firsts else None
    last: datetime | None = max(lasts) if lasts else None
    days = (last - first).total_seconds() / 86400 if first and last else None
    window = {"first": first.isoformat() if first else None,
              "last": last.isoformat() if last else None,
              "days": days}
    return (
        {"overall": overall.summary(days),
         "by_tag": {tag: tally.summary(days) for tag, tally in sorted(by_tag.items())}},
        window,
    )


def _filters(since: datetime | None, tag: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause and its positional arguments ($1, $2, …) for asyncpg."""
    clauses: list[str] = ["TRUE"]
    args: list[Any] = []
    if since is not None:
        args.append(since)
        clauses.append(f"received_at >= ${len(args)}")
    if tag is not None:
        args.append(tag)
        clauses.append(f"tag = ${len(args)}")
    return " AND ".join(clauses), args


def _worst_entry(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "tag": row["tag"],
        "received_at": row["received_at"].isoformat(),
        "text_similarity": row["text_similarity"],
        "primary": {"text": row["primary_text"] or "",
                    "tool_calls": row["primary_tool_calls"] or [],
                    "stop_reason": row["primary_stop_reason"]},
        "shadow": {"text": row["shadow_text"] or "",
                   "tool_calls": row["shadow_tool_calls"] or [],
                   "stop_reason": row["shadow_stop_reason"]},
    }


async def build_report(
    source: str | asyncpg.Pool, *, since: datetime | None = None, tag: str | None = None,
    worst: int = WORST_DEFAULT,
) -> dict[str, Any]:
    """The report for pairs received at or after ``since`` (and with ``tag``, if given).

    ``source`` is a database URL (a connection for this call) or a pool the caller keeps,
    as the dashboard does. asyncpg rather than SQLAlchemy: the dashboard runs this inside
    the proxy process, which stays free of SQLAlchemy.
    """
    where, args = _filters(since, tag)
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(source, str):
            conn = await asyncpg.connect(asyncpg_dsn(source))
            stack.push_async_callback(conn.close)
        else:
            conn = await stack.enter_async_context(source.acquire())
        await register_jsonb(conn)
        groups = await conn.fetch(
            f"SELECT {_GROUP_COLUMNS} FROM comparisons WHERE {where} GROUP BY tag", *args)
        worst_rows = await conn.fetch(
            f"SELECT {_WORST_COLUMNS} FROM comparisons WHERE {where} "
            f"AND agree = false AND {_BOTH_OK} "
            f"ORDER BY text_similarity ASC, received_at DESC, id LIMIT ${len(args) + 1}",
            *args, worst)
    return assemble_report([dict(g) for g in groups], [dict(r) for r in worst_rows],
                           since=since, tag=tag)


async def register_jsonb(conn: Any) -> None:
    """Hand jsonb back as Python values, as SQLAlchemy did."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


def assemble_report(
    groups: Sequence[Mapping[Any, Any]], worst_rows: Sequence[Mapping[Any, Any]], *,
    since: datetime | None = None, tag: str | None = None,
) -> dict[str, Any]:
    """The report from the fetched per-tag group rows and worst-disagreement rows."""
    scopes, window = summarize(groups)
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "window": {"since": since.isoformat() if since else None, **window},
        "filter": {"tag": tag},
        "text_similarity_threshold": TEXT_SIMILARITY_THRESHOLD,
        "projection_days": PROJECTION_DAYS,
        **scopes,
        "worst": [_worst_entry(r) for r in worst_rows],
    }

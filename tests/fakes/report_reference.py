"""The report's numbers computed the plain way, pair by pair in Python from the
``comparisons`` view: the reference the SQL summaries are held to on small data."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from statistics import fmean
from typing import Any

import asyncpg

from shadowproxy.decision.report_model import classify_unjudged
from shadowproxy.decision.scoring import answered
from shadowproxy.decision.stats import percentiles
from shadowproxy.store.urls import asyncpg_dsn

JUDGED = ("equivalent", "better", "worse")


async def fetch_rows(url: str, since: datetime | None = None, tag: str | None = None
                     ) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT * FROM comparisons WHERE ($1::timestamptz IS NULL OR received_at >= $1) "
            "AND ($2::text IS NULL OR tag = $2)", since, tag)
    finally:
        await conn.close()
    import json

    out = []
    for row in rows:
        r = dict(row)
        for key in ("primary_tool_calls", "shadow_tool_calls", "json_diff_paths"):
            if isinstance(r.get(key), str):
                r[key] = json.loads(r[key])
        out.append(r)
    return out


def _both(r: Mapping[str, Any]) -> bool:
    return (answered(r["primary_status"], r["primary_error"]) and r["shadow_outcome"] == "ok"
            and answered(r["shadow_status"], r["shadow_error"]))


def _tools(r: Mapping[str, Any]) -> bool:
    return any(isinstance(r[k], list) and r[k] for k in ("primary_tool_calls",
                                                          "shadow_tool_calls"))


def scope(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The numbers of one scope, named as in ``report --format json``."""
    both = [r for r in rows if _both(r)]
    verdicts = Counter(r["verdict"] for r in both if r["verdict"] in JUDGED)
    unjudged = Counter(classify_unjudged(r["verdict"], r["judge_reason"],
                                         r["scored_at"] is not None).value
                       for r in both if r["verdict"] not in JUDGED)
    scored = [r for r in both if r["scored_at"] is not None]
    tool_pairs = [r for r in scored if _tools(r)]
    attempted = [r for r in rows if answered(r["primary_status"], r["primary_error"])
                 and r["shadow_outcome"] in ("ok", "error", "timeout")]
    paths: Counter[str] = Counter()
    for r in both:
        if isinstance(r["json_diff_paths"], list):
            paths.update(r["json_diff_paths"])

    def cost(side: str) -> float | None:
        values = [r[f"{side}_cost_usd"] for r in both if r[f"{side}_cost_usd"] is not None]
        return fmean(values) * 1000 if values else None

    def timing(metric: str) -> dict[str, Any]:
        return {side: percentiles([r[f"{side}_{metric}"] for r in both])
                for side in ("primary", "shadow")}

    return {
        "pairs_total": len(rows),
        "pairs_unscored": sum(1 for r in rows if r["scored_at"] is None),
        "verdicts": {v: verdicts[v] for v in JUDGED} | {"unjudged": sum(unjudged.values())},
        "unjudged": dict(unjudged),
        "tool_call_pairs": len(tool_pairs),
        "tool_call_match": (sum(1 for r in tool_pairs if r["tool_call_match"]) /
                            len(tool_pairs)) if tool_pairs else None,
        "stop_reason_match": (sum(1 for r in scored if r["stop_reason_match"]) / len(scored)
                              ) if scored else None,
        "shadow_error_rate": (sum(1 for r in attempted if not (
            r["shadow_outcome"] == "ok" and answered(r["shadow_status"], r["shadow_error"])))
            / len(attempted)) if attempted else None,
        "shadow_outcomes": dict(sorted(Counter(r["shadow_outcome"] for r in rows).items())),
        "cost_usd_per_1k": {"primary": cost("primary"), "shadow": cost("shadow")},
        "latency_ms": timing("latency_ms"),
        "ttft_ms": timing("ttft_ms"),
        "json_diff_paths": [{"path": p, "pairs": n} for p, n in sorted(
            paths.items(), key=lambda item: (-item[1], item[0]))[:5]],
        "models": {"primary": sorted({r["primary_model"] for r in rows
                                      if answered(r["primary_status"], r["primary_error"])
                                      and r["primary_model"]}),
                   "shadow": sorted({r["shadow_model"] for r in rows
                                     if r["shadow_outcome"] == "ok"
                                     and answered(r["shadow_status"], r["shadow_error"])
                                     and r["shadow_model"]})},
    }


def conversations(rows: Sequence[Mapping[str, Any]], since: datetime | None = None,
                  tag_filter: str | None = None) -> dict[str, dict[str, Any]]:
    """Per tag: conversations that opened at or after ``since`` (their first pair), those
    with an answer judged worse, and the turn of the first worse answer (in the order the
    pairs were received). ``rows``: every pair, the window is applied here."""
    by_conversation: dict[tuple[Any, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["conversation_id"] is not None:
            by_conversation[(r["tag"], r["conversation_id"])].append(r)
    found: dict[str, dict[str, Any]] = {}
    for (tag, _), members in by_conversation.items():
        members = sorted(members, key=lambda r: (r["received_at"], r["id"]))
        if since is not None and members[0]["received_at"] < since:
            continue
        if tag_filter is not None and tag != tag_filter:
            continue
        worse = [r for r in members if r["verdict"] == "worse" and _both(r)]
        for name in ({"overall", tag} if tag else {"overall"}):
            stats = found.setdefault(name, {"conversations": 0, "with_worse": 0, "turns": {}})
            stats["conversations"] += 1
            if worse:
                stats["with_worse"] += 1
                turn = worse[0]["turn"]
                if turn is not None:
                    stats["turns"][str(turn)] = stats["turns"].get(str(turn), 0) + 1
    return found

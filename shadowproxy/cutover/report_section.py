"""SQL for the report's cutover section: plans, their recent events, and one aggregate
row per step (pairs served by whom, verdicts), whatever the traffic.

A step is the time between an event that set the tag's percent (start, advance,
rollback, guard) and the next; its pairs are the tag's pairs received in that time (an
index range on ``pairs (tag, received_at)``). asyncpg, on the report's connection: the
dashboard runs this inside the proxy process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shadowproxy.cutover.section import (
    SERVED,
    VERDICTS,
    CutoverSection,
    EventView,
    StepPairs,
    TagCutover,
)

__all__ = ["EVENTS_SHOWN", "cutover_section"]

EVENTS_SHOWN = 20
_PLANS = ("SELECT tag, steps, step, percent, paused, step_started_at FROM cutover_plans "
          "WHERE ($1::text IS NULL OR tag = $1) ORDER BY tag")
_EVENTS = (
    "SELECT tag, action, from_percent, to_percent, reason, actor, at FROM ("
    "  SELECT *, row_number() OVER (PARTITION BY tag ORDER BY at DESC, id DESC) AS rank"
    "  FROM cutover_events WHERE ($1::text IS NULL OR tag = $1)"
    f") AS e WHERE rank <= {EVENTS_SHOWN} ORDER BY tag, at DESC, id DESC"
)
_COUNTS = ", ".join(
    [f"count(p.id) FILTER (WHERE p.served_by = '{s}') AS served_{s}" for s in SERVED]
    + [f"count(p.id) FILTER (WHERE s.verdict = '{v}') AS verdict_{v}" for v in VERDICTS])
_STEPS = f"""
WITH steps AS (
    SELECT tag, action, to_percent, at AS began,
           lead(at) OVER (PARTITION BY tag ORDER BY at, id) AS ended
    FROM cutover_events
    WHERE action IN ('start', 'advance', 'rollback', 'guard')
      AND ($1::text IS NULL OR tag = $1)
)
SELECT st.tag, st.action, st.to_percent, st.began, st.ended, count(p.id) AS pairs, {_COUNTS}
FROM steps AS st
LEFT JOIN pairs AS p
       ON p.tag = st.tag AND p.received_at >= st.began
      AND (st.ended IS NULL OR p.received_at < st.ended)
LEFT JOIN scores AS s ON s.pair_id = p.id
WHERE $2::timestamptz IS NULL OR st.ended IS NULL OR st.ended > $2
GROUP BY st.tag, st.action, st.to_percent, st.began, st.ended
ORDER BY st.tag, st.began
"""


async def cutover_section(conn: Any, *, tag: str | None = None,
                          since: datetime | None = None) -> CutoverSection:
    """Every plan (or ``tag``'s), its newest events, and the steps that ended after
    ``since`` (or are under way)."""
    plans = await conn.fetch(_PLANS, tag)
    if not plans:
        return CutoverSection()
    events: dict[str, list[EventView]] = {}
    for row in await conn.fetch(_EVENTS, tag):
        events.setdefault(row["tag"], []).append(EventView(
            row["action"], row["from_percent"], row["to_percent"], row["reason"],
            row["actor"], row["at"]))
    steps: dict[str, list[StepPairs]] = {}
    for row in await conn.fetch(_STEPS, tag, since):
        verdicts = {v: int(row[f"verdict_{v}"]) for v in VERDICTS}
        steps.setdefault(row["tag"], []).append(StepPairs(
            percent=row["to_percent"], began_by=row["action"], began=row["began"],
            ended=row["ended"], pairs=int(row["pairs"]),
            served={s: int(row[f"served_{s}"]) for s in SERVED}, verdicts=verdicts,
            no_verdict=int(row["pairs"]) - sum(verdicts.values())))
    return CutoverSection({
        row["tag"]: TagCutover(row["tag"], tuple(row["steps"]), row["step"], row["percent"],
                               row["paused"], row["step_started_at"],
                               tuple(events.get(row["tag"], ())),
                               tuple(steps.get(row["tag"], ())))
        for row in plans})

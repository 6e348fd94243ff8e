"""The report's summaries: per tag, the numbers of each 10-minute slot and each day,
kept in ``report_rollups`` so a report adds up a few hundred rows, not every pair.

::

    pairs + scores ──summary_sql──▶ rows per slot and tag ──▶ report_rollups (slots)
                                                                  └──▶ (days, added up)
    report: rollups of whole days and slots in the window + the pairs of the rest
            (the slot holding --since, slots not yet over, the oldest slot)

**Fresh.** A slot's rows are rebuilt (:func:`refresh`) when ``diff`` changed a verdict
in it (``report_stale``, written in the same transaction as the verdict), when a pair
was stored into it after it was summarised (``pairs.stored_at`` after the last
refresh, less :data:`IN_FLIGHT` for writes not yet committed then: a spool replay
stores pairs of past slots; a write slower than that is caught when ``diff`` scores
it), or when its layout is old. A day is rebuilt from its slots when one of them is.
Slots that ended less than :data:`SETTLE` ago, the slot holding ``--since`` and the
oldest slot (retention deletes from it) are read from the pairs themselves on every
report. Refreshing takes a session advisory lock, so two reports (or replicas) never
build the same rows; a database the report may not write to (a read-only user, a
standby) gets the same numbers, with stale slots read from the pairs instead.

**Bounded.** Memory holds one row per tag (a few hundred numbers each); time grows with
the number of days, tags and slots read from pairs, not with the number of pairs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shadowproxy.decision.summary_sql import LAYOUT, SLOT_SECONDS, slot_sql, summary_select

__all__ = ["IN_FLIGHT", "SETTLE", "RefreshResult", "TagFacts", "mark_stale_sql", "read",
           "refresh"]

SETTLE = timedelta(minutes=2)  # a slot is summarised this long after it ends
# Longest a pair's insert may stay uncommitted; one that takes longer is still counted
# once diff scores it (diff marks the slots it writes).
IN_FLIGHT = timedelta(seconds=60)
_SLOT = timedelta(seconds=SLOT_SECONDS)
_DAY = timedelta(days=1)
_LOCK = 0x5EAD_0F_5A  # pg_advisory_lock key: one summariser at a time
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RANGES_PER_STATEMENT = 144


def _floor(at: datetime, step: timedelta) -> datetime:
    seconds = (at - _EPOCH) // step * step
    return _EPOCH + seconds


def _ceil(at: datetime, step: timedelta) -> datetime:
    low = _floor(at, step)
    return low if low == at else low + step


@dataclass(frozen=True, slots=True)
class TagFacts:
    """The summed facts of one tag (``tag`` None: untagged) over the report's window."""

    tag: str | None
    first_at: datetime | None
    last_at: datetime | None
    facts: Mapping[str, float]
    models: tuple[str, ...]
    examples: Mapping[str, str]


@dataclass(slots=True)
class RefreshResult:
    slots_rebuilt: int = 0
    days_rebuilt: int = 0
    seconds: float = 0.0
    # The database refused the writes: these slots (or all, ``nothing_stored``) are
    # stale and must be read from the pairs.
    read_only: bool = False
    stale: list[datetime] = field(default_factory=list)
    nothing_stored: bool = False


class _ReadOnly(Exception):
    def __init__(self, stale: list[datetime], everything: bool) -> None:
        super().__init__("the database refused the summaries' writes")
        self.stale, self.everything = stale, everything


def mark_stale_sql(received_at_array_param: str) -> str:
    """SQL marking the slots of some pairs stale; ``diff`` runs it with its writes."""
    return ("INSERT INTO report_stale (slot) SELECT DISTINCT "
            f"{slot_sql('r')} FROM unnest({received_at_array_param}) AS r "
            "ON CONFLICT DO NOTHING")


def _ranges(slots: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Adjacent slots as [start, end) ranges."""
    ranges: list[tuple[datetime, datetime]] = []
    for slot in sorted(set(slots)):
        if ranges and ranges[-1][1] == slot:
            ranges[-1] = (ranges[-1][0], slot + _SLOT)
        else:
            ranges.append((slot, slot + _SLOT))
    return ranges


def _where_ranges(ranges: Sequence[tuple[datetime, datetime]], first: int
                  ) -> tuple[str, list[datetime]]:
    if not ranges:
        return "FALSE", []
    clauses, args = [], []
    for index, (low, high) in enumerate(ranges):
        clauses.append(f"(p.received_at >= ${first + 2 * index} "
                       f"AND p.received_at < ${first + 2 * index + 1})")
        args += [low, high]
    return "(" + " OR ".join(clauses) + ")", args


_INSERT_SLOTS = ("INSERT INTO report_rollups (grain, start, tagged, tag, built_at, layout, "
                 "first_at, last_at, facts, models, examples) "
                 "SELECT 'slot', slot, tagged, tag, now(), {layout}, first_at, last_at, "
                 "facts, models, examples FROM ({select}) AS fresh")
_MERGED = """
  first_at, last_at,
  (SELECT coalesce(jsonb_object_agg(key, value), '{{}}'::jsonb) FROM (
     SELECT key, sum(value::numeric) AS value FROM rows r, jsonb_each_text(r.facts)
     WHERE r.tagged = g.tagged AND r.tag = g.tag {extra} GROUP BY key) f) AS facts,
  (SELECT coalesce(array_agg(DISTINCT m ORDER BY m), '{{}}') FROM rows r, unnest(r.models) m
     WHERE r.tagged = g.tagged AND r.tag = g.tag {extra}) AS models,
  (SELECT coalesce(jsonb_object_agg(key, value), '{{}}'::jsonb) FROM (
     SELECT key, min(value) AS value FROM rows r, jsonb_each_text(r.examples)
     WHERE r.tagged = g.tagged AND r.tag = g.tag {extra} GROUP BY key) e) AS examples
"""
_INSERT_DAYS = f"""
WITH rows AS (
  SELECT {slot_sql('start', 86400)} AS day, * FROM report_rollups
  WHERE grain = 'slot' AND layout = {LAYOUT} AND start >= $1 AND start < $2),
groups AS (SELECT day, tagged, tag, min(first_at) AS first_at, max(last_at) AS last_at
           FROM rows GROUP BY day, tagged, tag)
INSERT INTO report_rollups (grain, start, tagged, tag, built_at, layout, first_at, last_at,
                            facts, models, examples)
SELECT 'day', g.day, g.tagged, g.tag, now(), {LAYOUT},
{_MERGED.format(extra='AND r.day = g.day')}
FROM groups g
WHERE NOT EXISTS (SELECT 1 FROM report_rollups d WHERE d.grain = 'day' AND d.start = g.day)
"""


async def _stale_slots(conn: Any, closed_end: datetime) -> tuple[list[datetime], bool]:
    """Closed slots to rebuild, and whether everything must be (first run, new layout)."""
    state = {r["name"]: r["at"] for r in await conn.fetch("SELECT name, at FROM report_state")}
    old_layout = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM report_rollups WHERE layout <> {LAYOUT})")
    if "stored_watermark" not in state or old_layout:
        return [], True
    marked = [r["slot"] for r in await conn.fetch("SELECT slot FROM report_stale")]
    stored = [r["slot"] for r in await conn.fetch(
        f"SELECT DISTINCT {slot_sql('received_at')} AS slot FROM pairs WHERE stored_at > $1",
        state["stored_watermark"] - IN_FLIGHT)]
    # Slots that were still open at the last refresh and have ended since.
    since_closed: list[datetime] = []
    slot = state.get("closed_end", closed_end)
    while slot < closed_end:
        since_closed.append(slot)
        slot += _SLOT
    stale = {s for s in [*marked, *stored, *since_closed] if s + _SLOT <= closed_end}
    return sorted(stale), False


async def _rebuild(conn: Any, slots: Sequence[datetime] | None, closed_end: datetime
                   ) -> int:
    """Delete and rebuild the rows of ``slots`` (None: every closed slot)."""
    if slots is None:
        await conn.execute("DELETE FROM report_rollups")
        bounds = await conn.fetchrow("SELECT min(received_at) AS lo FROM pairs")
        if bounds["lo"] is None:
            return 0
        low = _floor(bounds["lo"], _SLOT)
        ranges = []
        while low < closed_end:
            high = min(low + _DAY, closed_end)
            ranges.append((low, high))
            low = high
        # One day per statement: each keeps its working set small.
        batches = [[r] for r in ranges]
        rebuilt = int((closed_end - _floor(bounds["lo"], _SLOT)) / _SLOT)
    else:
        if not slots:
            return 0
        days = sorted({_floor(s, _DAY) for s in slots})
        await conn.execute(
            "DELETE FROM report_rollups WHERE (grain = 'slot' AND start = ANY($1::timestamptz[]))"
            " OR (grain = 'day' AND start = ANY($2::timestamptz[]))", list(slots), days)
        ranges = _ranges(slots)
        batches = [ranges[i:i + _RANGES_PER_STATEMENT]
                   for i in range(0, len(ranges), _RANGES_PER_STATEMENT)]
        rebuilt = len(slots)
    for batch in batches:
        where, args = _where_ranges(batch, 1)
        await conn.execute(_INSERT_SLOTS.format(layout=LAYOUT, select=summary_select(where)),
                           *args)
    return rebuilt


async def _build_days(conn: Any, closed_end: datetime) -> int:
    status = await conn.execute(_INSERT_DAYS, datetime.min.replace(tzinfo=UTC),
                                _floor(closed_end, _DAY))
    return int(status.split()[-1])


async def refresh(conn: Any, *, now: datetime | None = None) -> RefreshResult:
    """Bring ``report_rollups`` up to date with the pairs and verdicts (see the module
    docstring). ``now`` is for tests; the database's clock otherwise."""
    started = time.monotonic()
    result = RefreshResult()
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        async with conn.transaction(isolation="repeatable_read"):
            snapshot = now or await conn.fetchval("SELECT now()")
            closed_end = _floor(snapshot - SETTLE, _SLOT)
            stale, everything = await _stale_slots(conn, closed_end)
            try:
                await conn.execute("DELETE FROM report_stale")
            except (asyncpg.ReadOnlySQLTransactionError,
                    asyncpg.InsufficientPrivilegeError) as exc:
                raise _ReadOnly(stale, everything) from exc
            result.slots_rebuilt = await _rebuild(conn, None if everything else stale,
                                                  closed_end)
            result.days_rebuilt = await _build_days(conn, closed_end)
            oldest = await conn.fetchval("SELECT min(received_at) FROM pairs")
            if oldest is not None:
                await conn.execute(
                    "DELETE FROM report_rollups WHERE (grain = 'slot' AND start < $1) "
                    "OR (grain = 'day' AND start < $2)",
                    _floor(oldest, _SLOT), _floor(oldest, _DAY))
            await conn.executemany(
                "INSERT INTO report_state (name, at) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET at = excluded.at",
                [("stored_watermark", snapshot), ("closed_end", closed_end)])
    except _ReadOnly as refused:
        result.read_only, result.stale = True, refused.stale
        result.nothing_stored = refused.everything
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which part of the window comes from stored rows and which from the pairs."""

    raw: list[tuple[datetime, datetime]]
    stored_from: datetime
    stored_to: datetime


def _plan(since: datetime | None, oldest: datetime, closed_end: datetime,
          far: datetime) -> _Plan:
    low = max(since, oldest) if since is not None else oldest
    # The oldest slot is read from pairs: retention may be deleting from it.
    stored_from = max(_ceil(low, _SLOT), _floor(oldest, _SLOT) + _SLOT)
    stored_to = max(stored_from, closed_end)
    raw = [(low, stored_from), (stored_to, far)]
    return _Plan([(a, b) for a, b in raw if a < b], stored_from, stored_to)


def _tag_clause(tag: str | None, column: str, first: int) -> tuple[str, list[Any]]:
    if tag is None:
        return "", []
    return f" AND {column} = ${first}", [tag]


async def read(conn: Any, *, since: datetime | None, tag: str | None, now: datetime,
               refreshed: RefreshResult | None = None) -> list[TagFacts]:
    """Each tag's facts over pairs received at or after ``since`` (and with ``tag``).

    Slots a read-only ``refreshed`` left stale are read from the pairs, as is every part
    of the window not covered by stored rows.
    """
    oldest = await conn.fetchval("SELECT min(received_at) FROM pairs")
    if oldest is None:
        return []
    far = max(now, await conn.fetchval("SELECT max(received_at) FROM pairs")) + _SLOT
    closed_end = _floor(now - SETTLE, _SLOT)
    if refreshed is not None and refreshed.nothing_stored:
        closed_end = _EPOCH  # nothing stored can be trusted: read every pair
    stale = refreshed.stale if refreshed is not None else ()
    plan = _plan(since, oldest, closed_end, far)
    stale_slots = sorted(s for s in set(stale) if plan.stored_from <= s < plan.stored_to)
    raw = [*plan.raw, *_ranges(stale_slots)]
    where, args = _where_ranges(raw, 1)
    tag_where, tag_args = _tag_clause(tag, "p.tag", len(args) + 1)
    first = len(args) + len(tag_args) + 1
    stored_tag, stored_tag_args = _tag_clause(tag, "tag", first + 3)
    if tag is not None:
        stored_tag = f" AND tagged{stored_tag}"
    sql = f"""
WITH raw AS MATERIALIZED ({summary_select(where + tag_where)}),
days AS (SELECT * FROM report_rollups WHERE grain = 'day' AND layout = {LAYOUT}
         AND start >= ${first} AND start + interval '1 day' <= ${first + 1}
         AND NOT (start = ANY(${first + 2}::timestamptz[])){stored_tag}),
slots AS (SELECT * FROM report_rollups r WHERE grain = 'slot' AND layout = {LAYOUT}
          AND start >= ${first} AND start < ${first + 1}
          AND NOT (start = ANY(${first + 2}::timestamptz[])){stored_tag}
          AND NOT EXISTS (SELECT 1 FROM days d WHERE d.start = {slot_sql('r.start', 86400)}
                          AND d.tagged = r.tagged AND d.tag = r.tag)),
rows AS (
  SELECT tagged, tag, first_at, last_at, facts, models, examples FROM days
  UNION ALL SELECT tagged, tag, first_at, last_at, facts, models, examples FROM slots
  UNION ALL SELECT tagged, tag, first_at, last_at, facts, models, examples FROM raw),
groups AS (SELECT tagged, tag, min(first_at) AS first_at, max(last_at) AS last_at
           FROM rows GROUP BY tagged, tag)
SELECT g.tagged, g.tag, {_MERGED.format(extra='')}
FROM groups g
"""
    day_stale = sorted({_floor(s, _DAY) for s in stale_slots} | set(stale_slots))
    rows = await conn.fetch(sql, *args, *tag_args, plan.stored_from, plan.stored_to,
                            day_stale, *stored_tag_args)
    return [_tag_facts(row) for row in rows]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _tag_facts(row: Mapping[str, Any]) -> TagFacts:
    facts = {key: float(value) for key, value in (_json(row["facts"]) or {}).items()}
    return TagFacts(
        tag=row["tag"] if row["tagged"] else None,
        first_at=row["first_at"], last_at=row["last_at"], facts=facts,
        models=tuple(row["models"] or ()),
        examples={k: str(v) for k, v in (_json(row["examples"]) or {}).items()},
    )

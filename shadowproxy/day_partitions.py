"""Day partitions of the comparison store: their names, bounds and which ones expired.

``pairs`` is range-partitioned on ``received_at`` by UTC day, and the tables that hang
off a pair (``scores``, ``reviews``, ``review_items``) carry their pair's
``received_at`` and are partitioned the same way, so one day of everything is four
tables that go together::

    pairs_p20260504  ◀─FK─  scores_p20260504, reviews_p20260504, review_items_p20260504

Retention with ``RETENTION_DAYS = n`` at time ``now`` (cutoff = now - n days):

- a day whose end is at or before the cutoff is **expired**: its four tables are dropped;
- the day that holds the cutoff is **partly expired**: its rows before the cutoff are
  deleted row by row (in that one partition), the rest wait for tomorrow's drop;
- later days are kept whole.

Pure: no I/O, so the arithmetic is tested directly (:mod:`shadowproxy.store.partitions`
runs the SQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

__all__ = [
    "CHILD_TABLES",
    "PARTITIONED_TABLES",
    "DayPlan",
    "day_bounds",
    "day_of",
    "days_ahead",
    "parse_partition_name",
    "partition_name",
    "retention_plan",
]

# The parent first: a child partition's foreign key points at the pairs partition.
CHILD_TABLES: tuple[str, ...] = ("scores", "reviews", "review_items")
PARTITIONED_TABLES: tuple[str, ...] = ("pairs", *CHILD_TABLES)

_NAME = re.compile(r"^(pairs|scores|reviews|review_items)_p(\d{8})$")


def day_of(moment: datetime) -> date:
    """The UTC day a timezone-aware moment falls in (its partition's day)."""
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment.astimezone(UTC).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a day's partition, in UTC."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_name(table: str, day: date) -> str:
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"{table!r} is not a partitioned table")
    return f"{table}_p{day:%Y%m%d}"


def parse_partition_name(name: str) -> tuple[str, date] | None:
    """``("pairs", date(2026, 5, 4))`` for ``pairs_p20260504``; None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(2), "%Y%m%d").date()
    except ValueError:
        return None
    return match.group(1), day


def days_ahead(now: datetime, ahead: int, behind: int = 1) -> list[date]:
    """The days maintenance keeps ready: ``behind`` days before today to ``ahead`` after.

    Yesterday is included so a pair finished just after midnight, whose exchange began
    the day before, never waits for a partition.
    """
    today = day_of(now)
    return [today + timedelta(days=offset) for offset in range(-behind, ahead + 1)]


@dataclass(frozen=True, slots=True)
class DayPlan:
    """What one retention run does with the day partitions that exist."""

    cutoff: datetime
    drop: tuple[date, ...]  # whole days older than the cutoff, oldest first
    trim: date | None  # the partly-expired day: delete its rows before the cutoff


def retention_plan(existing: set[date] | frozenset[date], now: datetime,
                   retention_days: int) -> DayPlan | None:
    """None when ``retention_days`` is 0 (keep everything)."""
    if retention_days <= 0:
        return None
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    drop = tuple(sorted(d for d in existing if day_bounds(d)[1] <= cutoff))
    boundary = day_of(cutoff)
    trim = boundary if boundary in existing and day_bounds(boundary)[0] < cutoff else None
    return DayPlan(cutoff=cutoff, drop=drop, trim=trim)

"""Day partitions: names, bounds, and what a retention run drops and trims, checked
against a pair-by-pair reading of RETENTION_DAYS."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.day_partitions import (
    day_bounds,
    day_of,
    days_ahead,
    parse_partition_name,
    partition_name,
    retention_plan,
)

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                       timezones=st.just(UTC))
days = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 1, 1))


def test_a_day_is_a_utc_day_whatever_the_zone_the_moment_is_written_in() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert day_of(datetime(2026, 5, 5, 8, 0, tzinfo=tokyo)) == date(2026, 5, 4)
    assert day_bounds(date(2026, 5, 4)) == (datetime(2026, 5, 4, tzinfo=UTC),
                                            datetime(2026, 5, 5, tzinfo=UTC))
    with pytest.raises(ValueError):
        day_of(datetime(2026, 5, 4, 12))


@given(moments)
def test_every_moment_falls_in_its_days_bounds(moment: datetime) -> None:
    start, end = day_bounds(day_of(moment))
    assert start <= moment < end


@given(days, st.sampled_from(["pairs", "scores", "reviews", "review_items"]))
def test_names_round_trip(day: date, table: str) -> None:
    assert parse_partition_name(partition_name(table, day)) == (table, day)


@pytest.mark.parametrize("name", ["pairs", "legacy_pairs", "pairs_p2026050", "pairs_p20261340",
                                  "admin_sessions_p20260504", "pairs_p20260504_x"])
def test_other_names_are_not_partitions(name: str) -> None:
    assert parse_partition_name(name) is None


def test_days_ahead_start_yesterday() -> None:
    assert days_ahead(NOW, 2) == [date(2026, 5, 3), date(2026, 5, 4), date(2026, 5, 5),
                                  date(2026, 5, 6)]


def test_zero_days_keeps_everything() -> None:
    assert retention_plan({date(2000, 1, 1)}, NOW, 0) is None


def test_the_boundary_day_is_trimmed_and_older_days_dropped() -> None:
    existing = {date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 4), date(2026, 4, 5),
                date(2026, 5, 4)}
    plan = retention_plan(existing, NOW, 30)
    assert plan is not None
    assert plan.cutoff == datetime(2026, 4, 4, 9, 30, tzinfo=UTC)
    assert plan.drop == (date(2026, 4, 2), date(2026, 4, 3))
    assert plan.trim == date(2026, 4, 4)


def test_a_cutoff_at_midnight_drops_the_day_before_and_trims_nothing() -> None:
    midnight = datetime(2026, 5, 4, tzinfo=UTC)
    plan = retention_plan({date(2026, 4, 3), date(2026, 4, 4)}, midnight, 30)
    assert plan is not None and plan.drop == (date(2026, 4, 3),) and plan.trim is None


@given(st.lists(moments, max_size=40), moments, st.integers(1, 400))
def test_a_run_removes_exactly_the_pairs_older_than_retention(
    received: list[datetime], now: datetime, retention_days: int
) -> None:
    """Drop whole days, delete the trimmed day's rows before the cutoff: what is left
    is exactly the pairs received at or after now - RETENTION_DAYS."""
    plan = retention_plan({day_of(r) for r in received}, now, retention_days)
    assert plan is not None
    kept = [r for r in received
            if day_of(r) not in plan.drop and not (day_of(r) == plan.trim and r < plan.cutoff)]
    assert sorted(kept) == sorted(r for r in received if r >= plan.cutoff)

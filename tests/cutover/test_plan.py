"""Steps, buckets and the moves an advance makes: the plan's rules, as plain data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.cutover.plan import (
    Action,
    Plan,
    StepsError,
    bucket,
    chosen,
    move_after_gate,
    parse_steps,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def plan(steps: tuple[int, ...] = (5, 25, 50, 100), step: int = 0,
         percent: int | None = None) -> Plan:
    return Plan("support", steps, step, steps[step] if percent is None else percent,
                False, 1, T0, T0, T0)


@pytest.mark.parametrize(("text", "steps"), [
    ("5,25,50,100", (5, 25, 50, 100)), ("100", (100,)), (" 1 , 2 ", (1, 2)),
])
def test_steps_that_rise_within_1_to_100_are_accepted(text: str, steps: tuple[int, ...]) -> None:
    assert parse_steps(text) == steps


@pytest.mark.parametrize(("text", "says"), [
    ("0,50", "outside 1-100"), ("5,101", "outside 1-100"), ("50,25", "rise strictly"),
    ("25,25", "rise strictly"), ("", "separated by commas"), ("5,,10", "separated by commas"),
    ("five", "not a whole percent"), ("2.5", "not a whole percent"), ("-5", "outside"),
])
def test_bad_steps_say_what_is_wrong_in_one_line(text: str, says: str) -> None:
    with pytest.raises(StepsError) as caught:
        parse_steps(text)
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.text(min_size=1, max_size=200))
def test_a_bucket_is_in_0_to_99_and_stable(conversation: str) -> None:
    assert 0 <= bucket(conversation) < 100
    assert bucket(conversation) == bucket(str(conversation))


def test_buckets_spread_conversations_evenly() -> None:
    counts = [0] * 100
    for i in range(20_000):
        counts[bucket(f"h:{i:032x}")] += 1
    assert min(counts) > 140 and max(counts) < 260


def test_the_same_id_always_gets_the_same_bucket_across_releases() -> None:
    # A changed hash would move live conversations between models mid-cutover.
    # Pinned values: a change here must be deliberate.
    assert bucket("session-1") == 95
    assert bucket("h:0123456789abcdef0123456789abcdef") == 51


@given(st.text(min_size=1, max_size=50), st.integers(0, 100), st.integers(0, 100))
def test_raising_the_percent_keeps_every_conversation_already_on_the_shadow(
    conversation: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    if chosen(conversation, low):
        assert chosen(conversation, high)


def test_no_conversation_goes_to_the_shadow_only_at_100() -> None:
    assert not chosen(None, 99)
    assert chosen(None, 100)
    assert not chosen("anything", 0)


def test_a_pass_moves_to_the_next_step() -> None:
    move = move_after_gate(plan(step=1), 0)
    assert (move.action, move.step, move.percent) == (Action.ADVANCE, 2, 50)


def test_a_pass_at_the_last_step_completes_without_a_change() -> None:
    move = move_after_gate(plan(step=3), 0)
    assert (move.action, move.step, move.percent) == (Action.COMPLETE, 3, 100)


def test_a_fail_goes_back_to_zero() -> None:
    move = move_after_gate(plan(step=2), 1)
    assert (move.action, move.percent) == (Action.ROLLBACK, 0)


def test_not_enough_data_stays() -> None:
    move = move_after_gate(plan(step=2), 2)
    assert (move.action, move.percent) == (None, 50)

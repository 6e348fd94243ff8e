"""The verdict tiers: identical answers never reach a judge, JSON compared as values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.decision.scoring import SideView
from shadowproxy.decision.verdict import (
    MAX_DIFF_PATHS,
    Method,
    Verdict,
    json_diff_paths,
    tier,
)


def side(text: str = "", calls: list[dict[str, Any]] | None = None,
         stop: str | None = None, status: int | None = 200, error: str | None = None
         ) -> SideView:
    calls = calls or []
    return SideView(text=text, tool_calls=calls,
                    stop_reason=stop or ("tool_use" if calls else "end_turn"),
                    status=status, error=error)


def test_same_words_differently_cased_are_exact_equivalents() -> None:
    result = tier(side("Your order shipped."), side("your order  SHIPPED"))
    assert (result.verdict, result.method, result.needs_judge) == (
        Verdict.EQUIVALENT, Method.EXACT, False)


def test_different_words_need_the_judge_whatever_their_similarity() -> None:
    result = tier(side("Your order shipped on Monday."), side("Your order shipped on Tuesday."))
    assert result.needs_judge and result.verdict is None and result.diff_paths == ()


def test_same_tool_call_with_different_text_around_it_is_structural() -> None:
    call = {"name": "lookup", "arguments": {"id": 1}}
    result = tier(side("", [call]), side("Let me check.", [{"name": "lookup",
                                                             "arguments": '{"id": 1.0}'}]))
    assert (result.verdict, result.method) == (Verdict.EQUIVALENT, Method.STRUCTURAL)


def test_tool_arguments_that_differ_name_their_paths() -> None:
    a = side("", [{"name": "weather", "arguments": {"city": "Paris", "days": 3}}])
    b = side("", [{"name": "weather", "arguments": {"city": "Lyon", "days": 3}},
                  {"name": "news", "arguments": {}}])
    result = tier(a, b)
    assert result.needs_judge
    assert result.diff_paths == ("$.tool_calls[0].arguments.city", "$.tool_calls[1]")


def test_json_documents_equal_as_values_are_equivalent() -> None:
    result = tier(side('{"a": 1, "b": [1, 2]}'), side('{\n "b": [1, 2.0], "a": 1}'))
    assert (result.verdict, result.method) == (Verdict.EQUIVALENT, Method.STRUCTURAL)


def test_json_documents_that_differ_list_paths() -> None:
    a = side(json.dumps({"items": [{"price": 1}, {"price": 2}, {"price": 3}],
                         "unit price": True}))
    b = side(json.dumps({"items": [{"price": 1}, {"price": 2}, {"price": 4}],
                         "unit price": 1}))
    result = tier(a, b)
    assert result.needs_judge
    assert result.diff_paths == ("$.items[2].price", '$["unit price"]')


def test_a_failed_side_is_not_judged_and_says_why() -> None:
    primary_failed = tier(side(status=500, error="api_error"), side("hi"))
    shadow_failed = tier(side("hi"), side(error="timeout"))
    dropped = tier(side("hi"), side("hi"), shadow_ok=False)
    for result in (primary_failed, shadow_failed, dropped):
        assert result.verdict is None and result.method is None and not result.needs_judge
    assert "primary failed" in (primary_failed.reason or "")
    assert "shadow_error_rate" in (shadow_failed.reason or "")
    assert "shadow_error_rate" in (dropped.reason or "")


def test_tool_call_against_text_needs_the_judge() -> None:
    result = tier(side("", [{"name": "x", "arguments": {}}]), side("I would call x."))
    assert result.needs_judge and result.diff_paths == ()


def test_the_number_of_paths_is_bounded() -> None:
    a = {f"k{i}": i for i in range(100)}
    b = {f"k{i}": -i - 1 for i in range(100)}
    assert len(json_diff_paths(a, b)) == MAX_DIFF_PATHS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
calls = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["a", "b"]),
                                        "arguments": json_values}), max_size=3)
sides = st.builds(
    SideView,
    text=st.one_of(st.text(max_size=40), json_values.map(json.dumps)),
    tool_calls=calls,
    stop_reason=st.sampled_from([None, "end_turn", "stop", "max_tokens", "tool_use"]),
    status=st.sampled_from([None, 200, 429, 500]),
    error=st.sampled_from([None, "boom"]),
)


@given(sides, sides, st.booleans())
def test_tiers_never_raise_and_are_symmetric(a: SideView, b: SideView, ok: bool) -> None:
    one = tier(a, b)
    two = tier(b, a)
    assert (one.verdict, one.method, one.needs_judge) == (two.verdict, two.method,
                                                          two.needs_judge)
    if one.verdict is not None:
        assert not one.needs_judge
    assert len(one.diff_paths) <= MAX_DIFF_PATHS
    tier(a, b, shadow_ok=ok)


@given(sides)
def test_an_answer_against_itself_is_always_equivalent_without_a_judge(a: SideView) -> None:
    result = tier(a, a)
    if result.reason is None:  # both sides answered
        assert (result.verdict, result.method) == (Verdict.EQUIVALENT, Method.EXACT)


@given(json_values, json_values)
def test_json_diff_is_empty_exactly_when_values_are_equal(a: Any, b: Any) -> None:
    assert (json_diff_paths(a, a) == [])
    assert set(json_diff_paths(a, b)) == set(json_diff_paths(b, a))

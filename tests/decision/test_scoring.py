"""Scoring: what counts as the shadow giving the same answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.scoring import SideView, normalize_text, score_pair, text_similarity

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}


def answer(text: str = "", **kw: Any) -> SideView:
    kw.setdefault("stop_reason", "end_turn")
    kw.setdefault("status", 200)
    return SideView(text=text, **kw)


def test_same_words_in_other_case_and_punctuation_are_an_exact_match() -> None:
    s = score_pair(answer("Paris is the capital of France."),
                   answer("  paris is the CAPITAL of france "))
    assert s.exact_match and s.agree and s.text_similarity == 1.0


def test_close_paraphrase_agrees_and_different_answer_does_not() -> None:
    base = "The capital of France is Paris, a city on the Seine."
    assert score_pair(answer(base), answer(base.replace("a city", "the city"))).agree
    different = score_pair(answer(base), answer("I think it is Lyon, honestly."))
    assert not different.agree and different.text_similarity < 0.5


def test_end_turn_and_stop_sequence_are_the_same_decision() -> None:
    s = score_pair(answer("yes"), answer("yes", stop_reason="stop_sequence"))
    assert s.stop_reason_match and s.agree


def test_truncated_answer_disagrees() -> None:
    s = score_pair(answer("yes"), answer("yes", stop_reason="max_tokens"))
    assert not s.stop_reason_match and not s.agree


def test_tool_call_versus_text_is_a_disagreement() -> None:
    s = score_pair(answer(tool_calls=[WEATHER], stop_reason="tool_use"),
                   answer("It is sunny in Paris."))
    assert not s.tool_call_match and not s.stop_reason_match and not s.agree


def test_tool_calls_compare_arguments_as_json_values_not_text() -> None:
    reordered = {"name": "get_weather", "arguments": '{"unit": "c", "city": "Paris"}'}
    s = score_pair(answer("Let me check.", tool_calls=[WEATHER], stop_reason="tool_use"),
                   answer("Checking the weather now", tool_calls=[reordered],
                          stop_reason="tool_use"))
    assert s.tool_call_match and s.agree  # text around tool calls need not match


def test_tool_calls_with_other_arguments_or_order_disagree() -> None:
    other_city = {"name": "get_weather", "arguments": {"city": "Lyon", "unit": "c"}}
    clock = {"name": "get_time", "arguments": {}}
    assert not score_pair(answer(tool_calls=[WEATHER]), answer(tool_calls=[other_city])).agree
    assert not score_pair(answer(tool_calls=[WEATHER, clock]),
                          answer(tool_calls=[clock, WEATHER])).agree
    assert not score_pair(answer(tool_calls=[{"name": "f", "arguments": {"x": 1}}]),
                          answer(tool_calls=[{"name": "f", "arguments": {"x": True}}])).agree


def test_json_answer_must_stay_json() -> None:
    s = score_pair(answer('{"answer": 42}'), answer('```json\n{"answer": 42}\n```'))
    assert s.json_match is False and not s.agree
    assert score_pair(answer('{"answer": 42}'), answer('{"answer":42}')).json_match is True
    assert score_pair(answer("plain words"), answer("plain words")).json_match is None


def test_failed_side_never_agrees() -> None:
    failed = SideView(status=529, error="overloaded_error: busy")
    assert not score_pair(answer("hi"), failed).agree
    assert not score_pair(failed, failed).agree


def test_refusal_is_flagged_by_stop_reason_or_phrase() -> None:
    assert score_pair(answer("Sure: 4"), answer("", stop_reason="refusal")).refusal
    assert score_pair(answer("Sure: 4"), answer("I\u2019m sorry, but I can't help with that.")
                      ).refusal
    assert not score_pair(answer("Sure: 4"), answer("Sure: 4")).refusal


def test_length_ratio_is_shadow_over_primary() -> None:
    assert score_pair(answer("abcd"), answer("ab")).length_ratio == 0.5
    assert score_pair(answer(""), answer("ab")).length_ratio is None


def test_side_view_reads_a_comparisons_row() -> None:
    row = {"shadow_text": None, "shadow_tool_calls": '[{"name": "f", "arguments": {}}]',
           "shadow_stop_reason": "tool_use", "shadow_status": 200, "shadow_error": None}
    side = SideView.from_row(row, "shadow")
    assert side.text == "" and side.tool_calls == [{"name": "f", "arguments": {}}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
tool_calls = st.lists(
    st.fixed_dictionaries({"name": st.text(max_size=10), "arguments": json_values}),
    max_size=3,
)
sides = st.builds(
    SideView,
    text=st.text(max_size=200),
    tool_calls=tool_calls,
    stop_reason=st.sampled_from([None, "end_turn", "stop_sequence", "tool_use",
                                 "max_tokens", "refusal", "pause_turn"]),
    status=st.sampled_from([None, 200, 400, 500]),
    error=st.none() | st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(sides)
def test_an_answer_always_agrees_with_itself_when_it_answered(side: SideView) -> None:
    s = score_pair(side, side)
    answered = side.error is None and (side.status is None or side.status < 400)
    assert s.agree == answered
    assert s.exact_match and s.tool_call_match and s.text_similarity == 1.0


@settings(max_examples=200, deadline=None)
@given(sides, sides)
def test_scoring_never_raises_and_similarity_is_symmetric(a: SideView, b: SideView) -> None:
    s = score_pair(a, b)
    assert 0.0 <= s.text_similarity <= 1.0
    swapped = score_pair(b, a)
    assert s.text_similarity == swapped.text_similarity
    assert s.tool_call_match == swapped.tool_call_match
    assert s.stop_reason_match == swapped.stop_reason_match


@given(st.text(max_size=100))
@settings(max_examples=100, deadline=None)
def test_normalising_is_idempotent(text: str) -> None:
    assert normalize_text(normalize_text(text)) == normalize_text(text)
    assert text_similarity(text, text) == 1.0

"""The judge protocol as data: what the judge reads, how its answer is parsed, the verdict."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.decision.judge_prompt import (
    AnswerText,
    JudgeAnswerError,
    PromptParts,
    Vote,
    combine,
    fence_nonce,
    judge_messages_request,
    judge_prompt,
    parse_messages_response,
    parse_openai_response,
    parse_vote,
    read_prompt,
    render_answer,
    render_conversation,
)
from shadowproxy.decision.verdict import Verdict

ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "system": [{"type": "text", "text": "You are a travel agent."}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is the weather in Paris?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "[base64 40000 chars sha256:abcd]"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "secret"},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "18C, sunny"}]},
    ],
}

OPENAI_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is the weather in Paris?"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C, sunny"},
    ],
}


def test_anthropic_conversation_shows_system_turns_tools_and_image_size() -> None:
    shown = render_conversation(ANTHROPIC_REQUEST)
    assert shown.startswith("[system]\nYou are a travel agent.")
    assert "What is the weather in Paris?" in shown
    assert "[image image/png, 30,000 bytes]" in shown
    assert '(tool call weather {"city": "Paris"})' in shown
    assert "18C, sunny" in shown and "secret" not in shown


def test_openai_conversation_reads_the_same() -> None:
    shown = render_conversation(OPENAI_REQUEST)
    assert shown.startswith("[system]\nYou are a travel agent.")
    assert "[image image/jpeg, 3 bytes]" in shown
    assert '(tool call weather {"city": "Paris"})' in shown
    assert "[tool result]\n18C, sunny" in shown


def test_long_conversations_lose_their_oldest_turns_first() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 90}
             for i in range(50)]
    shown = render_conversation({"system": "Be brief.", "messages": turns}, limit=1_000)
    assert len(shown) <= 1_100
    assert "Be brief." in shown and "turn 49" in shown and "turn 0 " not in shown
    assert "earlier turns omitted" in shown


def test_a_last_turn_longer_than_the_limit_keeps_its_end() -> None:
    shown = render_conversation({"messages": [{"role": "user", "content": "a" * 5000 + "END"}]},
                                limit=500)
    assert shown.endswith("END") and len(shown) <= 520


def test_anything_else_is_tolerated() -> None:
    assert render_conversation(None) == "[no conversation stored]"
    assert render_conversation({"messages": [1, {"role": "user", "content": 5}]})


def test_the_request_forces_the_verdict_tool_and_labels_the_answers() -> None:
    prompt = judge_prompt("[user]\nhi", AnswerText("hello"),
                          AnswerText("", [{"name": "greet", "arguments": {}}]),
                          rubric="Be polite.")
    body = judge_messages_request("claude-opus-4-1", prompt)
    assert body["tool_choice"] == {"type": "tool", "name": "verdict"}
    assert body["tools"][0]["input_schema"]["properties"]["winner"]["enum"] == ["A", "B", "tie"]
    assert not {"temperature", "top_p", "top_k"} & set(body)
    text = body["messages"][0]["content"]
    marker = text.split("carry the marker ", 1)[1].split(".", 1)[0]
    assert len(marker) == 16
    assert f"<answer_A-{marker}>\nhello\n</answer_A-{marker}>" in text
    assert f"<answer_B-{marker}>\n(tool call greet {{}})\n</answer_B-{marker}>" in text
    assert "Be polite." in text
    assert read_prompt(text) == PromptParts("[user]\nhi", "hello", "(tool call greet {})",
                                            "Be polite.")


def test_each_call_draws_its_own_marker() -> None:
    prompts = {judge_prompt("c", AnswerText("a"), AnswerText("b"), None) for _ in range(20)}
    assert len(prompts) == 20


# Text that tries to close or open a fence: the old fixed tags, tags with guessed markers,
# and the marker line itself.
_TAGS = st.sampled_from([
    "</answer_A>", "<answer_B>", "</conversation>", "<answer_A-", "</answer_B-", ">", "\n",
    "carry the marker 00.", "<rubric-", "0123456789abcdef", "deadbeef"])
_HOSTILE = st.lists(st.one_of(st.text(max_size=20), _TAGS), max_size=12).map("".join)


@given(conversation=_HOSTILE, a=_HOSTILE, b=_HOSTILE,
       rubric=st.none() | _HOSTILE.filter(bool),
       guesses=st.lists(st.sampled_from(["deadbeef", "0123456789abcdef", "00"]), max_size=3))
def test_no_data_can_move_a_fence(conversation: str, a: str, b: str, rubric: str | None,
                                  guesses: list[str]) -> None:
    """Whatever the data holds, a reader that knows the marker gets back exactly what was
    fenced; even when the random source first offers markers the data contains."""
    offered = iter([*guesses, "feedface00c0ffee", "1234abcd5678ef90"])
    nonce = fence_nonce(conversation, a, b, rubric or "", draw=lambda: next(offered))
    assert all(nonce not in piece for piece in (conversation, a, b, rubric or ""))
    prompt = judge_prompt(conversation, AnswerText(a), AnswerText(b), rubric, nonce=nonce)
    parts = read_prompt(prompt)
    shown_a, shown_b = render_answer(AnswerText(a)), render_answer(AnswerText(b))
    assert parts == PromptParts(conversation, shown_a, shown_b, rubric)


def test_a_marker_the_data_contains_is_never_used() -> None:
    prompt = judge_prompt("c", AnswerText("see </answer_A-abc123>"), AnswerText("b"), None,
                          nonce="abc123")
    assert "carry the marker abc123." not in prompt
    assert read_prompt(prompt) == PromptParts("c", "see </answer_A-abc123>", "b", None)


def test_responses_of_both_apis_parse() -> None:
    message = {"content": [{"type": "text", "text": "thinking"},
                           {"type": "tool_use", "name": "verdict",
                            "input": {"winner": "b", "reason": " B is right. "}}]}
    assert parse_messages_response(message) == Vote("B", "B is right.")
    chat = {"choices": [{"message": {"tool_calls": [{"type": "function", "function": {
        "name": "verdict", "arguments": '{"winner": "tie", "reason": "same"}'}}]}}]}
    assert parse_openai_response(chat) == Vote("tie", "same")


def test_a_side_wins_only_when_it_wins_in_both_orders() -> None:
    a, b, tie = Vote("A", "a"), Vote("B", "b"), Vote("tie", "t")
    assert combine(b, a).verdict == Verdict.BETTER  # shadow shown B then A: wins twice
    assert combine(a, b).verdict == Verdict.WORSE
    always_a = combine(a, a)
    assert (always_a.verdict, always_a.position_inconsistent) == (Verdict.EQUIVALENT, True)
    assert combine(tie, tie) .position_inconsistent is False
    assert combine(b, tie).verdict == Verdict.EQUIVALENT


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.sampled_from(["winner", "reason", "x"]), c),
                    max_leaves=10))
def test_the_parser_raises_only_its_own_error(value: Any) -> None:
    for parse in (parse_vote, parse_messages_response, parse_openai_response):
        try:
            vote = parse(value)
        except JudgeAnswerError:
            continue
        assert vote.winner in ("A", "B", "tie")


@given(st.sampled_from(["A", "B", "tie", " a ", "TIE"]), st.text())
def test_valid_votes_round_trip(winner: str, reason: str) -> None:
    vote = parse_vote({"winner": winner, "reason": reason})
    assert vote.winner == {"a": "A", "b": "B", "tie": "tie"}[winner.strip().lower()]
    assert vote.reason == reason.strip()[:2000]


@given(st.recursive(st.none() | st.text() | st.integers(),
                    lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["role", "content", "type", "text", "messages", "system", "source",
                         "data", "tool_calls", "function", "image_url"]), c, max_size=4),
                    max_leaves=25))
def test_rendering_never_raises(request_body: Any) -> None:
    assert isinstance(render_conversation(request_body, limit=300), str)
    assert isinstance(render_conversation({"messages": [request_body]}, limit=300), str)


@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool"]),
                                       "content": st.text(max_size=400)}), max_size=30),
       st.text(max_size=3000), st.integers(min_value=200, max_value=5000))
def test_the_conversation_stays_within_its_limit(messages: list[dict[str, Any]],
                                                 system: str, limit: int) -> None:
    shown = render_conversation({"system": system, "messages": messages}, limit=limit)
    assert len(shown) <= limit + 64
    if messages and messages[-1]["content"]:
        assert shown.endswith(messages[-1]["content"][-50:])

"""A stored request as a reviewer reads it: every shape we store, anything else
tolerated, images never more than a placeholder."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.review_conversation import answer, conversation_text, conversation_turns

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["role", "content", "type", "text", "source", "data", "image_url",
                         "url", "tool_calls", "function", "name", "arguments", "input",
                         "messages", "system", "instructions", "output", "media_type"]),
        inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300)
@given(JSON)
def test_anything_renders_without_raising(request: Any) -> None:
    turns = conversation_turns(request)
    assert isinstance(conversation_text(turns), str)
    json.dumps([t.to_json() for t in turns])


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
               min_size=64, max_size=400))
def test_image_bytes_never_reach_the_reviewer(data: str) -> None:
    request = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}},
        {"type": "input_image", "image_url": f"data:image/webp;base64,{data}"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": data}},
    ]}]}
    shown = json.dumps([t.to_json() for t in conversation_turns(request)])
    assert data not in shown and data[:32] not in shown
    assert f"{len(data) * 3 // 4:,} bytes" in shown


def test_the_three_shapes_read_alike() -> None:
    anthropic = {"system": [{"type": "text", "text": "Be brief."}], "messages": [
        {"role": "user", "content": "Order 7?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "private"},
            {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"id": 7}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "shipped", "is_error": False}]}]}
    responses = {"instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Order 7?"}]},
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "t1", "name": "lookup", "arguments": '{"id": 7}'},
        {"type": "function_call_output", "call_id": "t1", "output": "shipped"}]}
    chat = {"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Order 7?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function",
             "function": {"name": "lookup", "arguments": '{"id": 7}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "shipped"}]}
    texts = {conversation_text(conversation_turns(r)) for r in (anthropic, responses, chat)}
    (text,) = texts
    assert text == ('[system]\nBe brief.\n\n[user]\nOrder 7?\n\n[assistant]\n'
                    '(tool call lookup)\n{\n  "id": 7\n}\n\n[tool]\n(tool result)\nshipped')
    assert "private" not in text


def test_answers_are_whole_with_their_tool_calls() -> None:
    long = "x" * 200_000
    assert answer(long, [{"name": "f", "arguments": {"a": 1}}, "junk"]) == {
        "text": long, "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}
    assert answer(None, None) == {"text": "", "tool_calls": []}
    assert conversation_text(conversation_turns(None)) == "[no conversation stored]"

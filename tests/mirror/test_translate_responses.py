"""Responses API requests → Messages requests for the shadow (WIRE.md, "OpenAI Responses")."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.mirror.translate import (
    JSON_OBJECT_INSTRUCTION,
    SHADOW_MAX_OUTPUT_TOKENS,
    Untranslatable,
)
from shadowproxy.mirror.translate_responses import responses_input_items, responses_to_messages
from tests.mirror.test_translate import (
    assert_valid_messages_request,
    blank_or_text,
    json_scalars,
    json_values,
    mutate,
    not_from_the_safety_net,
)

MODEL = "claude-haiku-4-5"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False},
           "strict": True}


def translate(body: Any, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("default_max_tokens", 4096)
    return responses_to_messages(body, model=MODEL, **kwargs)


def skipped_reason(body: Any, **kwargs: Any) -> str:
    with pytest.raises(Untranslatable) as info:
        translate(body, **kwargs)
    return info.value.reason


def msg(role: str, content: Any) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def fcall(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": arguments, "status": "completed"}


def fout(call_id: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


# --- examples ---------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    request = translate({"model": "gpt-4.1", "instructions": "Be terse.", "input": "Hi there"})
    assert request == {"model": MODEL, "max_tokens": 4096, "system": "Be terse.",
                       "messages": [{"role": "user",
                                     "content": [{"type": "text", "text": "Hi there"}]}]}


def test_system_and_developer_items_join_instructions_in_system() -> None:
    request = translate({"instructions": "Rule one.", "input": [
        msg("developer", [{"type": "input_text", "text": "Rule two."}]),
        {"role": "system", "content": "Rule three."},  # EasyInputMessage: no type
        msg("user", [{"type": "input_text", "text": "Go"}]),
    ]})
    assert request["system"] == "Rule one.\n\nRule two.\n\nRule three."
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Go"}]}]


def test_images_by_url_and_data_url() -> None:
    request = translate({"input": [msg("user", [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://img.test/cat.png", "detail": "auto"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
    ])]})
    (turn,) = request["messages"]
    assert turn["content"][1] == {"type": "image",
                                  "source": {"type": "url", "url": "https://img.test/cat.png"}}
    assert turn["content"][2]["source"] == {"type": "base64", "media_type": "image/png",
                                            "data": "iVBORw0KGgo="}


def test_function_call_round_trip_becomes_tool_use_and_tool_result() -> None:
    request = translate({
        "tools": [WEATHER], "tool_choice": "auto",
        "input": [
            msg("user", "Weather in Paris and Rome?"),
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            msg("assistant", [{"type": "output_text", "text": "Checking.", "annotations": []}]),
            fcall("call_a", "get_weather", '{"city": "Paris"}'),
            fcall("call_b", "get_weather", '{"city": "Rome"}'),
            fout("call_b", "18C"),
            fout("call_a", [{"type": "input_text", "text": "21C"}]),
            msg("user", "Thanks, and tomorrow?"),
        ],
    })
    # strict: true stays strict (Messages strict tools), as for Chat Completions tools.
    assert request["tools"] == [{"name": "get_weather", "description": "Weather in a city",
                                 "strict": True, "input_schema": WEATHER["parameters"]}]
    assert request["tool_choice"] == {"type": "auto"}
    _question, assistant, user2 = request["messages"]
    assert assistant == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]}
    assert user2["content"] == [
        {"type": "tool_result", "tool_use_id": "call_b", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_a",
         "content": [{"type": "text", "text": "21C"}]},
        {"type": "text", "text": "Thanks, and tomorrow?"},
    ]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"}),
    ({"type": "function", "name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert translate({"input": "x", "tools": [WEATHER],
                      "tool_choice": choice})["tool_choice"] == expected


def test_parallel_tool_calls_false() -> None:
    request = translate({"input": "x", "tools": [WEATHER], "parallel_tool_calls": False})
    assert request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_max_output_tokens_sampling_and_stream() -> None:
    request = translate({"input": "x", "max_output_tokens": 100_000, "temperature": 1.6,
                         "top_p": 0.5, "stream": True, "store": False,
                         "reasoning": {"effort": "low"}, "metadata": {"a": "b"}},
                        max_tokens_limit=64_000)
    assert request == {"model": MODEL, "max_tokens": 64_000, "temperature": 1.0,
                       "stream": True,
                       "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert translate({"input": "x", "top_p": 0.3})["top_p"] == 0.3
    assert translate({"input": "x"}, default_max_tokens=777)["max_tokens"] == 777


def test_text_format_json_schema_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = translate({"input": "x", "text": {"format": {
        "type": "json_schema", "name": "count", "schema": schema, "strict": True}}})
    assert request["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in request


def test_text_format_json_object_becomes_an_instruction() -> None:
    request = translate({"input": "x", "text": {"format": {"type": "json_object"}}})
    assert request["system"] == JSON_OBJECT_INSTRUCTION
    assert "output_config" not in translate({"input": "x", "text": {"format": {"type": "text"}}})


def test_history_is_prepended_and_instructions_are_not_inherited() -> None:
    history = [msg("user", "My name is Ada."),
               {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]}]
    request = translate({"previous_response_id": "resp_1", "instructions": "Be kind.",
                         "input": "What is my name?"}, history=history)
    assert request["system"] == "Be kind."
    assert [t["role"] for t in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][1]["content"] == [{"type": "text", "text": "Hello Ada."}]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"previous_response_id": "resp_9", "input": "x"}, "earlier turns are unknown"),
    ({"input": "x", "tools": [{"type": "web_search_preview"}]}, "built-in tool 'web_search_pr"),
    ({"input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
     "built-in tool 'file_search'"),
    ({"input": "x", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
     "built-in tool 'code_interpreter'"),
    ({"input": "x", "tools": [{"type": "computer_use_preview"}]}, "built-in tool 'computer_use"),
    ({"input": "x", "tools": [{"type": "mcp", "server_label": "x"}]}, "built-in tool 'mcp'"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
     "web_search_call is a built-in tool's work"),
    ({"input": "x", "conversation": "conv_1"}, "Conversations object"),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "stored prompt template"),
    ({"input": "x", "background": True}, "background mode"),
    ({"input": [msg("user", [{"type": "input_file", "file_id": "file-1"}])]}, "input_file"),
    ({"input": [msg("user", [{"type": "input_image", "file_id": "file-1"}])]}, "file_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"input": [fout("call_x", "1")]}, "answers no function call"),
    ({"input": [msg("user", "x"), fcall("c1", "f", "{}")]}, "have no tool result"),
    ({"input": [fcall("c1", "f", "{not json")]}, "are not JSON"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
     "not among the tools"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens=0"),
    ({"input": "x", "text": {"format": {"type": "grammar"}}}, "text.format type"),
    ({"model": "gpt-4.1"}, "input is missing"),
    ({"input": [msg("user", "")]}, "no user or assistant messages"),
])
def test_untranslatable_requests_say_why(body: Any, fragment: str) -> None:
    assert fragment in skipped_reason(body)


def test_input_items_of_a_string_input() -> None:
    assert responses_input_items({"input": "Hi"}) == [msg("user", "Hi")]
    assert responses_input_items({"input": [fout("c", "1")]}) == [fout("c", "1")]
    assert responses_input_items(None) == []


# --- properties -------------------------------------------------------------------------


def parts(draw: st.DrawFn, kinds: list[str]) -> Any:
    if draw(st.booleans()):
        return draw(blank_or_text)
    out: list[dict[str, Any]] = []
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=3)):
        if kind == "input_image":
            url = draw(st.sampled_from(["https://img.test/a.png",
                                        "data:image/jpeg;base64,AAAA"]))
            out.append({"type": "input_image", "image_url": url, "detail": "auto"})
        elif kind == "refusal":
            out.append({"type": "refusal", "refusal": draw(blank_or_text)})
        else:
            out.append({"type": kind, "text": draw(blank_or_text)})
    return out


@st.composite
def responses_requests(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["lookup", "search", "now"]), unique=True,
                          max_size=3))
    items: list[dict[str, Any]] = [msg("user", draw(st.text(min_size=1).filter(str.strip)))]
    calls = 0
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["system", "developer", "user", "assistant", "calls",
                                     "reasoning"]))
        if kind in ("system", "developer"):
            items.append(msg(kind, parts(draw, ["input_text"])))
        elif kind == "user":
            items.append(msg("user", parts(draw, ["input_text", "input_image"])))
        elif kind == "assistant":
            items.append(msg("assistant", parts(draw, ["output_text", "refusal"])))
        elif kind == "reasoning":
            items.append({"type": "reasoning", "id": "rs", "summary": []})
        else:
            count = draw(st.integers(1, 3))
            prefix = draw(st.sampled_from(["call_", "fc-", "call ", "x:"]))
            new = [fcall(f"{prefix}{calls + i}", draw(st.sampled_from([*names, "other"])),
                         json.dumps(draw(st.dictionaries(st.text(max_size=5), json_scalars,
                                                         max_size=3))))
                   for i in range(count)]
            calls += count
            items += new
            for c in draw(st.permutations(new)):
                output = draw(st.one_of(blank_or_text, st.just(
                    [{"type": "input_text", "text": "r"}])))
                items.append(fout(c["call_id"], output))
            if draw(st.booleans()):
                items.append(msg("user", parts(draw, ["input_text"])))
    split = draw(st.integers(0, len(items) - 1))
    history, new_input = items[:split], items[split:]
    body: dict[str, Any] = {"model": "gpt-4.1", "input": new_input}
    if history:
        body["previous_response_id"] = "resp_prev"
    body["instructions"] = draw(st.one_of(st.none(), blank_or_text))
    if names:
        body["tools"] = [{"type": "function", "name": n,
                          **({"parameters": {"type": "object", "properties": {}}}
                             if draw(st.booleans()) else {})} for n in names]
        body["tool_choice"] = draw(st.sampled_from(
            [None, "auto", "required", "none", {"type": "function", "name": names[0]}]))
        body["parallel_tool_calls"] = draw(st.sampled_from([None, True, False]))
    body["temperature"] = draw(st.one_of(st.none(), st.floats(0, 2)))
    body["top_p"] = draw(st.one_of(st.none(), st.floats(0, 1)))
    body["max_output_tokens"] = draw(st.one_of(st.none(), st.integers(1, 200_000)))
    body["text"] = draw(st.sampled_from([
        None, {"format": {"type": "text"}}, {"format": {"type": "json_object"}},
        {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}]))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return {"body": body, "history": history or None}


@settings(max_examples=200, deadline=None)
@given(responses_requests(), st.integers(1, SHADOW_MAX_OUTPUT_TOKENS))
def test_valid_responses_requests_translate_to_valid_messages(
    case: dict[str, Any], limit: int
) -> None:
    body, history = case["body"], case["history"]
    request = translate(body, max_tokens_limit=limit, history=history)
    assert_valid_messages_request(request, limit)
    calls = sum(i.get("type") == "function_call" for i in [*(history or []), *body["input"]])
    uses = sum(b["type"] == "tool_use" for t in request["messages"] for b in t["content"])
    assert uses == calls, "every function call is carried over"


KNOWN_KEYS = ["input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
              "max_output_tokens", "temperature", "top_p", "text", "stream",
              "previous_response_id", "conversation", "prompt", "background", "reasoning"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values,
                 st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=6)),
       st.one_of(st.none(), st.lists(json_values, max_size=3)))
def test_garbage_only_ever_raises_untranslatable(body: Any, history: Any) -> None:
    try:
        assert isinstance(translate(body, history=history), dict)
    except Untranslatable as exc:
        not_from_the_safety_net(exc)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_valid_requests_only_ever_raise_untranslatable(data: st.DataObject) -> None:
    case = mutate(data.draw, data.draw(responses_requests()))
    try:
        history = case.get("history") if isinstance(case, dict) else None
        body = case.get("body") if isinstance(case, dict) else case
        assert isinstance(translate(body, history=history), dict)
    except Untranslatable as exc:
        not_from_the_safety_net(exc)

"""The shadow's request: OpenAI Chat Completions and Anthropic Messages → Haiku 4.5."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.mirror.translate import (
    JSON_OBJECT_INSTRUCTION,
    SHADOW_MAX_OUTPUT_TOKENS,
    Untranslatable,
    openai_to_messages,
    prepare_messages_request,
)

MODEL = "claude-haiku-4-5"
DEFAULT_MAX = 4096


def translate(body: Any, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("default_max_tokens", DEFAULT_MAX)
    return openai_to_messages(body, model=MODEL, **kwargs)


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), **params}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def skipped_reason(body: Any, **kwargs: Any) -> str:
    with pytest.raises(Untranslatable) as info:
        translate(body, **kwargs)
    return info.value.reason


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# ------------------------------------------------------------------- basic shape


def test_simple_chat_becomes_a_messages_request() -> None:
    request = translate(chat(user("Hi"), model="gpt-4o"))
    assert request == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX,
        "messages": [{"role": "user", "content": [text("Hi")]}],
    }


def test_system_and_developer_messages_join_into_system() -> None:
    request = translate(chat(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [text("Answer in French.")]},
        user("Hi"),
        {"role": "system", "content": "   "},
    ))
    assert request["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in request["messages"]] == ["user"]


def test_consecutive_same_role_turns_are_merged() -> None:
    request = translate(chat(user("one"), user([text("two")]), assistant("a"), assistant("b"),
                             user("three")))
    assert request["messages"] == [
        {"role": "user", "content": [text("one"), text("two")]},
        {"role": "assistant", "content": [text("a"), text("b")]},
        {"role": "user", "content": [text("three")]},
    ]


def test_empty_text_blocks_and_turns_are_dropped() -> None:
    request = translate(chat(user("q"), assistant(""), user([text(""), text(" \n")]),
                             user("again")))
    assert request["messages"] == [{"role": "user", "content": [text("q"), text("again")]}]


def test_final_assistant_prefill_is_right_stripped() -> None:
    request = translate(chat(user("Name a colour"), assistant("The colour is  \n")))
    assert request["messages"][-1] == {"role": "assistant", "content": [text("The colour is")]}


def test_no_conversation_left_is_untranslatable() -> None:
    assert "no user or assistant" in skipped_reason(chat({"role": "system", "content": "x"}))


# ----------------------------------------------------------------------- images


def test_https_image_becomes_url_source() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}}
    request = translate(chat(user([text("What is it?"), part])))
    assert request["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}
    }


def test_data_url_image_becomes_base64_source() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    request = translate(chat(user([part])))
    assert request["messages"][0]["content"] == [{
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }]


@pytest.mark.parametrize("url", [
    "data:image/tiff;base64,AAAA",
    "data:image/png,rawbytes",
    "ftp://x.test/cat.png",
])
def test_images_the_api_cannot_take_are_untranslatable(url: str) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    skipped_reason(chat(user([part])))


# ------------------------------------------------------------------------ tools


def test_tool_definitions_and_choice() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    request = translate(chat(user("hi"), tools=[WEATHER_TOOL, bare], tool_choice="required"))
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert request["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    assert translate(chat(user("hi"), tools=[WEATHER_TOOL], tool_choice=choice))[
        "tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_use() -> None:
    request = translate(chat(user("hi"), tools=[WEATHER_TOOL], parallel_tool_calls=False))
    assert request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    request = translate(chat(user("hi"), tools=[WEATHER_TOOL], tool_choice="required",
                             parallel_tool_calls=False))
    assert request["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_without_tools_is_dropped() -> None:
    request = translate(chat(user("hi"), tool_choice="auto", parallel_tool_calls=False))
    assert "tool_choice" not in request and "tools" not in request


def test_choosing_an_unknown_tool_is_untranslatable() -> None:
    choice = {"type": "function", "function": {"name": "nope"}}
    skipped_reason(chat(user("hi"), tools=[WEATHER_TOOL], tool_choice=choice))


def test_tool_calls_and_results_round_trip() -> None:
    request = translate(chat(
        user("Weather in Paris and Rome?"),
        assistant(None, tool_calls=[call("call_1", "get_weather", '{"city": "Paris"}'),
                                    call("call_2", "get_weather", '{"city": "Rome"}')]),
        tool("call_1", "18C"),
        tool("call_2", [text("21C")]),
        user("And which is warmer?"),
        tools=[WEATHER_TOOL],
    ))
    assert request["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [text("21C")]},
            text("And which is warmer?"),
        ]},
    ]


def test_assistant_text_comes_before_its_tool_use() -> None:
    request = translate(chat(
        user("q"), assistant("Let me look.", tool_calls=[call("c1", "get_weather", "{}")]),
        tool("c1", "sunny"), tools=[WEATHER_TOOL]))
    assert [b["type"] for b in request["messages"][1]["content"]] == ["text", "tool_use"]


def test_tool_results_come_first_even_after_a_user_message() -> None:
    request = translate(chat(
        user("q"), assistant(None, tool_calls=[call("c1", "get_weather", "{}")]),
        user("hurry"), tool("c1", "sunny"), tools=[WEATHER_TOOL]))
    assert [b["type"] for b in request["messages"][2]["content"]] == ["tool_result", "text"]


def test_unparseable_arguments_are_untranslatable() -> None:
    reason = skipped_reason(chat(
        user("q"), assistant(None, tool_calls=[call("c1", "get_weather", "{city: Paris")]),
        tool("c1", "x")))
    assert "not JSON" in reason


def test_unanswered_tool_call_is_untranslatable() -> None:
    skipped_reason(chat(user("q"), assistant(None, tool_calls=[call("c1", "f", "{}")])))


def test_tool_result_for_unknown_call_is_untranslatable() -> None:
    skipped_reason(chat(user("q"), tool("nope", "x")))


def test_foreign_tool_call_ids_are_made_valid_and_kept_paired() -> None:
    request = translate(chat(
        user("q"), assistant(None, tool_calls=[call("functions.f:0", "f", "{}")]),
        tool("functions.f:0", "one"),
        assistant(None, tool_calls=[call("functions.f:0", "f", "{}")]),
        tool("functions.f:0", "two"),
    ))
    first, second = request["messages"][1]["content"][0], request["messages"][3]["content"][0]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first["id"]) and first["id"] != second["id"]
    assert request["messages"][2]["content"][0]["tool_use_id"] == first["id"]
    assert request["messages"][4]["content"][0]["tool_use_id"] == second["id"]


def test_legacy_functions_translate_like_tools() -> None:
    request = translate(chat(
        user("q"),
        assistant(None, function_call={"name": "get_weather", "arguments": '{"city": "Oslo"}'}),
        {"role": "function", "name": "get_weather", "content": "-3C"},
        functions=[WEATHER_TOOL["function"]],
        function_call={"name": "get_weather"},
    ))
    assert request["tools"][0]["name"] == "get_weather"
    assert request["tool_choice"] == {"type": "tool", "name": "get_weather"}
    use = request["messages"][1]["content"][0]
    assert use["input"] == {"city": "Oslo"}
    assert request["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": use["id"], "content": "-3C"}]


# ------------------------------------------------------------- sampling and limits


def test_stop_becomes_stop_sequences_without_blank_ones() -> None:
    assert translate(chat(user("q"), stop="END"))["stop_sequences"] == ["END"]
    assert translate(chat(user("q"), stop=["\n", "###", " "]))["stop_sequences"] == ["###"]
    assert "stop_sequences" not in translate(chat(user("q"), stop=["\n\n"]))


def test_temperature_is_clamped_and_wins_over_top_p() -> None:
    assert translate(chat(user("q"), temperature=1.7))["temperature"] == 1.0
    request = translate(chat(user("q"), temperature=0.3, top_p=0.9))
    assert request["temperature"] == 0.3 and "top_p" not in request
    assert translate(chat(user("q"), top_p=0.9))["top_p"] == 0.9


@pytest.mark.parametrize(("params", "expected"), [
    ({}, DEFAULT_MAX),
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
    ({"max_completion_tokens": None, "max_tokens": 100}, 100),
    ({"max_tokens": 1_000_000}, SHADOW_MAX_OUTPUT_TOKENS),
])
def test_max_tokens(params: dict[str, Any], expected: int) -> None:
    assert translate(chat(user("q"), **params))["max_tokens"] == expected


def test_default_max_tokens_is_clamped_to_the_limit() -> None:
    assert translate(chat(user("q")), default_max_tokens=10, max_tokens_limit=5)[
        "max_tokens"] == 5


def test_stream_is_copied_and_other_keys_dropped() -> None:
    request = translate(chat(user("q"), stream=True, stream_options={"include_usage": True},
                             seed=1, logprobs=True, user="u1", store=True,
                             metadata={"a": "b"}, reasoning_effort="low", n=1))
    assert request["stream"] is True
    assert set(request) == {"model", "max_tokens", "messages", "stream"}


# -------------------------------------------------------------- response_format


def test_json_object_becomes_a_system_instruction() -> None:
    request = translate(chat({"role": "system", "content": "You extract."}, user("q"),
                             response_format={"type": "json_object"}))
    assert request["system"] == "You extract.\n\n" + JSON_OBJECT_INSTRUCTION


def test_json_schema_becomes_structured_output_not_an_instruction() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}},
              "required": ["age"], "additionalProperties": False}
    request = translate(chat({"role": "system", "content": "You extract."}, user("q"),
                             response_format={"type": "json_schema", "json_schema": {
                                 "name": "person", "schema": schema, "strict": True}}))
    assert request["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert request["system"] == "You extract."  # no instruction: the API holds the schema
    assert "tools" not in request


def test_json_schema_without_a_schema_stays_an_instruction() -> None:
    request = translate(chat(user("q"), response_format={
        "type": "json_schema", "json_schema": {"name": "free"}}))
    assert request["system"] == JSON_OBJECT_INSTRUCTION and "output_config" not in request


def test_strict_function_tools_stay_strict() -> None:
    strict = {"type": "function", "function": {
        "name": "lookup", "strict": True,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                       "required": ["q"], "additionalProperties": False}}}
    loose = {"type": "function", "function": {"name": "other", "strict": False}}
    request = translate(chat(user("q"), tools=[strict, loose]))
    assert request["tools"][0]["strict"] is True
    assert "strict" not in request["tools"][1]
    assert "strict" in skipped_reason(chat(user("q"), tools=[
        {"type": "function", "function": {"name": "x", "strict": "yes"}}]))


def test_text_response_format_changes_nothing() -> None:
    assert "system" not in translate(chat(user("q"), response_format={"type": "text"}))


# ------------------------------------------------------------- untranslatable


@pytest.mark.parametrize(("body", "fragment"), [
    (chat(user("q"), n=3), "n=3: Messages returns one answer"),
    (chat(user("q"), modalities=["text", "audio"]), "audio"),
    (chat(user("q"), audio={"voice": "alloy", "format": "wav"}), "audio"),
    (chat(user([{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}])),
     "audio"),
    (chat({"role": "critic", "content": "x"}), "role 'critic'"),
    (chat(user("q"), response_format={"type": "grammar"}), "response_format"),
    ([1, 2], "not a JSON object"),
    ({"model": "gpt-4o"}, "messages"),
    (chat(user("q"), temperature="hot"), "temperature"),
    (chat(user("q"), max_tokens=0), "max_tokens"),
])
def test_untranslatable_requests_say_why(body: Any, fragment: str) -> None:
    assert fragment in skipped_reason(body)


# ---------------------------------------------------------- Anthropic passthrough


def messages_body(**params: Any) -> dict[str, Any]:
    return {"model": "claude-3-5-sonnet-latest", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "hi"}], **params}


def test_prepare_replaces_model_and_keeps_the_rest() -> None:
    body = messages_body(system="s", metadata={"user_id": "u"}, stream=True)
    request = prepare_messages_request(body, model=MODEL)
    assert request == {**body, "model": MODEL}
    assert body["model"] == "claude-3-5-sonnet-latest"  # the application's body is untouched


def test_prepare_clamps_max_tokens_and_thinking_budget() -> None:
    body = messages_body(max_tokens=100_000,
                         thinking={"type": "enabled", "budget_tokens": 80_000})
    request = prepare_messages_request(body, model=MODEL)
    assert request["max_tokens"] == SHADOW_MAX_OUTPUT_TOKENS
    assert request["thinking"] == {"type": "enabled",
                                   "budget_tokens": SHADOW_MAX_OUTPUT_TOKENS - 1}
    assert body["thinking"]["budget_tokens"] == 80_000


def test_prepare_drops_thinking_that_no_longer_fits() -> None:
    body = messages_body(max_tokens=5000, thinking={"type": "enabled", "budget_tokens": 4000})
    assert "thinking" not in prepare_messages_request(body, model=MODEL, max_tokens_limit=1000)


def test_prepare_passes_structured_outputs_and_cache_control_through() -> None:
    output_config = {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    system = [{"type": "text", "text": "policy",
               "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    tools = [{"name": "t", "strict": True, "input_schema": {"type": "object"},
              "cache_control": {"type": "ephemeral"}}]
    body = messages_body(output_config=output_config, system=system, tools=tools)
    assert prepare_messages_request(body, model=MODEL) == {**body, "model": MODEL}


def thinking_notes(body: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    return prepare_messages_request(body, model=MODEL, notes=notes, **kwargs), notes


def test_thinking_budget_below_the_minimum_is_raised_and_said() -> None:
    request, notes = thinking_notes(messages_body(
        max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 500}))
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert notes == ["thinking budget_tokens 500 -> 1024 (at least 1024, below "
                     "max_tokens=4000)"]


def test_thinking_within_the_rules_is_kept_as_sent_without_a_note() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}
    request, notes = thinking_notes(messages_body(max_tokens=4000, thinking=thinking))
    assert request["thinking"] == thinking and notes == []


def test_adaptive_thinking_becomes_a_budget_haiku_accepts() -> None:
    request, notes = thinking_notes(messages_body(max_tokens=16_000,
                                                  thinking={"type": "adaptive"}))
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert notes == ["adaptive thinking became budget_tokens=8000"]


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "t"}])
def test_forced_tool_choice_keeps_the_tool_and_drops_thinking(choice: dict[str, Any]) -> None:
    body = messages_body(max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2000},
                         tools=[{"name": "t", "input_schema": {"type": "object"}}],
                         tool_choice=choice)
    request, notes = thinking_notes(body)
    assert "thinking" not in request and request["tool_choice"] == choice
    assert "tool_choice" in notes[0] and "thinking dropped" in notes[0]


@settings(max_examples=300, deadline=None)
@given(max_tokens=st.integers(1, 200_000), limit=st.integers(1, SHADOW_MAX_OUTPUT_TOKENS),
       budget=st.one_of(st.none(), st.integers(0, 250_000)),
       choice=st.sampled_from([None, "auto", "any", "tool", "none"]))
def test_thinking_always_ends_within_haikus_rules(
    max_tokens: int, limit: int, budget: int | None, choice: str | None
) -> None:
    thinking = {"type": "adaptive"} if budget is None else {
        "type": "enabled", "budget_tokens": budget}
    body = messages_body(max_tokens=max_tokens, thinking=thinking,
                         tools=[{"name": "t", "input_schema": {"type": "object"}}])
    if choice is not None:
        body["tool_choice"] = {"type": choice, **({"name": "t"} if choice == "tool" else {})}
    request, notes = thinking_notes(body, max_tokens_limit=limit)
    if "thinking" in request:
        assert 1024 <= request["thinking"]["budget_tokens"] < request["max_tokens"]
        assert choice not in ("any", "tool")
    if request.get("thinking") != thinking:
        assert notes, "every change to the application's thinking is said"


# ---------------------------------------------------------------- server tools


@pytest.mark.parametrize("tool", [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    {"type": "web_fetch_20250910", "name": "web_fetch"},
    {"type": "code_execution_20250825", "name": "code_execution"},
    {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
])
def test_server_tools_are_skipped_by_default_and_mirrored_when_allowed(
    tool: dict[str, Any]
) -> None:
    body = messages_body(tools=[{"name": "local", "input_schema": {"type": "object"}}, tool])
    with pytest.raises(Untranslatable) as info:
        prepare_messages_request(body, model=MODEL)
    assert tool["type"] in info.value.reason and "SHADOW_SERVER_TOOLS=allow" in info.value.reason
    request = prepare_messages_request(body, model=MODEL, server_tools="allow")
    assert request["tools"] == body["tools"]


def test_server_tool_calls_in_the_history_count_as_server_tools() -> None:
    body = messages_body(messages=[
        {"role": "user", "content": "news?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
             "input": {"query": "news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "Here."}]},
        {"role": "user", "content": "more"}])
    with pytest.raises(Untranslatable) as info:
        prepare_messages_request(body, model=MODEL)
    assert "server_tool_use web_search" in info.value.reason


def test_a_client_tool_named_like_a_server_tool_is_not_one() -> None:
    body = messages_body(tools=[{"name": "web_search", "input_schema": {"type": "object"}}])
    assert prepare_messages_request(body, model=MODEL)["tools"] == body["tools"]


def test_openai_web_search_options_are_skipped_or_become_the_web_search_tool() -> None:
    body = chat(user("q"), web_search_options={})
    assert "web_search_options" in skipped_reason(body)
    request = translate(body, server_tools="allow")
    assert request["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]


def test_prepare_keeps_temperature_over_top_p() -> None:
    request = prepare_messages_request(messages_body(temperature=0.2, top_p=0.5), model=MODEL)
    assert request["temperature"] == 0.2 and "top_p" not in request


@pytest.mark.parametrize("body", [
    "text", None, {"max_tokens": 5}, {"messages": "hi", "max_tokens": 5},
    {"messages": [], "max_tokens": "5"}, {"messages": [], "max_tokens": True},
])
def test_prepare_refuses_non_requests(body: Any) -> None:
    with pytest.raises(Untranslatable):
        prepare_messages_request(body, model=MODEL)


# ------------------------------------------------------------------- properties

ID_PREFIXES = ("call_", "toolu_", "functions.lookup:", "call ")
blank_or_text = st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from(["", " ", "\n\t", "ok  ", "  lead"]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def text_content(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(blank_or_text)
    return [text(t) for t in draw(st.lists(blank_or_text, max_size=3))]


def user_content(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(blank_or_text)
    parts: list[dict[str, Any]] = []
    for kind in draw(st.lists(st.sampled_from(["text", "https", "data"]), max_size=3)):
        if kind == "text":
            parts.append(text(draw(blank_or_text)))
        elif kind == "https":
            parts.append({"type": "image_url", "image_url": {"url": "https://img.test/a.png"}})
        else:
            media = draw(st.sampled_from(["image/png", "image/jpeg", "image/webp"]))
            parts.append({"type": "image_url",
                          "image_url": {"url": f"data:{media};base64,AAAA"}})
    return parts


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    tool_names = draw(st.lists(st.sampled_from(["lookup", "search", "book", "now"]),
                               unique=True, max_size=3))
    messages: list[dict[str, Any]] = [user(draw(st.text(min_size=1).filter(str.strip)))]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["system", "developer", "user", "assistant", "calls"]))
        if kind in ("system", "developer"):
            messages.append({"role": kind, "content": text_content(draw)})
        elif kind == "user":
            messages.append(user(user_content(draw)))
        elif kind == "assistant":
            content = None if draw(st.booleans()) else text_content(draw)
            messages.append(assistant(content))
        else:
            prefix = draw(st.sampled_from(ID_PREFIXES))
            count = draw(st.integers(1, 3))
            calls = [
                call(f"{prefix}{i}", draw(st.sampled_from([*tool_names, "legacy_fn"])),
                     json.dumps(draw(st.dictionaries(st.text(max_size=5), json_scalars,
                                                     max_size=3))))
                for i in range(count)
            ]
            content = None if draw(st.booleans()) else text_content(draw)
            messages.append(assistant(content, tool_calls=calls))
            for c in draw(st.permutations(calls)):
                messages.append(tool(c["id"], text_content(draw)))
            if draw(st.booleans()):
                messages.append(user(user_content(draw)))

    body: dict[str, Any] = {"model": "gpt-4o", "messages": messages}
    if tool_names:
        body["tools"] = [{"type": "function", "function": {
            "name": name,
            **({"parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
               if draw(st.booleans()) else {}),
        }} for name in tool_names]
        body["tool_choice"] = draw(st.sampled_from(
            [None, "auto", "required", "none",
             {"type": "function", "function": {"name": tool_names[0]}}]))
        body["parallel_tool_calls"] = draw(st.sampled_from([None, True, False]))
    body["stop"] = draw(st.one_of(st.none(), blank_or_text, st.lists(blank_or_text, max_size=4)))
    body["temperature"] = draw(st.one_of(st.none(), st.floats(0, 2)))
    body["top_p"] = draw(st.one_of(st.none(), st.floats(0, 1)))
    body["n"] = draw(st.sampled_from([None, 1]))
    body[draw(st.sampled_from(["max_tokens", "max_completion_tokens"]))] = draw(
        st.one_of(st.none(), st.integers(1, 200_000)))
    body["response_format"] = draw(st.sampled_from([
        None, {"type": "text"}, {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    ]))
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    return body


def assert_valid_messages_request(request: dict[str, Any], limit: int) -> None:
    json.dumps(request)
    assert request["model"] == MODEL
    assert 1 <= request["max_tokens"] <= limit
    turns = request["messages"]
    assert turns and all(t["role"] in ("user", "assistant") for t in turns)
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(turns))
    seen_ids: set[str] = set()
    for position, turn in enumerate(turns):
        blocks = turn["content"]
        assert blocks, "no empty turns"
        for block in blocks:
            if block["type"] == "text":
                assert block["text"].strip(), "no blank text blocks"
        if turn["role"] == "assistant":
            uses = [b for b in blocks if b["type"] == "tool_use"]
            for use in uses:
                assert re.fullmatch(r"[A-Za-z0-9_-]+", use["id"]) and use["id"] not in seen_ids
                assert isinstance(use["input"], dict)
                seen_ids.add(use["id"])
            if uses:
                answered = {b["tool_use_id"] for b in turns[position + 1]["content"]
                            if b["type"] == "tool_result"}
                assert {u["id"] for u in uses} <= answered
        else:
            kinds = [b["type"] == "tool_result" for b in blocks]
            assert kinds == sorted(kinds, reverse=True), "tool results come first"
            asked = ({b["id"] for b in turns[position - 1]["content"] if b["type"] == "tool_use"}
                     if position else set())
            assert all(b["tool_use_id"] in asked for b in blocks if b["type"] == "tool_result")
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        assert last["content"][-1]["text"] == last["content"][-1]["text"].rstrip()
    if "temperature" in request:
        assert 0 <= request["temperature"] <= 1
    assert not ("temperature" in request and "top_p" in request)
    assert all(s.strip() for s in request.get("stop_sequences", []))
    assert request.get("stop_sequences", True)
    if "system" in request:
        assert request["system"].strip()
    if "output_config" in request:
        fmt = request["output_config"]["format"]
        assert fmt["type"] == "json_schema" and isinstance(fmt["schema"], dict)


@settings(max_examples=200, deadline=None)
@given(openai_requests(), st.integers(1, SHADOW_MAX_OUTPUT_TOKENS))
def test_valid_openai_requests_translate_to_valid_messages(
    body: dict[str, Any], limit: int
) -> None:
    request = translate(body, max_tokens_limit=limit)
    assert_valid_messages_request(request, limit)
    calls = sum(len(m.get("tool_calls") or []) for m in body["messages"])
    uses = sum(b["type"] == "tool_use" for t in request["messages"] for b in t["content"])
    assert uses == calls, "every tool call is carried over"


def not_from_the_safety_net(exc: Untranslatable) -> None:
    assert not exc.reason.startswith("malformed request"), exc.reason


KNOWN_KEYS = ["messages", "tools", "tool_choice", "functions", "function_call", "stop",
              "temperature", "top_p", "n", "max_tokens", "max_completion_tokens",
              "response_format", "stream", "modalities", "audio", "parallel_tool_calls"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values,
                 st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=6)))
def test_garbage_only_ever_raises_untranslatable(body: Any) -> None:
    try:
        assert isinstance(translate(body), dict)
    except Untranslatable as exc:
        not_from_the_safety_net(exc)
    with contextlib.suppress(Untranslatable):
        assert isinstance(prepare_messages_request(body, model=MODEL), dict)


def mutate(draw: Callable[[st.SearchStrategy[Any]], Any], value: Any, depth: int = 0) -> Any:
    """Replace one randomly chosen node below the root of a JSON tree by garbage."""
    children = (list(value.items()) if isinstance(value, dict)
                else list(enumerate(value)) if isinstance(value, list) else [])
    if not children or (depth and draw(st.integers(0, 4)) == 0):
        return draw(json_values)
    key, child = draw(st.sampled_from(children))
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = mutate(draw, child, depth + 1)
    return copy


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_valid_requests_only_ever_raise_untranslatable(data: st.DataObject) -> None:
    body = mutate(data.draw, data.draw(openai_requests()))
    try:
        assert isinstance(translate(body), dict)
    except Untranslatable as exc:
        not_from_the_safety_net(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["x", "x_2", "x_3", "y", "x_2_2", "call_1"]), max_size=40))
def test_fresh_ids_are_unique_and_the_same_as_counting_from_one(candidates: list[str]) -> None:
    """The linear renaming gives exactly the ids the original search from suffix 2 gave,
    including when a renamed id collides with one the application sent."""
    from shadowproxy.mirror.turns import FreshIds

    fresh_id = FreshIds()
    used: set[str] = set()
    expected = []
    for candidate in candidates:
        unique, counter = candidate, 1
        while unique in used:
            counter += 1
            unique = f"{candidate}_{counter}"
        used.add(unique)
        expected.append(unique)
    assert [fresh_id(c) for c in candidates] == expected

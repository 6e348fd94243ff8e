"""The simulated providers, driven by the official SDKs: if the SDKs accept what the
simulator says, and reject what they should, the proxy's tests stand on real wire facts."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.simulator import DISAGREEMENT, SimulatorConfig, make_app, split_text
from tests.fakes.providers import SimulatedProvider

HAIKU = "claude-haiku-4-5"
HAIKU_DATED = "claude-haiku-4-5-20251001"
SONNET = "claude-sonnet-4-6"  # a primary Claude model the SDK does not warn about
SEARCH_TOOL: Any = {
    "name": "search",
    "description": "Search the knowledge base",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
}
OPENAI_SEARCH_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the knowledge base",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def claude(simulator: SimulatedProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key="sk-ant-test", base_url=simulator.url, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def gpt(simulator: SimulatedProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"{simulator.url}/v1", max_retries=0
    ) as client:
        yield client


async def raw_post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers_out, await response.json()


async def sse_lines(url: str, body: Any, headers: dict[str, str]) -> list[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return (await response.text()).split("\n")


ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


# --- Anthropic Messages ---------------------------------------------------------------


async def test_text_answer_uses_the_dated_model_id_and_counts_tokens(
    claude: anthropic.AsyncAnthropic, simulator: SimulatedProvider
) -> None:
    prompt = "What is the capital of France? " * 4
    raw = await claude.messages.with_raw_response.create(
        model=HAIKU, max_tokens=100, messages=user(prompt)
    )
    message = await raw.parse()

    assert message.model == HAIKU_DATED
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == f"Answer to: {prompt[:60]}"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == len(prompt) // 4
    assert message.usage.output_tokens == len(f"Answer to: {prompt[:60]}") // 4
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["content-encoding"] == "gzip"  # the SDK accepts gzip
    received = simulator.last("/v1/messages")
    assert received.json["messages"] == user(prompt)
    assert received.headers["authorization"] == "Bearer sk-ant-test"


async def test_tool_call_reassembled_from_the_stream(claude: anthropic.AsyncAnthropic) -> None:
    prompt = "find the refund policy #tool"
    async with claude.messages.stream(
        model=HAIKU, max_tokens=200, messages=user(prompt), tools=[SEARCH_TOOL]
    ) as stream:
        message = await stream.get_final_message()

    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("search", {"query": prompt})


async def test_stream_follows_the_event_order_and_pads_like_real_streams(
    simulator: SimulatedProvider,
) -> None:
    lines = await sse_lines(
        f"{simulator.url}/v1/messages",
        {
            "model": HAIKU,
            "max_tokens": 50,
            "stream": True,
            "messages": user("hi #tool"),
            "tools": [SEARCH_TOOL],
        },
        ANTHROPIC_HEADERS,
    )
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]

    assert events[:3] == ["message_start", "ping", "content_block_start"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "[DONE]" not in "\n".join(lines)
    assert any(line.startswith("data: ") and line.endswith(" }") for line in lines)
    assert data[0]["message"]["usage"]["output_tokens"] == 1
    pieces = [d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta"]
    assert pieces[0] == "" and len(pieces) > 2
    assert json.loads("".join(pieces)) == {"query": "hi #tool"}
    final_usage = data[-2]["usage"]
    assert final_usage["input_tokens"] == data[0]["message"]["usage"]["input_tokens"]
    assert final_usage["output_tokens"] > 1


async def test_text_split_into_the_requested_number_of_deltas(
    simulator: SimulatedProvider,
) -> None:
    lines = await sse_lines(
        f"{simulator.url}/v1/messages",
        {"model": HAIKU, "max_tokens": 50, "stream": True, "messages": user("a longer prompt")},
        {**ANTHROPIC_HEADERS, "x-sim-chunks": "3"},
    )
    deltas = [json.loads(line[6:]) for line in lines if '"content_block_delta"' in line]
    assert len(deltas) == 3
    assert "".join(d["delta"]["text"] for d in deltas) == "Answer to: a longer prompt"


async def test_default_version_rejects_sampling_parameters(
    claude: anthropic.AsyncAnthropic, simulator: SimulatedProvider
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(
            model=HAIKU, max_tokens=10, messages=user("hi"), extra_body={"temperature": 0.5}
        )
    assert caught.value.status_code == 400
    assert "temperature: Extra inputs are not permitted" in str(caught.value)

    async with anthropic.AsyncAnthropic(
        api_key="k",
        base_url=simulator.url,
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01"},
    ) as old_version:
        message = await old_version.messages.create(
            model=HAIKU, max_tokens=10, messages=user("hi"), extra_body={"temperature": 0.5}
        )
    assert message.stop_reason in ("end_turn", "max_tokens")


async def test_haiku_rejects_temperature_with_top_p(simulator: SimulatedProvider) -> None:
    body = {
        "model": HAIKU,
        "max_tokens": 10,
        "messages": user("hi"),
        "temperature": 0.2,
        "top_p": 0.9,
    }
    status, _, error = await raw_post(f"{simulator.url}/v1/messages", body, ANTHROPIC_HEADERS)
    assert status == 400
    assert error["error"]["message"].startswith("`temperature` and `top_p` cannot both")

    body["model"] = SONNET
    status, _, _ = await raw_post(f"{simulator.url}/v1/messages", body, ANTHROPIC_HEADERS)
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "body", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, {}, 401, "authentication_error"),
        ({"x-api-key": "k"}, {}, 400, "invalid_request_error"),
        (
            {**ANTHROPIC_HEADERS, "anthropic-version": "2024-01-01"},
            {},
            400,
            "invalid_request_error",
        ),
        (ANTHROPIC_HEADERS, {"model": HAIKU, "messages": user("x")}, 400, "invalid_request_error"),
        (
            ANTHROPIC_HEADERS,
            {"model": HAIKU, "max_tokens": 0, "messages": user("x")},
            400,
            "invalid_request_error",
        ),
        (
            ANTHROPIC_HEADERS,
            {"model": HAIKU, "max_tokens": 5, "messages": []},
            400,
            "invalid_request_error",
        ),
        (
            ANTHROPIC_HEADERS,
            {"model": HAIKU, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            400,
            "invalid_request_error",
        ),
        (
            ANTHROPIC_HEADERS,
            {"model": HAIKU, "max_tokens": 5, "messages": user("x"), "temperature": 1.5},
            400,
            "invalid_request_error",
        ),
    ],
)
async def test_anthropic_rejections_come_in_the_error_shape(
    simulator: SimulatedProvider,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    error_type: str,
) -> None:
    got, reply_headers, error = await raw_post(f"{simulator.url}/v1/messages", body, headers)
    assert got == status
    assert error["type"] == "error"
    assert error["error"]["type"] == error_type
    assert error["request_id"] == reply_headers["request-id"]
    assert reply_headers["x-should-retry"] == "false"


async def test_scripted_error_raises_the_typed_sdk_error(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        await claude.messages.create(
            model=SONNET,
            max_tokens=10,
            messages=user("hi"),
            extra_headers={"x-sim-error": "529"},
        )
    assert caught.value.status_code == 529
    assert caught.value.response.headers["retry-after"] == "0"
    assert caught.value.response.headers["x-should-retry"] == "true"
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_prompt_controls_fail_only_the_shadow_model(
    claude: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.RateLimitError):
        await claude.messages.create(model=HAIKU, max_tokens=10, messages=user("x #error=429"))
    message = await claude.messages.create(
        model=SONNET, max_tokens=50, messages=user("x #error=429")
    )
    assert message.content[0].text == "Answer to: x #error=429"  # type: ignore[union-attr]


async def test_rate_limit_is_retried_by_the_sdk(simulator: SimulatedProvider) -> None:
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=simulator.url, max_retries=1
    ) as client:
        message = await client.messages.create(
            model=HAIKU,
            max_tokens=50,
            messages=user("hi"),
            extra_headers={"x-sim-error": "429", "x-sim-error-attempts": "1"},
        )
    assert message.content[0].text == "Answer to: hi"  # type: ignore[union-attr]
    assert [r.headers["x-stainless-retry-count"] for r in simulator.received] == ["0", "1"]


async def test_midstream_error_surfaces_while_iterating(
    claude: anthropic.AsyncAnthropic,
) -> None:
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(
            model=HAIKU, max_tokens=50, messages=user("tell me #midstream-error")
        ) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert len(texts) == 2
    assert "overloaded_error" in str(caught.value)


async def test_disagree_changes_only_the_haiku_answer(claude: anthropic.AsyncAnthropic) -> None:
    shadow = await claude.messages.create(model=HAIKU, max_tokens=50, messages=user("q #disagree"))
    primary = await claude.messages.create(
        model=SONNET, max_tokens=50, messages=user("q #disagree")
    )
    assert shadow.content[0].text == DISAGREEMENT  # type: ignore[union-attr]
    assert primary.content[0].text == "Answer to: q #disagree"  # type: ignore[union-attr]


async def test_tool_result_turn_gets_a_text_answer(claude: anthropic.AsyncAnthropic) -> None:
    first = await claude.messages.create(
        model=HAIKU, max_tokens=50, messages=user("look it up #tool"), tools=[SEARCH_TOOL]
    )
    tool_use = first.content[0]
    assert tool_use.type == "tool_use"
    conversation: Any = [
        *user("look it up #tool"),
        {
            "role": "assistant",
            "content": [
                tool_use.model_dump(exclude_none=True, include={"type", "id", "name", "input"})
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "30 days"}],
        },
    ]
    second = await claude.messages.create(
        model=HAIKU, max_tokens=50, tools=[SEARCH_TOOL], messages=conversation
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Answer to: look it up #tool"  # type: ignore[union-attr]


async def test_max_tokens_truncates_the_answer(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model=HAIKU, max_tokens=2, messages=user("x" * 80))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2
    assert message.content[0].text == "Answer t"  # type: ignore[union-attr]


async def test_json_tag_answers_a_json_object(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model=HAIKU, max_tokens=80, messages=user("#json"))
    assert json.loads(message.content[0].text) == {"answer": "Answer to: #json"}  # type: ignore[union-attr]


# --- OpenAI Chat Completions ----------------------------------------------------------


async def test_openai_text_answer_matches_the_claude_answer(
    gpt: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    prompt = "Summarise the meeting notes from Tuesday, please."
    raw = await gpt.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
    )
    completion = raw.parse()
    message = await claude.messages.create(model=HAIKU, max_tokens=100, messages=user(prompt))

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == message.content[0].text  # type: ignore[union-attr]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len("Be brief." + prompt) // 4
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-request-id"]


async def test_openai_stream_yields_role_content_finish_and_usage(
    gpt: openai.AsyncOpenAI,
) -> None:
    stream = await gpt.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("hello there"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Answer to: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_openai_stream_without_include_usage_has_no_usage_chunk(
    gpt: openai.AsyncOpenAI,
) -> None:
    stream = await gpt.chat.completions.create(
        model="gpt-4o-mini", messages=user("hello"), stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


async def test_openai_stream_ends_with_done(simulator: SimulatedProvider) -> None:
    lines = await sse_lines(
        f"{simulator.url}/v1/chat/completions",
        {"model": "gpt-4o", "messages": user("hi"), "stream": True},
        {"authorization": "Bearer k"},
    )
    payloads = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in payloads)
    assert payloads[-1] == "data: [DONE]"


async def test_openai_tool_call_streamed_in_pieces(gpt: openai.AsyncOpenAI) -> None:
    prompt = "weather in Paris #tool"
    stream = await gpt.chat.completions.create(
        model="gpt-4o-mini",
        messages=user(prompt),
        tools=[OPENAI_SEARCH_TOOL],
        stream=True,
    )
    calls = [
        call
        async for chunk in stream
        if chunk.choices and chunk.choices[0].delta.tool_calls
        for call in chunk.choices[0].delta.tool_calls
    ]
    assert calls[0].id and calls[0].function and calls[0].function.name == "search"
    assert calls[0].function.arguments == ""
    arguments = "".join((c.function.arguments or "") for c in calls if c.function)
    assert len(calls) > 2
    assert json.loads(arguments) == {"query": prompt}


async def test_openai_tool_call_answer(gpt: openai.AsyncOpenAI) -> None:
    completion = await gpt.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("look #tool"),
        tools=[OPENAI_SEARCH_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert json.loads(call.function.arguments) == {"query": "look #tool"}


async def test_openai_errors_raise_typed_sdk_errors(
    gpt: openai.AsyncOpenAI, simulator: SimulatedProvider
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await gpt.chat.completions.create(
            model="gpt-4o", messages=user("hi"), extra_headers={"x-sim-error": "429"}
        )
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "0"
    assert caught.value.code == "rate_limit_exceeded"

    with pytest.raises(openai.BadRequestError) as bad:
        await gpt.chat.completions.create(model="gpt-4o", messages=[])
    assert bad.value.param == "messages"

    status, _, error = await raw_post(
        f"{simulator.url}/v1/chat/completions", {"model": "gpt-4o", "messages": user("x")}, {}
    )
    assert status == 401
    assert set(error["error"]) == {"message", "type", "param", "code"}


async def test_openai_midstream_error_raises(gpt: openai.AsyncOpenAI) -> None:
    stream = await gpt.chat.completions.create(
        model="gpt-4o",
        messages=user("hi"),
        stream=True,
        extra_headers={"x-sim-midstream-error": "1"},
    )
    received: list[str] = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)


async def test_disagree_tag_is_ignored_by_openai_models(gpt: openai.AsyncOpenAI) -> None:
    completion = await gpt.chat.completions.create(
        model="gpt-4o", messages=user("why #disagree #error=500")
    )
    assert completion.choices[0].message.content == "Answer to: why #disagree #error=500"


# --- transport, pacing and the non-mirrored endpoints ---------------------------------


async def test_json_answers_are_gzipped_when_accepted(simulator: SimulatedProvider) -> None:
    body = {"model": "gpt-4o", "messages": user("hi")}
    headers = {"authorization": "Bearer k", "accept-encoding": "gzip"}
    _, reply_headers, completion = await raw_post(
        f"{simulator.url}/v1/chat/completions", body, headers
    )
    assert reply_headers["content-encoding"] == "gzip"
    assert completion["choices"][0]["message"]["content"] == "Answer to: hi"

    _, plain_headers, _ = await raw_post(
        f"{simulator.url}/v1/chat/completions", body, {**headers, "accept-encoding": "identity"}
    )
    assert "content-encoding" not in plain_headers


async def test_shadow_latency_slows_only_haiku(
    aiohttp_server: Callable[[Any], Awaitable[TestServer]],
) -> None:
    server = await aiohttp_server(make_app(SimulatorConfig(shadow_latency_s=1.5)))
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=f"http://{server.host}:{server.port}", max_retries=0
    ) as client:
        started = time.monotonic()
        await client.messages.create(model=SONNET, max_tokens=20, messages=user("a"))
        primary_s = time.monotonic() - started
        started = time.monotonic()
        await client.messages.create(model=HAIKU, max_tokens=20, messages=user("a"))
        shadow_s = time.monotonic() - started
    assert shadow_s >= 1.5
    assert primary_s < shadow_s - 1.0  # wide margin: a loaded machine is slow for both


async def test_echo_describes_any_method_path_and_query(simulator: SimulatedProvider) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            "PATCH",
            f"{simulator.url}/echo/a/b%20c?x=1&x=2&y=",
            data=b"12345",
            headers={"X-Custom": "yes"},
        ) as response,
    ):
        echo = await response.json()
    assert echo["method"] == "PATCH"
    assert echo["raw_path"] == "/echo/a/b%20c?x=1&x=2&y="
    assert echo["query"] == {"x": ["1", "2"], "y": [""]}
    assert echo["headers"]["x-custom"] == "yes"
    assert echo["body_length"] == 5
    assert simulator.last().body == b"12345"


async def test_models_list_and_unknown_paths(
    gpt: openai.AsyncOpenAI, simulator: SimulatedProvider
) -> None:
    models = [model.id async for model in gpt.models.list()]
    assert "gpt-4o-mini" in models
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{simulator.url}/v1/nothing-here") as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with session.get(f"{simulator.url}/v1/messages") as response:
            assert response.status == 404


async def test_thinking_block_streams_before_the_text(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model=HAIKU,
        max_tokens=2048,
        messages=user("think first"),
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        message = await stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].signature  # type: ignore[union-attr]
    assert message.content[1].text == "Answer to: think first"  # type: ignore[union-attr]


async def test_openai_tool_result_turn_gets_a_text_answer(gpt: openai.AsyncOpenAI) -> None:
    conversation: Any = [
        {"role": "user", "content": "look #tool"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"query": "look #tool"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "30 days"},
    ]
    completion = await gpt.chat.completions.create(
        model="gpt-4o", messages=conversation, tools=[OPENAI_SEARCH_TOOL]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "Answer to: look #tool"


async def test_openai_json_response_format_answers_json(gpt: openai.AsyncOpenAI) -> None:
    completion = await gpt.chat.completions.create(
        model="gpt-4o", messages=user("give json"), response_format={"type": "json_object"}
    )
    content = completion.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"answer": "Answer to: give json"}


@settings(max_examples=200, deadline=None)
@given(text=st.text(), pieces=st.integers(min_value=1, max_value=40))
def test_split_text_loses_nothing_and_respects_the_count(text: str, pieces: int) -> None:
    parts = split_text(text, pieces)
    assert "".join(parts) == text
    assert all(parts) and len(parts) <= pieces


async def test_chunk_interval_paces_the_stream(simulator: SimulatedProvider) -> None:
    body = {"model": "gpt-4o", "messages": user("pace me"), "stream": True}
    headers = {"authorization": "Bearer k", "x-sim-chunk-ms": "30", "x-sim-chunks": "4"}
    arrivals: list[float] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{simulator.url}/v1/chat/completions", json=body, headers=headers) as r,
    ):
        async for _ in r.content.iter_any():
            arrivals.append(time.monotonic())
    # role chunk, 4 content chunks, finish chunk, [DONE]: six 30 ms gaps
    assert arrivals[-1] - arrivals[0] >= 6 * 0.03 * 0.9
    assert len(arrivals) >= 4


# --- Claude on Vertex AI and Amazon Bedrock -------------------------------------------

VERTEX_PATH = "/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001"
BEDROCK_PATH = "/model/us.anthropic.claude-haiku-4-5-20251001-v1:0"
SIGV4 = {"authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-west-2/bedrock/x"}
PLATFORM_BODY: Any = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64}


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers_out, await response.read()


async def test_vertex_answers_like_the_messages_api_with_the_model_from_the_url(
    simulator: SimulatedProvider,
) -> None:
    body = {**PLATFORM_BODY, "messages": user("hello vertex")}
    status, _, message = await raw_post(
        f"{simulator.url}{VERTEX_PATH}:rawPredict", body, {"authorization": "Bearer ya29.t"}
    )
    assert status == 200
    assert message["model"] == HAIKU_DATED
    assert message["content"] == [{"type": "text", "text": "Answer to: hello vertex"}]

    lines = await sse_lines(
        f"{simulator.url}{VERTEX_PATH}:streamRawPredict",
        {**body, "stream": True},
        {"authorization": "Bearer ya29.t"},
    )
    assert lines[0] == "event: message_start"


@pytest.mark.parametrize(
    ("body", "headers", "status", "complaint"),
    [
        ({**PLATFORM_BODY, "model": HAIKU}, {"authorization": "Bearer t"}, 400, "model"),
        ({"max_tokens": 64}, {"authorization": "Bearer t"}, 400, "anthropic_version"),
        (PLATFORM_BODY, {"x-api-key": "sk-ant"}, 401, "UNAUTHENTICATED"),
    ],
    ids=["model-in-body", "no-version", "no-bearer"],
)
async def test_vertex_rejects_what_vertex_rejects(
    simulator: SimulatedProvider, body: Any, headers: dict[str, str], status: int, complaint: str
) -> None:
    got, _, error = await raw_post(
        f"{simulator.url}{VERTEX_PATH}:rawPredict", {**body, "messages": user("x")}, headers
    )
    assert got == status
    assert complaint in json.dumps(error)


@pytest.mark.parametrize(
    ("body", "headers", "status", "complaint"),
    [
        ({**PLATFORM_BODY, "model": HAIKU}, SIGV4, 400, "model"),
        ({"max_tokens": 64}, SIGV4, 400, "anthropic_version"),
        (PLATFORM_BODY, {"authorization": "Bearer t"}, 403, "Missing Authentication Token"),
    ],
    ids=["model-in-body", "no-version", "no-sigv4"],
)
async def test_bedrock_rejects_what_bedrock_rejects(
    simulator: SimulatedProvider, body: Any, headers: dict[str, str], status: int, complaint: str
) -> None:
    body = {**body, "messages": user("x")}
    if "anthropic_version" in body:
        body["anthropic_version"] = "bedrock-2023-05-31"
    url = f"{simulator.url}{BEDROCK_PATH}/invoke"
    got, reply_headers, error = await raw_post(url, body, headers)
    assert got == status
    assert complaint in error["message"]
    assert "x-amzn-errortype" in reply_headers


async def test_bedrock_stream_is_aws_event_stream_carrying_the_messages_events(
    simulator: SimulatedProvider,
) -> None:
    from botocore.eventstream import EventStreamBuffer  # checks both CRCs of every message

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": user("hi")}
    status, headers, raw = await post(
        f"{simulator.url}{BEDROCK_PATH}/invoke-with-response-stream",
        body,
        {**SIGV4, "x-sim-chunks": "1"},
    )
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    chunk_headers = {":content-type": "application/json", ":event-type": "chunk"}
    assert all(m.headers == {**chunk_headers, ":message-type": "event"} for m in messages)
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert [e["type"] for e in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[3]["delta"]["text"] == "Answer to: hi"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 3


# --- deterministic answers --------------------------------------------------------------


@pytest.fixture
async def deterministic_url(aiohttp_server: Callable[[Any], Awaitable[TestServer]]) -> str:
    server = await aiohttp_server(make_app(SimulatorConfig(deterministic=True)))
    return f"http://{server.host}:{server.port}"


OPENAI_TOOL_BODY: Any = {"model": "gpt-4o", "tools": [OPENAI_SEARCH_TOOL]}
CLAUDE_TOOL_BODY: Any = {"model": HAIKU, "max_tokens": 200, "tools": [SEARCH_TOOL]}
DETERMINISTIC_CASES = [
    ("/v1/messages", CLAUDE_TOOL_BODY, ANTHROPIC_HEADERS),
    ("/v1/chat/completions", OPENAI_TOOL_BODY, {"authorization": "Bearer k"}),
    (
        f"{BEDROCK_PATH}/invoke-with-response-stream",
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "tools": [SEARCH_TOOL]},
        SIGV4,
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("path", "body", "headers"), DETERMINISTIC_CASES, ids=["anthropic", "openai", "bedrock"]
)
async def test_deterministic_answers_repeat_byte_for_byte(
    deterministic_url: str, path: str, body: Any, headers: dict[str, str], stream: bool
) -> None:
    request = {**body, "messages": user("look it up #tool")}
    if "invoke" in path:  # Bedrock says stream in the URL, not the body
        path = path if stream else path.removesuffix("-with-response-stream")
    elif stream:
        request["stream"] = True
    if "stream_options" not in request and "chat" in path and stream:
        request["stream_options"] = {"include_usage": True}
    headers = {**headers, "accept-encoding": "gzip"}

    first = await post(f"{deterministic_url}{path}", request, headers)
    second = await post(f"{deterministic_url}{path}", request, headers)
    other = await post(
        f"{deterministic_url}{path}", {**request, "messages": user("another #tool")}, headers
    )

    assert first[0] == 200
    assert first == second  # status, headers (request ids included) and body bytes
    assert first[2] != other[2]


async def test_ids_differ_per_request_unless_deterministic(simulator: SimulatedProvider) -> None:
    body = {"model": "gpt-4o", "messages": user("same")}
    headers = {"authorization": "Bearer k"}
    _, first_headers, first = await raw_post(f"{simulator.url}/v1/chat/completions", body, headers)
    _, second_headers, second = await raw_post(
        f"{simulator.url}/v1/chat/completions", body, headers
    )
    assert first["id"] != second["id"]
    assert first_headers["x-request-id"] != second_headers["x-request-id"]

"""A tag on the shadow model, as the official SDKs see it: both APIs, JSON and streams,
tool calls, structured outputs, refusals; the pair stored with ``served_by`` and the
primary asked in the background; the application's key never sent to the shadow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from pydantic import BaseModel

from shadowproxy.cutover.to_chat import REFUSAL
from shadowproxy.simulator import SimulatorConfig
from tests.fakes.cutover_rig import APP_KEY, SHADOW_KEY, TAG, CutoverRig, cutover_rig
from tests.fakes.providers import SimulatedProvider

HAIKU = "claude-haiku-4-5-20251001"
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "lookup_order", "description": "Find an order",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                   "required": ["query"]}}}]
A_TOOLS: list[Any] = [{"name": "lookup_order", "description": "Find an order",
                       "input_schema": {"type": "object",
                                        "properties": {"query": {"type": "string"}}}}]
TAGGED = {"x-shadow-tag": TAG}


class Order(BaseModel):
    order_id: str
    items: int
    gift: bool


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(chunk_interval_s=0.001)


@pytest.fixture
async def rig(simulator: SimulatedProvider, aiohttp_server: Any) -> AsyncIterator[CutoverRig]:
    async with cutover_rig(aiohttp_server, primary_url=simulator.url,
                           shadow_url=simulator.url) as made:
        yield made


def oa(rig: CutoverRig) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key=APP_KEY, max_retries=0)


def an(rig: CutoverRig) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key=APP_KEY, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def shadow_calls(simulator: SimulatedProvider) -> list[Any]:
    return [r for r in simulator.received
            if r.path == "/v1/messages" and str((r.json or {}).get("model", "")).startswith(
                "claude-haiku")]


def assert_no_app_key_at_the_shadow(simulator: SimulatedProvider) -> None:
    calls = shadow_calls(simulator)
    assert calls
    for call in calls:
        assert APP_KEY not in json.dumps(call.headers) and APP_KEY.encode() not in call.body
        assert call.headers.get("x-api-key") == SHADOW_KEY


# -- OpenAI Chat Completions callers ------------------------------------------------------


async def test_a_json_answer_comes_from_haiku_in_openais_shape(
    rig: CutoverRig, simulator: SimulatedProvider,
) -> None:
    raw = await oa(rig).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("Where is my order?"), extra_headers=TAGGED)
    completion = raw.parse()

    assert raw.headers["x-shadowproxy-served-by"] == "shadow"
    assert completion.model == HAIKU
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == (
        "Answer to: Where is my order?", "stop")
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert completion.created == 1_765_000_000
    assert_no_app_key_at_the_shadow(simulator)

    (pair,) = await rig.wait_records(1)
    assert pair.served_by == "shadow" and pair.shadow_outcome == "ok"
    assert (pair.shadow.model, pair.shadow.text) == (HAIKU, "Answer to: Where is my order?")
    # The current model was then asked in the background, with the application's key.
    assert (pair.primary.model, pair.primary.status) == ("gpt-4o-mini", 200)
    assert pair.primary.text == "Answer to: Where is my order?"
    primary_call = simulator.last("/v1/chat/completions")
    assert primary_call.headers["authorization"] == f"Bearer {APP_KEY}"
    assert rig.sample("shadowproxy_cutover_served_total", tag=TAG, served_by="shadow") == 1


async def test_a_stream_with_usage_parses_chunk_by_chunk(rig: CutoverRig) -> None:
    stream = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("Stream it please"), stream=True,
        stream_options={"include_usage": True}, extra_headers=TAGGED)
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    chunks = [chunk async for chunk in stream]
    for chunk in chunks:
        state.handle_chunk(chunk)
    final = state.current_completion_snapshot

    assert final.model == HAIKU
    assert final.choices[0].message.content == "Answer to: Stream it please"
    assert final.choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    (pair,) = await rig.wait_records(1)
    assert pair.served_by == "shadow" and pair.stream
    assert pair.shadow.ttft_ms is not None and pair.shadow.text == "Answer to: Stream it please"


async def test_the_stream_helper_gives_its_events_and_final_completion(rig: CutoverRig) -> None:
    async with oa(rig).chat.completions.stream(
        model="gpt-4o-mini", messages=user("Find order 7 #tool"), tools=TOOLS,
        extra_headers=TAGGED,
    ) as stream:
        kinds = {event.type async for event in stream}
        final = await stream.get_final_completion()

    call = final.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.id.startswith("call_") and call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"query": "Find order 7 #tool"}
    assert {"chunk", "tool_calls.function.arguments.delta",
            "tool_calls.function.arguments.done"} <= kinds


async def test_tool_calls_in_json_have_string_arguments(rig: CutoverRig) -> None:
    completion = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("Find order 7 #tool"), tools=TOOLS,
        extra_headers=TAGGED)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    arguments = message.tool_calls[0].function.arguments  # type: ignore[union-attr]
    assert isinstance(arguments, str) and json.loads(arguments) == {"query": "Find order 7 #tool"}
    (pair,) = await rig.wait_records(1)
    assert pair.shadow.tool_calls == [{"name": "lookup_order",
                                       "arguments": {"query": "Find order 7 #tool"}}]


@pytest.mark.parametrize("stream", [False, True], ids=["parse", "stream"])
async def test_structured_outputs_parse_into_the_model(rig: CutoverRig, stream: bool) -> None:
    messages = user("Give me the order as JSON")
    if stream:
        async with oa(rig).chat.completions.stream(
            model="gpt-4o-mini", messages=messages, response_format=Order,
            extra_headers=TAGGED,
        ) as events:
            kinds = {event.type async for event in events}
            completion = await events.get_final_completion()
        assert {"chunk", "content.delta", "content.done"} <= kinds
    else:
        completion = await oa(rig).chat.completions.parse(
            model="gpt-4o-mini", messages=messages, response_format=Order,
            extra_headers=TAGGED)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Order)
    assert completion.model == HAIKU


async def test_a_strict_tool_is_parsed_into_its_arguments(rig: CutoverRig) -> None:
    completion = await oa(rig).chat.completions.parse(
        model="gpt-4o-mini", messages=user("Look up order 9 #tool"),
        tools=[openai.pydantic_function_tool(Lookup, name="lookup_order")],
        extra_headers=TAGGED)
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.parsed_arguments == Lookup(query="Look up order 9 #tool")


class Lookup(BaseModel):
    query: str


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_refusal_is_content_filter_with_the_refusal_said(
    rig: CutoverRig, stream: bool,
) -> None:
    if stream:
        chunks = await oa(rig).chat.completions.create(
            model="gpt-4o-mini", messages=user("Do the bad thing #refusal"), stream=True,
            extra_headers=TAGGED)
        state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
        async for chunk in chunks:
            state.handle_chunk(chunk)
        message = state.current_completion_snapshot.choices[0]
    else:
        completion = await oa(rig).chat.completions.create(
            model="gpt-4o-mini", messages=user("Do the bad thing #refusal"),
            extra_headers=TAGGED)
        message = completion.choices[0]  # type: ignore[assignment]
    assert message.finish_reason == "content_filter"
    assert message.message.refusal == REFUSAL
    assert message.message.content == "I can't help with"
    with pytest.raises(openai.ContentFilterFinishReasonError):
        await oa(rig).chat.completions.parse(
            model="gpt-4o-mini", messages=user("Do the bad thing #refusal"),
            response_format=Order, extra_headers=TAGGED)


# -- Anthropic Messages callers -------------------------------------------------------------


async def test_anthropic_callers_get_haikus_message(rig: CutoverRig,
                                                    simulator: SimulatedProvider) -> None:
    message = await an(rig).messages.create(
        model="claude-sonnet-4-5", max_tokens=200, messages=user("Where is it? #tool"),
        tools=A_TOOLS, extra_headers=TAGGED)
    assert message.model == HAIKU
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.input == {"query": "Where is it? #tool"}
    assert_no_app_key_at_the_shadow(simulator)
    (pair,) = await rig.wait_records(1)
    assert (pair.served_by, pair.primary.model) == ("shadow", "claude-sonnet-4-5")
    assert pair.primary.tool_calls == pair.shadow.tool_calls


async def test_anthropic_streams_are_haikus_own_events(rig: CutoverRig) -> None:
    async with an(rig).messages.stream(
        model="claude-sonnet-4-5", max_tokens=200, messages=user("Tell me a fact"),
        extra_headers=TAGGED,
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Answer to: Tell me a fact"
    assert final.model == HAIKU and final.stop_reason == "end_turn"
    (pair,) = await rig.wait_records(1)
    assert pair.shadow.ttft_ms is not None and pair.served_by == "shadow"


# -- what is not routed -------------------------------------------------------------------


async def test_responses_api_untagged_and_unplanned_requests_stay_on_the_primary(
    rig: CutoverRig, simulator: SimulatedProvider,
) -> None:
    responses = await oa(rig).responses.create(model="gpt-4.1-mini", input="hello",
                                               extra_headers=TAGGED)
    assert responses.model.startswith("gpt-4.1-mini")
    untagged = await oa(rig).chat.completions.create(model="gpt-4o-mini", messages=user("hi"))
    other = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("hi"), extra_headers={"x-shadow-tag": "billing"})
    logprobs = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("hi"), logprobs=True, extra_headers=TAGGED)
    assert untagged.model == other.model == logprobs.model == "gpt-4o-mini"
    pairs = await rig.wait_records(4)
    assert {p.served_by for p in pairs} == {"primary"}
    assert rig.sample("shadowproxy_cutover_served_total", tag=TAG, served_by="shadow") == 0


async def test_a_conversation_stays_on_one_model_and_raising_keeps_it(rig: CutoverRig) -> None:
    from shadowproxy.cutover.plan import bucket

    rig.plan(50)
    low = next(f"conv-{i}" for i in range(100) if bucket(f"conv-{i}") < 50)
    high = next(f"conv-{i}" for i in range(100) if bucket(f"conv-{i}") >= 50)

    async def model(conversation: str) -> str:
        r = await oa(rig).chat.completions.create(
            model="gpt-4o-mini", messages=user("hello"),
            extra_headers={**TAGGED, "x-shadow-conversation": conversation})
        return r.model

    assert [await model(low), await model(low), await model(high)] == [HAIKU, HAIKU,
                                                                      "gpt-4o-mini"]
    rig.plan(100)
    assert [await model(low), await model(high)] == [HAIKU, HAIKU]
    rig.plan(0)
    assert await model(low) == "gpt-4o-mini"


async def test_anthropic_structured_outputs_reach_haiku_and_come_back_as_json(
    rig: CutoverRig, simulator: SimulatedProvider,
) -> None:
    schema = {"type": "object", "properties": {"order_id": {"type": "string"},
                                               "items": {"type": "integer"}},
              "required": ["order_id", "items"], "additionalProperties": False}
    message = await an(rig).messages.create(
        model="claude-sonnet-4-5", max_tokens=200, messages=user("The order as JSON"),
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
        extra_headers=TAGGED)
    (text,) = [b.text for b in message.content if b.type == "text"]
    assert set(json.loads(text)) == {"order_id", "items"}
    assert shadow_calls(simulator)[-1].json["output_config"]["format"]["schema"] == schema

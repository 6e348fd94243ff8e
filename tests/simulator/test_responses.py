"""The simulator's Responses API, checked with the official openai SDK as the client."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.providers import SimulatedProvider

TOOL = {"type": "function", "name": "search", "description": "Search the docs",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}


def client(simulator: SimulatedProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{simulator.url}/v1", api_key="sk-test", max_retries=0)


async def test_json_answer_with_usage(simulator: SimulatedProvider) -> None:
    response = await client(simulator).responses.create(
        model="gpt-4.1", instructions="Be terse.", input="What is a proxy?")
    assert response.output_text == "Answer to: What is a proxy?"
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens > 0


async def test_stream_events_are_typed_numbered_and_carry_usage_only_at_the_end(
    simulator: SimulatedProvider,
) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        f"{simulator.url}/v1/responses", headers={"authorization": "Bearer sk-test"},
        json={"model": "gpt-4.1", "input": "Hello there", "stream": True},
    ) as answer:
        raw = (await answer.read()).decode()
    frames = [f for f in raw.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    data = [json.loads(f.split("\n")[1].removeprefix("data: ")) for f in frames]
    assert names == [d["type"] for d in data]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert names[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert names[-1] == "response.completed"
    assert all(d["response"]["usage"] is None for d in data[:2])
    assert data[-1]["response"]["usage"]["output_tokens"] > 0
    text = "".join(d["delta"] for d in data if d["type"] == "response.output_text.delta")
    assert text == "Answer to: Hello there"


async def test_sdk_stream_helper_accumulates_the_answer(simulator: SimulatedProvider) -> None:
    async with client(simulator).responses.stream(model="gpt-4.1", input="Hi") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Answer to: Hi"


async def test_function_call_then_its_output(simulator: SimulatedProvider) -> None:
    api = client(simulator)
    first = await api.responses.create(model="gpt-4.1", input="Find refunds #tool",
                                       tools=[TOOL])  # type: ignore[list-item]
    (call,) = first.output
    assert call.type == "function_call" and json.loads(call.arguments) == {
        "query": "Find refunds #tool"}
    second = await api.responses.create(
        model="gpt-4.1", previous_response_id=first.id, tools=[TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "30 days"}])
    assert second.output_text == "Answer to: Find refunds #tool"


async def test_previous_response_id_continues_and_unknown_ids_are_400(
    simulator: SimulatedProvider,
) -> None:
    api = client(simulator)
    first = await api.responses.create(model="gpt-4.1", input="My name is Ada.")
    second = await api.responses.create(model="gpt-4.1", input="And yours?",
                                        previous_response_id=first.id)
    assert second.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError) as info:
        await api.responses.create(model="gpt-4.1", input="x", previous_response_id="resp_nope")
    body: Any = info.value.body
    assert body["param"] == "previous_response_id"
    assert body["message"] == "Previous response with id 'resp_nope' not found."


async def test_max_output_tokens_makes_an_incomplete_response(
    simulator: SimulatedProvider,
) -> None:
    response = await client(simulator).responses.create(
        model="gpt-4.1", input="Tell me a long story about proxies", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"

"""The Responses API mirrored end to end: the official openai SDK's ``client.responses``
→ the real proxy → the simulated primary, the shadow call through the anthropic SDK to
the simulated Haiku, and the pairs as they land in the ``comparisons`` view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from shadowproxy.records import PairRecord
from tests.decision.test_diff import fetch
from tests.e2e import test_mirror
from tests.e2e.test_mirror import Rig, assert_no_app_credentials
from tests.e2e.test_serve import wait_pairs
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import running_serve
from tests.fakes.traffic import store

# The proxy-and-mirror rig of test_mirror.py, shared as fixtures.
rig, rig_overrides = test_mirror.rig, test_mirror.rig_overrides

SEARCH = {"type": "function", "name": "search", "description": "Search the docs",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}


async def comparison(database_url: str, record: PairRecord) -> dict[str, Any]:
    await store(database_url, [record])
    (row,) = await fetch(database_url, f"SELECT * FROM comparisons WHERE id = '{record.id}'")
    return row


async def test_json_answer_is_mirrored_and_compared(rig: Rig, database_url: str) -> None:
    client = rig.openai()
    answer = await client.responses.create(
        model="gpt-4.1", instructions="Be terse.", input="What is a proxy?",
        temperature=1.4, max_output_tokens=300, extra_headers={"x-shadow-tag": "faq"})
    assert answer.output_text == "Answer to: What is a proxy?"
    (record,) = await rig.wait_records(1)
    (shadow_request,) = rig.shadow_requests()
    assert shadow_request.json == {
        "model": "claude-haiku-4-5", "max_tokens": 300, "system": "Be terse.",
        "temperature": 1.0,
        "messages": [{"role": "user", "content": [{"type": "text",
                                                   "text": "What is a proxy?"}]}]}
    assert_no_app_credentials(rig)
    row = await comparison(database_url, record)
    assert row["api"] == "openai.responses" and row["tag"] == "faq" and not row["stream"]
    assert row["shadow_outcome"] == "ok"
    assert row["primary_text"] == answer.output_text == row["shadow_text"]
    assert row["primary_stop_reason"] == "end_turn" == row["shadow_stop_reason"]
    assert answer.usage is not None
    assert row["primary_input_tokens"] == answer.usage.input_tokens
    assert row["primary_output_tokens"] == answer.usage.output_tokens
    assert row["primary_model"] == "gpt-4.1"
    assert row["shadow_model"] == "claude-haiku-4-5-20251001"
    assert row["primary_ttft_ms"] is None  # not streamed: no first token to time
    assert row["primary_cost_usd"] > 0 and row["shadow_cost_usd"] > 0


async def test_streamed_tool_call_is_mirrored_streaming(rig: Rig, database_url: str) -> None:
    client = rig.openai()
    stream = await client.responses.create(
        model="gpt-4.1", input="Find the refund policy #tool", tools=[SEARCH],  # type: ignore[list-item]
        tool_choice="required", parallel_tool_calls=False, stream=True)
    arguments = [e.delta async for e in stream
                 if e.type == "response.function_call_arguments.delta"]
    assert json.loads("".join(arguments)) == {"query": "Find the refund policy #tool"}
    (record,) = await rig.wait_records(1)
    (shadow_request,) = rig.shadow_requests()
    assert shadow_request.json["stream"] is True
    assert shadow_request.json["tool_choice"] == {"type": "any",
                                                  "disable_parallel_tool_use": True}
    row = await comparison(database_url, record)
    assert row["stream"] and row["shadow_outcome"] == "ok"
    call = {"name": "search", "arguments": {"query": "Find the refund policy #tool"}}
    assert row["primary_tool_calls"] == [call] == row["shadow_tool_calls"]
    assert row["primary_stop_reason"] == "tool_use" == row["shadow_stop_reason"]
    assert row["primary_output_tokens"] and row["primary_input_tokens"]
    for side in ("primary", "shadow"):
        assert 0 < row[f"{side}_ttft_ms"] <= row[f"{side}_latency_ms"]


async def test_sdk_stream_helper_text_is_mirrored(rig: Rig) -> None:
    client = rig.openai()
    async with client.responses.stream(model="gpt-4.1", input="Say hello") as stream:
        final = await stream.get_final_response()
    (record,) = await rig.wait_records(1)
    assert record.stream and record.shadow_outcome == "ok"
    assert record.primary.text == final.output_text == record.shadow.text
    assert record.primary.ttft_ms is not None and record.shadow.ttft_ms is not None


async def test_function_tool_round_trip_gives_the_shadow_call_and_result(rig: Rig) -> None:
    client = rig.openai()
    first = await client.responses.create(model="gpt-4.1", input="Refunds? #tool",
                                          tools=[SEARCH])  # type: ignore[list-item]
    (call,) = first.output
    assert call.type == "function_call"
    second = await client.responses.create(
        model="gpt-4.1", previous_response_id=first.id, tools=[SEARCH],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": "30 days"}])
    records = await rig.wait_records(2)
    assert [r.shadow_outcome for r in records] == ["ok", "ok"]
    assert records[0].primary.tool_calls == records[0].shadow.tool_calls == [
        {"name": "search", "arguments": {"query": "Refunds? #tool"}}]
    assert records[1].primary.text == second.output_text == records[1].shadow.text
    turns = rig.shadow_requests()[1].json["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    (use,) = turns[1]["content"]
    assert use == {"type": "tool_use", "id": call.call_id, "name": "search",
                   "input": {"query": "Refunds? #tool"}}
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": call.call_id,
                                    "content": "30 days"}]


async def test_previous_response_id_across_three_turns(rig: Rig) -> None:
    """The third shadow request holds the whole conversation the primary remembered."""
    client = rig.openai()
    first = await client.responses.create(model="gpt-4.1", input="My name is Ada.",
                                          instructions="Be kind.")
    stream = await client.responses.create(model="gpt-4.1", input="I live in Paris.",
                                           previous_response_id=first.id, stream=True)
    completed = [e.response.id async for e in stream if e.type == "response.completed"]
    second_id = completed[0]
    third = await client.responses.create(model="gpt-4.1", input="Where do I live?",
                                          previous_response_id=second_id)
    records = await rig.wait_records(3)
    assert [r.shadow_outcome for r in records] == ["ok", "ok", "ok"]
    assert records[2].primary.text == third.output_text == records[2].shadow.text
    last = rig.shadow_requests()[2].json
    texts = [(t["role"], t["content"][0]["text"]) for t in last["messages"]]
    assert texts == [("user", "My name is Ada."), ("assistant", first.output_text),
                     ("user", "I live in Paris."), ("assistant", "Answer to: I live in Paris."),
                     ("user", "Where do I live?")]
    assert "system" not in last  # instructions are not carried over by the API either


async def test_unknown_previous_response_id_skips_the_shadow(
    rig: Rig, database_url: str
) -> None:
    client = rig.openai()
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="gpt-4.1", input="And then?",
                                      previous_response_id="resp_from_before_the_proxy")
    (record,) = await rig.wait_records(1)
    assert rig.shadow_requests() == []
    row = await comparison(database_url, record)
    assert row["shadow_outcome"] == "skipped"
    assert "resp_from_before_the_proxy" in row["shadow_reason"]
    assert "never saw" in row["shadow_reason"]
    assert row["primary_status"] == 400
    assert row["primary_error"] == ("invalid_request_error: Previous response with id "
                                    "'resp_from_before_the_proxy' not found.")


async def test_built_in_tools_skip_the_shadow_with_the_reason(rig: Rig) -> None:
    client = rig.openai()
    await client.responses.create(model="gpt-4.1", input="News today?",
                                  tools=[{"type": "web_search_preview"}])
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "skipped" and rig.shadow_requests() == []
    assert record.shadow_reason is not None and "built-in tool" in record.shadow_reason


async def test_max_output_tokens_cut_is_max_tokens_on_both_sides(rig: Rig) -> None:
    client = rig.openai()
    answer = await client.responses.create(
        model="gpt-4.1", input="Tell me everything about proxies", max_output_tokens=2)
    assert answer.status == "incomplete"
    (record,) = await rig.wait_records(1)
    assert record.primary.stop_reason == "max_tokens" == record.shadow.stop_reason
    assert record.primary.output_tokens == 2


async def test_text_format_json_schema_reaches_the_shadow_as_structured_output(
    rig: Rig,
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"], "additionalProperties": False}
    client = rig.openai()
    answer = await client.responses.create(
        model="gpt-4.1", input="Capital of France?",
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema,
                         "strict": True}})
    assert json.loads(answer.output_text) == {"answer": "Answer to: Capital of France?"}
    (record,) = await rig.wait_records(1)
    (shadow_request,) = rig.shadow_requests()
    assert shadow_request.json["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}}
    assert "system" not in shadow_request.json  # no instruction where a schema exists
    assert record.shadow_outcome == "ok"


async def test_streamed_conversation_through_serve_and_its_mirror_process(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    """The history lives in serve's own mirror process, fed through its socket; each turn
    is sent the moment the previous stream ends."""
    async with running_serve(tmp_path, primary_url=simulator.url,
                             shadow_base_url=simulator.url, shadow_api_key="sk-ant-shadow",
                             database_url=database_url) as served:
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="sk-app",
                                    max_retries=0)
        previous: str | None = None
        for question in ("My name is Ada.", "I live in Paris.", "Where do I live?"):
            extra = {"previous_response_id": previous} if previous else {}
            stream = await client.responses.create(model="gpt-4.1", input=question,
                                                   stream=True, **extra)
            completed = [e.response.id async for e in stream
                         if e.type == "response.completed"]
            previous = completed[0]
        rows = await wait_pairs(database_url, 3)
    assert [r["api"] for r in rows] == ["openai.responses"] * 3
    assert [r["shadow_outcome"] for r in rows] == ["ok", "ok", "ok"], [
        r["shadow_reason"] for r in rows]
    assert rows[2]["primary_text"] == "Answer to: Where do I live?" == rows[2]["shadow_text"]
    assert all(r["primary_ttft_ms"] and r["shadow_ttft_ms"] for r in rows)
    shadow_turns = [r.json["messages"] for r in simulator.received
                    if r.path == "/v1/messages"]
    assert [len(turns) for turns in shadow_turns] == [1, 3, 5]

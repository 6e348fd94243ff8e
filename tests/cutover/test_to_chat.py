"""Messages answers as Chat Completions answers: what the official openai SDK's own
types and stream accumulator make of them, for any answer and any split of its stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shadowproxy.cutover.messages_answer import MessageAssembler
from shadowproxy.cutover.to_chat import (
    DONE,
    REFUSAL,
    ChatChunks,
    call_id,
    chat_completion,
    chat_error,
    chat_sse,
    completion_id,
    finish_reason,
    unservable,
)
from tests.cutover.messages_strategies import messages, streams

CREATED = 1_765_000_000
Events = list[tuple[str, dict[str, Any]]]


def texts(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


def tools(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in message["content"] if b["type"] == "tool_use"]


def chunks_of(events: Events, include_usage: bool = False) -> list[dict[str, Any]]:
    translator = ChatChunks(created=CREATED, include_usage=include_usage)
    out = [c for name, data in events for c in translator.on_event(name, data)]
    assert translator.done
    return out


@given(messages())
def test_the_sdk_parses_every_whole_answer_as_the_message_says(message: dict[str, Any]) -> None:
    completion = ChatCompletion.model_validate(chat_completion(message, created=CREATED))

    choice = completion.choices[0]
    assert completion.model == "claude-haiku-4-5-20251001"
    assert completion.id.startswith("chatcmpl-") and len(completion.id) == 38
    assert choice.finish_reason == finish_reason(message["stop_reason"])
    expected_text = texts(message)
    refused = message["stop_reason"] == "refusal"
    if expected_text:
        assert choice.message.content == expected_text
    else:
        assert choice.message.content in (None, "")
    assert choice.message.refusal == (REFUSAL if refused else None)
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == [b["name"] for b in tools(message)]
    assert [json.loads(c.function.arguments) for c in calls] == [b["input"] for b in tools(message)]
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)
    usage = message["usage"]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == (usage["input_tokens"] + usage[
        "cache_creation_input_tokens"] + usage["cache_read_input_tokens"])
    assert completion.usage.completion_tokens == usage["output_tokens"]
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == usage["cache_read_input_tokens"]


@given(streams())
def test_the_sdk_accumulates_any_stream_into_the_whole_answer(
    case: tuple[dict[str, Any], Events],
) -> None:
    message, events = case
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in chunks_of(events):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    streamed = state.current_completion_snapshot.model_dump()
    whole = ChatCompletion.model_validate(chat_completion(message, created=CREATED)).model_dump()

    choice, expected = streamed["choices"][0], whole["choices"][0]
    assert (streamed["id"], streamed["model"], streamed["created"]) == (
        whole["id"], whole["model"], whole["created"])
    assert choice["finish_reason"] == expected["finish_reason"]
    assert (choice["message"]["content"] or None) == (expected["message"]["content"] or None)
    assert choice["message"]["refusal"] == expected["message"]["refusal"]
    got_calls = choice["message"]["tool_calls"] or []
    want_calls = expected["message"]["tool_calls"] or []
    assert [(c["id"], c["function"]["name"]) for c in got_calls] == [
        (c["id"], c["function"]["name"]) for c in want_calls]
    assert [json.loads(c["function"]["arguments"]) for c in got_calls] == [
        json.loads(c["function"]["arguments"]) for c in want_calls]


@given(streams())
def test_with_include_usage_the_last_chunk_carries_the_usage(
    case: tuple[dict[str, Any], Events],
) -> None:
    message, events = case
    chunks = [ChatCompletionChunk.model_validate(c) for c in chunks_of(events, True)]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == message["usage"]["output_tokens"]


@given(streams())
def test_the_assembled_then_translated_answer_equals_the_translated_stream_id(
    case: tuple[dict[str, Any], Events],
) -> None:
    message, events = case
    assembler = MessageAssembler()
    for name, data in events:
        assembler.on_event(name, data)
    assert assembler.message is not None
    assert chat_completion(assembler.message, created=CREATED) == chat_completion(
        message, created=CREATED)


def test_ids_look_like_openais_and_are_stable() -> None:
    assert completion_id("msg_01abc") == completion_id("msg_01abc") != completion_id("msg_01abd")
    assert len(call_id("toolu_01abc")) == len("call_") + 24
    assert call_id("toolu_01abc").removeprefix("call_").isalnum()


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop"),
])
def test_stop_reasons_become_finish_reasons(stop: str | None, finish: str) -> None:
    assert finish_reason(stop) == finish


def test_lines_are_openai_server_sent_events() -> None:
    assert chat_sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert DONE == b"data: [DONE]\n\n"
    assert chat_error({"type": "overloaded_error", "message": "Overloaded"}) == {
        "error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                  "code": None}}


def test_log_probabilities_cannot_be_served_from_a_messages_answer() -> None:
    assert unservable({"logprobs": True}) is not None
    assert unservable({"top_logprobs": 2}) is not None
    assert unservable({"logprobs": False, "messages": []}) is None

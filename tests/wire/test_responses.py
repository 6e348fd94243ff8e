"""OpenAI Responses API answers as the mirror sees them: whole bodies and typed streams."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.wire.normalized import Normalized, ToolCall
from shadowproxy.wire.responses import ResponsesStream, normalize_body, normalize_response

FAST = settings(max_examples=200, deadline=None)
MODEL = "gpt-4.1-2025-04-14"
RESP_ID = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"


# --- builders for realistic streams (WIRE.md, OpenAI Responses "Stream") ---------------


@dataclass
class Tool:
    name: str
    pieces: list[str]  # argument pieces exactly as streamed


@dataclass
class Answer:
    text_pieces: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    reasoning: bool = False
    input_tokens: int = 36
    cached_tokens: int = 0
    output_tokens: int = 87
    reasoning_tokens: int = 0
    eol: str = "\n"
    # completed | max_output_tokens | content_filter | failed | error (an error event
    # mid-stream) | cut (connection lost before the terminal event)
    ending: str = "completed"


def response_obj(answer: Answer, status: str, output: list[dict[str, Any]],
                 usage: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": RESP_ID, "object": "response", "created_at": 1741290958, "status": status,
        "error": None, "incomplete_details": None, "instructions": None,
        "max_output_tokens": None, "model": MODEL, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled", "usage": None, "user": None, "metadata": {},
    }
    if status == "incomplete":
        obj["incomplete_details"] = {"reason": answer.ending}
    if status == "failed":
        obj["error"] = {"code": "server_error", "message": "The model failed."}
    if usage:
        obj["usage"] = {
            "input_tokens": answer.input_tokens,
            "input_tokens_details": {"cached_tokens": answer.cached_tokens},
            "output_tokens": answer.output_tokens,
            "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
    return obj


def output_items(answer: Answer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if answer.reasoning:
        items.append({"id": "rs_1", "type": "reasoning", "summary": [],
                      "encrypted_content": "gAAAAB..."})
    if answer.text_pieces:
        items.append({"id": "msg_1", "type": "message", "status": "completed",
                      "role": "assistant", "content": [{
                          "type": "output_text", "text": "".join(answer.text_pieces),
                          "annotations": []}]})
    for n, tool in enumerate(answer.tools):
        items.append({"id": f"fc_{n}", "type": "function_call", "status": "completed",
                      "call_id": f"call_{n}", "name": tool.name,
                      "arguments": "".join(tool.pieces)})
    return items


def stream_bytes(answer: Answer) -> bytes:
    events: list[dict[str, Any]] = []
    items = output_items(answer)

    def emit(kind: str, **data: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **data})

    emit("response.created", response=response_obj(answer, "in_progress", [], False))
    emit("response.in_progress", response=response_obj(answer, "in_progress", [], False))
    for index, item in enumerate(items):
        opening = {**item, "status": "in_progress"}
        if item["type"] == "message":
            opening["content"] = []
        if item["type"] == "function_call":
            opening["arguments"] = ""
        emit("response.output_item.added", output_index=index, item=opening)
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            emit("response.content_part.added", item_id=item["id"], output_index=index,
                 content_index=0, part=part)
            for piece in answer.text_pieces:
                emit("response.output_text.delta", item_id=item["id"], output_index=index,
                     content_index=0, delta=piece, logprobs=[])
            text = "".join(answer.text_pieces)
            emit("response.output_text.done", item_id=item["id"], output_index=index,
                 content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=index,
                 content_index=0, part={**part, "text": text})
        if item["type"] == "function_call":
            tool = answer.tools[int(item["id"].removeprefix("fc_"))]
            for piece in tool.pieces:
                emit("response.function_call_arguments.delta", item_id=item["id"],
                     output_index=index, delta=piece)
            emit("response.function_call_arguments.done", item_id=item["id"],
                 output_index=index, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
        if answer.ending == "error" and index == len(items) - 1:
            emit("error", code="server_error", message="The server had an error.",
                 param=None)
            break
    if answer.ending == "error" and not items:  # an error before any output
        emit("error", code="server_error", message="The server had an error.", param=None)
    if answer.ending == "completed":
        emit("response.completed", response=response_obj(answer, "completed", items, True))
    elif answer.ending in ("max_output_tokens", "content_filter"):
        emit("response.incomplete", response=response_obj(answer, "incomplete", items, True))
    elif answer.ending == "failed":
        emit("response.failed", response=response_obj(answer, "failed", items, True))
    raw = "".join(f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n"
                  for e in events)
    return raw.replace("\n", answer.eol).encode()


STOPS = {"max_output_tokens": "max_tokens", "content_filter": "refusal", "failed": None,
         "error": None, "cut": None}


def expected(answer: Answer) -> Normalized:
    terminal = answer.ending in ("completed", "max_output_tokens", "content_filter", "failed")
    stop = ("tool_use" if answer.tools else "end_turn") if answer.ending == "completed" \
        else STOPS[answer.ending]
    return Normalized(
        model=MODEL,
        text="".join(answer.text_pieces),
        tool_calls=[ToolCall(t.name, tool_arguments("".join(t.pieces))) for t in answer.tools],
        stop_reason=stop,
        input_tokens=answer.input_tokens if terminal else None,
        output_tokens=answer.output_tokens if terminal else None,
        cache_read_input_tokens=answer.cached_tokens if terminal else None,
        error={"failed": "server_error: The model failed.",
               "error": "server_error: The server had an error.",
               "cut": "stream ended before response.completed"}.get(answer.ending),
    )


def tool_arguments(raw: str) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def run(*chunks: bytes, headers: dict[str, str] | None = None) -> Normalized:
    stream = ResponsesStream()
    for piece in chunks:
        stream.feed(piece)
    return stream.finish(headers)


def split_at(raw: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


WEATHER = Tool("get_weather", ['{"', 'location', '": "', 'Zürich 🇨🇭', '"}'])
REALISTIC = Answer(text_pieces=["Let me ", "check… ☀️"], tools=[WEATHER, Tool("now", [])],
                   reasoning=True, cached_tokens=1024, reasoning_tokens=64, eol="\r\n")


# --- streams: examples from the wire facts --------------------------------------------


def test_realistic_stream_with_reasoning_text_and_tool_calls() -> None:
    result = run(stream_bytes(REALISTIC), headers={"X-Request-ID": "req_ab12"})
    assert result == Normalized(
        model=MODEL, text="Let me check… ☀️",
        tool_calls=[ToolCall("get_weather", {"location": "Zürich 🇨🇭"}), ToolCall("now", {})],
        stop_reason="tool_use", input_tokens=36, output_tokens=87,
        cache_read_input_tokens=1024, request_id="req_ab12",
    )


def test_every_split_point_of_a_realistic_stream() -> None:
    raw = stream_bytes(REALISTIC)
    whole = run(raw)
    for cut in range(1, len(raw), 3):
        assert run(raw[:cut], raw[cut:]) == whole, cut


def test_incomplete_for_max_output_tokens_is_max_tokens() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Once upon"], ending="max_output_tokens")))
    assert (result.stop_reason, result.text, result.error) == ("max_tokens", "Once upon", None)


def test_incomplete_for_content_filter_is_refusal() -> None:
    result = run(stream_bytes(Answer(text_pieces=["I"], ending="content_filter")))
    assert result.stop_reason == "refusal"


def test_failed_response_carries_its_error_and_usage() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hal"], ending="failed")))
    assert result.error == "server_error: The model failed."
    assert result.stop_reason is None and result.output_tokens == 87


def test_error_event_mid_stream() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hal", "f"], ending="error")))
    assert (result.text, result.error) == ("Half", "server_error: The server had an error.")
    assert result.input_tokens is None  # usage only ever comes with the terminal event


def test_stream_cut_before_the_terminal_event() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hi"], tools=[WEATHER], ending="cut")))
    assert result.text == "Hi"
    assert result.tool_calls == [ToolCall("get_weather", {"location": "Zürich 🇨🇭"})]
    assert result.error == "stream ended before response.completed"


def test_content_seen_at_the_first_text_delta_not_before() -> None:
    raw = stream_bytes(Answer(text_pieces=["Hi", " there"]))
    head, tail = raw.split(b"event: response.output_text.delta", 1)
    stream = ResponsesStream()
    stream.feed(head)
    assert not stream.content_seen  # created, in_progress, item and part openings
    stream.feed(b"event: response.output_text.delta" + tail)
    assert stream.content_seen


def test_content_seen_at_the_first_function_call_arguments_delta() -> None:
    stream = ResponsesStream()
    stream.on_event({"type": "response.output_item.added", "sequence_number": 0,
                     "output_index": 0, "item": {"id": "fc_1", "type": "function_call",
                                                 "name": "f", "arguments": ""}})
    assert not stream.content_seen
    stream.on_event({"type": "response.function_call_arguments.delta", "sequence_number": 1,
                     "item_id": "fc_1", "output_index": 0, "delta": "{"})
    assert stream.content_seen


def test_a_refusal_is_generated_content_but_not_answer_text() -> None:
    stream = ResponsesStream()
    stream.on_event({"type": "response.refusal.delta", "delta": "I can't help with that."})
    assert stream.content_seen and stream.finish().text == ""


def test_repeated_sequence_numbers_are_skipped() -> None:
    stream = ResponsesStream()
    delta = {"type": "response.output_text.delta", "sequence_number": 3, "delta": "Hi"}
    stream.on_event(delta)
    stream.on_event(delta)  # a replayed event after a reconnect
    stream.on_event({**delta, "sequence_number": 4, "delta": "!"})
    assert stream.finish().text == "Hi!"


def test_unknown_events_are_skipped() -> None:
    raw = stream_bytes(Answer(text_pieces=["Hi"]))
    extra = (b'event: response.reasoning_summary_text.delta\ndata: {"type": '
             b'"response.reasoning_summary_text.delta","delta":"hmm"}\n\n'
             b"event: response.future_thing\ndata: {\"type\": \"response.future_thing\"}\n\n"
             b": keep-alive comment\n\n")
    assert run(extra + raw) == run(raw) == expected(Answer(text_pieces=["Hi"]))


def test_terminal_event_without_output_keeps_the_streamed_text() -> None:
    stream = ResponsesStream()
    stream.on_event({"type": "response.output_text.delta", "delta": "Hi"})
    stream.on_event({"type": "response.completed", "response": {
        "id": RESP_ID, "status": "completed", "model": MODEL, "output": [],
        "usage": {"input_tokens": 5, "output_tokens": 1}}})
    result = stream.finish()
    assert (result.text, result.stop_reason, result.output_tokens) == ("Hi", "end_turn", 1)
    assert stream.response_id == RESP_ID


def test_json_error_body_fed_as_a_stream_is_described() -> None:
    body = b'{"error": {"message": "Previous response with id \'resp_x\' not found.", ' \
           b'"type": "invalid_request_error", "param": "previous_response_id", "code": null}}'
    result = run(body)
    assert result.error == "invalid_request_error: Previous response with id 'resp_x' not found."


def test_finish_is_idempotent() -> None:
    stream = ResponsesStream()
    stream.feed(stream_bytes(Answer(text_pieces=["Hi"])))
    assert stream.finish() is stream.finish()


# --- whole answers --------------------------------------------------------------------


def test_whole_response_with_text_function_call_and_usage() -> None:
    answer = Answer(text_pieces=["Checking."], tools=[WEATHER], reasoning=True,
                    cached_tokens=12, reasoning_tokens=40)
    obj = response_obj(answer, "completed", output_items(answer), True)
    result = normalize_body(200, json.dumps(obj).encode(), {"x-request-id": "req_1"})
    assert result == Normalized(
        model=MODEL, text="Checking.",
        tool_calls=[ToolCall("get_weather", {"location": "Zürich 🇨🇭"})],
        stop_reason="tool_use", input_tokens=36, output_tokens=87,
        cache_read_input_tokens=12, request_id="req_1",
    )


def test_incomplete_whole_response() -> None:
    answer = Answer(text_pieces=["Once"], ending="max_output_tokens")
    result = normalize_response(response_obj(answer, "incomplete", output_items(answer), True))
    assert (result.text, result.stop_reason) == ("Once", "max_tokens")


def test_error_body() -> None:
    body = b'{"error": {"message": "Invalid value", "type": "invalid_request_error", ' \
           b'"param": "input", "code": "invalid_value"}}'
    assert normalize_body(400, body, {}).error == "invalid_request_error: Invalid value"


def test_non_json_body() -> None:
    result = normalize_body(502, b"<html>Bad gateway</html>", {})
    assert result.error == "HTTP 502: <html>Bad gateway</html>"


# --- properties -----------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=8,
)


@st.composite
def tools(draw: st.DrawFn) -> Tool:
    raw = json.dumps(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
                     ensure_ascii=False)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=6)))
    bounds = [0, *cuts, len(raw)]
    return Tool(draw(st.text(min_size=1, max_size=12)),
                [raw[a:b] for a, b in itertools.pairwise(bounds) if raw[a:b]])


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    return Answer(
        text_pieces=draw(st.lists(st.text(min_size=1, max_size=12), max_size=5)),
        tools=draw(st.lists(tools(), max_size=3)),
        reasoning=draw(st.booleans()),
        input_tokens=draw(st.integers(0, 10**6)),
        cached_tokens=draw(st.integers(0, 10**6)),
        output_tokens=draw(st.integers(0, 10**5)),
        eol=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        ending=draw(st.sampled_from(["completed", "completed", "max_output_tokens",
                                     "content_filter", "failed", "error", "cut"])),
    )


@FAST
@given(answers(), st.data())
def test_any_chunking_gives_the_answer_that_was_streamed(
    answer: Answer, data: st.DataObject
) -> None:
    raw = stream_bytes(answer)
    cuts = data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40))
    assert run(raw) == expected(answer)
    assert run(*split_at(raw, cuts)) == expected(answer)


@settings(max_examples=20, deadline=None)
@given(answers())
def test_single_byte_chunks_give_the_answer_that_was_streamed(answer: Answer) -> None:
    raw = stream_bytes(answer)
    assert run(*(raw[i : i + 1] for i in range(len(raw)))) == expected(answer)


@FAST
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_garbage_bytes_never_raise(chunks: list[bytes]) -> None:
    assert isinstance(run(*chunks), Normalized)


@FAST
@given(st.lists(json_values, max_size=12), st.sampled_from([
    "response.output_text.delta", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.output_item.added",
    "response.output_item.done", "response.created", "response.completed",
    "response.incomplete", "response.failed", "error"]))
def test_well_framed_events_with_wrong_shapes_never_raise(values: list[Any], kind: str) -> None:
    raw = "".join(f"event: {kind}\ndata: {json.dumps(value)}\n\n" for value in values)
    assert isinstance(run(raw.encode()), Normalized)
    stream = ResponsesStream()
    for value in values:
        stream.on_event({"type": kind, "sequence_number": value, "delta": value,
                         "item": value, "response": value, "output_index": value,
                         "item_id": value, "arguments": value, "error": value})
        stream.on_event({"type": kind, "response": {"output": [value], "usage": value,
                                                    "status": value, "error": value,
                                                    "incomplete_details": value}})
    assert isinstance(stream.finish(), Normalized)


@FAST
@given(answers(), st.data())
def test_damaged_streams_never_raise(answer: Answer, data: st.DataObject) -> None:
    raw = bytearray(stream_bytes(answer))
    for _ in range(data.draw(st.integers(1, 5))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position : position + 1] = data.draw(st.binary(max_size=2))
    assert isinstance(run(bytes(raw)), Normalized)


@FAST
@given(st.integers(100, 599), st.binary(max_size=300) | json_values.map(
    lambda v: json.dumps(v).encode()))
def test_any_body_is_normalised_without_raising(status: int, body: bytes) -> None:
    result = normalize_body(status, body, {})
    assert result.error is not None or 200 <= status < 300

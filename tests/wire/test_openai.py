"""OpenAI Chat Completions answers as the mirror sees them: whole bodies and streams."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.wire.normalized import Normalized, ToolCall
from shadowproxy.wire.openai import OpenAIStream, normalize_body, normalize_completion

FAST = settings(max_examples=200, deadline=None)
MODEL = "gpt-4o-2024-08-06"


# --- builders for realistic streams (WIRE.md, OpenAI "Stream") ------------------------


@dataclass
class Tool:
    name: str
    # Argument pieces exactly as streamed; their join is the arguments string.
    pieces: list[str]


@dataclass
class Answer:
    text_pieces: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    finish_reason: str = "stop"
    include_usage: bool = True
    prompt_tokens: int = 19
    completion_tokens: int = 10
    cached_tokens: int = 0
    eol: str = "\n"
    # "done" (normal), "error" (an error line mid-stream), "cut" (connection lost
    # before the last chunk) or "no_done" (finish_reason sent, [DONE] never came).
    ending: str = "done"


def chunk(answer: Answer, choices: list[dict[str, Any]], usage: Any = None) -> str:
    obj = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
           "created": 1741570283, "model": MODEL, "system_fingerprint": "fp_eb9dce56a8",
           "choices": choices}
    if answer.include_usage:
        obj["usage"] = usage
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def delta(value: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": value, "logprobs": None, "finish_reason": finish_reason}]


def stream_bytes(answer: Answer) -> bytes:
    parts = [chunk(answer, delta({"role": "assistant", "content": "", "refusal": None}))]
    parts += [chunk(answer, delta({"content": piece})) for piece in answer.text_pieces]
    for index, tool in enumerate(answer.tools):
        parts.append(chunk(answer, delta({"tool_calls": [{
            "index": index, "id": f"call_{index}", "type": "function",
            "function": {"name": tool.name, "arguments": ""}}]})))
        parts += [chunk(answer, delta({"tool_calls": [{
            "index": index, "function": {"arguments": piece}}]})) for piece in tool.pieces]
    if answer.ending == "error":
        parts.append('data: {"error": {"message": "The server had an error while processing '
                     'your request.", "type": "server_error", "param": null, "code": null}}\n\n')
    elif answer.ending != "cut":
        parts.append(chunk(answer, delta({}, answer.finish_reason)))
        if answer.include_usage:
            parts.append(chunk(answer, [], usage={
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": answer.cached_tokens,
                                          "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}}))
        if answer.ending == "done":
            parts.append("data: [DONE]\n\n")
    return "".join(parts).replace("\n", answer.eol).encode()


STOP_WORDS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
              "content_filter": "refusal"}


def expected(answer: Answer) -> Normalized:
    finished = answer.ending in ("done", "no_done")
    usage = finished and answer.include_usage
    return Normalized(
        model=MODEL,
        text="".join(answer.text_pieces),
        tool_calls=[ToolCall(t.name, tool_arguments("".join(t.pieces))) for t in answer.tools],
        stop_reason=STOP_WORDS[answer.finish_reason] if finished else None,
        input_tokens=answer.prompt_tokens if usage else None,
        output_tokens=answer.completion_tokens if usage else None,
        cache_read_input_tokens=answer.cached_tokens if usage else None,
        thinking_tokens=0 if usage else None,
        error={"done": None, "no_done": None, "cut": "stream ended before [DONE]",
               "error": "server_error: The server had an error while processing your request."
               }[answer.ending],
    )


def tool_arguments(raw: str) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def run(*chunks: bytes, headers: dict[str, str] | None = None) -> Normalized:
    stream = OpenAIStream()
    for piece in chunks:
        stream.feed(piece)
    return stream.finish(headers)


def split_at(raw: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


WEATHER = Tool("get_weather", ['{"', 'location', '": "', 'Zürich 🇨🇭', '"}'])
REALISTIC = Answer(text_pieces=["Let me ", "check… ☀️"], tools=[WEATHER, Tool("now", [])],
                   finish_reason="tool_calls", cached_tokens=1024, eol="\r\n")


# --- streams: examples from the wire facts --------------------------------------------


def test_realistic_tool_call_stream_with_usage_chunk() -> None:
    result = run(stream_bytes(REALISTIC), headers={"X-Request-ID": "req_ab12"})
    assert result == Normalized(
        model=MODEL, text="Let me check… ☀️",
        tool_calls=[ToolCall("get_weather", {"location": "Zürich 🇨🇭"}), ToolCall("now", {})],
        stop_reason="tool_use", input_tokens=19, output_tokens=10, cache_read_input_tokens=1024,
        thinking_tokens=0,  # completion_tokens_details.reasoning_tokens
        request_id="req_ab12",
    )


def test_every_split_point_of_a_realistic_stream() -> None:
    """Covers cuts inside "\\r\\n", inside multi-byte characters and inside JSON."""
    raw = stream_bytes(REALISTIC)
    whole = run(raw)
    for cut in range(1, len(raw)):
        assert run(raw[:cut], raw[cut:]) == whole, cut
    assert run(*(raw[i : i + 1] for i in range(len(raw)))) == whole


def test_error_line_mid_stream() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hal", "f"], ending="error")))
    assert result.error == "server_error: The server had an error while processing your request."
    assert result.text == "Half"


def test_stream_cut_before_done_and_finish_reason_is_an_error() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hi"], ending="cut")))
    assert (result.text, result.error) == ("Hi", "stream ended before [DONE]")


def test_finish_reason_without_done_is_complete() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hi"], ending="no_done", include_usage=False)))
    assert (result.stop_reason, result.error) == ("end_turn", None)


def test_without_include_usage_tokens_are_unknown() -> None:
    result = run(stream_bytes(Answer(text_pieces=["Hi"], include_usage=False)))
    assert (result.input_tokens, result.output_tokens, result.error) == (None, None, None)


def test_content_seen_ignores_the_role_chunk() -> None:
    raw = stream_bytes(Answer(text_pieces=["Hi"]))
    first, rest = raw.split(b"\n\n", 1)
    stream = OpenAIStream()
    stream.feed(first + b"\n\n")
    assert not stream.content_seen
    stream.feed(rest)
    assert stream.content_seen


def test_content_seen_on_a_tool_call_chunk() -> None:
    stream = OpenAIStream()
    stream.on_chunk({"choices": delta({"role": "assistant", "content": None})})
    assert not stream.content_seen
    stream.on_chunk({"choices": delta({"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "f", "arguments": ""}}]})})
    assert stream.content_seen


def test_parallel_tool_calls_interleaved_by_index() -> None:
    stream = OpenAIStream()
    for index, name in ((0, "a"), (1, "b")):
        stream.on_chunk({"choices": delta({"tool_calls": [
            {"index": index, "id": f"call_{index}",
             "function": {"name": name, "arguments": ""}}]})})
    for index, piece in ((1, '{"y":'), (0, '{"x":'), (1, " 2}"), (0, " 1}")):
        stream.on_chunk({"choices": delta({"tool_calls": [
            {"index": index, "function": {"arguments": piece}}]})})
    stream.on_chunk({"choices": delta({}, "tool_calls")})
    assert stream.finish().tool_calls == [ToolCall("a", {"x": 1}), ToolCall("b", {"y": 2})]


def test_unparseable_arguments_are_kept_raw() -> None:
    result = run(stream_bytes(Answer(tools=[Tool("f", ["{oops"])], finish_reason="tool_calls")))
    assert result.tool_calls == [ToolCall("f", "{oops")]


def test_other_choices_are_ignored() -> None:
    stream = OpenAIStream()
    stream.on_chunk({"choices": [{"index": 1, "delta": {"content": "second"}}]})
    stream.on_chunk({"choices": [{"index": 0, "delta": {"content": "first"},
                                  "finish_reason": "stop"}]})
    assert stream.finish().text == "first"


def test_comments_and_malformed_lines_are_skipped() -> None:
    raw = stream_bytes(Answer(text_pieces=["Hi"]))
    noisy = b": OPENROUTER PROCESSING\n\ndata: {broken\n\n" + raw
    assert run(noisy) == run(raw)


def test_json_error_body_fed_as_a_stream_is_described() -> None:
    body = (b'{"error": {"message": "Rate limit reached", "type": "requests", '
            b'"param": null, "code": "rate_limit_exceeded"}}')
    assert run(body).error == "requests: Rate limit reached"


def test_finish_is_idempotent() -> None:
    stream = OpenAIStream()
    stream.feed(stream_bytes(REALISTIC))
    assert stream.finish() == stream.finish()
    assert len(stream.finish().tool_calls) == 2


# --- whole bodies ---------------------------------------------------------------------


def completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1741569952,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                  "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0}},
    }


def test_completion_with_tool_calls_and_null_content() -> None:
    obj = completion({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
        {"id": "call_3", "type": "function", "function": {"name": "bad", "arguments": "{x"}},
    ]}, "tool_calls")
    assert normalize_completion(obj) == Normalized(
        model=MODEL, text="",
        tool_calls=[ToolCall("get_weather", {"location": "Boston"}), ToolCall("now", {}),
                    ToolCall("bad", "{x")],
        stop_reason="tool_use", input_tokens=82, output_tokens=17, cache_read_input_tokens=64,
    )


def test_content_as_a_list_of_parts() -> None:
    obj = completion({"content": [{"type": "text", "text": "Hello "},
                                  {"type": "image_url", "image_url": {"url": "x"}},
                                  {"type": "text", "text": "there"}]})
    assert normalize_completion(obj).text == "Hello there"


@pytest.mark.parametrize(("finish_reason", "stop_reason"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("function_call", "tool_use"), ("content_filter", "refusal"), ("eos", "eos"),
])
def test_finish_reasons_in_anthropic_words(finish_reason: str, stop_reason: str) -> None:
    obj = completion({"content": "x"}, finish_reason)
    assert normalize_completion(obj).stop_reason == stop_reason


def test_choice_index_zero_is_recorded() -> None:
    obj = completion({"content": "zero"})
    obj["choices"].insert(0, {"index": 1, "message": {"content": "one"}, "finish_reason": "stop"})
    assert normalize_completion(obj).text == "zero"


def test_body_with_request_id_header_in_any_case() -> None:
    body = json.dumps(completion({"content": "Hi"})).encode()
    result = normalize_body(200, body, {"X-Request-Id": "req_9"})
    assert (result.text, result.request_id, result.error) == ("Hi", "req_9", None)


def test_error_body() -> None:
    body = (b'{"error": {"message": "Incorrect API key provided.", '
            b'"type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}')
    result = normalize_body(401, body, {"x-request-id": "req_e"})
    assert result == Normalized(error="invalid_request_error: Incorrect API key provided.",
                                request_id="req_e")


def test_non_json_body() -> None:
    assert normalize_body(502, b"upstream connect error", {}).error == (
        "HTTP 502: upstream connect error")


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
        finish_reason=draw(st.sampled_from(sorted(STOP_WORDS))),
        include_usage=draw(st.booleans()),
        prompt_tokens=draw(st.integers(0, 10**6)),
        completion_tokens=draw(st.integers(0, 10**5)),
        cached_tokens=draw(st.integers(0, 10**6)),
        eol=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        ending=draw(st.sampled_from(["done", "done", "error", "cut", "no_done"])),
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


@settings(max_examples=30, deadline=None)
@given(answers())
def test_single_byte_chunks_give_the_answer_that_was_streamed(answer: Answer) -> None:
    raw = stream_bytes(answer)
    assert run(*(raw[i : i + 1] for i in range(len(raw)))) == expected(answer)


@FAST
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_garbage_bytes_never_raise(chunks: list[bytes]) -> None:
    assert isinstance(run(*chunks), Normalized)


@FAST
@given(st.lists(json_values, max_size=12))
def test_well_framed_chunks_with_wrong_shapes_never_raise(values: list[Any]) -> None:
    raw = "".join(f"data: {json.dumps(value)}\n\n" for value in values)
    assert isinstance(run(raw.encode()), Normalized)
    stream = OpenAIStream()
    for value in values:
        stream.on_chunk({"choices": [{"index": 0, "delta": value, "finish_reason": value}],
                         "usage": value, "error": None})
        stream.on_chunk({"choices": delta({"tool_calls": [value], "content": value})})
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
    assert isinstance(normalize_completion({"choices": [{"message": body.decode("latin-1")}]}),
                      Normalized)


def test_reasoning_is_counted_but_never_compared_as_the_answer() -> None:
    """OpenAI-compatible servers stream reasoning as ``reasoning_content``; the answer is
    ``content`` only, and reasoning tokens are read from the usage details."""
    lines = [
        {"id": "c", "model": "o4-mini", "choices": [
            {"index": 0, "delta": {"role": "assistant", "reasoning_content": "Let me think"}}]},
        {"id": "c", "model": "o4-mini", "choices": [
            {"index": 0, "delta": {"content": "42"}, "finish_reason": "stop"}]},
        {"id": "c", "model": "o4-mini", "choices": [], "usage": {
            "prompt_tokens": 10, "completion_tokens": 300,
            "completion_tokens_details": {"reasoning_tokens": 290}}},
    ]
    raw = "".join(f"data: {json.dumps(line)}\n\n" for line in lines) + "data: [DONE]\n\n"
    result = run(raw.encode())
    assert result.text == "42" and result.thinking_tokens == 290
    assert result.output_tokens == 300  # reasoning is inside completion_tokens, priced once
    whole = normalize_completion({"model": "o4-mini", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "42", "reasoning_content": "Let me think"},
        "finish_reason": "stop"}]})
    assert whole.text == "42"

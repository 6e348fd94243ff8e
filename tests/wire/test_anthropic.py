"""Anthropic answers as the mirror sees them: whole bodies and streams cut anywhere."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.wire.anthropic import (
    AnthropicStream,
    normalize_body,
    normalize_message,
)
from shadowproxy.wire.normalized import Normalized, ToolCall

FAST = settings(max_examples=200, deadline=None)
MODEL = "claude-haiku-4-5-20251001"


# --- builders for realistic streams (WIRE.md, Anthropic "Stream") --------------------


@dataclass
class TextBlock:
    pieces: list[str]


@dataclass
class ThinkingBlock:
    pieces: list[str]


@dataclass
class ToolBlock:
    name: str
    # The input_json_delta pieces, exactly as streamed; their join is the JSON.
    pieces: list[str]


Block = TextBlock | ThinkingBlock | ToolBlock


@dataclass
class Answer:
    blocks: list[Block]
    stop_reason: str = "end_turn"
    input_tokens: int = 25
    output_tokens: int = 15
    cache_read: int = 0
    # Events after which a ping is sent (by position in the event list).
    pings: set[int] = field(default_factory=set)
    pad: bool = False
    eol: str = "\n"
    # "message_stop" (normal), "error" (overloaded after 200) or "cut" (connection lost).
    ending: str = "message_stop"


def sse(name: str, payload: dict[str, Any], pad: bool = False) -> str:
    data = json.dumps(payload, ensure_ascii=False)
    return f"event: {name}\ndata: {data}{'   ' if pad else ''}\n\n"


def stream_events(answer: Answer) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "content": [], "model": MODEL, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": answer.cache_read}}}),
    ]
    for index, block in enumerate(answer.blocks):
        if isinstance(block, TextBlock):
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in block.pieces]
        elif isinstance(block, ThinkingBlock):
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in block.pieces]
            deltas.append({"type": "signature_delta", "signature": "EqQBCgIYAhIM"})
        else:
            start = {"type": "tool_use", "id": f"toolu_{index}", "name": block.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in block.pieces]
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": index, "content_block": start}))
        events.extend(("content_block_delta",
                       {"type": "content_block_delta", "index": index, "delta": d})
                      for d in deltas)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if answer.ending == "error":
        events.append(("error", {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}}))
        return events
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": answer.output_tokens}}))
    if answer.ending == "message_stop":
        events.append(("message_stop", {"type": "message_stop"}))
    return events


def stream_bytes(answer: Answer) -> bytes:
    parts: list[str] = []
    for position, (name, payload) in enumerate(stream_events(answer)):
        parts.append(sse(name, payload, pad=answer.pad))
        if position in answer.pings:
            parts.append(sse("ping", {"type": "ping"}))
    return "".join(parts).replace("\n", answer.eol).encode()


def expected(answer: Answer) -> Normalized:
    text = "".join("".join(b.pieces) for b in answer.blocks if isinstance(b, TextBlock))
    tools = [ToolCall(b.name, tool_arguments("".join(b.pieces)))
             for b in answer.blocks if isinstance(b, ToolBlock)]
    errored = answer.ending == "error"
    return Normalized(
        model=MODEL, text=text, tool_calls=tools,
        stop_reason=None if errored else answer.stop_reason,
        input_tokens=answer.input_tokens,
        output_tokens=1 if errored else answer.output_tokens,
        cache_creation_input_tokens=0, cache_read_input_tokens=answer.cache_read,
        error={"message_stop": None, "error": "overloaded_error: Overloaded",
               "cut": "stream ended before message_stop"}[answer.ending],
    )


def tool_arguments(raw: str) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def json_pieces(value: Any, cuts: set[int]) -> list[str]:
    """Arguments split the way the API streams them: an empty first piece, then fragments."""
    raw = json.dumps(value, ensure_ascii=False)
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(raw)), len(raw)]
    return ["", *(raw[a:b] for a, b in itertools.pairwise(bounds))]


def run(*chunks: bytes, headers: dict[str, str] | None = None) -> Normalized:
    stream = AnthropicStream()
    for chunk in chunks:
        stream.feed(chunk)
    return stream.finish(headers)


def split_at(raw: bytes, cuts: set[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


WEATHER = ToolBlock("get_weather", ["", '{"loc', 'ation": "Par', 'is, 🇫🇷"', ', "unit": "c"}'])
REALISTIC = Answer(
    blocks=[ThinkingBlock(["Let me ", "check."]), TextBlock(["Checking the ", "weather… ☀️"]),
            WEATHER],
    stop_reason="tool_use", output_tokens=89, cache_read=12, pings={0, 3}, pad=True,
    eol="\r\n",
)


# --- streams: examples from the wire facts --------------------------------------------


def test_realistic_tool_call_stream() -> None:
    result = run(stream_bytes(REALISTIC), headers={"Request-Id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    assert result == Normalized(
        model=MODEL,
        text="Checking the weather… ☀️",
        tool_calls=[ToolCall("get_weather", {"location": "Paris, 🇫🇷", "unit": "c"})],
        stop_reason="tool_use",
        input_tokens=25, output_tokens=89,
        cache_creation_input_tokens=0, cache_read_input_tokens=12,
        request_id="req_011CSHoEeqs5C35K2UUqR7Fy",
    )


def test_thinking_is_not_part_of_the_text() -> None:
    result = run(stream_bytes(Answer([ThinkingBlock(["hmm"]), TextBlock(["Hi"])])))
    assert result.text == "Hi"


def test_every_split_point_of_a_realistic_stream() -> None:
    """Covers cuts inside "\\r\\n", inside multi-byte characters and inside JSON."""
    raw = stream_bytes(REALISTIC)
    whole = run(raw)
    for cut in range(1, len(raw)):
        assert run(raw[:cut], raw[cut:]) == whole, cut
    assert run(*(raw[i : i + 1] for i in range(len(raw)))) == whole


def test_usage_in_message_delta_overwrites_rather_than_adds() -> None:
    result = run(stream_bytes(Answer([TextBlock(["Hi"])], input_tokens=472, output_tokens=2)))
    assert (result.input_tokens, result.output_tokens) == (472, 2)


def test_message_delta_may_restate_input_tokens() -> None:
    stream = AnthropicStream()
    start_usage = {"input_tokens": 10, "output_tokens": 1}
    stream.on_event("message_start", {"message": {"model": MODEL, "usage": start_usage}})
    stream.on_event("message_delta", {"delta": {"stop_reason": "end_turn"},
                                      "usage": {"input_tokens": 12, "output_tokens": 30}})
    stream.on_event("message_stop", {})
    result = stream.finish()
    assert (result.input_tokens, result.output_tokens, result.error) == (12, 30, None)


def test_error_event_after_http_200() -> None:
    result = run(stream_bytes(Answer([TextBlock(["Partial ", "answer"])], ending="error")))
    assert result.error == "overloaded_error: Overloaded"
    assert result.text == "Partial answer"


def test_stream_cut_before_message_stop_is_an_error() -> None:
    result = run(stream_bytes(Answer([TextBlock(["Hi"])], ending="cut")))
    assert result.error == "stream ended before message_stop"
    assert (result.text, result.stop_reason) == ("Hi", "end_turn")


def test_tool_call_cut_mid_arguments_keeps_what_arrived() -> None:
    raw = stream_bytes(Answer([WEATHER]))
    result = run(raw[: raw.index(b"content_block_stop")])
    assert result.tool_calls == [ToolCall("get_weather", {"location": "Paris, 🇫🇷", "unit": "c"})]
    result = run(raw[: raw.index(b"Par")])
    assert result.tool_calls == [ToolCall("get_weather", '{"loc')]
    assert result.error == "stream ended before message_stop"


def test_tool_call_without_arguments_gets_an_empty_object() -> None:
    result = run(stream_bytes(Answer([ToolBlock("now", [""])], stop_reason="tool_use")))
    assert result.tool_calls == [ToolCall("now", {})]


def test_unparseable_tool_arguments_are_kept_raw() -> None:
    result = run(stream_bytes(Answer([ToolBlock("f", ["", "{not json"])])))
    assert result.tool_calls == [ToolCall("f", "{not json")]


def test_unknown_events_and_malformed_data_are_skipped() -> None:
    raw = stream_bytes(Answer([TextBlock(["Hi"])]))
    noise = (b"event: brand_new_event\ndata: {\"type\": \"brand_new_event\"}\n\n"
             b"event: content_block_delta\ndata: {not json\n\n"
             b": comment\n\n")
    cut = raw.index(b"event: content_block_stop")
    assert run(raw[:cut] + noise + raw[cut:]) == run(raw)


def test_content_seen_flips_at_the_first_generated_delta() -> None:
    events = stream_bytes(Answer([TextBlock(["Hi"])], pings={0, 1})).split(b"\n\n")
    stream = AnthropicStream()
    seen = []
    for event in events:
        stream.feed(event + b"\n\n")
        seen.append((event.split(b"\n")[0], stream.content_seen))
    first_true = next(i for i, (_, flag) in enumerate(seen) if flag)
    assert seen[first_true][0] == b"event: content_block_delta"
    assert all(flag for _, flag in seen[first_true:])


def test_thinking_delta_counts_as_first_content() -> None:
    stream = AnthropicStream()
    stream.feed(sse("content_block_start", {"index": 0, "content_block": {"type": "thinking"}})
                .encode())
    assert not stream.content_seen
    stream.feed(sse("content_block_delta", {
        "index": 0, "delta": {"type": "thinking_delta", "thinking": "So"}}).encode())
    assert stream.content_seen


def test_sdk_events_fed_directly_give_the_same_answer() -> None:
    stream = AnthropicStream()
    for name, payload in stream_events(REALISTIC):
        stream.on_event(name, payload)
    assert stream.finish() == run(stream_bytes(REALISTIC))


def test_finish_is_idempotent() -> None:
    stream = AnthropicStream()
    stream.feed(stream_bytes(REALISTIC))
    assert stream.finish() == stream.finish()
    assert len(stream.finish().tool_calls) == 1


def test_json_error_body_fed_as_a_stream_is_described() -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}'
    assert run(body).error == "rate_limit_error: Slow down"
    assert run(b"<html>Bad gateway</html>").error == "not an event stream: <html>Bad gateway</html>"


def test_empty_stream_is_an_error() -> None:
    assert run().error == "stream ended before message_stop"


# --- whole bodies ---------------------------------------------------------------------


MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "abc"},
        {"type": "text", "text": "Let me check. "},
        {"type": "text", "text": "One moment."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
         "input": {"location": "Paris"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503,
              "cache_creation_input_tokens": 7, "cache_read_input_tokens": 1500},
}


def test_normalize_message() -> None:
    assert normalize_message(MESSAGE) == Normalized(
        model=MODEL, text="Let me check. One moment.",
        tool_calls=[ToolCall("get_weather", {"location": "Paris"})],
        stop_reason="tool_use", input_tokens=2095, output_tokens=503,
        cache_creation_input_tokens=7, cache_read_input_tokens=1500,
    )


def test_body_of_a_message_with_request_id_header_in_any_case() -> None:
    result = normalize_body(200, json.dumps(MESSAGE).encode(), {"REQUEST-ID": "req_1"})
    assert result.request_id == "req_1"
    assert result.text == "Let me check. One moment."
    assert result.error is None


def test_error_body() -> None:
    body = (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},'
            b'"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}')
    result = normalize_body(529, body, {})
    assert result == Normalized(error="overloaded_error: Overloaded",
                                request_id="req_011CSHoEeqs5C35K2UUqR7Fy")


def test_non_json_body() -> None:
    html = b"<html><body>502 Bad Gateway</body></html>" + b"x" * 500
    error = normalize_body(502, html, {}).error
    assert error is not None
    assert error.startswith("HTTP 502: <html><body>502 Bad Gateway")
    assert len(error) <= len("HTTP 502: ") + 200
    assert normalize_body(503, b"", {}).error == "HTTP 503: empty body"


def test_non_error_json_with_a_failure_status() -> None:
    assert normalize_body(500, b'{"detail": "boom"}', {}).error == 'HTTP 500: {"detail": "boom"}'


# --- properties -----------------------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=8,
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    blocks: list[Block] = []
    for kind in draw(st.lists(st.sampled_from(["text", "thinking", "tool"]), max_size=4)):
        if kind == "tool":
            arguments = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
            cuts = draw(st.sets(st.integers(0, 200), max_size=6))
            blocks.append(ToolBlock(draw(st.text(min_size=1, max_size=12)),
                                    json_pieces(arguments, cuts)))
        else:
            pieces = draw(st.lists(st.text(max_size=12), min_size=1, max_size=5))
            blocks.append(TextBlock(pieces) if kind == "text" else ThinkingBlock(pieces))
    return Answer(
        blocks=blocks,
        stop_reason=draw(st.sampled_from(["end_turn", "max_tokens", "tool_use", "refusal"])),
        input_tokens=draw(st.integers(0, 10**6)),
        output_tokens=draw(st.integers(1, 10**5)),
        cache_read=draw(st.integers(0, 10**6)),
        pings=draw(st.sets(st.integers(0, 30), max_size=4)),
        pad=draw(st.booleans()),
        eol=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        ending=draw(st.sampled_from(["message_stop", "message_stop", "error", "cut"])),
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


event_names = st.sampled_from([
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "error", "ping",
])


@FAST
@given(st.lists(st.tuples(event_names, json_values), max_size=12))
def test_well_framed_events_with_wrong_shapes_never_raise(
    events: list[tuple[str, Any]],
) -> None:
    raw = "".join(f"event: {name}\ndata: {json.dumps(value)}\n\n" for name, value in events)
    assert isinstance(run(raw.encode()), Normalized)
    stream = AnthropicStream()
    for name, value in events:
        if isinstance(value, dict):
            stream.on_event(name, value)
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


# ------------------------------------------------- server tools, citations, usage detail

SEARCH_ANSWER = [
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
     "input": {"query": "proxy news"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://n.example/1", "title": "News",
         "encrypted_content": "x"}]},
    {"type": "text", "text": "Proxies are "},
    {"type": "text", "text": "popular this year", "citations": [
        {"type": "web_search_result_location", "url": "https://n.example/1", "title": "News",
         "encrypted_index": "y", "cited_text": "Proxies became popular in 2026."}]},
    {"type": "text", "text": "."},
]


def test_server_tool_blocks_and_citations_stay_out_of_the_compared_text() -> None:
    result = normalize_message({"model": "claude-sonnet-4-6", "content": SEARCH_ANSWER,
                                "stop_reason": "end_turn",
                                "usage": {"input_tokens": 9, "output_tokens": 4,
                                          "server_tool_use": {"web_search_requests": 1}}})
    assert result.text == "Proxies are popular this year."
    assert result.tool_calls == []


def test_streamed_citations_deltas_and_server_tool_input_stay_out_of_the_text() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {
            "model": "claude-sonnet-4-6", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {**SEARCH_ANSWER[0], "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"query": "proxy news"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": SEARCH_ANSWER[1]}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "text", "text": "", "citations": []}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {
            "type": "citations_delta", "citation": SEARCH_ANSWER[3]["citations"][0]}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {
            "type": "text_delta", "text": "Proxies are popular."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 4}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    result = run(*(sse(name, payload).encode() for name, payload in events))
    assert result.text == "Proxies are popular." and result.tool_calls == []
    assert result.error is None


def test_cache_ttl_breakdown_and_thinking_tokens_are_read_from_usage() -> None:
    result = normalize_message({"content": [], "usage": {
        "input_tokens": 5, "output_tokens": 300, "cache_creation_input_tokens": 70,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 50},
        "cache_read_input_tokens": 11, "output_tokens_details": {"thinking_tokens": 250}}})
    assert (result.cache_creation_input_tokens, result.cache_creation_1h_input_tokens,
            result.cache_read_input_tokens, result.thinking_tokens) == (70, 50, 11, 250)

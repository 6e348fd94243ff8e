"""Anthropic Messages answers (whole or streamed) → :class:`Normalized`.

Streams follow WIRE.md: named events, ``ping`` anywhere, unknown events skipped, no
``[DONE]``; ``message_delta`` usage is cumulative (overwrite, never add); tool input
arrives as ``input_json_delta`` pieces joined per block and parsed at
``content_block_stop``; an ``error`` event can end a stream after HTTP 200. Nothing here
raises on malformed input: a bad event is skipped, a broken answer becomes ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowproxy.wire._shared import (
    describe_body,
    describe_error,
    header,
    parse_arguments,
    parse_json,
    snippet,
)
from shadowproxy.wire.normalized import Normalized, ToolCall
from shadowproxy.wire.sse import SSEParser

REQUEST_ID_HEADER = "request-id"
# Deltas that mean the model has started generating (WIRE.md "Timing").
_GENERATION_DELTAS = frozenset({"text_delta", "input_json_delta", "thinking_delta"})
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
# Bytes of a non-event-stream answer kept so finish() can say what came instead.
_PRELUDE_LIMIT = 4096


def normalize_message(obj: dict[str, Any]) -> Normalized:
    """A Messages API ``message`` object; ``id`` is the message's, not the request's."""
    result = Normalized(model=_str(obj.get("model")), stop_reason=_str(obj.get("stop_reason")))
    texts: list[str] = []
    for block in _list(obj.get("content")):
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(_str(block.get("text")) or "")
        elif block.get("type") == "tool_use":
            result.tool_calls.append(
                ToolCall(name=_str(block.get("name")) or "", arguments=block.get("input", {}))
            )
    result.text = "".join(texts)
    _apply_usage(result, obj.get("usage"))
    return result


def normalize_body(status: int, body: bytes, headers: Mapping[str, str]) -> Normalized:
    """A whole (non-streamed) HTTP answer: a message, an error body, or something else."""
    obj = parse_json(body)
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict | str):
        result = Normalized(error=describe_error(obj["error"]))
    elif isinstance(obj, dict) and 200 <= status < 300:
        result = normalize_message(obj)
    else:
        result = Normalized(error=describe_body(status, body))
    body_request_id = _str(obj.get("request_id")) if isinstance(obj, dict) else None
    result.request_id = header(headers, REQUEST_ID_HEADER) or body_request_id
    return result


@dataclass(slots=True)
class _Block:
    kind: str
    name: str = ""
    text: list[str] = field(default_factory=list)
    json_pieces: list[str] = field(default_factory=list)
    start_input: Any = None
    arguments: Any = None
    done: bool = False

    def close(self) -> None:
        """Parse the tool input once, when the block is complete."""
        if self.done:
            return
        self.done = True
        if self.kind == "tool_use":
            raw = "".join(self.json_pieces)
            if raw.strip():
                self.arguments = parse_arguments(raw)
            elif isinstance(self.start_input, dict):
                self.arguments = self.start_input
            else:
                self.arguments = {}


class AnthropicStream:
    """Incremental normaliser for one streamed Messages answer.

    ``content_seen`` flips to True during the ``feed`` that parsed the first generation
    delta, so the caller can timestamp time-to-first-token right after that call.
    """

    def __init__(self) -> None:
        self.content_seen = False
        self._sse = SSEParser()
        self._result = Normalized()
        self._blocks: dict[int, _Block] = {}
        self._stopped = False
        self._events = 0
        self._prelude = bytearray()
        self._final: Normalized | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._events and len(self._prelude) < _PRELUDE_LIMIT:
            self._prelude += chunk[: _PRELUDE_LIMIT - len(self._prelude)]
        for sse in self._sse.feed(chunk):
            self._take(sse.event, sse.data)

    def on_event(self, event_type: str, data: dict[str, Any]) -> None:
        """One parsed event; public so SDK-decoded streams (e.g. Bedrock) can come in here."""
        self._events += 1
        if event_type == "message_start":
            message = _dict(data.get("message"))
            self._result.model = _str(message.get("model")) or self._result.model
            _apply_usage(self._result, message.get("usage"))
        elif event_type == "content_block_start":
            self._start_block(data)
        elif event_type == "content_block_delta":
            self._delta(data)
        elif event_type == "content_block_stop":
            block = self._blocks.get(_index(data.get("index")))
            if block is not None:
                block.close()
        elif event_type == "message_delta":
            stop_reason = _str(_dict(data.get("delta")).get("stop_reason"))
            self._result.stop_reason = stop_reason or self._result.stop_reason
            _apply_usage(self._result, data.get("usage"))
        elif event_type == "message_stop":
            self._stopped = True
        elif event_type == "error":
            self._result.error = describe_error(data.get("error", data))
        # ping and event types newer than this code are skipped, as the API asks.

    def finish(self, headers: Mapping[str, str] | None = None) -> Normalized:
        """The answer as far as it went; idempotent."""
        if self._final is not None:
            return self._final
        for sse in self._sse.close():
            self._take(sse.event, sse.data)
        result = self._result
        texts: list[str] = []
        for _, block in sorted(self._blocks.items()):
            block.close()
            if block.kind == "text":
                texts.append("".join(block.text))
            elif block.kind == "tool_use":
                result.tool_calls.append(ToolCall(name=block.name, arguments=block.arguments))
        result.text = "".join(texts)
        if result.error is None and not self._stopped:
            result.error = _early_end(self._events, bytes(self._prelude))
        result.request_id = header(headers, REQUEST_ID_HEADER)
        self._final = result
        return result

    def _take(self, event: str | None, data: str) -> None:
        obj = parse_json(data)
        if not isinstance(obj, dict):
            return
        event_type = event or _str(obj.get("type"))
        if event_type:
            self.on_event(event_type, obj)

    def _start_block(self, data: dict[str, Any]) -> None:
        content = _dict(data.get("content_block"))
        block = _Block(kind=_str(content.get("type")) or "")
        if block.kind == "text":
            block.text.append(_str(content.get("text")) or "")
        elif block.kind == "tool_use":
            block.name = _str(content.get("name")) or ""
            block.start_input = content.get("input")
        self._blocks[_index(data.get("index"))] = block

    def _delta(self, data: dict[str, Any]) -> None:
        delta = _dict(data.get("delta"))
        kind = delta.get("type")
        if kind in _GENERATION_DELTAS:
            self.content_seen = True
        block = self._blocks.get(_index(data.get("index")))
        if block is None or block.done:
            return
        if kind == "text_delta":
            block.text.append(_str(delta.get("text")) or "")
        elif kind == "input_json_delta":
            block.json_pieces.append(_str(delta.get("partial_json")) or "")


def _early_end(events: int, prelude: bytes) -> str:
    if events or not prelude.strip():
        return "stream ended before message_stop"
    # Not an event stream at all, e.g. a JSON error body or a gateway's HTML page.
    obj = parse_json(prelude)
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict | str):
        return describe_error(obj["error"])
    return f"not an event stream: {snippet(prelude)}"


def _apply_usage(result: Normalized, usage: Any) -> None:
    """Overwrite with whatever counts are present: the API reports running totals."""
    if not isinstance(usage, dict):
        return
    for name in _USAGE_FIELDS:
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(result, name, value)
    one_hour = _dict(usage.get("cache_creation")).get("ephemeral_1h_input_tokens")
    if isinstance(one_hour, int) and not isinstance(one_hour, bool):
        result.cache_creation_1h_input_tokens = one_hour
    thinking = _dict(usage.get("output_tokens_details")).get("thinking_tokens")
    if isinstance(thinking, int) and not isinstance(thinking, bool):
        result.thinking_tokens = thinking


def _index(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None

"""OpenAI Chat Completions answers (whole or streamed) → :class:`Normalized`.

Only choice 0 is recorded (the shadow answers once). Finish reasons are translated to
Anthropic's stop-reason words so both sides of a pair compare directly. Streams are
``data: {json}`` lines ending in ``data: [DONE]``; tool calls arrive as deltas keyed by
``index`` (id and name first, argument pieces after); with ``include_usage`` a last chunk
has ``choices: []`` and the usage; an error mid-stream is ``data: {"error": ...}``.
Nothing here raises on malformed input.
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

REQUEST_ID_HEADER = "x-request-id"
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_DONE = "[DONE]"
_PRELUDE_LIMIT = 4096
# Key of the legacy single ``function_call`` among the indexed tool calls.
_LEGACY_FUNCTION = -1


def stop_reason(finish_reason: Any) -> str | None:
    """Anthropic's word for an OpenAI finish reason; unknown values pass through."""
    if not isinstance(finish_reason, str):
        return None
    return STOP_REASONS.get(finish_reason, finish_reason)


def normalize_completion(obj: dict[str, Any]) -> Normalized:
    """A ``chat.completion`` object."""
    result = Normalized(model=_str(obj.get("model")))
    choice = _first_choice(obj.get("choices"))
    message = _dict(choice.get("message"))
    result.text = _content_text(message.get("content"))
    for call in _list(message.get("tool_calls")):
        function = _dict(_dict(call).get("function"))
        result.tool_calls.append(_tool_call(function.get("name"), function.get("arguments")))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        result.tool_calls.append(_tool_call(legacy.get("name"), legacy.get("arguments")))
    result.stop_reason = stop_reason(choice.get("finish_reason"))
    _apply_usage(result, obj.get("usage"))
    return result


def normalize_body(status: int, body: bytes, headers: Mapping[str, str]) -> Normalized:
    """A whole (non-streamed) HTTP answer: a completion, an error body, or something else."""
    obj = parse_json(body)
    error = _error_of(obj)
    if error is not None:
        result = Normalized(error=error)
    elif isinstance(obj, dict) and 200 <= status < 300:
        result = normalize_completion(obj)
    else:
        result = Normalized(error=describe_body(status, body))
    result.request_id = header(headers, REQUEST_ID_HEADER)
    return result


@dataclass(slots=True)
class _ToolCallDraft:
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAIStream:
    """Incremental normaliser for one streamed Chat Completions answer.

    ``content_seen`` flips to True during the ``feed`` that parsed the first chunk with
    generated text or a tool call; the opening role chunk (``content: ""``) does not count.
    """

    def __init__(self) -> None:
        self.content_seen = False
        self._sse = SSEParser()
        self._result = Normalized()
        self._text: list[str] = []
        self._tool_calls: dict[int, _ToolCallDraft] = {}
        self._done = False
        self._events = 0
        self._prelude = bytearray()
        self._final: Normalized | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._events and len(self._prelude) < _PRELUDE_LIMIT:
            self._prelude += chunk[: _PRELUDE_LIMIT - len(self._prelude)]
        for sse in self._sse.feed(chunk):
            self._take(sse.data)

    def on_chunk(self, obj: dict[str, Any]) -> None:
        """One ``chat.completion.chunk`` (or error) object, already parsed."""
        self._events += 1
        error = _error_of(obj)
        if error is not None:
            self._result.error = error
            return
        self._result.model = self._result.model or _str(obj.get("model"))
        _apply_usage(self._result, obj.get("usage"))
        for choice in _list(obj.get("choices")):
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice_delta(choice)

    def finish(self, headers: Mapping[str, str] | None = None) -> Normalized:
        """The answer as far as it went; idempotent."""
        if self._final is not None:
            return self._final
        for sse in self._sse.close():
            self._take(sse.data)
        result = self._result
        result.text = "".join(self._text)
        result.tool_calls = [
            ToolCall(name=draft.name, arguments=parse_arguments("".join(draft.arguments)))
            for _, draft in sorted(self._tool_calls.items())
        ]
        if result.error is None and not self._done and result.stop_reason is None:
            result.error = self._early_end()
        result.request_id = header(headers, REQUEST_ID_HEADER)
        self._final = result
        return result

    def _take(self, data: str) -> None:
        if data.strip() == _DONE:
            self._events += 1
            self._done = True
            return
        obj = parse_json(data)
        if isinstance(obj, dict):
            self.on_chunk(obj)

    def _choice_delta(self, choice: dict[str, Any]) -> None:
        delta = _dict(choice.get("delta"))
        text = _content_text(delta.get("content"))
        if text:
            self._text.append(text)
            self.content_seen = True
        calls = _list(delta.get("tool_calls"))
        for position, call in enumerate(calls):
            if isinstance(call, dict):
                index = call.get("index", position)
                self._tool_call_delta(index if isinstance(index, int) else position, call)
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            self._tool_call_delta(_LEGACY_FUNCTION, {"function": legacy})
        if calls or isinstance(legacy, dict):
            self.content_seen = True
        reason = stop_reason(choice.get("finish_reason"))
        self._result.stop_reason = reason or self._result.stop_reason

    def _tool_call_delta(self, index: int, call: dict[str, Any]) -> None:
        draft = self._tool_calls.setdefault(index, _ToolCallDraft())
        function = _dict(call.get("function"))
        name = _str(function.get("name"))
        # Some compatible servers repeat the name in every delta: keep the first.
        if name and not draft.name:
            draft.name = name
        arguments = _str(function.get("arguments"))
        if arguments:
            draft.arguments.append(arguments)

    def _early_end(self) -> str:
        prelude = bytes(self._prelude)
        if self._events or not prelude.strip():
            return "stream ended before [DONE]"
        # Not an event stream at all, e.g. a JSON error body or a gateway's HTML page.
        error = _error_of(parse_json(prelude))
        return error if error is not None else f"not an event stream: {snippet(prelude)}"


def _error_of(obj: Any) -> str | None:
    """The error an answer carries: OpenAI's ``{"error": …}`` or vLLM's ``object: error``."""
    if not isinstance(obj, dict):
        return None
    error = obj.get("error")
    if isinstance(error, dict | str) and error:
        return describe_error(error)
    if obj.get("object") == "error":
        return describe_error(obj)
    return None


def _tool_call(name: Any, arguments: Any) -> ToolCall:
    parsed = parse_arguments(arguments) if isinstance(arguments, str) else arguments
    return ToolCall(name=_str(name) or "", arguments={} if parsed is None else parsed)


def _content_text(content: Any) -> str:
    """Message content: a string, null, or a list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    parts = (_dict(part) for part in _list(content))
    return "".join(_str(part.get("text")) or "" for part in parts if part.get("type") == "text")


def _first_choice(choices: Any) -> dict[str, Any]:
    candidates = [c for c in _list(choices) if isinstance(c, dict)]
    return next((c for c in candidates if c.get("index") == 0), candidates[0] if candidates else {})


def _apply_usage(result: Normalized, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    counts = {
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "cache_read_input_tokens": _dict(usage.get("prompt_tokens_details")).get("cached_tokens"),
        "thinking_tokens": _dict(usage.get("completion_tokens_details")).get("reasoning_tokens"),
    }
    for name, value in counts.items():
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(result, name, value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None

"""OpenAI Responses API answers (whole or streamed) → :class:`Normalized`.

A whole answer is a ``response`` object whose ``output`` is a list of items: ``message``
items with ``output_text`` parts, ``function_call`` items, ``reasoning`` items (never
compared). A stream is typed events (``event: response.X`` + ``data: {type,
sequence_number, …}``) ending in one of ``response.completed`` / ``.incomplete`` /
``.failed``, which carries the whole response with its usage (usage appears nowhere
else). An ``error`` event can end the stream early; unknown event types are skipped.

Stop reasons in Anthropic's words: ``incomplete`` for ``max_output_tokens`` →
``max_tokens``, for ``content_filter`` → ``refusal``; a completed answer with a function
call → ``tool_use``, else ``end_turn``. Nothing here raises on malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

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
INCOMPLETE_REASONS = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_PRELUDE_LIMIT = 4096


def stop_reason(response: Mapping[str, Any]) -> str | None:
    """Anthropic's word for how a response ended; None while unknown or when it failed."""
    status = response.get("status")
    if status == "incomplete":
        reason = _dict(response.get("incomplete_details")).get("reason")
        if isinstance(reason, str):
            return INCOMPLETE_REASONS.get(reason, reason)
        return "max_tokens"
    if status == "completed":
        calls = any(_dict(item).get("type") == "function_call"
                    for item in _list(response.get("output")))
        return "tool_use" if calls else "end_turn"
    return None


def normalize_response(obj: Mapping[str, Any]) -> Normalized:
    """A ``response`` object (the answer body, or what a terminal event carries)."""
    result = Normalized(model=_str(obj.get("model")))
    texts: list[str] = []
    for entry in _list(obj.get("output")):
        item = _dict(entry)
        kind = item.get("type")
        if kind == "message":
            texts.extend(_output_text(item.get("content")))
        elif kind == "function_call":
            result.tool_calls.append(_tool_call(item.get("name"), item.get("arguments")))
    result.text = "".join(texts)
    result.stop_reason = stop_reason(obj)
    if obj.get("status") == "failed":
        result.error = _failure(obj)
    _apply_usage(result, obj.get("usage"))
    return result


def normalize_body(status: int, body: bytes, headers: Mapping[str, str]) -> Normalized:
    """A whole (non-streamed) HTTP answer: a response, an error body, or something else."""
    obj = parse_json(body)
    error = _error_of(obj)
    if error is not None:
        result = Normalized(error=error)
    elif isinstance(obj, dict) and 200 <= status < 300:
        result = normalize_response(obj)
    else:
        result = Normalized(error=describe_body(status, body))
    result.request_id = header(headers, REQUEST_ID_HEADER)
    return result


@dataclass(slots=True)
class _CallDraft:
    name: str = ""
    pieces: list[str] = field(default_factory=list)
    # The whole arguments string from ``.done`` or the finished item, when it came.
    arguments: str | None = None


class ResponsesStream:
    """Incremental normaliser for one streamed Responses answer.

    ``content_seen`` flips to True during the ``feed`` that parsed the first
    ``response.output_text.delta`` with text or ``response.function_call_arguments.delta``
    (TTFT); ``response.created`` and the item/part openings come before generation.
    Events whose ``sequence_number`` is not above the last one seen are repeats and are
    skipped. ``response`` is the whole response a terminal event carried, if any.
    """

    def __init__(self) -> None:
        self.content_seen = False
        self.response: dict[str, Any] | None = None
        self.response_id: str | None = None
        self._sse = SSEParser()
        self._model: str | None = None
        self._text: list[str] = []
        # Keyed by output_index; item ids map onto the same drafts.
        self._calls: dict[int, _CallDraft] = {}
        self._call_by_item: dict[str, int] = {}
        self._error: str | None = None
        self._events = 0
        self._last_sequence = -1
        self._prelude = bytearray()
        self._final: Normalized | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._events and len(self._prelude) < _PRELUDE_LIMIT:
            self._prelude += chunk[: _PRELUDE_LIMIT - len(self._prelude)]
        for sse in self._sse.feed(chunk):
            self._take(sse.event, sse.data)

    def finish(self, headers: Mapping[str, str] | None = None) -> Normalized:
        """The answer as far as it went; idempotent."""
        if self._final is not None:
            return self._final
        for sse in self._sse.close():
            self._take(sse.event, sse.data)
        if self.response is not None and _list(self.response.get("output")):
            result = normalize_response(self.response)  # the provider's own summary
        else:
            result = self._from_deltas()
            if self.response is not None:
                result.stop_reason = stop_reason(self.response)
                if self.response.get("status") == "failed":
                    result.error = _failure(self.response)
                _apply_usage(result, self.response.get("usage"))
        result.model = result.model or self._model
        if self._error is not None:
            result.error = self._error
        elif self.response is None and result.error is None:
            result.error = self._early_end()
        result.request_id = header(headers, REQUEST_ID_HEADER)
        self._final = result
        return result

    def on_event(self, obj: dict[str, Any], name: str | None = None) -> None:
        """One event's data, already parsed; ``name`` is its ``event:`` line."""
        sequence = obj.get("sequence_number")
        if _is_int(sequence):
            if sequence <= self._last_sequence:
                return
            self._last_sequence = sequence
        self._events += 1
        kind = obj.get("type")
        kind = kind if isinstance(kind, str) else name
        if kind == "response.output_text.delta":
            delta = _str(obj.get("delta"))
            if delta:
                self._text.append(delta)
                self.content_seen = True
        elif kind == "response.function_call_arguments.delta":
            draft = self._call(obj)
            delta = _str(obj.get("delta"))
            if draft is not None and delta:
                draft.pieces.append(delta)
            self.content_seen = True
        elif kind == "response.refusal.delta":
            # Generated, though not answer text (as Chat Completions' refusal field).
            self.content_seen = self.content_seen or bool(_str(obj.get("delta")))
        elif kind == "response.function_call_arguments.done":
            draft = self._call(obj)
            if draft is not None and isinstance(obj.get("arguments"), str):
                draft.arguments = obj["arguments"]
                draft.name = draft.name or _str(obj.get("name")) or ""
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self._item(obj)
        elif kind in ("response.created", "response.in_progress"):
            response = _dict(obj.get("response"))
            self._model = self._model or _str(response.get("model"))
            self.response_id = self.response_id or _str(response.get("id"))
        elif kind in TERMINAL_EVENTS:
            final = obj.get("response")
            if isinstance(final, dict):
                self.response = final
                self.response_id = _str(final.get("id")) or self.response_id
        elif kind == "error":
            self._error = _error_event(obj)

    def _take(self, name: str | None, data: str) -> None:
        obj = parse_json(data)
        if isinstance(obj, dict):
            self.on_event(obj, name)

    def _item(self, obj: dict[str, Any]) -> None:
        item = _dict(obj.get("item"))
        if item.get("type") != "function_call":
            return
        position = obj.get("output_index")
        index = position if _is_int(position) else len(self._calls)
        draft = self._calls.setdefault(index, _CallDraft())
        if isinstance(item.get("id"), str):
            self._call_by_item[item["id"]] = index
        draft.name = draft.name or _str(item.get("name")) or ""
        arguments = item.get("arguments")
        if obj.get("type") == "response.output_item.done" and isinstance(arguments, str):
            draft.arguments = arguments

    def _call(self, obj: dict[str, Any]) -> _CallDraft | None:
        position, item_id = obj.get("output_index"), obj.get("item_id")
        index: int | None = position if _is_int(position) else None
        if index is None and isinstance(item_id, str):
            index = self._call_by_item.get(item_id)
        if index is None:
            return None
        return self._calls.setdefault(index, _CallDraft())

    def _from_deltas(self) -> Normalized:
        result = Normalized(model=self._model, text="".join(self._text))
        for _, draft in sorted(self._calls.items()):
            raw = draft.arguments if draft.arguments is not None else "".join(draft.pieces)
            result.tool_calls.append(ToolCall(name=draft.name, arguments=parse_arguments(raw)))
        return result

    def _early_end(self) -> str:
        prelude = bytes(self._prelude)
        if self._events or not prelude.strip():
            return "stream ended before response.completed"
        error = _error_of(parse_json(prelude))
        return error if error is not None else f"not an event stream: {snippet(prelude)}"


def _error_event(obj: dict[str, Any]) -> str:
    """``error`` events are flat (``code``, ``message``); some gateways nest ``error``."""
    nested = obj.get("error")
    if isinstance(nested, dict) and nested:
        return describe_error(nested)
    return describe_error({"type": obj.get("code") or "error", "message": obj.get("message")})


def _failure(response: Mapping[str, Any]) -> str:
    error = response.get("error")
    if isinstance(error, dict) and error:
        return describe_error({"type": error.get("code"), "message": error.get("message")})
    return "response failed"


def _error_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    error = obj.get("error")
    if isinstance(error, dict | str) and error and obj.get("object") != "response":
        return describe_error(error)
    return None


def _output_text(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [
        text for part in _list(content)
        if _dict(part).get("type") == "output_text" and (text := _str(part.get("text")))
    ]


def _tool_call(name: Any, arguments: Any) -> ToolCall:
    parsed = parse_arguments(arguments) if isinstance(arguments, str) else arguments
    return ToolCall(name=_str(name) or "", arguments={} if parsed is None else parsed)


def _apply_usage(result: Normalized, usage: Any) -> None:
    """Output tokens already include reasoning tokens; cached tokens are cache reads."""
    if not isinstance(usage, dict):
        return
    counts = {
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_input_tokens": _dict(usage.get("input_tokens_details")).get("cached_tokens"),
    }
    for name, value in counts.items():
        if _is_int(value):
            setattr(result, name, value)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None

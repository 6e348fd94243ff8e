"""A Messages answer built from its stream events, the way the anthropic SDK's
``get_final_message()`` builds it. Pure: events in, a ``message`` object out.

The shadow model is always asked to stream when it serves a user (its time to first
content is what the fallback watches); an application that did not ask for a stream gets
the message these events add up to. ``message_delta`` usage is cumulative (overwrite,
never add); tool input arrives as ``input_json_delta`` pieces parsed at
``content_block_stop``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["CONTENT_EVENTS", "MessageAssembler", "is_content", "sse_event"]

# The first of these from the shadow is its first content: before it the user can still
# be answered by the primary; after it, nothing is taken back.
CONTENT_EVENTS = frozenset({"content_block_delta"})
_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def is_content(event_type: str) -> bool:
    return event_type in CONTENT_EVENTS


def sse_event(name: str, data: str) -> bytes:
    """One Anthropic server-sent event (``data`` is the JSON text, unchanged)."""
    return f"event: {name}\ndata: {data}\n\n".encode()


class MessageAssembler:
    """Feed every event with :meth:`on_event`; :attr:`message` is the answer so far."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stopped = False
        self._json: dict[int, list[str]] = {}

    def on_event(self, event_type: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if event_type == "message_start":
            start = data.get("message")
            if isinstance(start, dict):
                self.message = copy.deepcopy(start)
                self.message["content"] = []
        elif event_type == "error":
            error = data.get("error")
            self.error = error if isinstance(error, dict) else {"type": "error",
                                                                "message": str(data)}
        elif event_type == "message_stop":
            self.stopped = True
        elif self.message is not None:
            self._into_message(event_type, data, self.message)

    def _into_message(self, event_type: str, data: dict[str, Any],
                      message: dict[str, Any]) -> None:
        content: list[dict[str, Any]] = message["content"]
        index = data.get("index")
        if event_type == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and isinstance(index, int) and index == len(content):
                content.append(copy.deepcopy(block))
        elif event_type == "content_block_delta" and isinstance(index, int) \
                and 0 <= index < len(content):
            _apply_delta(content[index], data.get("delta"), self._json.setdefault(index, []))
        elif event_type == "content_block_stop" and isinstance(index, int) \
                and 0 <= index < len(content):
            block = content[index]
            pieces = self._json.pop(index, [])
            if block.get("type") in _INPUT_BLOCKS and "".join(pieces).strip():
                try:
                    block["input"] = json.loads("".join(pieces))
                except ValueError:
                    block["input"] = {}
        elif event_type == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                for key in ("stop_reason", "stop_sequence"):
                    if key in delta:
                        message[key] = delta[key]
            usage = data.get("usage")
            if isinstance(usage, dict):
                merged = message.get("usage")
                merged = dict(merged) if isinstance(merged, dict) else {}
                merged.update({k: v for k, v in usage.items() if v is not None})
                message["usage"] = merged


def _apply_delta(block: dict[str, Any], delta: Any, json_pieces: list[str]) -> None:
    if not isinstance(delta, dict):
        return
    kind = delta.get("type")
    if kind == "text_delta" and isinstance(delta.get("text"), str):
        block["text"] = str(block.get("text", "")) + delta["text"]
    elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
        json_pieces.append(delta["partial_json"])
    elif kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
        block["thinking"] = str(block.get("thinking", "")) + delta["thinking"]
    elif kind == "signature_delta" and isinstance(delta.get("signature"), str):
        block["signature"] = delta["signature"]
    elif kind == "citations_delta" and isinstance(delta.get("citation"), dict):
        citations = block.get("citations")
        block["citations"] = [*(citations if isinstance(citations, list) else []),
                              delta["citation"]]

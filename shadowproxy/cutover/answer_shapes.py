"""The shadow's answer in the words of the API the application called. Pure.

An Anthropic Messages caller reads the shadow's own events (a stream) or the message
they add up to (JSON). A Chat Completions caller reads them translated
(:mod:`.to_chat`). Each shape says which bytes an event becomes, what ends a stream, and
how a whole answer is written.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from shadowproxy.cutover.shadow_reply import ShadowEvent
from shadowproxy.cutover.to_chat import DONE, ChatChunks, chat_completion, chat_error, chat_sse

__all__ = ["STREAM_CONTENT_TYPE", "AnswerShape", "AnthropicShape", "ChatShape"]

STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class AnswerShape(Protocol):
    request_id_header: str

    def event(self, event: ShadowEvent) -> bytes:
        """The bytes the user reads for one shadow event (often none)."""

    def end(self) -> bytes:
        """What follows the last event of a complete stream."""

    def whole(self, message: dict[str, Any]) -> bytes:
        """A complete JSON answer."""


class AnthropicShape:
    request_id_header = "request-id"

    def event(self, event: ShadowEvent) -> bytes:
        return event.raw

    def end(self) -> bytes:
        return b""

    def whole(self, message: dict[str, Any]) -> bytes:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


class ChatShape:
    request_id_header = "x-request-id"

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self._created = created
        self._chunks = ChatChunks(created=created, include_usage=include_usage)

    def event(self, event: ShadowEvent) -> bytes:
        if event.name == "error":
            error = event.data.get("error") if isinstance(event.data, dict) else None
            return chat_sse(chat_error(error))
        return b"".join(chat_sse(c) for c in self._chunks.on_event(event.name, event.data))

    def end(self) -> bytes:
        return DONE

    def whole(self, message: dict[str, Any]) -> bytes:
        return json.dumps(chat_completion(message, created=self._created), ensure_ascii=False,
                          separators=(",", ":")).encode()

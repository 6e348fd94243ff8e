"""What a shadow call serving a user yields, whichever client made it. Pure.

The direct Messages API (raw HTTP in the proxy process) and the SDK's Bedrock and Vertex
clients both turn the shadow's answer into :class:`ShadowEvent` s — Messages stream
events, each with the server-sent-event bytes an Anthropic client would have read — and
raise :class:`ShadowFailed` when there is no answer to give (a connection that failed,
an error status). A stream that breaks after its start is an ``error`` event, the way
the API itself reports one after HTTP 200.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from shadowproxy.cutover.messages_answer import sse_event

__all__ = [
    "FailureKind",
    "ShadowEvent",
    "ShadowFailed",
    "broken_stream",
    "event_from_dict",
    "event_from_sse",
    "kind_of_status",
]


class FailureKind(enum.StrEnum):
    """Why the shadow gave no answer; also the ``cause`` label of the fallback counter."""

    CONNECTION = "connection"  # refused, reset, TLS, DNS
    RATE_LIMITED = "429"
    SERVER_ERROR = "5xx"
    REFUSED = "4xx"  # the shadow refused the translated request or our key
    TTFB = "ttfb"  # no content within CUTOVER_TTFB_S
    STREAM = "stream"  # the stream failed or ended before any content
    AFTER_FIRST_BYTE = "after_first_byte"  # failed once the user was reading it


def kind_of_status(status: int) -> FailureKind:
    if status == 429:
        return FailureKind.RATE_LIMITED
    return FailureKind.SERVER_ERROR if status >= 500 else FailureKind.REFUSED


class ShadowFailed(Exception):
    """The shadow gave no answer the user could read; ``cause`` is one line for the pair."""

    def __init__(self, cause: str, kind: FailureKind, *, status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.kind = kind
        self.status = status
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class ShadowEvent:
    name: str
    data: Any  # the parsed JSON; None when it did not parse
    raw: bytes  # the event as Anthropic's server-sent-event bytes
    # Made by us for a stream that broke (not sent by the provider): the user's stream is
    # cut, as the shadow's was, rather than given an error the provider never sent.
    synthetic: bool = False


def event_from_sse(name: str | None, data: str) -> ShadowEvent:
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = None
    if name is None and isinstance(parsed, dict) and isinstance(parsed.get("type"), str):
        name = parsed["type"]
    name = name or "message"
    return ShadowEvent(name, parsed, sse_event(name, data))


def event_from_dict(data: dict[str, Any]) -> ShadowEvent:
    """An event an SDK handed over as an object: framed as the API would have sent it."""
    name = str(data.get("type", "message"))
    return ShadowEvent(name, data, sse_event(name, json.dumps(data, separators=(",", ":"))))


def broken_stream(message: str, error_type: str = "api_error") -> ShadowEvent:
    """A stream that broke (connection lost, silence, a decoding failure) as the ``error``
    event the API sends when it fails after HTTP 200."""
    data = {"type": "error", "error": {"type": error_type, "message": message}}
    return ShadowEvent("error", data, sse_event("error", json.dumps(data)), synthetic=True)

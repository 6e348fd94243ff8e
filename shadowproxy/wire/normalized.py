"""One shape for an answer from either provider, so pairs can be compared.

Every field is optional because an answer can fail at any point; ``error`` says why.
Stop reasons are always in Anthropic's words (``end_turn``, ``max_tokens``,
``stop_sequence``, ``tool_use``, ``refusal``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCall:
    name: str
    # The parsed JSON value; the raw string when the model wrote something unparseable.
    arguments: Any

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class Normalized:
    model: str | None = None
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    # Usage detail that prices the answer but has no column of its own: the part of the
    # cache writes made with the 1-hour TTL, and the output tokens spent thinking
    # (already inside output_tokens on both providers, so cost includes them once).
    cache_creation_1h_input_tokens: int | None = None
    thinking_tokens: int | None = None
    request_id: str | None = None
    # "type: message" of a provider error (HTTP error body, or an error event mid-stream).
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

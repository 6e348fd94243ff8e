"""What one mirrored exchange leaves behind: a :class:`PairRecord`.

The mirror builds a record once both sides have settled; the writer stores it as one
row of ``pairs`` (and spools it as JSON while the database is away), so the record is
plain data that round-trips through :meth:`PairRecord.to_json` / :meth:`from_json`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any


class ShadowOutcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    DROPPED = "dropped"
    SKIPPED = "skipped"


class Api(enum.StrEnum):
    ANTHROPIC_MESSAGES = "anthropic.messages"
    OPENAI_CHAT = "openai.chat"
    OPENAI_RESPONSES = "openai.responses"


@dataclass(slots=True)
class Side:
    """One provider's answer to the exchange, normalised and timed."""

    model: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cost_usd: float | None = None
    text: str | None = None
    # [{"name": str, "arguments": parsed JSON or the raw string}]
    tool_calls: list[dict[str, Any]] | None = None
    stop_reason: str | None = None
    error: str | None = None
    request_id: str | None = None


@dataclass(slots=True)
class PairRecord:
    id: uuid.UUID
    received_at: datetime  # timezone-aware UTC
    api: str  # an Api value
    path: str
    tag: str | None
    stream: bool
    request: Any  # the request body as JSON, already redacted; None when it did not parse
    request_sha256: str  # hex SHA-256 of the body as received, before redaction
    primary: Side
    shadow: Side
    shadow_outcome: str  # a ShadowOutcome value
    shadow_reason: str | None = None  # why skipped / dropped / errored, for humans
    client_disconnected: bool = False
    # The primary asked a second time (noise floor); None when not replayed.
    replay: Side | None = None
    # Which conversation (agent session) the exchange belongs to, and its turn number.
    conversation_id: str | None = None
    turn: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = str(self.id)
        data["received_at"] = self.received_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairRecord:
        data = dict(data)
        data["id"] = uuid.UUID(data["id"])
        data["received_at"] = datetime.fromisoformat(data["received_at"])
        data["primary"] = Side(**data["primary"])
        data["shadow"] = Side(**data["shadow"])
        if data.get("replay") is not None:
            data["replay"] = Side(**data["replay"])
        return cls(**data)

    def to_row(self) -> dict[str, Any]:
        """Flat column → value mapping for the ``pairs`` table."""
        row: dict[str, Any] = {
            "id": self.id,
            "received_at": self.received_at,
            "api": self.api,
            "path": self.path,
            "tag": self.tag,
            "stream": self.stream,
            "request": self.request,
            "request_sha256": self.request_sha256,
            "shadow_outcome": self.shadow_outcome,
            "shadow_reason": self.shadow_reason,
            "client_disconnected": self.client_disconnected,
            "conversation_id": self.conversation_id,
            "turn": self.turn,
        }
        for prefix, side in (("primary", self.primary), ("shadow", self.shadow),
                             ("replay", self.replay)):
            for f in fields(Side):
                row[f"{prefix}_{f.name}"] = None if side is None else getattr(side, f.name)
        return row

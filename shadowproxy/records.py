"""What one mirrored exchange leaves behind: a :class:`PairRecord`.

The mirror builds a record once both sides have settled; the writer stores it as one
row of ``pairs`` (and spools it as JSON while the database is away), so the record is
plain data that round-trips through :meth:`PairRecord.to_json` / :meth:`from_json`.

These dataclasses are the one declaration of a pair's columns: each stored field names
its SQL type in its metadata (:func:`sql`), and the writer's column list and COPY row
(:mod:`shadowproxy.store.columns`) and the ORM table (:mod:`shadowproxy.store.models`)
are derived from them. A side's field becomes ``primary_<name>``, ``shadow_<name>`` and
``replay_<name>``. Only the Alembic revisions are written by hand (a test checks that
they build exactly the derived table, and that the analyst view shows every column).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

SqlType = Literal["uuid", "timestamptz", "text", "boolean", "integer", "double", "jsonb"]
# The sides a pair row holds, in column order.
SIDES = ("primary", "shadow", "replay")


def sql(type_: SqlType) -> dict[str, SqlType]:
    """Field metadata for a stored field: its SQL type travels with the declaration."""
    return {"sql": type_}


def sql_type(f: Any) -> SqlType | None:
    """The SQL type a dataclass field declared, or None for a field that is not a column."""
    value = f.metadata.get("sql")
    return value  # type: ignore[no-any-return]


class ShadowOutcome(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    DROPPED = "dropped"
    SKIPPED = "skipped"


class ServedBy(enum.StrEnum):
    """Which model's answer the application received (cutover in steps)."""

    PRIMARY = "primary"
    SHADOW = "shadow"
    # Chosen for the shadow, which failed before its first content byte: the primary
    # answered instead.
    FALLBACK = "fallback"


class Api(enum.StrEnum):
    ANTHROPIC_MESSAGES = "anthropic.messages"
    OPENAI_CHAT = "openai.chat"
    OPENAI_RESPONSES = "openai.responses"


@dataclass(slots=True)
class Side:
    """One provider's answer to the exchange, normalised and timed."""

    model: str | None = field(default=None, metadata=sql("text"))
    status: int | None = field(default=None, metadata=sql("integer"))
    latency_ms: float | None = field(default=None, metadata=sql("double"))
    ttft_ms: float | None = field(default=None, metadata=sql("double"))
    input_tokens: int | None = field(default=None, metadata=sql("integer"))
    output_tokens: int | None = field(default=None, metadata=sql("integer"))
    cache_creation_input_tokens: int | None = field(default=None, metadata=sql("integer"))
    cache_read_input_tokens: int | None = field(default=None, metadata=sql("integer"))
    cost_usd: float | None = field(default=None, metadata=sql("double"))
    text: str | None = field(default=None, metadata=sql("text"))
    # [{"name": str, "arguments": parsed JSON or the raw string}]
    tool_calls: list[dict[str, Any]] | None = field(default=None, metadata=sql("jsonb"))
    stop_reason: str | None = field(default=None, metadata=sql("text"))
    error: str | None = field(default=None, metadata=sql("text"))
    request_id: str | None = field(default=None, metadata=sql("text"))


@dataclass(slots=True)
class PairRecord:
    id: uuid.UUID = field(metadata=sql("uuid"))
    received_at: datetime = field(metadata=sql("timestamptz"))  # timezone-aware UTC
    api: str = field(metadata=sql("text"))  # an Api value
    path: str = field(metadata=sql("text"))
    tag: str | None = field(metadata=sql("text"))
    stream: bool = field(metadata=sql("boolean"))
    # The request body as JSON, already redacted; None when it did not parse.
    request: Any = field(metadata=sql("jsonb"))
    request_sha256: str = field(metadata=sql("text"))  # hex SHA-256 of the body as received
    primary: Side
    shadow: Side
    shadow_outcome: str = field(metadata=sql("text"))  # a ShadowOutcome value
    # Why skipped / dropped / errored, for humans.
    shadow_reason: str | None = field(default=None, metadata=sql("text"))
    client_disconnected: bool = field(default=False, metadata=sql("boolean"))
    # The primary asked a second time (noise floor); None when not replayed.
    replay: Side | None = None
    # Which conversation (agent session) the exchange belongs to, and its turn number.
    conversation_id: str | None = field(default=None, metadata=sql("text"))
    turn: int | None = field(default=None, metadata=sql("integer"))
    # A ServedBy value: which answer the application got (cutover in steps).
    served_by: str = field(default=ServedBy.PRIMARY.value, metadata=sql("text"))

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
        """Flat column → value mapping for the ``pairs`` table, in column order."""
        row: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(PairRecord) if sql_type(f)
        }
        for prefix in SIDES:
            side = getattr(self, prefix)
            for f in fields(Side):
                row[f"{prefix}_{f.name}"] = None if side is None else getattr(side, f.name)
        return row

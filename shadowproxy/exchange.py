"""What the proxy hands the mirror about one exchange: plain, picklable messages.

The proxy does no parsing on the user's path: it forwards bytes and notes monotonic
timestamps. The mirror turns these into a :class:`~shadowproxy.records.PairRecord`.
``time.monotonic`` is CLOCK_MONOTONIC on Linux, shared by all processes, so times taken
in the proxy and in the mirror process are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A mirrored answer is captured for normalisation up to this many bytes; a compressed
# answer is inflated in the mirror up to the same bound.
CAPTURE_LIMIT = 16 << 20


@dataclass(slots=True)
class ExchangeStart:
    exchange_id: str
    api: str  # an Api value
    path: str
    tag: str | None
    body: bytes
    # Headers the shadow may see (anthropic-beta, anthropic-version); never credentials.
    forward_headers: dict[str, str]
    received_at: float  # wall clock, time.time()
    sent_at: float  # monotonic, when the primary request was sent
    # Ask the primary a second time (noise floor, REPLAY_RATE). Only then does the
    # application's full header set travel to the mirror — in memory, never stored.
    replay_headers: dict[str, str] | None = None
    query: str = ""
    # The application's CONVERSATION_HEADER value, removed before forwarding.
    conversation: str | None = None


@dataclass(slots=True)
class ExchangeEnd:
    exchange_id: str
    status: int | None  # None when no upstream answer arrived
    headers: dict[str, str]  # response headers, lower-case keys, credentials removed
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic, bytes)
    ended_at: float = 0.0  # monotonic
    error: str | None = None  # the proxy's own failure: unreachable, timeout, …
    client_disconnected: bool = False
    truncated: bool = False  # capture stopped at its size limit

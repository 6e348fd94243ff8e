"""What the proxy hands the mirror about one exchange: plain, picklable messages.

The proxy does no parsing on the user's path: it forwards bytes and notes monotonic
timestamps. The mirror turns these into a :class:`~shadowproxy.records.PairRecord`.
``time.monotonic`` is CLOCK_MONOTONIC on Linux, shared by all processes, so times taken
in the proxy and in the mirror process are comparable.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

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
    # Set when a cutover plan chose this request for the shadow model: the mirror then
    # records the shadow's answer (or failure) from here instead of calling it again.
    served: ShadowServed | None = None


@dataclass(slots=True)
class ShadowServed:
    """A request chosen for the shadow model by a cutover plan: what the shadow did.

    ``served_by`` is ``shadow`` (its answer reached the user; the primary was then asked
    in the background) or ``fallback`` (it failed before its first content byte and the
    primary answered). ``answer`` holds the shadow's reply as captured: its status and
    its stream as Anthropic server-sent events, the same bytes whatever the platform.
    """

    served_by: str  # a ServedBy value
    sent_at: float  # monotonic, when the shadow request was sent
    answer: ExchangeEnd
    # The fallback's cause, or what happened after the first byte; None when all went well.
    reason: str | None = None
    timed_out: bool = False  # no content within CUTOVER_TTFB_S
    client_stream: bool = False  # whether the application asked for a stream
    # What the translation changed to stay within the shadow model's rules.
    notes: list[str] = field(default_factory=list)


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


# -- the wire between the proxy and its mirror process: ``4-byte length + pickle`` frames,
# start/end from the proxy, close at shutdown, heartbeats back from the mirror.
FRAME_HEADER = struct.Struct("!I")
START, END, CLOSE, BEAT = "start", "end", "close", "beat"
BEAT_INTERVAL_S = 0.5


def encode_frame(kind: str, payload: Any) -> bytes:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[str, Any] | None:
    try:
        header = await reader.readexactly(FRAME_HEADER.size)
        (length,) = FRAME_HEADER.unpack(header)
        data = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    kind, payload = pickle.loads(data)  # our own process on our own socket
    return str(kind), payload

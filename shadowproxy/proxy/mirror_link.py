"""How the proxy hands exchanges to the mirror without waiting for it.

Frames (:func:`shadowproxy.exchange.encode_frame`) go on a Unix socket to the mirror
process. Writing is a synchronous append to the transport's buffer; when that buffer is
over its bound the mirror is behind, and a new exchange is refused (the proxy counts it)
rather than letting memory grow. An exchange that was accepted always gets its end frame.

The mirror answers on the same socket with a heartbeat frame every
:data:`BEAT_INTERVAL_S`: how many start frames it has read and how many exchanges it
holds unsettled (not yet stored or spooled), and its writer's state. A mirror whose
heartbeats stop is stuck; when a mirror dies, the last heartbeat plus the starts sent
after it is the number of pairs lost with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from shadowproxy.exchange import (
    BEAT,
    CLOSE,
    END,
    START,
    ExchangeEnd,
    ExchangeStart,
    encode_frame,
    read_frame,
)


class SocketMirrorLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_buffer_bytes: int = 64 << 20) -> None:
        self._reader = reader
        self._writer = writer
        self._max_buffer = max_buffer_bytes
        self._closed = False
        self.sent = 0  # start frames written
        self.beat: dict[str, Any] = {}
        self.beat_at = time.monotonic()  # the connection counts as the first sign of life
        self.first_beat = asyncio.Event()

    def _buffered(self) -> int:
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def start(self, start: ExchangeStart) -> bool:
        if self._closed or self._writer.is_closing() or self._buffered() > self._max_buffer:
            return False
        self._writer.write(encode_frame(START, start))
        self.sent += 1
        return True

    def end(self, end: ExchangeEnd) -> None:
        if not self._closed and not self._writer.is_closing():
            self._writer.write(encode_frame(END, end))

    def unsettled(self) -> int:
        """Exchanges the mirror would lose if it died now: those it held at its last
        heartbeat plus the starts sent since it read its last one. An upper bound; it
        over-counts only what finished in the last heartbeat interval."""
        received = int(self.beat.get("received", 0))
        return int(self.beat.get("unsettled", 0)) + max(0, self.sent - received)

    def silent_for(self) -> float:
        return time.monotonic() - self.beat_at

    async def watch(self) -> None:
        """Read heartbeats until the mirror closes the socket (it exited or died)."""
        while (frame := await read_frame(self._reader)) is not None:
            kind, payload = frame
            if kind == BEAT and isinstance(payload, dict):
                self.beat = payload
                self.beat_at = time.monotonic()
                self.first_beat.set()

    async def close(self, grace_s: float) -> None:
        """Tell the mirror no more exchanges come, and how long it has to finish."""
        if self._closed:
            return
        self._closed = True
        if not self._writer.is_closing():
            self._writer.write(encode_frame(CLOSE, grace_s))
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    def abort(self) -> None:
        """The mirror is dead or being killed: drop the connection and its buffer."""
        self._closed = True
        transport = self._writer.transport
        if transport is not None:
            transport.abort()

"""How the proxy hands exchanges to the mirror without waiting for it.

Frames are ``4-byte length + pickle`` on a Unix socket to the mirror process. Writing is
a synchronous append to the transport's buffer; when that buffer is over its bound the
mirror is behind, and a new exchange is refused (the proxy counts it) rather than
letting memory grow. An exchange that was accepted always gets its end frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
from typing import Any

from shadowproxy.exchange import ExchangeEnd, ExchangeStart

FRAME_HEADER = struct.Struct("!I")
START, END, CLOSE = "start", "end", "close"


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


class SocketMirrorLink:
    def __init__(self, writer: asyncio.StreamWriter, max_buffer_bytes: int = 64 << 20) -> None:
        self._writer = writer
        self._max_buffer = max_buffer_bytes
        self._closed = False

    def _buffered(self) -> int:
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def start(self, start: ExchangeStart) -> bool:
        if self._closed or self._writer.is_closing() or self._buffered() > self._max_buffer:
            return False
        self._writer.write(encode_frame(START, start))
        return True

    def end(self, end: ExchangeEnd) -> None:
        if not self._closed and not self._writer.is_closing():
            self._writer.write(encode_frame(END, end))

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

"""Decompressors for the ``content-encoding`` values zlib does not cover: ``br`` and ``zstd``.

Providers and the gateways in front of them answer with brotli or zstandard when the
client offers them (browsers and httpx with the optional packages do); without these
the mirror stored such answers as unparseable. Each decompressor has zlib's incremental
``decompress(data, max_length) -> bytes`` shape (a non-empty ``unconsumed_tail`` says the
cap cut it), so :class:`~shadowproxy.mirror.assemble._Decoder`
feeds all four codings the same way, chunk by chunk as they were captured.

zstd comes from the standard library from Python 3.14 (``compression.zstd``) and from
its backport before that: the same module httpx and aiohttp decode zstd with.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import brotli

if sys.version_info >= (3, 14):
    from compression.zstd import ZstdDecompressor as _Zstd
else:
    from backports.zstd import ZstdDecompressor as _Zstd

__all__ = ["Decompressor", "decompressor_for"]


class Decompressor(Protocol):
    # Non-empty when output was held back by ``max_length`` (zlib's meaning: the caller's
    # cap was reached, so the answer is truncated).
    unconsumed_tail: bytes

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


_HELD_BACK = b"\0"  # what unconsumed_tail says when more output was there


class BrotliDecompressor:
    """``brotli.Decompressor`` under zlib's method name, with zlib's output cap."""

    def __init__(self) -> None:
        # Any: brotli-stubs lag brotli 1.2's output_buffer_limit and can_accept_more_data.
        self._inner: Any = brotli.Decompressor()
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if max_length < 0:
            return bytes(self._inner.process(data))
        out = self._inner.process(data, output_buffer_limit=max(max_length, 1))
        cut = len(out) > max_length or not self._inner.can_accept_more_data()
        self.unconsumed_tail = _HELD_BACK if cut else b""
        return bytes(out[:max_length])


class ZstdDecompressor:
    """A zstandard stream, with zlib's output cap; several frames in one body are read one
    after the other (RFC 8878 allows them, and a server may close a frame per flush)."""

    def __init__(self) -> None:
        self._inner = _Zstd()
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._inner.decompress(data, max_length)
        while self._inner.eof and self._inner.unused_data and (
                max_length < 0 or len(out) < max_length):
            rest = self._inner.unused_data
            self._inner = _Zstd()
            out += self._inner.decompress(rest, -1 if max_length < 0 else max_length - len(out))
        held = not self._inner.eof and not self._inner.needs_input
        self.unconsumed_tail = _HELD_BACK if held else b""
        if self._inner.eof:
            self._inner = _Zstd()  # the next chunk may open a new frame
        return bytes(out)


def decompressor_for(encoding: str) -> Decompressor | None:
    """The decompressor for ``br`` or ``zstd``; None for any other coding."""
    if encoding == "br":
        return BrotliDecompressor()
    if encoding == "zstd":
        return ZstdDecompressor()
    return None

"""Decompressors for the ``content-encoding`` values zlib does not cover: ``br`` and ``zstd``.

Providers and the gateways in front of them answer with brotli or zstandard when the
client offers them (browsers and httpx with the optional packages do); without these
the mirror stored such answers as unparseable. Each decompressor has zlib's incremental
``decompress(data) -> bytes`` shape, so :class:`~shadowproxy.mirror.assemble._Decoder`
feeds all four codings the same way, chunk by chunk as they were captured.

zstd comes from the standard library from Python 3.14 (``compression.zstd``) and from
its backport before that: the same module httpx and aiohttp decode zstd with.
"""

from __future__ import annotations

import sys
from typing import Protocol

import brotli

if sys.version_info >= (3, 14):
    from compression.zstd import ZstdDecompressor as _Zstd
else:
    from backports.zstd import ZstdDecompressor as _Zstd

__all__ = ["Decompressor", "decompressor_for"]


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class BrotliDecompressor:
    """``brotli.Decompressor`` under zlib's method name."""

    def __init__(self) -> None:
        self._inner = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._inner.process(data))


class ZstdDecompressor:
    """A zstandard stream; several frames in one body are read one after the other
    (RFC 8878 allows them, and a server may close a frame per flush)."""

    def __init__(self) -> None:
        self._inner = _Zstd()

    def decompress(self, data: bytes) -> bytes:
        out = self._inner.decompress(data)
        while self._inner.eof and self._inner.unused_data:
            rest = self._inner.unused_data
            self._inner = _Zstd()
            out += self._inner.decompress(rest)
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

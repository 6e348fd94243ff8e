"""Primary answers compressed with brotli or zstandard are decoded before they are compared.

A fake primary answers the Messages wire format (JSON and SSE) in the coding the test
asks for, through the real proxy, to the official anthropic SDK; the mirror's record
must hold the answer's text, tokens and stop reason, not "unparseable".
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import anthropic
import brotli
import pytest
from aiohttp import web
from backports.zstd import ZstdCompressor
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.assemble import primary_side
from shadowproxy.mirror.content_coding import decompressor_for
from shadowproxy.records import Api
from tests.fakes.mirror_rig import mirror_rig
from tests.fakes.providers import SimulatedProvider

ANSWER = "Brotli and zstd both arrive intact."
MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 7},
}


def sse_events() -> list[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    start = {**MESSAGE, "content": [], "stop_reason": None,
             "usage": {"input_tokens": 12, "output_tokens": 1}}
    words = ANSWER.split(" ")
    return [
        event("message_start", {"type": "message_start", "message": start}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
        *[event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta",
                                                  "text": w if not i else " " + w}})
          for i, w in enumerate(words)],
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": 7}}),
        event("message_stop", {"type": "message_stop"}),
    ]


class StreamCompressor:
    """One compressor per answer, flushed after each event as a streaming server does."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        if coding == "br":
            self._br = brotli.Compressor()
        else:
            self._zstd = ZstdCompressor()

    def event(self, data: bytes) -> bytes:
        if self.coding == "br":
            return bytes(self._br.process(data) + self._br.flush())
        return bytes(self._zstd.compress(data) + self._zstd.flush(ZstdCompressor.FLUSH_BLOCK))

    def end(self) -> bytes:
        if self.coding == "br":
            return bytes(self._br.finish())
        return bytes(self._zstd.flush())


def compress(coding: str, data: bytes) -> bytes:
    if coding == "br":
        return bytes(brotli.compress(data))
    return bytes(ZstdCompressor().compress(data, ZstdCompressor.FLUSH_FRAME))


def fake_primary(coding: str) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        headers = {"content-encoding": coding, "request-id": "req_primary"}
        if not body.get("stream"):
            return web.Response(body=compress(coding, json.dumps(MESSAGE).encode()),
                                content_type="application/json", headers=headers)
        response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
        await response.prepare(request)
        compressor = StreamCompressor(coding)
        for event in sse_events():
            await response.write(compressor.event(event))
        await response.write(compressor.end())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


@pytest.mark.parametrize("coding", ["br", "zstd"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_compressed_primary_answers_are_recorded_decoded(
    coding: str, stream: bool, aiohttp_server: Any, simulator: SimulatedProvider
) -> None:
    primary = await aiohttp_server(fake_primary(coding))
    async with mirror_rig(aiohttp_server, primary_url=f"http://{primary.host}:{primary.port}",
                          shadow_url=simulator.url) as rig:
        client = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app",
                                          max_retries=0, timeout=30)
        params: dict[str, Any] = {
            "model": "claude-sonnet-4-6", "max_tokens": 200,
            "messages": [{"role": "user", "content": "Say it compressed"}],
            "extra_headers": {"accept-encoding": coding},
        }
        if stream:
            async with client.messages.stream(**params) as events:
                seen = await events.get_final_text()
        else:
            message = await client.messages.create(**params)
            seen = message.content[0].text  # type: ignore[union-attr]
        assert seen == ANSWER  # the SDK decoded it too: the bytes were really compressed
        (record,) = await rig.wait_records(1)
        await client.close()
    assert record.primary.error is None
    assert record.primary.text == ANSWER
    assert record.primary.stop_reason == "end_turn"
    assert (record.primary.input_tokens, record.primary.output_tokens) == (12, 7)
    assert record.primary.cost_usd is not None
    if stream:
        assert record.primary.ttft_ms is not None


def _exchange(coding: str, chunks: list[bytes], *, sse: bool) -> tuple[ExchangeStart,
                                                                        ExchangeEnd]:
    now = time.monotonic()
    start = ExchangeStart("00000000-0000-0000-0000-000000000001", Api.ANTHROPIC_MESSAGES,
                          "/v1/messages", None, b"{}", {}, time.time(), now)
    content_type = "text/event-stream" if sse else "application/json"
    end = ExchangeEnd(start.exchange_id, 200,
                      {"content-encoding": coding, "content-type": content_type},
                      [(now + i * 0.001, c) for i, c in enumerate(chunks)], now + 1)
    return start, end


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize("coding", ["br", "zstd"])
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_of_a_compressed_stream_decodes_to_the_same_answer(
    coding: str, cuts: list[int]
) -> None:
    compressor = StreamCompressor(coding)
    data = b"".join(compressor.event(e) for e in sse_events()) + compressor.end()
    side = primary_side(*_exchange(coding, _split(data, cuts), sse=True))
    assert side.text == ANSWER and side.error is None and side.stop_reason == "end_turn"


def test_zstd_bodies_of_several_frames_decode_whole() -> None:
    frames = [compress("zstd", f"event: ping\ndata: {{\"n\": {n}}}\n\n".encode())
              for n in range(3)]
    decoder = decompressor_for("zstd")
    assert decoder is not None
    out = b"".join(decoder.decompress(piece) for piece in [frames[0] + frames[1][:4],
                                                           frames[1][4:] + frames[2]])
    assert out.count(b"event: ping") == 3


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_corrupt_compressed_body_is_an_error_not_a_crash(coding: str) -> None:
    side = primary_side(*_exchange(coding, [b"\x00not compressed at all" * 3], sse=False))
    assert side.text == "" and side.error is not None


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip"])
def test_a_compression_bomb_inflates_no_further_than_the_limit(coding: str) -> None:
    """64 MB of zeros packs into a few KB in any coding; the mirror stops at its limit."""
    import gzip

    from shadowproxy.mirror.assemble import _Decoder

    bomb = bytes(64 << 20)
    packed = {"br": lambda: brotli.compress(bomb),
              "zstd": lambda: ZstdCompressor().compress(bomb, ZstdCompressor.FLUSH_FRAME),
              "gzip": lambda: gzip.compress(bomb)}[coding]()
    assert len(packed) < 200_000
    decoder = _Decoder(coding, limit=1 << 20)
    out = b"".join(decoder.feed(packed[i:i + 4096]) for i in range(0, len(packed), 4096))
    assert len(out) == 1 << 20
    assert decoder.truncated and not decoder.failed

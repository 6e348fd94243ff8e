"""Turn what the proxy captured and what the shadow answered into a :class:`PairRecord`.

Pure functions: bytes and timestamps in, records out. The primary's answer is decoded
(``content-encoding``) and fed chunk by chunk to the same incremental normaliser a stream
needs, so time to first token is the capture time of the chunk in which content first
appeared.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from shadowproxy.exchange import CAPTURE_LIMIT, ExchangeEnd, ExchangeStart, ShadowServed
from shadowproxy.mirror.content_coding import decompressor_for
from shadowproxy.pricing import PriceTable
from shadowproxy.records import Api, PairRecord, ServedBy, Side
from shadowproxy.redact import Redactor
from shadowproxy.storable import cut_depth
from shadowproxy.wire import StreamNormalizer
from shadowproxy.wire import anthropic as anthropic_wire
from shadowproxy.wire import openai as openai_wire
from shadowproxy.wire import responses as responses_wire
from shadowproxy.wire.normalized import Normalized

# Inline base64 payloads (images, documents) longer than this are stored as a digest.
_INLINE_DATA_LIMIT = 1024


def new_stream_normalizer(api: str) -> StreamNormalizer:
    if api == Api.ANTHROPIC_MESSAGES:
        return anthropic_wire.AnthropicStream()
    if api == Api.OPENAI_RESPONSES:
        return responses_wire.ResponsesStream()
    return openai_wire.OpenAIStream()


class _Decoder:
    """Incremental ``content-encoding`` decoder; identity when the body is not compressed.

    Inflates at most ``limit`` bytes in all (the capture limit): a 200 KB gzip bomb
    becomes a truncated answer, never gigabytes in the mirror's memory.
    """

    def __init__(self, encoding: str | None, limit: int = CAPTURE_LIMIT) -> None:
        encoding = (encoding or "").strip().lower()
        self._z: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        else:
            self._z = decompressor_for(encoding)  # br, zstd
        self.failed = False
        self.truncated = False
        self._left = limit

    def feed(self, data: bytes) -> bytes:
        if self._z is None or self.failed:
            return data
        if self._left <= 0:
            self.truncated = self.truncated or bool(data)
            return b""
        try:
            out = bytes(self._z.decompress(data, self._left))
        except Exception:  # a corrupt body is recorded as unparseable, never raised
            self.failed = True
            return b""
        self._left -= len(out)
        if self._z.unconsumed_tail:
            self.truncated = True
            self._left = 0
        return out


def _body_normalizer(api: str) -> Callable[[int, bytes, Mapping[str, str]], Normalized]:
    if api == Api.ANTHROPIC_MESSAGES:
        return anthropic_wire.normalize_body
    if api == Api.OPENAI_RESPONSES:
        return responses_wire.normalize_body
    return openai_wire.normalize_body


def side_from_normalized(
    norm: Normalized, *, status: int | None, prices: PriceTable | None = None
) -> Side:
    """The stored side of an answer; priced here when ``prices`` is given, because only
    the normalised answer knows how its cache writes split between the TTLs."""
    side = Side(
        model=norm.model,
        status=status,
        input_tokens=norm.input_tokens,
        output_tokens=norm.output_tokens,
        cache_creation_input_tokens=norm.cache_creation_input_tokens,
        cache_read_input_tokens=norm.cache_read_input_tokens,
        text=norm.text,
        tool_calls=[tc.as_json() for tc in norm.tool_calls],
        stop_reason=norm.stop_reason,
        error=norm.error,
        request_id=norm.request_id,
    )
    if prices is not None:
        side.cost_usd = prices.cost(
            norm.model, norm.input_tokens, norm.output_tokens,
            norm.cache_creation_input_tokens, norm.cache_read_input_tokens,
            norm.cache_creation_1h_input_tokens,
        )
    return side


def primary_side(
    start: ExchangeStart, end: ExchangeEnd, prices: PriceTable | None = None
) -> Side:
    """The primary's answer as the user received it, normalised and timed."""
    return answer_side(start.api, start.sent_at, end, prices)


def served_side(served: ShadowServed, prices: PriceTable | None = None) -> Side:
    """The shadow's answer when a cutover plan had it serve the user (or try to): its
    stream as captured, timed from its own request; time to first token only when the
    application streamed, as for every pair."""
    side = answer_side(Api.ANTHROPIC_MESSAGES, served.sent_at, served.answer, prices)
    if not served.client_stream:
        side.ttft_ms = None
    return side


def answer_side(
    api: str, sent_at: float, end: ExchangeEnd, prices: PriceTable | None = None
) -> Side:
    """An answer in ``api``'s wire format as captured, normalised and timed from
    ``sent_at``."""
    latency = (end.ended_at - sent_at) * 1000 if end.ended_at else None
    if end.status is None:
        return Side(status=None, latency_ms=latency, error=end.error or "no answer")
    decoder = _Decoder(end.headers.get("content-encoding"))
    ttft: float | None = None
    if "text/event-stream" in end.headers.get("content-type", ""):
        stream = new_stream_normalizer(api)
        for at, chunk in end.chunks:
            stream.feed(decoder.feed(chunk))
            if ttft is None and stream.content_seen:
                ttft = (at - sent_at) * 1000
        norm = stream.finish(end.headers)
    else:
        body = b"".join(decoder.feed(chunk) for _, chunk in end.chunks)
        norm = _body_normalizer(api)(end.status, body, end.headers)
    side = side_from_normalized(norm, status=end.status, prices=prices)
    side.latency_ms = latency
    side.ttft_ms = ttft
    if end.client_disconnected:
        side.error = "client disconnected before the answer ended"
    elif end.error:
        side.error = end.error
    elif end.truncated or decoder.truncated:
        # The cut explains whatever the parser then said about the rest.
        side.error = "answer larger than the capture limit; truncated" + (
            f" ({side.error[:200]})" if side.error else "")
    return side


def slim_request(value: Any) -> Any:
    """Replace large inline base64 payloads by their size and digest: the evidence stays,
    the table does not fill with images."""
    if isinstance(value, dict):
        if value.get("type") == "base64" and isinstance(value.get("data"), str) and len(
            value["data"]
        ) > _INLINE_DATA_LIMIT:
            data = value["data"]
            digest = hashlib.sha256(data.encode()).hexdigest()[:16]
            return {**value, "data": f"[base64 {len(data)} chars sha256:{digest}]"}
        return {k: slim_request(v) for k, v in value.items()}
    if isinstance(value, list):
        return [slim_request(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > _INLINE_DATA_LIMIT:
        head = value.split(",", 1)[0]
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return f"{head},[{len(value)} chars sha256:{digest}]"
    return value


def _redact_side(side: Side, redactor: Redactor) -> Side:
    if side.tool_calls:
        side.tool_calls = cut_depth(side.tool_calls)
    if not redactor:
        return side
    if side.text:
        side.text = redactor.text(side.text)
    if side.tool_calls:
        side.tool_calls = redactor.json(side.tool_calls)
    if side.error:
        side.error = redactor.text(side.error)
    return side


def _price(side: Side, prices: PriceTable) -> Side:
    if side.cost_usd is not None:  # priced from the full usage already
        return side
    side.cost_usd = prices.cost(
        side.model, side.input_tokens, side.output_tokens,
        side.cache_creation_input_tokens, side.cache_read_input_tokens,
    )
    return side


def build_record(
    *,
    start: ExchangeStart,
    request: Any,
    stream: bool,
    primary: Side,
    shadow: Side,
    outcome: str,
    reason: str | None,
    client_disconnected: bool,
    redactor: Redactor,
    prices: PriceTable,
    replay: Side | None = None,
    conversation_id: str | None = None,
    turn: int | None = None,
    served_by: str = ServedBy.PRIMARY.value,
) -> PairRecord:
    # ``request`` is within MAX_JSON_DEPTH already (the engine checks it on arrival and
    # cuts a deeper one), so slim_request's recursion is bounded.
    # The walk costs one call per JSON value; a body that names no base64 payload and
    # no data: URL has nothing for it to slim.
    inline_data = b"base64" in start.body or b"data:" in start.body
    stored_request = slim_request(request) if request is not None and inline_data else request
    if redactor and stored_request is not None:
        stored_request = redactor.json(stored_request)
    if primary.model is None and isinstance(request, dict) and isinstance(
        request.get("model"), str
    ):
        primary.model = request["model"]
    sides = [primary, shadow] + ([replay] if replay is not None else [])
    for side in sides:
        _price(_redact_side(side, redactor), prices)
    return PairRecord(
        id=uuid.UUID(start.exchange_id),
        received_at=datetime.fromtimestamp(start.received_at, UTC),
        api=start.api,
        path=start.path,
        tag=start.tag,
        stream=stream,
        request=stored_request,
        request_sha256=hashlib.sha256(start.body).hexdigest(),
        primary=primary,
        shadow=shadow,
        shadow_outcome=outcome,
        shadow_reason=redactor.text(reason) if (reason and redactor) else reason,
        client_disconnected=client_disconnected,
        replay=replay,
        conversation_id=conversation_id,
        turn=turn,
        served_by=served_by,
    )

"""From captured bytes and timestamps to one PairRecord, with no sockets."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.assemble import build_record, primary_side, slim_request
from shadowproxy.mirror.redact import Redactor
from shadowproxy.pricing import PriceTable
from shadowproxy.records import Api, Side

SENT = 1000.0


def _start(api: str = Api.OPENAI_CHAT, body: bytes = b"{}") -> ExchangeStart:
    return ExchangeStart(exchange_id=str(uuid.uuid4()), api=api, path="/v1/chat/completions",
                         tag="t", body=body, forward_headers={}, received_at=1.7e9,
                         sent_at=SENT)


def _chat_answer(text: str) -> bytes:
    return json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }).encode()


def test_a_gzip_answer_split_anywhere_is_decoded_and_timed() -> None:
    packed = gzip.compress(_chat_answer("Paris."))
    end = ExchangeEnd(exchange_id="x", status=200,
                      headers={"content-type": "application/json", "content-encoding": "gzip"},
                      chunks=[(SENT + 0.1, packed[:7]), (SENT + 0.2, packed[7:])],
                      ended_at=SENT + 0.25)
    side = primary_side(_start(), end)
    assert side.text == "Paris." and side.stop_reason == "end_turn"
    assert side.input_tokens == 10 and side.output_tokens == 5
    assert side.latency_ms is not None and abs(side.latency_ms - 250) < 1e-6
    assert side.ttft_ms is None  # not streamed


def test_ttft_is_the_capture_time_of_the_chunk_with_the_first_content() -> None:
    role = b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o",' \
           b'"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    word = b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o",' \
           b'"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'
    end = ExchangeEnd(exchange_id="x", status=200, headers={"content-type": "text/event-stream"},
                      chunks=[(SENT + 0.05, role), (SENT + 0.3, word),
                              (SENT + 0.4, b"data: [DONE]\n\n")],
                      ended_at=SENT + 0.4)
    side = primary_side(_start(), end)
    assert side.text == "Hi"
    assert side.ttft_ms is not None and abs(side.ttft_ms - 300) < 1e-6


def test_an_unanswered_or_abandoned_primary_says_why() -> None:
    lost = primary_side(_start(), ExchangeEnd(exchange_id="x", status=None, headers={},
                                               error="primary unreachable"))
    assert lost.status is None and lost.error == "primary unreachable"
    hung_up = primary_side(_start(), ExchangeEnd(
        exchange_id="x", status=200, headers={"content-type": "application/json"},
        chunks=[(SENT + 0.1, _chat_answer("Par"))], ended_at=SENT + 0.1,
        client_disconnected=True))
    assert hung_up.error == "client disconnected before the answer ended"


def test_large_inline_images_are_stored_as_size_and_digest() -> None:
    data = "A" * 5000
    slim = slim_request({"messages": [{"content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}},
    ]}]})
    image, url = slim["messages"][0]["content"]
    assert data not in json.dumps(slim)
    assert image["source"]["data"].startswith("[base64 5000 chars sha256:")
    assert url["image_url"]["url"].startswith("data:image/png;base64,[5022 chars sha256:")


def test_the_record_is_redacted_priced_and_keeps_the_raw_bodys_digest() -> None:
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"mail me: a@b.example"}]}'
    start = _start(body=body)
    record = build_record(
        start=start, request=json.loads(body), stream=False,
        primary=Side(status=200, text="write to a@b.example", input_tokens=1000,
                     output_tokens=1000),
        shadow=Side(model="claude-haiku-4-5-20251001", status=200, text="ok",
                    input_tokens=1000, output_tokens=1000),
        outcome="ok", reason=None, client_disconnected=False,
        redactor=Redactor.from_names(["email"]), prices=PriceTable.load(),
    )
    assert record.request_sha256 == hashlib.sha256(body).hexdigest()
    assert "a@b.example" not in json.dumps(record.to_json())
    assert record.primary.model == "gpt-4o"  # taken from the request when the answer lacks it
    assert record.primary.cost_usd is not None and record.primary.cost_usd > 0
    # Haiku 4.5 list price: $1 / $5 per million tokens in / out.
    assert record.shadow.cost_usd is not None and abs(record.shadow.cost_usd - 0.006) < 1e-9
    assert str(record.id) == start.exchange_id

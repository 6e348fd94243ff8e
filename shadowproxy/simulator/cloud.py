"""Claude on Vertex AI and Amazon Bedrock.

Same answers as /v1/messages; the model moves into the URL, the version into the body
(``anthropic_version``), and auth is the platform's. Bedrock frames its stream as AWS
event-stream messages, not server-sent events.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import (
    ANTHROPIC_VERSIONS,
    SAMPLING_FREE_VERSION,
    Answer,
    IdSource,
    _dumps,
)
from shadowproxy.simulator.anthropic import (
    StreamEvent,
    _anthropic_error,
    anthropic_events,
    anthropic_message,
    anthropic_problem,
    anthropic_stream,
    messages_turn,
)
from shadowproxy.simulator.plumbing import _has_bearer, _json_response, _receive, _stream

VERTEX_VERSION = "vertex-2023-10-16"
BEDROCK_VERSION = "bedrock-2023-05-31"
_VERTEX_VERSIONS = (VERTEX_VERSION, *ANTHROPIC_VERSIONS)
_BEDROCK_VERSIONS = (BEDROCK_VERSION, *ANTHROPIC_VERSIONS)


def cloud_model_name(model_id: str) -> str:
    """The Claude model a Bedrock or Vertex model id names.

    ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` (Bedrock) and
    ``claude-haiku-4-5@20251001`` (Vertex) are both ``claude-haiku-4-5-20251001``, so the
    prompt tags and the answer's ``model`` work as on the first-party API.
    """
    name = model_id.rpartition("anthropic.")[2]
    name = re.sub(r"-v\d+(?::\d+)?$", "", name)
    return name.replace("@", "-")


def cloud_problem(body: Any, model: str, versions: Sequence[str]) -> str | None:
    """Why Bedrock or Vertex would reject this Messages body with a 400, or None."""
    if not isinstance(body, dict):
        return "There was an error parsing the body: expected a JSON object"
    if "model" in body:
        return "model: Extra inputs are not permitted"
    version = body.get("anthropic_version")
    if version is None:
        return "anthropic_version: Field required"
    if version not in versions:
        return f"anthropic_version: invalid version {version!r}"
    rules = SAMPLING_FREE_VERSION if version == SAMPLING_FREE_VERSION else ANTHROPIC_VERSIONS[0]
    return anthropic_problem({**body, "model": model}, rules)


def _google_error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": code}}
    return _json_response(request, body, status=status, headers={})


async def handle_vertex(request: web.Request) -> web.StreamResponse:
    body, ids = await _receive(request)
    model_id, _, method = request.match_info["target"].rpartition(":")
    if not model_id or method not in ("rawPredict", "streamRawPredict"):
        return _google_error(
            request, 404, "NOT_FOUND", f"Method not found: {request.match_info['target']}"
        )
    if not _has_bearer(request.headers):
        return _google_error(
            request,
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
        )
    model = cloud_model_name(model_id)
    if problem := cloud_problem(body, model, _VERTEX_VERSIONS):
        return _anthropic_error(request, ids, 400, problem)
    turn = await messages_turn(request, body, model)
    if isinstance(turn, int):
        return _anthropic_error(request, ids, turn)
    message_id = ids.new("msg_vrtx_01")
    if method == "streamRawPredict":
        events = anthropic_events(
            turn.answer,
            turn.model,
            message_id,
            chunks=turn.controls.chunks,
            midstream_error=turn.controls.midstream_error,
            ids=ids,
        )
        return await _stream(request, events, turn.controls.chunk_interval_s, {})
    message = anthropic_message(turn.answer, turn.model, message_id, ids=ids)
    return _json_response(request, message, headers={})


_BEDROCK_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
    529: "ServiceUnavailableException",
}
_EVENT_STREAM_STRING = 7  # header value type: a UTF-8 string with a 2-byte length


def _event_stream_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        name_bytes, value_bytes = name.encode(), value.encode()
        out += struct.pack("!B", len(name_bytes)) + name_bytes
        out += struct.pack("!BH", _EVENT_STREAM_STRING, len(value_bytes)) + value_bytes
    return bytes(out)


def event_stream_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: a prelude (total and header lengths, their CRC32),
    the headers, the payload, and a CRC32 of all that precedes it."""
    header_bytes = _event_stream_headers(headers)
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack("!I", zlib.crc32(message))


def bedrock_frame(event: StreamEvent, answer: Answer) -> bytes:
    """A Messages stream event as Bedrock sends it: a ``chunk`` whose ``bytes`` carry the
    event's JSON, or an exception message for a stream that fails after HTTP 200."""
    if event.name == "error":
        message = event.payload["error"]["message"]
        return event_stream_message(
            {
                ":exception-type": "serviceUnavailableException",
                ":content-type": "application/json",
                ":message-type": "exception",
            },
            _dumps({"message": message}).encode(),
        )
    payload = event.payload
    if event.name == "message_stop":
        payload = {
            **payload,
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": answer.input_tokens,
                "outputTokenCount": answer.output_tokens,
                "invocationLatency": 0,
                "firstByteLatency": 0,
            },
        }
    chunk = {"bytes": base64.b64encode(_dumps(payload).encode()).decode()}
    return event_stream_message(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        _dumps(chunk).encode(),
    )


def _bedrock_error(
    request: web.Request, ids: IdSource, status: int, message: str | None = None
) -> web.Response:
    default = "InternalServerException" if status >= 500 else "ValidationException"
    error_type = _BEDROCK_ERRORS.get(status, default)
    headers = {
        "x-amzn-requestid": ids.new(""),
        "x-amzn-errortype": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
    }
    body = {"message": message or f"Simulated {error_type}"}
    return _json_response(request, body, status=status, headers=headers)


async def handle_bedrock(request: web.Request) -> web.StreamResponse:
    body, ids = await _receive(request)
    if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
        return _bedrock_error(request, ids, 403, "Missing Authentication Token")
    model = cloud_model_name(request.match_info["model"])
    if problem := cloud_problem(body, model, _BEDROCK_VERSIONS):
        return _bedrock_error(request, ids, 400, problem)
    turn = await messages_turn(request, body, model)
    if isinstance(turn, int):
        return _bedrock_error(request, ids, turn)
    message_id = ids.new("msg_bdrk_01")
    answer = turn.answer
    reply_headers = {
        "x-amzn-requestid": ids.new(""),
        "x-amzn-bedrock-input-token-count": str(answer.input_tokens),
        "x-amzn-bedrock-output-token-count": str(answer.output_tokens),
    }
    if request.match_info["action"] == "invoke-with-response-stream":
        stream = anthropic_stream(
            answer,
            turn.model,
            message_id,
            chunks=turn.controls.chunks,
            midstream_error=turn.controls.midstream_error,
            ids=ids,
        )
        frames = [bedrock_frame(event, answer) for event in stream]
        return await _stream(
            request,
            frames,
            turn.controls.chunk_interval_s,
            {
                "x-amzn-requestid": reply_headers["x-amzn-requestid"],
                "x-amzn-bedrock-content-type": "application/json",
            },
            content_type="application/vnd.amazon.eventstream",
        )
    message = anthropic_message(answer, turn.model, message_id, ids=ids)
    return _json_response(request, message, headers=reply_headers)

"""Simulated Anthropic and OpenAI providers for the tests, the offline demo and benchmarks.

Answers are pure functions of the request, so a test knows the truth without asking:
the text is ``Answer to: <first 60 characters of the last user turn>`` whatever the API
or model, so an OpenAI primary and a Claude shadow agree unless told otherwise. The
simulator enforces the wire rules of WIRE.md (auth, ``anthropic-version``, sampling
parameters, required fields, event order, padded stream JSON): a double that ignored
them would let a real bug through.

Scripting, per request:

=============================  ==========================================================
``#tool`` in the prompt        call the first tool (``{"query": <prompt>}``) if tools exist
``#json``                      the text is a JSON object
``#disagree``                  claude-haiku* models answer something else entirely
``#error=529``                 claude-haiku* models answer with that error status
``#slow=2000``                 claude-haiku* models wait that many ms first
``#midstream-error``           claude-haiku* streams fail after a few deltas
``x-sim-delay-ms: N``          wait N ms before answering
``x-sim-chunk-ms: N``          N ms between stream events
``x-sim-chunks: N``            text split into N deltas
``x-sim-error: S``             answer with status S in the API's error shape
``x-sim-error-attempts: K``    ... only while the SDK's ``x-stainless-retry-count`` < K
``x-sim-midstream-error: 1``   the stream fails after a few deltas (after HTTP 200)
=============================  ==========================================================

The headers reach only the primary (the proxy never forwards them to the shadow); the
prompt tags are for the shadow, so they apply only to ``claude-haiku*`` models.

Claude on Vertex AI (``/projects/P/locations/R/publishers/anthropic/models/M:rawPredict``
and ``:streamRawPredict``) and on Amazon Bedrock (``/model/M/invoke`` and
``/model/M/invoke-with-response-stream``) give the same answers, with each platform's
auth, body rules and, for Bedrock's stream, AWS event-stream framing.

``SimulatorConfig(deterministic=True)`` derives ids, request ids and ``created`` from the
request, so the same request gets the same bytes: what a relay test compares against.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import json
import re
import struct
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SHADOW_MODEL_PREFIX = "claude-haiku"
ANTHROPIC_VERSIONS = ("2023-06-01", "2026-10-21")
# Under this version the Messages API no longer accepts the sampling parameters.
SAMPLING_FREE_VERSION = "2026-10-21"
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")
MODEL_ALIASES = {"claude-haiku-4-5": "claude-haiku-4-5-20251001"}
DISAGREEMENT = "I cannot tell from what you wrote; please rephrase the question."
_SYSTEM_FINGERPRINT = "fp_simulator"
_PROMPT_ERROR = re.compile(r"#error=(\d{3})")
_PROMPT_SLOW = re.compile(r"#slow=(\d+(?:\.\d+)?)")
_RETRY_AFTER_STATUSES = (429, 503, 529)


@dataclass
class SimulatorConfig:
    latency_s: float = 0.0
    chunk_interval_s: float = 0.0
    text_chunks: int = 8
    gzip: bool = True
    # Overrides latency_s for claude-haiku* models: one simulator, fast primary, slow shadow.
    shadow_latency_s: float | None = None
    record: bool = True
    # Ids, request ids and ``created`` derived from the request, so the same request gets
    # byte-identical answers: what a test needs to prove a relay changed nothing.
    deterministic: bool = False


@dataclass(slots=True, frozen=True)
class ReceivedRequest:
    """A request exactly as the provider saw it, for tests to assert on."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # None when the body is not JSON


RECEIVED = web.AppKey("received", list[ReceivedRequest])
CONFIG = web.AppKey("simulator_config", SimulatorConfig)


# --- what the simulated model reacts to ---------------------------------------------


@dataclass(slots=True, frozen=True)
class Prompt:
    text: str  # the text of the last user turn
    after_tool_result: bool  # that turn hands back a tool result
    chars: int  # all conversation text, for token counts


@dataclass(slots=True, frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Answer:
    text: str
    tool_use: ToolUse | None
    thinking: str | None
    stop_reason: str  # Anthropic's words
    input_tokens: int
    output_tokens: int


@dataclass(slots=True, frozen=True)
class Controls:
    """How, rather than what, the simulator answers."""

    delay_s: float
    chunk_interval_s: float
    chunks: int
    error_status: int | None
    midstream_error: bool


def _texts(content: Any, *, tool_results: bool) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif tool_results and block.get("type") == "tool_result":
                texts.extend(_texts(block.get("content"), tool_results=False))
    return texts


def _last_user_turn(messages: Sequence[Any], roles: tuple[str, ...]) -> list[dict[str, Any]]:
    """The trailing run of user-side messages: what a translator merges into one turn."""
    run: list[dict[str, Any]] = []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in roles:
            run.append(message)
        elif run:
            break
    return run[::-1]


def _conversation_chars(messages: Sequence[Any], system: Any = None) -> int:
    chars = sum(len(t) for t in _texts(system, tool_results=False))
    for message in messages:
        if isinstance(message, dict):
            chars += sum(len(t) for t in _texts(message.get("content"), tool_results=True))
    return chars


def _user_text(messages: Sequence[Any], turn: list[dict[str, Any]]) -> str:
    """The last user turn's text; after a turn of bare tool results, the question before it.

    Both APIs land on the same text for the same conversation, so a translated shadow
    request gets the primary's answer.
    """
    texts = [
        t
        for m in turn
        if m.get("role") == "user"
        for t in _texts(m.get("content"), tool_results=False)
    ]
    if texts:
        return "\n".join(texts)
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            earlier = _texts(message.get("content"), tool_results=False)
            if earlier:
                return "\n".join(earlier)
    return ""


def anthropic_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = body["messages"]
    turn = _last_user_turn(messages, ("user",))
    after_tool = any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for message in turn
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )
    chars = _conversation_chars(messages, body.get("system"))
    return Prompt(_user_text(messages, turn), after_tool, chars)


def openai_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = body["messages"]
    turn = _last_user_turn(messages, ("user", "tool"))
    after_tool = any(m.get("role") == "tool" for m in turn)
    return Prompt(_user_text(messages, turn), after_tool, _conversation_chars(messages))


def is_shadow_model(model: str) -> bool:
    return model.startswith(SHADOW_MODEL_PREFIX)


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def compose_answer(
    prompt: Prompt,
    model: str,
    *,
    tool_names: Sequence[str],
    tool_mode: str = "auto",
    forced_tool: str | None = None,
    json_mode: bool = False,
    thinking: bool = False,
    max_tokens: int | None = None,
) -> Answer:
    """What the simulated model says; ``tool_mode`` is ``auto``, ``any`` or ``none``."""
    disagree = is_shadow_model(model) and "#disagree" in prompt.text
    sentence = DISAGREEMENT if disagree else f"Answer to: {prompt.text[:60]}"
    wants_json = json_mode or "#json" in prompt.text
    text = json.dumps({"answer": sentence}) if wants_json else sentence
    asked_for_tool = "#tool" in prompt.text and not prompt.after_tool_result
    forced = forced_tool is not None or tool_mode == "any"
    thought = f"The user wrote {len(prompt.text)} characters." if thinking else None
    thought_tokens = _tokens(len(thought)) if thought else 0
    input_tokens = _tokens(prompt.chars)
    if tool_names and tool_mode != "none" and not disagree and (forced or asked_for_tool):
        arguments: dict[str, Any] = (
            {"answer": sentence} if wants_json and not asked_for_tool else {"query": prompt.text}
        )
        tool = ToolUse(forced_tool or tool_names[0], arguments)
        output = _tokens(len(tool.name) + len(json.dumps(arguments))) + thought_tokens
        return Answer("", tool, thought, "tool_use", input_tokens, output)
    output = _tokens(len(text)) + thought_tokens
    if max_tokens is not None and output > max_tokens:
        return Answer(text[: max_tokens * 4], None, thought, "max_tokens", input_tokens, max_tokens)
    return Answer(text, None, thought, "end_turn", input_tokens, output)


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def read_controls(
    headers: Mapping[str, str], prompt: Prompt, model: str, config: SimulatorConfig
) -> Controls:
    shadow = is_shadow_model(model)
    delay = config.latency_s
    if shadow and config.shadow_latency_s is not None:
        delay = config.shadow_latency_s
    delay = _number(headers.get("x-sim-delay-ms"), delay * 1000) / 1000
    interval = _number(headers.get("x-sim-chunk-ms"), config.chunk_interval_s * 1000) / 1000
    chunks = max(1, int(_number(headers.get("x-sim-chunks"), config.text_chunks)))
    error = int(_number(headers.get("x-sim-error"), 0)) or None
    attempts = headers.get("x-sim-error-attempts")
    if attempts is not None and _number(headers.get("x-stainless-retry-count"), 0) >= _number(
        attempts, 0
    ):
        error = None
    midstream = headers.get("x-sim-midstream-error", "").lower() in ("1", "true", "yes")
    if shadow:
        if match := _PROMPT_ERROR.search(prompt.text):
            error = int(match[1])
        if match := _PROMPT_SLOW.search(prompt.text):
            delay = float(match[1]) / 1000
        midstream = midstream or "#midstream-error" in prompt.text
    if error is not None and not 400 <= error <= 599:
        error = None
    return Controls(delay, interval, chunks, error, midstream)


def split_text(text: str, pieces: int) -> list[str]:
    """Split into at most ``pieces`` non-empty, nearly equal parts."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


_EPOCH = 1_750_000_000  # deterministic ``created`` values land near mid-2025


class IdSource:
    """Where one answer's ids and timestamp come from.

    Unseeded: random ids and the clock, like a real provider. Seeded with the request:
    the n-th id of an answer is a hash of (request, n), so answering the same request
    twice gives the same bytes.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        self._seed = seed
        self._issued = 0

    @classmethod
    def for_request(cls, method: str, path: str, body: bytes) -> IdSource:
        return cls(hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).digest())

    def new(self, prefix: str) -> str:
        if self._seed is None:
            return _new_id(prefix)
        self._issued += 1
        digest = hashlib.sha256(self._seed + self._issued.to_bytes(4, "big")).hexdigest()
        return prefix + digest[:24]

    def now(self) -> int:
        if self._seed is None:
            return int(time.time())
        return _EPOCH + int.from_bytes(self._seed[:3], "big")


_UNSEEDED = IdSource()


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


# --- shared HTTP plumbing -----------------------------------------------------------


async def _receive(request: web.Request) -> tuple[Any, IdSource]:
    """Read and parse the body, recording the request when the app records.

    Also returns the source of the answer's ids, seeded with the request when the
    simulator is deterministic.
    """
    body = await request.read()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    config = request.app[CONFIG]
    seeded = config.deterministic
    ids = IdSource.for_request(request.method, request.path, body) if seeded else IdSource()
    if config.record:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request.app[RECEIVED].append(
            ReceivedRequest(
                request.method, request.path, request.query_string, headers, body, parsed
            )
        )
    return parsed, ids


def _json_response(
    request: web.Request, payload: Any, *, status: int = 200, headers: Mapping[str, str]
) -> web.Response:
    data = _dumps(payload).encode()
    out = {"content-type": "application/json", **headers}
    if request.app[CONFIG].gzip and "gzip" in request.headers.get("accept-encoding", ""):
        data = gzip.compress(data, compresslevel=5, mtime=0)
        out["content-encoding"] = "gzip"
        out["vary"] = "accept-encoding"
    return web.Response(body=data, status=status, headers=out)


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request,
    events: list[bytes],
    interval_s: float,
    headers: Mapping[str, str],
    *,
    content_type: str = "text/event-stream; charset=utf-8",
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "content-type": content_type,
            "cache-control": "no-cache",
            **headers,
        }
    )
    try:
        await response.prepare(request)
        if interval_s <= 0:
            # Unpaced: one write, because benchmarks push thousands of streams a second.
            await response.write(b"".join(events))
        else:
            for n, event in enumerate(events):
                if n:
                    await asyncio.sleep(interval_s)
                await response.write(event)
        await response.write_eof()
    except ConnectionError:
        pass  # the client hung up; a real provider just stops too
    return response


# --- Anthropic Messages -------------------------------------------------------------

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    default = "api_error" if status >= 500 else "invalid_request_error"
    return _ANTHROPIC_ERROR_TYPES.get(status, default)


def _anthropic_error(
    request: web.Request, ids: IdSource, status: int, message: str | None = None
) -> web.Response:
    error_type = anthropic_error_type(status)
    request_id = ids.new("req_sim")
    retryable = status in (408, 409, 429) or status >= 500
    headers = {"request-id": request_id, "x-should-retry": "true" if retryable else "false"}
    if status in _RETRY_AFTER_STATUSES:
        headers["retry-after"] = "0"
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message or f"Simulated {error_type}"},
        "request_id": request_id,
    }
    return _json_response(request, body, status=status, headers=headers)


def _has_anthropic_credentials(headers: Mapping[str, str]) -> bool:
    if headers.get("x-api-key", "").strip():
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def anthropic_problem(body: Any, version: str) -> str | None:
    """Why the Messages API would reject this body with a 400, or None."""
    if not isinstance(body, dict):
        return "There was an error parsing the body: expected a JSON object"
    if version == SAMPLING_FREE_VERSION:
        for name in SAMPLING_PARAMETERS:
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    model, max_tokens, messages = body["model"], body["max_tokens"], body["messages"]
    if not isinstance(model, str) or not model:
        return "model: Input should be a valid string"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Input should be a valid integer"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{i}.content: Input should be a valid list"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 1
    ):
        return "temperature: Input should be less than or equal to 1"
    if model.startswith("claude-haiku-4-5") and "temperature" in body and "top_p" in body:
        return (
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools
    ):
        return "tools: each tool needs a name"
    return None


def _anthropic_tool_choice(body: Mapping[str, Any]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return "auto", None
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return "any", choice["name"]
    return (kind if kind in ("auto", "any", "none") else "auto"), None


def _anthropic_usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _signature(answer: Answer) -> str:
    return "sim" + uuid.uuid5(uuid.NAMESPACE_OID, answer.thinking or "").hex


def anthropic_message(
    answer: Answer, model: str, message_id: str, *, ids: IdSource = _UNSEEDED
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.thinking is not None:
        content.append(
            {"type": "thinking", "thinking": answer.thinking, "signature": _signature(answer)}
        )
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    if answer.tool_use is not None:
        content.append(
            {
                "type": "tool_use",
                "id": ids.new("toolu_01"),
                "name": answer.tool_use.name,
                "input": answer.tool_use.input,
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(answer, answer.output_tokens),
    }


def _event(name: str, payload: dict[str, Any], *, pad: int = 0) -> bytes:
    data = _dumps(payload)
    if pad:  # real streams pad some JSON with spaces before the closing brace
        data = data[:-1] + " " * pad + "}"
    return f"event: {name}\ndata: {data}\n\n".encode()


def _anthropic_blocks(
    answer: Answer, chunks: int, ids: IdSource
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each content block as (its content_block_start, its deltas)."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split_text(answer.thinking, 2)]
        deltas.append({"type": "signature_delta", "signature": _signature(answer)})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if answer.text:
        pieces = split_text(answer.text, chunks)
        blocks.append(
            ({"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces])
        )
    if answer.tool_use is not None:
        start = {
            "type": "tool_use",
            "id": ids.new("toolu_01"),
            "name": answer.tool_use.name,
            "input": {},
        }
        pieces = ["", *split_text(_dumps(answer.tool_use.input), max(3, chunks))]
        blocks.append((start, [{"type": "input_json_delta", "partial_json": p} for p in pieces]))
    return blocks


@dataclass(slots=True, frozen=True)
class StreamEvent:
    """One Messages stream event before framing: SSE for Anthropic and Vertex, AWS
    event-stream for Bedrock."""

    name: str
    payload: dict[str, Any]
    pad: int = 0  # spaces real SSE streams put before the closing brace


def anthropic_stream(
    answer: Answer,
    model: str,
    message_id: str,
    *,
    chunks: int,
    midstream_error: bool,
    ids: IdSource = _UNSEEDED,
) -> list[StreamEvent]:
    start_message = {
        **anthropic_message(answer, model, message_id, ids=ids),
        "content": [],
        "stop_reason": None,
        "usage": _anthropic_usage(answer, 1),
    }
    events = [
        StreamEvent("message_start", {"type": "message_start", "message": start_message}),
        StreamEvent("ping", {"type": "ping"}, pad=3),
    ]
    blocks = _anthropic_blocks(answer, chunks, ids)
    fail_after = min(2, sum(len(deltas) for _, deltas in blocks)) if midstream_error else -1
    sent = 0
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            StreamEvent(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        for delta in deltas:
            events.append(
                StreamEvent(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            sent += 1
            if sent == fail_after:
                error = {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                    "request_id": ids.new("req_sim"),
                }
                events.append(StreamEvent("error", error))
                return events
        events.append(
            StreamEvent(
                "content_block_stop", {"type": "content_block_stop", "index": index}, pad=12
            )
        )
    events.append(
        StreamEvent(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                "usage": _anthropic_usage(answer, answer.output_tokens),
            },
        )
    )
    events.append(StreamEvent("message_stop", {"type": "message_stop"}, pad=15))
    return events


def anthropic_events(
    answer: Answer,
    model: str,
    message_id: str,
    *,
    chunks: int,
    midstream_error: bool,
    ids: IdSource = _UNSEEDED,
) -> list[bytes]:
    """The stream as Anthropic's server-sent events."""
    stream = anthropic_stream(
        answer, model, message_id, chunks=chunks, midstream_error=midstream_error, ids=ids
    )
    return [_event(e.name, e.payload, pad=e.pad) for e in stream]


@dataclass(slots=True, frozen=True)
class Turn:
    """What the simulated Claude does with one valid Messages request, on any platform."""

    answer: Answer
    controls: Controls
    model: str  # the dated model id the answer names


async def messages_turn(request: web.Request, body: Mapping[str, Any], model: str) -> Turn | int:
    """The answer after any scripted delay, or the scripted error status."""
    prompt = anthropic_prompt(body)
    controls = read_controls(request.headers, prompt, model, request.app[CONFIG])
    await _pause(controls.delay_s)
    if controls.error_status is not None:
        return controls.error_status
    tool_mode, forced_tool = _anthropic_tool_choice(body)
    thinking = body.get("thinking")
    answer = compose_answer(
        prompt,
        model,
        tool_names=[t["name"] for t in body.get("tools", [])],
        tool_mode=tool_mode,
        forced_tool=forced_tool,
        thinking=isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"),
        max_tokens=body["max_tokens"],
    )
    return Turn(answer, controls, MODEL_ALIASES.get(model, model))


async def handle_messages(request: web.Request) -> web.StreamResponse:
    body, ids = await _receive(request)
    headers = request.headers
    if not _has_anthropic_credentials(headers):
        return _anthropic_error(request, ids, 401, "invalid x-api-key")
    version = headers.get("anthropic-version")
    if version is None:
        return _anthropic_error(request, ids, 400, "anthropic-version: header is required")
    if version not in ANTHROPIC_VERSIONS:
        invalid = f"anthropic-version: invalid version {version!r}"
        return _anthropic_error(request, ids, 400, invalid)
    if problem := anthropic_problem(body, version):
        return _anthropic_error(request, ids, 400, problem)
    turn = await messages_turn(request, body, body["model"])
    if isinstance(turn, int):
        return _anthropic_error(request, ids, turn)
    message_id = ids.new("msg_01")
    reply_headers = {"request-id": ids.new("req_sim")}
    if body.get("stream"):
        events = anthropic_events(
            turn.answer,
            turn.model,
            message_id,
            chunks=turn.controls.chunks,
            midstream_error=turn.controls.midstream_error,
            ids=ids,
        )
        return await _stream(request, events, turn.controls.chunk_interval_s, reply_headers)
    message = anthropic_message(turn.answer, turn.model, message_id, ids=ids)
    return _json_response(request, message, headers=reply_headers)


# --- Claude on Vertex AI and Amazon Bedrock -------------------------------------------
#
# Same answers as /v1/messages; the model moves into the URL, the version into the body
# (``anthropic_version``), and auth is the platform's. Bedrock frames its stream as AWS
# event-stream messages, not server-sent events.

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


# --- OpenAI Chat Completions --------------------------------------------------------

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_OPENAI_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _openai_error_body(
    status: int, message: str | None = None, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    error_type, default_code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {
        "error": {
            "message": message or f"Simulated {error_type} ({status})",
            "type": error_type,
            "param": param,
            "code": code or default_code,
        }
    }


def _openai_error(
    request: web.Request,
    ids: IdSource,
    status: int,
    message: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    headers = {"x-request-id": ids.new("req_")}
    if status in _RETRY_AFTER_STATUSES:
        headers["retry-after"] = "0"
    body = _openai_error_body(status, message, param, code)
    return _json_response(request, body, status=status, headers=headers)


def openai_problem(body: Any) -> tuple[str, str | None, str | None] | None:
    """(message, param, code) of the 400 OpenAI would answer, or None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request.", None, None
    for name in ("model", "messages"):
        if name not in body:
            return f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
    if not isinstance(body["model"], str) or not body["model"]:
        return "Invalid type for 'model': expected a string.", "model", "invalid_type"
    messages = body["messages"]
    if not isinstance(messages, list):
        return "Invalid type for 'messages': expected an array.", "messages", "invalid_type"
    if not messages:
        return (
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _OPENAI_ROLES:
            return f"Invalid value for 'messages[{i}].role'.", f"messages[{i}].role", None
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 2
    ):
        return (
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2.",
            "temperature",
            "decimal_above_max_value",
        )
    return None


def _openai_tools(body: Mapping[str, Any]) -> list[str]:
    tools = body.get("tools") or []
    return [
        t["function"]["name"]
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]


def _openai_tool_choice(body: Mapping[str, Any]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if choice in ("none", "auto"):
        return str(choice), None
    if choice == "required":
        return "any", None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return "any", choice["function"].get("name")
    return "auto", None


def _openai_max_tokens(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _openai_usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_completion(
    answer: Answer, model: str, completion_id: str, *, ids: IdSource = _UNSEEDED
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.tool_use is None else None,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_use is not None:
        message["tool_calls"] = [
            {
                "id": ids.new("call_"),
                "type": "function",
                "function": {
                    "name": answer.tool_use.name,
                    "arguments": _dumps(answer.tool_use.input),
                },
            }
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": ids.now(),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _OPENAI_FINISH_REASONS[answer.stop_reason],
            }
        ],
        "usage": _openai_usage(answer),
        "service_tier": "default",
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }


def _data(payload: Any) -> bytes:
    return f"data: {_dumps(payload)}\n\n".encode()


def openai_chunks(
    answer: Answer,
    model: str,
    completion_id: str,
    *,
    chunks: int,
    include_usage: bool,
    midstream_error: bool,
    ids: IdSource = _UNSEEDED,
) -> list[bytes]:
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": ids.now(),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        payload: dict[str, Any] = {**base, "choices": [choice]}
        if include_usage:
            payload["usage"] = None
        return _data(payload)

    deltas: list[dict[str, Any]]
    if answer.tool_use is not None:
        opening = {
            "index": 0,
            "id": ids.new("call_"),
            "type": "function",
            "function": {"name": answer.tool_use.name, "arguments": ""},
        }
        pieces = split_text(_dumps(answer.tool_use.input), max(3, chunks))
        deltas = [{"tool_calls": [opening]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces
        ]
    else:
        deltas = [{"content": p} for p in split_text(answer.text, chunks)]
    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    fail_after = min(2, len(deltas)) if midstream_error else -1
    for sent, delta in enumerate(deltas, 1):
        out.append(chunk(delta))
        if sent == fail_after:
            message = "The server had an error while processing your request. Sorry about that!"
            out.append(_data(_openai_error_body(500, message)))
            return out
    out.append(chunk({}, _OPENAI_FINISH_REASONS[answer.stop_reason]))
    if include_usage:
        out.append(_data({**base, "choices": [], "usage": _openai_usage(answer)}))
    out.append(b"data: [DONE]\n\n")
    return out


def _has_bearer(headers: Mapping[str, str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def handle_chat_completions(request: web.Request) -> web.StreamResponse:
    body, ids = await _receive(request)
    headers = request.headers
    if not _has_bearer(headers):
        return _openai_error(
            request,
            ids,
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if problem := openai_problem(body):
        message, param, code = problem
        return _openai_error(request, ids, 400, message, param, code)
    model: str = body["model"]
    prompt = openai_prompt(body)
    controls = read_controls(headers, prompt, model, request.app[CONFIG])
    await _pause(controls.delay_s)
    if controls.error_status is not None:
        return _openai_error(request, ids, controls.error_status)
    tool_mode, forced_tool = _openai_tool_choice(body)
    response_format = body.get("response_format")
    answer = compose_answer(
        prompt,
        model,
        tool_names=_openai_tools(body),
        tool_mode=tool_mode,
        forced_tool=forced_tool,
        json_mode=isinstance(response_format, dict)
        and response_format.get("type") in ("json_object", "json_schema"),
        max_tokens=_openai_max_tokens(body),
    )
    completion_id = ids.new("chatcmpl-")
    reply_headers = {"x-request-id": ids.new("req_")}
    if body.get("stream"):
        options = body.get("stream_options")
        events = openai_chunks(
            answer,
            model,
            completion_id,
            chunks=controls.chunks,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            midstream_error=controls.midstream_error,
            ids=ids,
        )
        return await _stream(request, events, controls.chunk_interval_s, reply_headers)
    completion = openai_completion(answer, model, completion_id, ids=ids)
    return _json_response(request, completion, headers=reply_headers)


# --- endpoints that are forwarded but never mirrored --------------------------------

_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o")
_ANTHROPIC_MODELS = ("claude-haiku-4-5-20251001", "claude-sonnet-4-6")


async def handle_models(request: web.Request) -> web.Response:
    _, ids = await _receive(request)
    if "anthropic-version" in request.headers:
        data: list[dict[str, Any]] = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-10-01T00:00:00Z"}
            for m in _ANTHROPIC_MODELS
        ]
        listing: dict[str, Any] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"],
            "last_id": data[-1]["id"],
        }
        return _json_response(request, listing, headers={"request-id": ids.new("req_sim")})
    data = [
        {"id": m, "object": "model", "created": 1721172741, "owned_by": "system"}
        for m in _OPENAI_MODELS
    ]
    return _json_response(
        request, {"object": "list", "data": data}, headers={"x-request-id": ids.new("req_")}
    )


async def handle_echo(request: web.Request) -> web.Response:
    """Describes the request it got, so passthrough tests see what arrived upstream."""
    _, ids = await _receive(request)
    body = await request.read()
    description = {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query_string": request.query_string,
        "query": {k: request.query.getall(k) for k in request.query},
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body_length": len(body),
    }
    return _json_response(request, description, headers={"x-request-id": ids.new("req_")})


async def handle_unknown(request: web.Request) -> web.Response:
    _, ids = await _receive(request)
    message = f"Invalid URL ({request.method} {request.path})"
    return _openai_error(request, ids, 404, message, code="unknown_url")


def make_app(config: SimulatorConfig | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CONFIG] = config or SimulatorConfig()
    app[RECEIVED] = []
    app.router.add_post("/v1/messages", handle_messages)
    app.router.add_post("/v1/chat/completions", handle_chat_completions)
    app.router.add_get("/v1/models", handle_models)
    app.router.add_post(
        "/projects/{project}/locations/{region}/publishers/anthropic/models/{target}",
        handle_vertex,
    )
    app.router.add_post(
        r"/model/{model}/{action:invoke|invoke-with-response-stream}", handle_bedrock
    )
    app.router.add_route("*", "/echo/{tail:.*}", handle_echo)
    app.router.add_route("*", "/{tail:.*}", handle_unknown)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shadowproxy.simulator",
        description="Simulated Anthropic and OpenAI providers (deterministic answers).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--shadow-latency-ms", type=float, default=None)
    parser.add_argument("--chunk-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = SimulatorConfig(
        latency_s=args.latency_ms / 1000,
        chunk_interval_s=args.chunk_ms / 1000,
        shadow_latency_s=None if args.shadow_latency_ms is None else args.shadow_latency_ms / 1000,
        # Benchmarks send far too many requests to keep them all.
        record=False,
    )
    web.run_app(make_app(config), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()

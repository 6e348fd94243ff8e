"""Anthropic Messages (``/v1/messages``), and the Messages turn the cloud platforms share."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import (
    _RETRY_AFTER_STATUSES,
    _UNSEEDED,
    ANTHROPIC_VERSIONS,
    CONFIG,
    MODEL_ALIASES,
    SAMPLING_FREE_VERSION,
    SAMPLING_PARAMETERS,
    Answer,
    Controls,
    IdSource,
    _dumps,
    anthropic_prompt,
    compose_answer,
    read_controls,
    split_text,
)
from shadowproxy.simulator.features import (
    PROMPT_CACHE,
    cache_usage,
    citation,
    feature_problem,
    output_schema,
    schema_instance,
    search_blocks,
    uses_web_search,
)
from shadowproxy.simulator.judge import is_judge_request, judge_answer
from shadowproxy.simulator.plumbing import _json_response, _pause, _receive, _stream
from shadowproxy.simulator.variants import shadow_sentence

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
    return feature_problem(body)


def _anthropic_tool_choice(body: Mapping[str, Any]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return "auto", None
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return "any", choice["name"]
    return (kind if kind in ("auto", "any", "none") else "auto"), None


def _anthropic_usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    cache = answer.cache
    usage: dict[str, Any] = {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": cache.write_5m + cache.write_1h,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache.write_5m,
                           "ephemeral_1h_input_tokens": cache.write_1h},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if answer.web_search is not None:
        usage["server_tool_use"] = {"web_search_requests": 1}
    if answer.thinking is not None:  # part of output_tokens, as the API reports it
        usage["output_tokens_details"] = {
            "thinking_tokens": min(output_tokens, _thinking_tokens(answer.thinking))}
    return usage


def _thinking_tokens(thinking: str) -> int:
    return max(1, len(thinking) // 4)


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
    if answer.web_search is not None:
        content.extend(search_blocks(answer.web_search, ids.new("srvtoolu_01")))
        content.append({"type": "text", "text": answer.text,
                        "citations": [citation(answer.text)]})
    elif answer.text:
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
    if answer.web_search is not None:
        use, result = search_blocks(answer.web_search, ids.new("srvtoolu_01"))
        blocks.append(({**use, "input": {}}, [
            {"type": "input_json_delta", "partial_json": _dumps(use["input"])}]))
        blocks.append((result, []))
        blocks.append(({"type": "text", "text": "", "citations": []}, [
            {"type": "citations_delta", "citation": citation(answer.text)},
            *({"type": "text_delta", "text": p} for p in split_text(answer.text, chunks))]))
    elif answer.text:
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
    config = request.app[CONFIG]
    prompt = config.scripted(anthropic_prompt(body))
    controls = read_controls(request.headers, prompt, model, config)
    await _pause(controls.delay_s)
    if controls.error_status is not None:
        return controls.error_status
    if is_judge_request(body):
        return Turn(judge_answer(body, prompt, config), controls, MODEL_ALIASES.get(model, model))
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
        sentence=shadow_sentence(prompt.text, config.shadow_worse_rate,
                                 config.shadow_paraphrase_rate, controls=prompt.controls),
    )
    schema = output_schema(body)
    if schema is not None and answer.tool_use is None and answer.stop_reason == "end_turn":
        text = json.dumps(schema_instance(schema, answer.text))
        thought = _thinking_tokens(answer.thinking) if answer.thinking else 0
        answer = replace(answer, text=text, output_tokens=max(1, len(text) // 4) + thought)
    if uses_web_search(body) and answer.tool_use is None:
        answer = replace(answer, web_search=answer.text[:40])
    cache = cache_usage(body, request.app[PROMPT_CACHE])
    if cache.cached:
        answer = replace(answer, cache=cache,
                         input_tokens=max(1, answer.input_tokens - cache.cached))
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

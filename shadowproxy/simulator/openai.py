"""OpenAI Chat Completions (``/v1/chat/completions``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import (
    _RETRY_AFTER_STATUSES,
    _SYSTEM_FINGERPRINT,
    _UNSEEDED,
    CONFIG,
    Answer,
    IdSource,
    _dumps,
    compose_answer,
    openai_prompt,
    read_controls,
    split_text,
)
from shadowproxy.simulator.features import schema_instance
from shadowproxy.simulator.plumbing import _has_bearer, _json_response, _pause, _receive, _stream

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


def _structured(answer: Answer, response_format: Any) -> Answer:
    """A ``json_schema`` response format is answered with an instance of the schema, the
    same one the simulated Claude gives for that schema in ``output_config``."""
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict) or answer.tool_use is not None:
        return answer
    if answer.stop_reason != "end_turn":
        return answer
    sentence = answer.text
    with contextlib.suppress(ValueError, KeyError, TypeError):  # JSON mode wrapped it
        sentence = json.loads(answer.text)["answer"]
    text = json.dumps(schema_instance(schema, sentence))
    return replace(answer, text=text, output_tokens=max(1, len(text) // 4))


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
    prompt = request.app[CONFIG].scripted(openai_prompt(body))
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
    answer = _structured(answer, response_format)
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

"""OpenAI Responses API (``POST /v1/responses``), JSON and typed-event streams.

Faithful where a test double could hide a bug: stream events carry ``event:`` lines and
a ``sequence_number`` from 0; usage appears only in the terminal ``response.completed``
/ ``response.incomplete`` event; answers are stored by id (unless ``store: false``) so
``previous_response_id`` continues them, and an unknown id is a 400 in OpenAI's error
shape, as the real API answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from shadowproxy.simulator.answers import (
    CONFIG,
    Answer,
    IdSource,
    _dumps,
    compose_answer,
    openai_prompt,
    read_controls,
    split_text,
)
from shadowproxy.simulator.openai import _openai_error
from shadowproxy.simulator.plumbing import _has_bearer, _json_response, _pause, _receive, _stream

# Every stored conversation: response id → all its items (inputs and outputs), oldest first.
STORED_RESPONSES = web.AppKey("stored_responses", dict[str, list[Any]])
# Oldest stored responses go first past this many (benchmarks send hundreds of thousands).
_STORE_LIMIT = 10_000


def responses_problem(
    body: Any, stored: Mapping[str, list[Any]]
) -> tuple[str, str | None, str | None] | None:
    """(message, param, code) of the 400 the Responses API would answer, or None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request.", None, None
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "Missing required parameter: 'model'.", "model", "missing_required_parameter"
    if not isinstance(body.get("input"), str | list):
        return "Missing required parameter: 'input'.", "input", "missing_required_parameter"
    previous = body.get("previous_response_id")
    if previous is not None and previous not in stored:
        return (f"Previous response with id '{previous}' not found.",
                "previous_response_id", "previous_response_not_found")
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 2
    ):
        return ("Invalid 'temperature': decimal above maximum value. Expected a value <= 2.",
                "temperature", "decimal_above_max_value")
    return None


def input_items(body: Mapping[str, Any]) -> list[Any]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return list(raw) if isinstance(raw, list) else []


def _as_chat(items: list[Any]) -> list[dict[str, Any]]:
    """The conversation in Chat Completions roles, so both OpenAI APIs answer alike."""
    messages: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": item.get("content")})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": None})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "content": output})
    return messages


def _tool_names(body: Mapping[str, Any]) -> list[str]:
    return [t["name"] for t in body.get("tools") or []
            if isinstance(t, dict) and t.get("type") == "function"
            and isinstance(t.get("name"), str)]


def _tool_choice(body: Mapping[str, Any]) -> tuple[str, str | None]:
    choice = body.get("tool_choice")
    if choice in ("none", "auto"):
        return str(choice), None
    if choice == "required":
        return "any", None
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return "any", choice["name"]
    return "auto", None


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": answer.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def output_items(answer: Answer, ids: IdSource) -> list[dict[str, Any]]:
    if answer.tool_use is not None:
        return [{"id": ids.new("fc_"), "type": "function_call", "status": "completed",
                 "arguments": _dumps(answer.tool_use.input), "call_id": ids.new("call_"),
                 "name": answer.tool_use.name}]
    return [{"id": ids.new("msg_"), "type": "message", "status": "completed",
             "role": "assistant", "content": [
                 {"type": "output_text", "text": answer.text, "annotations": [],
                  "logprobs": []}]}]


def response_object(
    body: Mapping[str, Any], answer: Answer | None, response_id: str, output: list[Any],
    ids: IdSource, *, status: str,
) -> dict[str, Any]:
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    return {
        "id": response_id, "object": "response", "created_at": ids.now(), "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete"
        else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": text or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []), "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": _usage(answer) if answer is not None and status != "in_progress" else None,
        "user": None, "metadata": body.get("metadata") or {},
    }


def response_events(
    body: Mapping[str, Any], answer: Answer, response_id: str, output: list[dict[str, Any]],
    ids: IdSource, *, status: str, chunks: int, midstream_error: bool,
) -> list[bytes]:
    """The typed events of one streamed response, each framed with its ``event:`` line."""
    events: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        payload = {"type": kind, "sequence_number": len(events), **data}
        events.append(f"event: {kind}\ndata: {_dumps(payload)}\n\n".encode())

    opening = response_object(body, answer, response_id, [], ids, status="in_progress")
    emit("response.created", response=opening)
    emit("response.in_progress", response=opening)
    for index, item in enumerate(output):
        if item["type"] == "function_call":
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "arguments": ""})
            pieces = split_text(item["arguments"], max(3, chunks))
            for sent, piece in enumerate(pieces, 1):
                emit("response.function_call_arguments.delta", item_id=item["id"],
                     output_index=index, delta=piece)
                if midstream_error and sent == min(2, len(pieces)):
                    return _fail(events, emit)
            emit("response.function_call_arguments.done", item_id=item["id"],
                 output_index=index, arguments=item["arguments"])
        else:
            text = item["content"][0]["text"]
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            emit("response.content_part.added", item_id=item["id"], output_index=index,
                 content_index=0, part=part)
            pieces = split_text(text, chunks)
            for sent, piece in enumerate(pieces, 1):
                emit("response.output_text.delta", item_id=item["id"], output_index=index,
                     content_index=0, delta=piece, logprobs=[])
                if midstream_error and sent == min(2, len(pieces)):
                    return _fail(events, emit)
            emit("response.output_text.done", item_id=item["id"], output_index=index,
                 content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=index,
                 content_index=0, part={**part, "text": text})
        emit("response.output_item.done", output_index=index, item=item)
    final = response_object(body, answer, response_id, output, ids, status=status)
    emit("response.completed" if status == "completed" else "response.incomplete",
         response=final)
    return events


def _fail(events: list[bytes], emit: Callable[..., None]) -> list[bytes]:
    emit("error", code="server_error", param=None,
         message="The server had an error while processing your request. Sorry about that!")
    return events


async def handle_responses(request: web.Request) -> web.StreamResponse:
    body, ids = await _receive(request)
    if not _has_bearer(request.headers):
        return _openai_error(request, ids, 401, "You didn't provide an API key.")
    stored = request.app[STORED_RESPONSES]
    if problem := responses_problem(body, stored):
        message, param, code = problem
        return _openai_error(request, ids, 400, message, param, code)
    model: str = body["model"]
    previous = body.get("previous_response_id")
    conversation = [*(stored[previous] if previous else []), *input_items(body)]
    prompt = request.app[CONFIG].scripted(openai_prompt({"messages": _as_chat(conversation)}))
    controls = read_controls(request.headers, prompt, model, request.app[CONFIG])
    await _pause(controls.delay_s)
    if controls.error_status is not None:
        return _openai_error(request, ids, controls.error_status)
    tool_mode, forced_tool = _tool_choice(body)
    text_format = body.get("text", {}).get("format") if isinstance(body.get("text"), dict) \
        else None
    max_output = body.get("max_output_tokens")
    answer = compose_answer(
        prompt, model, tool_names=_tool_names(body), tool_mode=tool_mode,
        forced_tool=forced_tool,
        json_mode=isinstance(text_format, dict)
        and text_format.get("type") in ("json_object", "json_schema"),
        max_tokens=max_output if isinstance(max_output, int) and max_output > 0 else None,
    )
    response_id = ids.new("resp_")
    output = output_items(answer, ids)
    status = "incomplete" if answer.stop_reason == "max_tokens" else "completed"
    if body.get("store", True) is not False:
        stored[response_id] = [*conversation, *output]
        while len(stored) > _STORE_LIMIT:
            del stored[next(iter(stored))]
    headers = {"x-request-id": ids.new("req_")}
    if body.get("stream"):
        events = response_events(body, answer, response_id, output, ids, status=status,
                                 chunks=controls.chunks,
                                 midstream_error=controls.midstream_error)
        return await _stream(request, events, controls.chunk_interval_s, headers)
    return _json_response(
        request, response_object(body, answer, response_id, output, ids, status=status),
        headers=headers,
    )

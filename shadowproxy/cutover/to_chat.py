"""The shadow model's Messages answer as an OpenAI Chat Completions answer. Pure.

What an application on the Chat Completions API gets when the shadow model serves it:
a ``chat.completion`` object (:func:`chat_completion`, from the assembled message) or
``chat.completion.chunk`` server-sent events (:class:`ChatChunks`, event by event, so
the user reads the shadow's tokens as they come). The mapping:

- text blocks → ``content`` (joined); ``thinking`` blocks are left out (the API has no
  place for them); ``tool_use`` → ``tool_calls`` with ``arguments`` as a JSON *string*
  and ids in OpenAI's form (``call_…``), derived from the Anthropic ids so a stream and
  a whole answer agree;
- ``stop_reason`` → ``finish_reason`` (``end_turn``/``stop_sequence`` → ``stop``,
  ``max_tokens`` → ``length``, ``tool_use`` → ``tool_calls``, ``refusal`` →
  ``content_filter`` with :data:`REFUSAL` in ``refusal``);
- usage → ``prompt_tokens`` (input plus cache writes and reads, as OpenAI counts the
  whole prompt), ``completion_tokens``, ``total_tokens``, ``cached_tokens``;
- ``id`` → ``chatcmpl-…`` derived from the message id; ``model`` is the shadow's;
- a stream ends with ``data: [DONE]``; with ``stream_options.include_usage`` every chunk
  carries ``"usage": null`` and a last chunk with no choices carries the usage; an
  Anthropic ``error`` event becomes OpenAI's ``data: {"error": …}`` line.
"""

from __future__ import annotations

import hashlib
import json
import string
from typing import Any

__all__ = [
    "DONE",
    "REFUSAL",
    "ChatChunks",
    "call_id",
    "chat_completion",
    "chat_error",
    "chat_sse",
    "chat_usage",
    "completion_id",
    "finish_reason",
    "unservable",
]

DONE = b"data: [DONE]\n\n"
# Anthropic's ``refusal`` stop reason is its safety classifiers ending the answer: the
# application is told in ``refusal`` (its text is ours, there is none from the model).
REFUSAL = "The model declined to continue this answer (Anthropic stop_reason: refusal)."
_FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}
_ALPHABET = string.ascii_letters + string.digits


def _derived(prefix: str, source: str, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest(),
                            "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)


def completion_id(message_id: str) -> str:
    """``chatcmpl-`` and 29 characters, as OpenAI's ids look; the same for a message id."""
    return _derived("chatcmpl-", message_id, 29)


def call_id(tool_use_id: str) -> str:
    """``call_`` and 24 characters for an Anthropic ``toolu_…`` id."""
    return _derived("call_", tool_use_id, 24)


def unservable(request: dict[str, Any]) -> str | None:
    """Why a Chat Completions request cannot be answered faithfully from a Messages
    answer (it then stays on the current model), or None."""
    if request.get("logprobs") or request.get("top_logprobs") is not None:
        return "log probabilities were asked for: the Messages API has none"
    return None


def finish_reason(stop_reason: Any) -> str:
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_usage(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + _int(
        usage.get("cache_creation_input_tokens")) + cached
    completion = _int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": thinking, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def _arguments(value: Any) -> str:
    return json.dumps(value if value is not None else {}, ensure_ascii=False,
                      separators=(",", ":"))


def chat_completion(message: dict[str, Any], *, created: int) -> dict[str, Any]:
    """A whole ``chat.completion`` for an assembled Messages ``message``."""
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    tool_calls = [
        {"id": call_id(str(b.get("id", ""))), "type": "function",
         "function": {"name": str(b.get("name", "")), "arguments": _arguments(b.get("input"))}}
        for b in blocks if b.get("type") == "tool_use"
    ]
    refused = message.get("stop_reason") == "refusal"
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": text if text else (None if tool_calls or refused else ""),
        "refusal": REFUSAL if refused else None,
        "annotations": [],
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": completion_id(str(message.get("id", ""))),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(message.get("stop_reason"))}],
        "usage": chat_usage(message.get("usage")),
        "system_fingerprint": None,
    }


def chat_sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False,
                                  separators=(",", ":")).encode() + b"\n\n"


def chat_error(error: Any) -> dict[str, Any]:
    """OpenAI's mid-stream error line for an Anthropic ``error`` event."""
    error = error if isinstance(error, dict) else {}
    return {"error": {"message": str(error.get("message", "the model's stream failed")),
                      "type": str(error.get("type", "server_error")), "param": None,
                      "code": None}}


class ChatChunks:
    """Messages stream events in, ``chat.completion.chunk`` objects out, one event at a time.

    :meth:`on_event` returns the chunks an event makes (often none); after
    ``message_stop`` the answer is complete (:attr:`done`) and the caller sends
    :data:`DONE`.
    """

    def __init__(self, *, created: int, include_usage: bool = False) -> None:
        self._created = created
        self._include_usage = include_usage
        self._id = ""
        self._model: Any = None
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        # content block index → (tool call index, arguments sent so far?, start input)
        self._tools: dict[int, list[Any]] = {}
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model, "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def on_event(self, event_type: str, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict) or self.done:
            return []
        if event_type == "message_start":
            message = data.get("message")
            message = message if isinstance(message, dict) else {}
            self._id = completion_id(str(message.get("id", "")))
            self._model = message.get("model")
            if isinstance(message.get("usage"), dict):
                self._usage = dict(message["usage"])
            return [self._chunk({"role": "assistant", "content": "", "refusal": None})]
        if event_type == "content_block_start":
            return self._block_start(data)
        if event_type == "content_block_delta":
            return self._delta(data)
        if event_type == "content_block_stop":
            return self._block_stop(data)
        if event_type == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                self._stop_reason = delta["stop_reason"]
            usage = data.get("usage")
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            return []
        if event_type == "message_stop":
            return self._finish()
        return []

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or block.get("type") != "tool_use" \
                or not isinstance(index, int):
            return []
        position = len(self._tools)
        self._tools[index] = [position, False, block.get("input")]
        return [self._chunk({"tool_calls": [{
            "index": position, "id": call_id(str(block.get("id", ""))), "type": "function",
            "function": {"name": str(block.get("name", "")), "arguments": ""}}]})]

    def _delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        tool = self._tools.get(data.get("index"))  # type: ignore[arg-type]
        piece = delta.get("partial_json")
        if kind == "input_json_delta" and tool is not None and isinstance(piece, str) \
                and piece:
            tool[1] = True
            return [self._chunk({"tool_calls": [{"index": tool[0],
                                                 "function": {"arguments": piece}}]})]
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        tool = self._tools.get(data.get("index"))  # type: ignore[arg-type]
        if tool is None or tool[1]:
            return []
        # No input pieces: the input was whole in content_block_start (usually {}).
        tool[1] = True
        return [self._chunk({"tool_calls": [{"index": tool[0],
                                             "function": {"arguments": _arguments(tool[2])}}]})]

    def _finish(self) -> list[dict[str, Any]]:
        self.done = True
        chunks = []
        if self._stop_reason == "refusal":
            chunks.append(self._chunk({"refusal": REFUSAL}))
        chunks.append(self._chunk({}, finish_reason(self._stop_reason)))
        if self._include_usage:
            chunks.append({
                "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model, "system_fingerprint": None, "choices": [],
                "usage": chat_usage(self._usage),
            })
        return chunks

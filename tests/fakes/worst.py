"""The worst request bodies found against the mirror, for the tests and
``bench/bench_worst_inputs.py``. Each is a valid Chat Completions body (except the
poison) a hostile or merely unusual application could send under the 32 MB limit."""

from __future__ import annotations

import json
from typing import Any


def chat(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": messages, **extra}).encode()


def normal() -> bytes:
    return chat([{"role": "system", "content": "Be terse."},
                 {"role": "user", "content": "Where is my order #1234?"}])


def plain_text(size: int) -> bytes:
    """A normal request as large as a worst one: one long user message."""
    return chat([{"role": "user", "content": "lorem ipsum " * (size // 12)}])


def reused_tool_ids(turns: int, *, answered: bool = True) -> bytes:
    """``turns`` assistant tool calls all with id ``"x"`` (OpenAI-compatible servers
    reuse ids), each answered by a tool message unless ``answered`` is False."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    for _ in range(turns):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        if answered:
            messages.append({"role": "tool", "tool_call_id": "x", "content": "ok"})
    if not answered:
        messages.append({"role": "user", "content": "and?"})
    return chat(messages)


def nested(depth: int) -> bytes:
    """A request whose ``metadata`` nests ``depth`` arrays deep."""
    return chat([{"role": "user", "content": "deep"}],
                metadata=json.loads("[" * depth + "]" * depth))


def poison(depth: int = 100_000) -> bytes:
    """Not even parseable: Python's decoder raises RecursionError."""
    return b"[" * depth


def huge_array(parts: int) -> bytes:
    """One user message made of ``parts`` text parts."""
    return chat([{"role": "user", "content": [{"type": "text", "text": "a"}] * parts}])


def lone_surrogates(count: int) -> bytes:
    """A prompt of ``count`` lone ``\\ud800`` escapes (what no serialiser writes)."""
    return (b'{"model":"gpt-4o","messages":[{"role":"user","content":"'
            + b"x\\ud800" * count + b'"}]}')

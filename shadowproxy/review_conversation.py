"""A stored request as a reviewer reads it: turns of text, tool calls and tool results.

Pure (no I/O). Reads ``pairs.request`` in any of the three shapes we store (Anthropic
Messages, OpenAI Chat Completions, OpenAI Responses) and tolerates anything else. Images,
documents and audio become a placeholder naming what they were and their size, never
their bytes or their URL; the model's private reasoning (thinking blocks, reasoning
items) is left out, as the judge leaves it out. Nothing is cut: a reviewer sees the
whole conversation and the whole answers.

:func:`conversation_turns` gives the structure the review page renders;
:func:`conversation_text` the same as plain text (the API's ``conversation``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Part", "Turn", "answer", "conversation_text", "conversation_turns",
           "pretty_arguments"]

PartKind = Literal["text", "tool_call", "tool_result", "placeholder"]


@dataclass(frozen=True, slots=True)
class Part:
    kind: PartKind
    text: str
    name: str | None = None  # the tool's name, for a tool call
    error: bool = False  # a tool result marked as an error

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.name is not None:
            out["name"] = self.name
        if self.error:
            out["error"] = True
        return out


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # system | user | assistant | tool
    parts: tuple[Part, ...]

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "parts": [p.to_json() for p in self.parts]}


_SIZE = re.compile(r"\[(?:base64 )?(\d+) chars")
_ROLES = {"system": "system", "developer": "system", "user": "user",
          "assistant": "assistant", "tool": "tool", "function": "tool"}


def pretty_arguments(arguments: Any) -> str:
    """Tool-call arguments as indented JSON (a string that is not JSON stays as it is)."""
    if isinstance(arguments, str):
        raw: str = arguments
        try:
            arguments = json.loads(raw)
        except (ValueError, RecursionError):
            return raw
    try:
        return json.dumps(arguments, ensure_ascii=False, indent=2, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return str(arguments)


def _placeholder(kind: str, block: Mapping[str, Any]) -> Part:
    source = block.get("source") if isinstance(block.get("source"), Mapping) else block
    assert isinstance(source, Mapping)
    data, url = source.get("data"), source.get("url")
    media = source.get("media_type") or ""
    for key in ("image_url", "file_data"):
        inner = block.get(key)
        if isinstance(inner, Mapping):
            url = inner.get("url")
        elif isinstance(inner, str):
            url = inner
    if isinstance(url, str) and url.startswith("data:"):
        media = url[5:].split(";", 1)[0].split(",", 1)[0]
        data, url = url.split(",", 1)[1] if "," in url else "", None
    if isinstance(data, str):
        stored = _SIZE.search(data)  # slimmed on the way in: "[base64 N chars sha256:…]"
        chars = int(stored[1]) if stored else len(data)
        shown = f"{kind}{' ' + str(media)[:80] if media else ''}, {chars * 3 // 4:,} bytes"
    elif isinstance(url, str) or isinstance(block.get("file_id"), str):
        shown = f"{kind} by reference, not stored"
    else:
        shown = kind
    return Part("placeholder", f"[{shown}]")


def _parts(content: Any) -> list[Part]:
    """One message's content, whichever shape, as parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [Part("text", content)] if content else []
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        return [Part("text", str(content))]
    parts: list[Part] = []
    for block in content:
        if isinstance(block, str):
            parts.append(Part("text", block))
            continue
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind in ("thinking", "redacted_thinking", "reasoning"):
            continue  # the model's private reasoning is not part of the conversation
        if kind in ("image", "image_url", "input_image"):
            parts.append(_placeholder("image", block))
        elif kind in ("document", "file", "input_file"):
            parts.append(_placeholder("document", block))
        elif kind in ("input_audio", "audio"):
            parts.append(Part("placeholder", "[audio]"))
        elif kind == "tool_use":
            parts.append(Part("tool_call", pretty_arguments(block.get("input")),
                              name=str(block.get("name"))))
        elif kind == "tool_result":
            body = "\n".join(p.text for p in _parts(block.get("content")))
            parts.append(Part("tool_result", body, error=bool(block.get("is_error"))))
        elif isinstance(block.get("text"), str):
            parts.append(Part("text", block["text"]))
        elif isinstance(block.get("refusal"), str):
            parts.append(Part("text", block["refusal"]))
        elif kind is not None:
            parts.append(Part("placeholder", f"[{str(kind)[:80]}]"))
    return parts


def _openai_calls(calls: Any) -> list[Part]:
    parts: list[Part] = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            parts.append(Part("tool_call", pretty_arguments(function.get("arguments")),
                              name=str(function.get("name"))))
    return parts


def _message(message: Mapping[str, Any]) -> Turn | None:
    """A Messages, Chat or Responses item as a turn (None for reasoning and unknowns)."""
    kind = message.get("type")
    if kind == "function_call":
        return Turn("assistant", (Part("tool_call", pretty_arguments(message.get("arguments")),
                                       name=str(message.get("name"))),))
    if kind == "function_call_output":
        output = message.get("output")
        return Turn("tool", (Part("tool_result", output if isinstance(output, str)
                                  else "\n".join(p.text for p in _parts(output))),))
    if kind not in (None, "message"):
        return None
    role = _ROLES.get(str(message.get("role", "")), "user")
    parts = _parts(message.get("content"))
    parts += _openai_calls(message.get("tool_calls"))
    if role == "tool":
        parts = [Part("tool_result", "\n".join(p.text for p in parts))]
    elif role == "user" and parts and all(p.kind == "tool_result" for p in parts):
        role = "tool"  # Messages carries tool results in a user turn; nobody typed them
    return Turn(role, tuple(parts))


def conversation_turns(request: Any) -> list[Turn]:
    """The conversation in ``request`` (a parsed body), system prompt first."""
    if not isinstance(request, Mapping):
        return []
    turns: list[Turn] = []
    system = _parts(request.get("system")) + _parts(request.get("instructions"))
    if system:
        turns.append(Turn("system", tuple(system)))
    items = request.get("messages")
    if items is None:
        items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        turn = _message(item) if isinstance(item, Mapping) else None
        if turn is None:
            continue
        if turn.role == "system" and len(turns) == 1 and turns[0].role == "system":
            turns[0] = Turn("system", turns[0].parts + turn.parts)
        else:
            turns.append(turn)
    return turns


def _part_text(part: Part) -> str:
    if part.kind == "tool_call":
        return f"(tool call {part.name})\n{part.text}"
    if part.kind == "tool_result":
        return f"(tool result{' (error)' if part.error else ''})\n{part.text}"
    return part.text


def conversation_text(turns: list[Turn]) -> str:
    """The turns as plain text: ``[role]`` then the turn's parts, turns apart by a blank line."""
    if not turns:
        return "[no conversation stored]"
    return "\n\n".join(f"[{t.role}]\n" + "\n".join(_part_text(p) for p in t.parts)
                       for t in turns)


def answer(text: str | None, tool_calls: Any) -> dict[str, Any]:
    """One side's answer for the review API: the whole text and its tool calls as
    stored (``{"name", "arguments"}``, the arguments parsed when they were JSON)."""
    calls = [{"name": str(c.get("name")), "arguments": c.get("arguments")}
             for c in (tool_calls if isinstance(tool_calls, list) else [])
             if isinstance(c, Mapping)]
    return {"text": text or "", "tool_calls": calls}

"""The turns of a Messages request, built the same way from either OpenAI API.

Both translators (:mod:`.translate` for Chat Completions, :mod:`.translate_responses` for
the Responses API) collect turns and blocks, then :func:`merge_turns` makes them what
Messages accepts: alternating roles, tool results first, every tool call answered, ids
unique (:class:`FreshIds`). Pure; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

__all__ = [
    "FreshIds", "Turn", "Untranslatable", "check_tool_pairing", "image_block", "is_int",
    "merge_turns", "show", "text_block", "tool_use_id", "trim_prefill",
]


_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


_TOOL_USE_ID = re.compile(r"[A-Za-z0-9_-]+")


_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class Untranslatable(Exception):
    """The request has no faithful Messages equivalent; ``reason`` says why, for humans."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Turn:
    role: str  # "user" | "assistant"
    blocks: list[dict[str, Any]]


@dataclass(slots=True)
class FreshIds:
    """Unique tool-use ids: Messages wants them unique, OpenAI-compatible servers may
    reuse one, and sanitising can map several ids to one candidate."""

    used: set[str] = field(default_factory=set)
    # The last suffix tried per candidate, so n reuses of one id cost O(n), not O(n²).
    next_suffix: dict[str, int] = field(default_factory=dict)

    def __call__(self, candidate: str) -> str:
        unique, counter = candidate, self.next_suffix.get(candidate, 1)
        if counter > 1:
            unique = f"{candidate}_{counter}"
        while unique in self.used:
            counter += 1
            unique = f"{candidate}_{counter}"
        self.next_suffix[candidate] = counter
        self.used.add(unique)
        return unique


def merge_turns(raw_turns: list[Turn]) -> list[dict[str, Any]]:
    """Consecutive turns of one role as one, tool results first in a user turn, a final
    assistant prefill trimmed, and every tool call answered: what Messages accepts."""
    turns: list[Turn] = []
    for turn in raw_turns:
        if not turn.blocks:
            continue
        if turns and turns[-1].role == turn.role:
            turns[-1].blocks.extend(turn.blocks)
        else:
            turns.append(Turn(turn.role, list(turn.blocks)))
    for turn in turns:
        if turn.role == "user":  # tool results must open their turn
            turn.blocks.sort(key=lambda block: block["type"] != "tool_result")
    trim_prefill(turns)
    if not turns:
        raise Untranslatable("no user or assistant messages to send")
    check_tool_pairing(turns)
    return [{"role": turn.role, "content": turn.blocks} for turn in turns]


def trim_prefill(turns: list[Turn]) -> None:
    """A final assistant turn is a prefill; the API refuses one ending in whitespace."""
    if not turns or turns[-1].role != "assistant":
        return
    blocks = turns[-1].blocks
    if blocks and blocks[-1]["type"] == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {"type": "text", "text": text}
        else:
            blocks.pop()
    if not blocks:
        turns.pop()


def check_tool_pairing(turns: list[Turn]) -> None:
    """Every tool_use is answered in the very next turn, and only those are answered."""
    for position, turn in enumerate(turns):
        if turn.role == "assistant":
            asked = {b["id"] for b in turn.blocks if b["type"] == "tool_use"}
            following = turns[position + 1] if position + 1 < len(turns) else None
            answered = (
                {b["tool_use_id"] for b in following.blocks if b["type"] == "tool_result"}
                if following is not None
                else set()
            )
            if unanswered := sorted(asked - answered):
                shown = ", ".join(show(i) for i in unanswered[:5])
                more = f" and {len(unanswered) - 5} more" if len(unanswered) > 5 else ""
                raise Untranslatable(f"tool calls [{shown}{more}] have no tool result")
        else:
            previous = turns[position - 1] if position > 0 else None
            asked = (
                {b["id"] for b in previous.blocks if b["type"] == "tool_use"}
                if previous is not None
                else set()
            )
            results = [b["tool_use_id"] for b in turn.blocks if b["type"] == "tool_result"]
            if any(r not in asked for r in results) or len(set(results)) != len(results):
                raise Untranslatable("a tool result does not follow its tool call")


def tool_use_id(raw_id: str) -> str:
    """Messages ids match ``[A-Za-z0-9_-]+``; other servers' ids are mapped stably."""
    if _TOOL_USE_ID.fullmatch(raw_id):
        return raw_id
    digest = hashlib.sha256(raw_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_NOT_ID_CHARS.sub('_', raw_id)}_{digest}"


def text_block(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] if text.strip() else []


def image_block(image_url: Any, where: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise Untranslatable(f"{where}: image_url has no url")
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if url.startswith("data:"):
        header, comma, data = url.partition(",")
        media_type, *params = header.removeprefix("data:").split(";")
        media_type = media_type.strip().lower()
        if not comma or "base64" not in params:
            raise Untranslatable(f"{where}: image data URL is not base64")
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise Untranslatable(f"{where}: image type {show(media_type)} is not supported")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    raise Untranslatable(f"{where}: image URL scheme is not https or data:")


def show(value: Any) -> str:
    """A value for a human-readable reason, short even when the value is huge."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)

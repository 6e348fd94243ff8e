"""Which conversation (agent session) an exchange belongs to, its turn, and per tag how
many conversations have a shadow judged worse and at which turn that first happens.

Pure functions over parsed request bodies and plain rows, no I/O. The conversation is the
application's ``x-shadow-conversation`` header (``CONVERSATION_HEADER``) when it sends
one; otherwise a digest of the system prompt and the first user turn, which every later
request of the same conversation repeats because the shadow always answers on the
primary's full history (for a Responses request continuing by ``previous_response_id``,
the mirror passes the history it rebuilt). The turn is the number of user turns so
far: a user message that only hands back tool results continues the turn it belongs to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TagConversations",
    "conversation_of",
    "worse_conversations_by_tag",
]

# Bounds an application-chosen id; the column is text, but an id is not a payload.
MAX_CONVERSATION_ID = 200
_DIGEST_PREFIX = "h:"
_TOOL_RESULT_PARTS = frozenset({"tool_result", "function_call_output"})


def conversation_of(
    api: str, request: Any, header: str | None
) -> tuple[str | None, int | None]:
    """(conversation id, turn) for one request; either is None when it cannot be known
    (a body that is not a conversation, or a Responses request continuing a stored
    conversation by ``previous_response_id`` without the header)."""
    turn = _user_turns(api, request)
    if header is not None and header.strip():
        return header.strip()[:MAX_CONVERSATION_ID], turn
    opening = _opening(api, request)
    if opening is None:
        return None, turn
    canonical = json.dumps(opening, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return _DIGEST_PREFIX + digest, turn


def _messages(api: str, request: Any) -> list[Any] | None:
    if not isinstance(request, dict):
        return None
    if api == "openai.responses":
        items = request.get("input")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return items if isinstance(items, list) else None
    messages = request.get("messages")
    return messages if isinstance(messages, list) else None


def _is_user_turn(message: Any) -> bool:
    if not isinstance(message, dict) or message.get("role") != "user":
        return False
    content = message.get("content")
    if isinstance(content, list) and content:
        return any(not (isinstance(part, dict) and part.get("type") in _TOOL_RESULT_PARTS)
                   for part in content)
    return True


def _user_turns(api: str, request: Any) -> int | None:
    messages = _messages(api, request)
    if messages is None:
        return None
    return sum(1 for message in messages if _is_user_turn(message))


def _opening(api: str, request: Any) -> list[Any] | None:
    """The system prompt and the first user turn, in each API's shape."""
    messages = _messages(api, request)
    if messages is None or not isinstance(request, dict):
        return None
    if api == "openai.responses" and request.get("previous_response_id") is not None:
        return None  # the opening lives at the provider, not in this request
    system: list[Any] = []
    if "system" in request:
        system.append(request["system"])
    # Responses' ``instructions`` are per request (the API does not carry them over a
    # previous_response_id), so they cannot name the conversation; its system and
    # developer items can.
    first_user: Any = None
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer"):
            system.append(message.get("content"))
        elif _is_user_turn(message):
            first_user = message.get("content")
            break
    if first_user is None:
        return None
    return [system, first_user]


# -------------------------------------------------------------------- per-tag counts


@dataclass(slots=True)
class TagConversations:
    """One tag's conversations: how many, how many with a worse shadow, and when."""

    conversations: int = 0
    with_worse: int = 0
    # turn number → conversations whose first worse turn it is
    first_worse_turns: dict[int, int] = field(default_factory=dict)

    @property
    def worse_share(self) -> float | None:
        return self.with_worse / self.conversations if self.conversations else None


def worse_conversations_by_tag(
    rows: Iterable[Mapping[str, Any]],
) -> dict[str | None, TagConversations]:
    """Per tag, conversations with at least one shadow judged ``worse``, and the turn at
    which each first happens. Rows need ``conversation_id``, ``turn``, ``tag`` and
    ``verdict``; rows without a conversation are left out. A conversation spanning two
    tags counts under each. A worse verdict without a turn number counts as a worse
    conversation but has no first turn."""
    first_worse: dict[tuple[str | None, str], int | None] = {}
    worse_seen: set[tuple[str | None, str]] = set()
    for row in rows:
        conversation = row.get("conversation_id")
        if conversation is None:
            continue
        key = (row.get("tag"), str(conversation))
        first_worse.setdefault(key, None)
        if row.get("verdict") != "worse":
            continue
        turn = row.get("turn")
        turn = turn if isinstance(turn, int) and not isinstance(turn, bool) else None
        if key not in worse_seen:
            worse_seen.add(key)
            first_worse[key] = turn
        elif turn is not None:
            current = first_worse[key]
            first_worse[key] = turn if current is None else min(current, turn)
    result: dict[str | None, TagConversations] = {}
    for (tag, _conversation), turn in first_worse.items():
        stats = result.setdefault(tag, TagConversations())
        stats.conversations += 1
        if (tag, _conversation) in worse_seen:
            stats.with_worse += 1
            if turn is not None:
                stats.first_worse_turns[turn] = stats.first_worse_turns.get(turn, 0) + 1
    for stats in result.values():
        stats.first_worse_turns = dict(sorted(stats.first_worse_turns.items()))
    return result

"""Bounds that keep one exchange's worst input from costing more than one exchange.

Pure functions, no I/O. Whatever an application sends, the mirror must turn it into a
pair PostgreSQL accepts, in time linear in its size and with a bounded reason:

- JSON nesting: a request is parsed only if Python's decoder can (it raises
  ``RecursionError`` near 1,000 levels); anything deeper than :data:`MAX_JSON_DEPTH`
  levels is not sent to the shadow, and the part of a stored value below that depth is
  replaced by :data:`TOO_DEEP` so the rest of the evidence survives.
- Text: lone UTF-16 surrogates (``"\\ud800"`` escapes, or an emoji whose two halves came
  in two stream deltas) cannot be encoded as UTF-8; pairs are joined into the character
  they spell and what is left alone becomes U+FFFD, as a NUL does.
- Reasons: at most :data:`MAX_REASON_CHARS` characters, so a reason listing 16,000 ids
  is neither stored nor logged whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any real LLM request (tool schemas nest a dozen levels) and far below the
# ~1,000 at which Python's own recursive code (json, pickle, our walkers) gives up.
MAX_JSON_DEPTH = 64
MAX_REASON_CHARS = 500
TOO_DEEP = f"[nested deeper than {MAX_JSON_DEPTH} levels; cut here]"

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class TooDeep(ValueError):
    """The JSON document nests deeper than the mirror accepts."""

    def __init__(self, depth: int | None) -> None:
        shown = "over 900" if depth is None else str(depth)
        super().__init__(f"request JSON nested {shown} levels deep "
                         f"(limit {MAX_JSON_DEPTH})")
        self.depth = depth


def bounded(reason: str, limit: int = MAX_REASON_CHARS) -> str:
    """A reason cut to ``limit`` characters, saying how much was cut."""
    if len(reason) <= limit:
        return reason
    note = f"… [cut; {len(reason)} chars in all]"
    return reason[: max(0, limit - len(note))] + note


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion.

    Level by level, keeping only containers: the cost is one ``isinstance`` per value.
    """
    depth = 0
    level = [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below += [c for c in children if isinstance(c, dict | list)]
        level = below
    return depth


def shallow_enough(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``body`` cannot nest deeper than ``limit``: it has too few brackets.
    A C-speed count that spares the walk for nearly every real request."""
    return body.count(b"[") + body.count(b"{") <= limit


def parse_json(body: bytes | str) -> Any:
    """``json.loads`` that raises :class:`TooDeep` (a ValueError) instead of
    ``RecursionError``, and for documents deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise TooDeep(None) from None
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise TooDeep(depth)
    return value


def cut_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """A copy of ``value`` whose containers below depth ``limit`` are :data:`TOO_DEEP`.

    Returns ``value`` itself when nothing needed cutting (the common case costs one walk).
    """
    if json_depth(value) <= limit:
        return value
    if not isinstance(value, dict | list):
        return value
    root: dict[str, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                if depth >= limit:
                    copied: Any = TOO_DEEP
                else:
                    copied = {} if isinstance(item, dict) else []
                    stack.append((item, copied, depth + 1))
            else:
                copied = item
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def repair_text(text: str) -> str:
    """Text PostgreSQL can store: surrogate pairs joined, lone halves and NUL → U+FFFD."""
    if _UNSTORABLE.search(text) is None:
        return text
    if _SURROGATE.search(text) is not None:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", "\ufffd")


def needs_repair(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def repair_json(value: Any) -> Any:
    """A copy of a JSON value with every string (keys too) through :func:`repair_text`.

    Iterative, so it is safe at any depth the decoder produced.
    """
    if isinstance(value, str):
        return repair_text(value)
    if not isinstance(value, dict | list):
        return value
    root: dict[str, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, str):
                copied: Any = repair_text(item)
            elif isinstance(item, dict | list):
                copied = {} if isinstance(item, dict) else []
                stack.append((item, copied))
            else:
                copied = item
            if isinstance(target, dict):
                target[repair_text(key) if isinstance(key, str) else key] = copied
            else:
                target.append(copied)
    return root

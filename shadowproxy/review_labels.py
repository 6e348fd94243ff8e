"""A reviewer's label as the API receives it, and what it means from the shadow's side.

Pure (no I/O). The page shows the two answers as "Answer 1" and "Answer 2" in an order
drawn per item (``shadow_first``); a choice of ``1`` or ``2`` becomes ``better`` or
``worse`` for the shadow, ``tie`` is ``equivalent``, ``skip`` is no label at all.

A note is optional text for the people reading disagreements later: at most
:data:`NOTE_MAX_CHARS` characters, line breaks and tabs allowed, other control characters
refused (not silently dropped: the page keeps the text so its author can fix it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CHOICES", "NOTE_MAX_CHARS", "Label", "LabelError", "parse_label", "verdict_for"]

CHOICES = ("1", "2", "tie", "skip")
NOTE_MAX_CHARS = 10_000
# C0 controls but tab and line feed, DEL, C1 controls, lone surrogates.
_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class LabelError(ValueError):
    """A label the API refuses; ``too_large`` for a note over the limit (413)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class Label:
    choice: str
    note: str | None


def verdict_for(choice: str, shadow_first: bool) -> str | None:
    """The label from the shadow's side; None for a skip."""
    if choice == "skip":
        return None
    if choice == "tie":
        return "equivalent"
    shadow_chosen = (choice == "1") == shadow_first
    return "better" if shadow_chosen else "worse"


def parse_label(body: Any) -> Label:
    """``{"choice": "1" | "2" | "tie" | "skip", "note": str | null}``."""
    if not isinstance(body, Mapping):
        raise LabelError('the body must be a JSON object: {"choice": "1", "note": "…"}')
    choice = body.get("choice")
    if choice not in CHOICES:
        raise LabelError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r:.40}")
    note = body.get("note")
    if note is None:
        return Label(choice, None)
    if not isinstance(note, str):
        raise LabelError("note must be a string")
    note = note.replace("\r\n", "\n").replace("\r", "\n")
    if len(note) > NOTE_MAX_CHARS:
        raise LabelError(f"note: at most {NOTE_MAX_CHARS:,} characters (this one has "
                         f"{len(note):,}); shorten it and send again", too_large=True)
    bad = _REFUSED.search(note)
    if bad is not None:
        raise LabelError(f"note: control character U+{ord(bad.group()):04X} at position "
                         f"{bad.start() + 1}; remove it and send again")
    return Label(choice, note.strip() or None)

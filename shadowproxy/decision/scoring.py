"""Score one pair of answers: do the primary and the shadow say the same thing?

Pure functions over plain data, so the verdict can be tested without a database.
The single verdict the report counts is :attr:`Scores.agree`; it holds when

* both sides answered (no error, no HTTP status >= 400),
* they made the same decision: the stop reasons agree, where ``end_turn`` and
  ``stop_sequence`` are both "finished answering" and ``tool_use`` versus a text answer
  is a disagreement,
* they called the same tools, in the same order, with arguments equal as JSON values,
* their texts are equivalent: equal after normalisation (case, whitespace and
  punctuation ignored) or :data:`TEXT_SIMILARITY_THRESHOLD` similar. When the primary
  answered with tool calls the text around them is not required to match,
* and, when the primary's text is a JSON object or array, the shadow's is too.

Text similarity is rapidfuzz's ``fuzz.ratio`` (normalised Indel distance, symmetric and
order-sensitive) on the normalised texts, scaled to 0..1. Order-sensitive on purpose:
``token_set_ratio`` calls a reordered list of steps identical.

A pair whose primary failed gets ``agree = False`` here, but the report leaves it out of
the agreement share entirely: there is no reference answer to agree with.
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rapidfuzz import fuzz

__all__ = [
    "REFUSAL_PATTERN",
    "TEXT_SIMILARITY_THRESHOLD",
    "Comparison",
    "Scores",
    "SideView",
    "answered",
    "compare",
    "decision",
    "is_refusal",
    "json_document",
    "normalize_text",
    "score_pair",
    "text_similarity",
    "tool_calls_match",
]

TEXT_SIMILARITY_THRESHOLD = 0.85

# Both mean "the model finished its answer"; a stop sequence is the caller's choice.
_FINISHED = "finished"
_DECISIONS = {"end_turn": _FINISHED, "stop_sequence": _FINISHED, "stop": _FINISHED}

REFUSAL_PATTERN = re.compile(
    r"^\W*(?:i'?m sorry|i apologi[sz]e|sorry|unfortunately)?[,.!\s-]*(?:but\s+)?"
    r"(?:i|we)\s+(?:can ?not|can't|won't|will not|am unable to|'m unable to|"
    r"am not able to|'m not able to|must decline to|must refuse to)\s+"
    r"(?:help|assist|comply|provide|do that|fulfil|fulfill|support|engage|create|write|"
    r"generate|answer|share|give)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SideView:
    """What scoring needs from one side of a pair."""

    text: str = ""
    # [{"name": str, "arguments": JSON value or the raw string}]
    tool_calls: Sequence[Mapping[str, Any]] = ()
    stop_reason: str | None = None
    status: int | None = None
    error: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], prefix: str) -> SideView:
        """Read ``{prefix}_text`` etc. from a ``pairs``/``comparisons`` row."""
        calls = row.get(f"{prefix}_tool_calls")
        if isinstance(calls, str):  # a driver that hands jsonb back undecoded
            calls = json.loads(calls)
        return cls(
            text=row.get(f"{prefix}_text") or "",
            tool_calls=[c for c in calls or () if isinstance(c, Mapping)],
            stop_reason=row.get(f"{prefix}_stop_reason"),
            status=row.get(f"{prefix}_status"),
            error=row.get(f"{prefix}_error"),
        )


@dataclass(frozen=True, slots=True)
class Scores:
    exact_match: bool
    text_similarity: float
    tool_call_match: bool
    stop_reason_match: bool
    json_match: bool | None
    refusal: bool
    length_ratio: float | None
    agree: bool

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def answered(status: int | None, error: str | None) -> bool:
    """A side answered when it reported no error and no failing HTTP status."""
    return error is None and (status is None or status < 400)


# ASCII: letters lower-cased, digits kept, everything else (punctuation, symbols,
# spaces, controls: categories P, S, Z and C) a space. NFKC leaves ASCII alone and
# casefold() is lower() there, so this table is the whole normalisation for ASCII.
_ASCII_FOLD = bytes(
    (c + 32 if 65 <= c <= 90 else c) if chr(c).isalnum() and c < 128 else 32
    for c in range(256)
)


# The same table over UTF-8: bytes 128-255 (parts of other characters) stay as they are.
_UTF8_FOLD = _ASCII_FOLD[:128] + bytes(range(128, 256))


@functools.lru_cache(maxsize=1 << 16)
def _dropped(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PSZC"


def normalize_text(text: str) -> str:
    """Case-fold, drop punctuation and symbols, collapse whitespace.

    Same result as NFKC, ``casefold()``, every character of category P, S, Z or C turned
    into a space, then whitespace collapsed (tests hold it to that definition). The
    ASCII characters go through a byte table and each distinct other character is
    looked up once: a per-character loop is what made ``diff`` spend 300 µs on a
    900-character answer.
    """
    if text.isascii():
        return b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split()).decode("ascii")
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    folded = text.casefold().encode("utf-8", "surrogatepass").translate(_UTF8_FOLD).decode(
        "utf-8", "surrogatepass")
    for ch in set(folded):
        if ch > "\x7f" and _dropped(ch):
            folded = folded.replace(ch, " ")
    return " ".join(folded.split())


def text_similarity(a: str, b: str) -> float:
    """0..1, symmetric; two empty texts are identical."""
    return float(fuzz.ratio(normalize_text(a), normalize_text(b))) / 100.0


def decision(side: SideView) -> str | None:
    """What the model decided to do, in one word: finished, tool_use, max_tokens, ..."""
    if side.tool_calls:
        return "tool_use"
    if side.stop_reason is None:
        return None
    return _DECISIONS.get(side.stop_reason, side.stop_reason)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: 1 == 1.0, but True != 1 and key order is irrelevant."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (isinstance(a, float) and isinstance(b, float)
                          and math.isnan(a) and math.isnan(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _arguments(value: Any) -> Any:
    """Arguments stored as a raw string are compared parsed when they parse."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def tool_calls_match(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    if len(a) != len(b):
        return False
    return all(
        x.get("name") == y.get("name")
        and _json_equal(_arguments(x.get("arguments")), _arguments(y.get("arguments")))
        for x, y in zip(a, b, strict=True)
    )


def json_document(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when the whole text is one JSON object or array."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(stripped)
    except (ValueError, RecursionError):
        return False, None


def is_refusal(side: SideView) -> bool:
    if side.stop_reason == "refusal":
        return True
    opening = side.text[:300].replace("\u2019", "'").strip()
    return bool(REFUSAL_PATTERN.match(opening))


@dataclass(frozen=True, slots=True)
class Comparison:
    """What scoring and the verdict tiers both need from a pair, computed once:
    normalising a long answer and parsing JSON are the expensive parts of ``diff``."""

    primary_norm: str
    shadow_norm: str
    calls_match: bool
    same_decision: bool
    primary_json: tuple[bool, Any]
    shadow_json: tuple[bool, Any]

    @property
    def exact_text(self) -> bool:
        return self.primary_norm == self.shadow_norm


def compare(primary: SideView, shadow: SideView) -> Comparison:
    return Comparison(
        primary_norm=normalize_text(primary.text),
        shadow_norm=normalize_text(shadow.text),
        calls_match=tool_calls_match(primary.tool_calls, shadow.tool_calls),
        same_decision=decision(primary) == decision(shadow),
        primary_json=json_document(primary.text),
        shadow_json=json_document(shadow.text),
    )


def score_pair(primary: SideView, shadow: SideView,
               comparison: Comparison | None = None) -> Scores:
    """Compare the shadow's answer with the primary's; see the module docstring.

    ``comparison`` is :func:`compare`'s result for the same two sides, when the caller
    already has it (``diff`` shares it with the verdict tiers).
    """
    c = comparison or compare(primary, shadow)
    exact = c.exact_text
    # Equal strings are 100 by definition: skip the O(n*m/64) Indel computation.
    similarity = 1.0 if exact else float(fuzz.ratio(c.primary_norm, c.shadow_norm)) / 100.0
    json_match = None if not c.primary_json[0] else c.shadow_json[0]
    texts_equivalent = (
        bool(primary.tool_calls) or exact or similarity >= TEXT_SIMILARITY_THRESHOLD
    )
    agree = (
        answered(primary.status, primary.error)
        and answered(shadow.status, shadow.error)
        and c.same_decision
        and c.calls_match
        and texts_equivalent
        and json_match is not False
    )
    return Scores(
        exact_match=exact,
        text_similarity=similarity,
        tool_call_match=c.calls_match,
        stop_reason_match=c.same_decision,
        json_match=json_match,
        refusal=is_refusal(primary) or is_refusal(shadow),
        length_ratio=len(shadow.text) / len(primary.text) if primary.text else None,
        agree=agree,
    )

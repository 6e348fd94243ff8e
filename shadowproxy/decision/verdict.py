"""The verdict tiers: which pairs are settled without a judge, and which need one.

Pure functions over :class:`~shadowproxy.decision.scoring.SideView`, from the shadow's side:

* a side failed: **not judged**. The primary's failure leaves nothing to compare; the
  shadow's failure (error, timeout, dropped, skipped) counts in ``shadow_error_rate``
  instead. :attr:`Tiered.verdict` and :attr:`Tiered.method` are ``None`` (NULL in
  ``scores``), and :attr:`Tiered.reason` says why.
* ``exact``: both answered, the texts are equal after
  :func:`~shadowproxy.decision.scoring.normalize_text`, the same tool calls (arguments equal as
  JSON values) and the same decision (stop reason): ``equivalent``, no judge call.
* ``structural``: both answers are tool calls, or both texts are one JSON document.
  Equal as JSON values (the text around tool calls ignored): ``equivalent``; otherwise
  the judge decides, and :attr:`Tiered.diff_paths` lists where the values differ.
* everything else needs the judge.

Differing paths are written in JSONPath's normalised form: ``$.items[2].price``, a key
that is not an identifier in brackets (``$["unit price"]``), tool calls under
``$.tool_calls[i]`` (``$.tool_calls[0].arguments.city``, ``$.tool_calls[1].name``). A
value present on one side only is named by its path; at most :data:`MAX_DIFF_PATHS`
paths are kept, in a stable order that does not depend on which side is which.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shadowproxy.decision.scoring import (
    Comparison,
    SideView,
    answered,
    compare,
    json_document,
)

__all__ = [
    "MAX_DIFF_PATHS",
    "Method",
    "Tiered",
    "Verdict",
    "json_diff_paths",
    "json_document",
    "tier",
]

MAX_DIFF_PATHS = 20
_CONTAINERS = (Mapping, list, tuple)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Verdict(StrEnum):
    EQUIVALENT = "equivalent"
    BETTER = "better"
    WORSE = "worse"
    UNJUDGED = "unjudged"


class Method(StrEnum):
    EXACT = "exact"
    STRUCTURAL = "structural"
    JUDGE = "judge"


@dataclass(frozen=True, slots=True)
class Tiered:
    """What the tiers concluded about one pair.

    ``needs_judge`` pairs carry no verdict yet; failed pairs carry none ever.
    """

    verdict: Verdict | None
    method: Method | None
    needs_judge: bool
    diff_paths: tuple[str, ...] = ()
    reason: str | None = None


def _key_path(path: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _same_scalar(a: Any, b: Any) -> bool:
    """JSON scalar equality: 1 == 1.0, True != 1, NaN equals NaN."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    return type(a) is type(b) and bool(a == b)


def json_diff_paths(a: Any, b: Any, root: str = "$", limit: int = MAX_DIFF_PATHS) -> list[str]:
    """Where two JSON values differ, as paths; empty when they are equal as values."""
    found: list[str] = []
    _walk(a, b, root, found, limit)
    return found


def _walk(a: Any, b: Any, path: str, found: list[str], limit: int) -> None:
    if len(found) >= limit:
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            child = _key_path(path, str(key))
            if key not in a or key not in b:
                found.append(child)
            else:
                _walk(a[key], b[key], child, found, limit)
            if len(found) >= limit:
                return
        return
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for index in range(max(len(a), len(b))):
            child = f"{path}[{index}]"
            if index >= len(a) or index >= len(b):
                found.append(child)
            else:
                _walk(a[index], b[index], child, found, limit)
            if len(found) >= limit:
                return
        return
    if isinstance(a, _CONTAINERS) or isinstance(b, _CONTAINERS) or not _same_scalar(a, b):
        found.append(path)


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _calls_as_json(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "arguments": _arguments(c.get("arguments"))} for c in calls]


def _failure(primary: SideView, other: SideView, other_ok: bool, other_name: str
             ) -> str | None:
    if not answered(primary.status, primary.error):
        return "not judged: the primary failed, so there is no answer to compare with"
    if not other_ok or not answered(other.status, other.error):
        if other_name == "shadow":
            return "not judged: the shadow failed (counted in shadow_error_rate)"
        return f"not judged: the {other_name} failed"
    return None


def tier(primary: SideView, shadow: SideView, *, shadow_ok: bool = True,
         name: str = "shadow", comparison: Comparison | None = None) -> Tiered:
    """Settle the pair without a judge when the tiers can; see the module docstring.

    ``shadow_ok`` is false when the shadow's outcome was not ``ok`` (timeout, dropped,
    skipped, error) even if its side columns look like an answer. ``name`` names the
    compared side in the reason a failed pair is not judged (``replay`` for the noise
    floor). ``comparison`` is :func:`~shadowproxy.decision.scoring.compare`'s result for
    the same sides, when the caller already has it.
    """
    failed = _failure(primary, shadow, shadow_ok, name)
    if failed is not None:
        return Tiered(None, None, needs_judge=False, reason=failed)
    c = comparison or compare(primary, shadow)
    if c.same_decision and c.calls_match and c.exact_text:
        return Tiered(Verdict.EQUIVALENT, Method.EXACT, needs_judge=False)
    if primary.tool_calls and shadow.tool_calls:
        if c.calls_match:
            return Tiered(Verdict.EQUIVALENT, Method.STRUCTURAL, needs_judge=False)
        paths = json_diff_paths(
            _calls_as_json(primary.tool_calls), _calls_as_json(shadow.tool_calls),
            root="$.tool_calls",
        )
        return Tiered(None, None, needs_judge=True, diff_paths=tuple(paths))
    if not primary.tool_calls and not shadow.tool_calls:
        primary_is_json, primary_value = c.primary_json
        shadow_is_json, shadow_value = c.shadow_json
        if primary_is_json and shadow_is_json:
            paths = json_diff_paths(primary_value, shadow_value)
            if not paths and c.same_decision:
                return Tiered(Verdict.EQUIVALENT, Method.STRUCTURAL, needs_judge=False)
            return Tiered(None, None, needs_judge=True, diff_paths=tuple(paths))
    return Tiered(None, None, needs_judge=True)

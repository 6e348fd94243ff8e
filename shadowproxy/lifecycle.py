"""Model end-of-life: is the primary, shadow or judge model deprecated or retired, and when.

Two sources, no hand-kept table: the anthropic SDK's own deprecated-models data
(``anthropic/_data/deprecated_models.py``: model id → end-of-life date as the SDK prints
it, shipped with every SDK release) and the Models API (``GET /v1/models/{id}``:
``lifecycle``, ``retires_at``, ``max_tokens``), which is authoritative when it answers
(:mod:`shadowproxy.models_api` asks it).

Pure: the SDK's data is read from the installed package's file, not imported, so the
proxy process (dashboard) and the report can call :func:`lifecycle_warning` without
loading the SDK.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ModelLifecycle",
    "from_model_info",
    "lifecycle_warning",
    "sdk_deprecated_models",
    "sdk_end_of_life",
]

_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")
# Provider wrappings around a Claude id: Bedrock's [region.]anthropic.…-v1:0, Vertex's @date.
_BEDROCK = re.compile(r"^(?:[a-z]+\.)?anthropic\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
MODELS_API_SOURCE = "models api"
SDK_SOURCE = "anthropic sdk"


@dataclass(slots=True, frozen=True)
class ModelLifecycle:
    """What is known about one model's life: ``lifecycle`` is ``active``, ``deprecated``
    or ``retired`` (None when no source knows the model)."""

    model: str
    lifecycle: str | None = None
    retires_at: date | None = None
    max_tokens: int | None = None
    source: str | None = None  # MODELS_API_SOURCE | SDK_SOURCE


@functools.cache
def sdk_deprecated_models() -> Mapping[str, str]:
    """``DEPRECATED_MODELS`` of the installed anthropic SDK, read from its source file.

    Empty when the SDK is missing or this version has no such data: then the Models API
    alone decides.
    """
    spec = importlib.util.find_spec("anthropic")  # locates the package, runs none of it
    if spec is None or spec.origin is None:
        return {}
    path = Path(spec.origin).parent / "_data" / "deprecated_models.py"
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and node.targets else None)
        if isinstance(target, ast.Name) and target.id == "DEPRECATED_MODELS":
            value = getattr(node, "value", None)
            try:
                table = ast.literal_eval(value) if value is not None else None
            except ValueError:
                return {}
            if isinstance(table, dict):
                return {str(k): str(v) for k, v in table.items()}
    return {}


def parse_sdk_date(text: str) -> date | None:
    """``"November 30th, 2026"`` (the SDK's spelling) → a date; None if unreadable."""
    try:
        return datetime.strptime(_ORDINAL.sub(r"\1", text.strip()), "%B %d, %Y").date()
    except ValueError:
        return None


def base_model_id(model: str) -> str:
    """The Anthropic id inside a provider's spelling (Bedrock, Vertex, OpenRouter)."""
    name = model.strip().rsplit("/", 1)[-1].split("@", 1)[0]
    name = _BEDROCK.sub("", name)
    return _BEDROCK_VERSION.sub("", name)


def sdk_end_of_life(model: str, table: Mapping[str, str] | None = None) -> date | None:
    """The end-of-life date the installed anthropic SDK knows for ``model``."""
    table = sdk_deprecated_models() if table is None else table
    for name in (model, base_model_id(model)):
        if name in table:
            return parse_sdk_date(table[name])
    return None


def from_sdk(model: str, table: Mapping[str, str] | None = None) -> ModelLifecycle:
    """What the SDK's data alone says (deprecated with a date, or nothing)."""
    when = sdk_end_of_life(model, table)
    if when is None:
        return ModelLifecycle(model)
    return ModelLifecycle(model, "deprecated", when, None, SDK_SOURCE)


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()


def from_model_info(
    model: str, info: Mapping[str, Any], table: Mapping[str, str] | None = None
) -> ModelLifecycle:
    """A Models API ``ModelInfo`` body; where it has no lifecycle fields (an older API),
    the SDK's date fills in."""
    max_tokens = info.get("max_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
    lifecycle = info.get("lifecycle")
    lifecycle = lifecycle if isinstance(lifecycle, str) else None
    retires_at = _date(info.get("retires_at"))
    if lifecycle is None and retires_at is None:
        sdk = from_sdk(model, table)
        return ModelLifecycle(model, sdk.lifecycle, sdk.retires_at, max_tokens,
                              sdk.source or MODELS_API_SOURCE)
    return ModelLifecycle(model, lifecycle, retires_at, max_tokens, MODELS_API_SOURCE)


def lifecycle_warning(model: str, info: ModelLifecycle | None, today: date) -> str | None:
    """One line for a human when ``model`` is deprecated or retired; None otherwise."""
    if info is None or (info.lifecycle in (None, "active") and info.retires_at is None):
        return None
    when = info.retires_at.isoformat() if info.retires_at else None
    source = f" (source: {info.source})" if info.source else ""
    if info.lifecycle == "retired":
        on = f" on {when}" if when else ""
        return f"model {model} was retired{on}: requests to it fail{source}"
    if info.retires_at is None:
        return f"model {model} is deprecated; no retirement date is set{source}"
    days = (info.retires_at - today).days
    if days < 0:
        return (f"model {model} is deprecated and was due to retire on {when} "
                f"({-days} days ago){source}")
    return (f"model {model} is deprecated and reaches end-of-life on {when} "
            f"(in {days} days){source}")

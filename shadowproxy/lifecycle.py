"""Model end-of-life: is the primary, shadow or judge model deprecated or retired, and when.

Two sources, no hand-kept table: the anthropic SDK's own deprecated-models data
(``anthropic._data.DEPRECATED_MODELS``, model id → end-of-life date as the SDK prints it,
shipped with every SDK release) and the Models API (``GET /v1/models/{id}``:
``lifecycle``, ``retires_at``, ``max_tokens``), which is authoritative when reachable. The
Models API also gives the shadow model's ``max_tokens``, the limit the mirror clamps to.

:func:`lifecycle_warning` is pure (the report and the dashboard call it with what they
know); :func:`lookup_lifecycle` is the one network call, bounded and never raising.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import anthropic

__all__ = [
    "ModelLifecycle",
    "lifecycle_warning",
    "lookup_lifecycle",
    "lookup_lifecycles",
    "sdk_end_of_life",
]

DEFAULT_TIMEOUT_S = 5.0
_ORDINAL = re.compile(r"(\d+)(st|nd|rd|th)\b")
# Provider wrappings around a Claude id: Bedrock's [region.]anthropic.…-v1:0, Vertex's @date.
_BEDROCK = re.compile(r"^(?:[a-z]+\.)?anthropic\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


@dataclass(slots=True, frozen=True)
class ModelLifecycle:
    """What is known about one model's life: ``lifecycle`` is ``active``, ``deprecated``
    or ``retired`` (None when no source knows the model)."""

    model: str
    lifecycle: str | None = None
    retires_at: date | None = None
    max_tokens: int | None = None
    source: str | None = None  # "models api" | "anthropic sdk"


def _sdk_table() -> Mapping[str, str]:
    try:
        from anthropic._data import DEPRECATED_MODELS
    except ImportError:  # an SDK without the data: the Models API alone decides
        return {}
    return dict(DEPRECATED_MODELS)


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
    table = _sdk_table() if table is None else table
    for name in (model, base_model_id(model)):
        if name in table:
            return parse_sdk_date(table[name])
    return None


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


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return None


async def lookup_lifecycle(
    model: str,
    client: anthropic.AsyncAnthropic | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    sdk_table: Mapping[str, str] | None = None,
) -> ModelLifecycle:
    """The model's lifecycle from the Models API when it answers, else the SDK's data.

    Never raises: a Models API that is unreachable, refuses the key or does not know the
    model leaves the SDK's date as the answer.
    """
    if client is not None:
        try:
            async with asyncio.timeout(timeout_s):
                info = await client.models.retrieve(model)
        except (anthropic.AnthropicError, TimeoutError):
            pass
        else:
            lifecycle = getattr(info, "lifecycle", None)
            retires_at = _as_date(getattr(info, "retires_at", None))
            if lifecycle is not None or retires_at is not None:
                return ModelLifecycle(model, lifecycle, retires_at,
                                      getattr(info, "max_tokens", None), "models api")
            sdk_date = sdk_end_of_life(model, sdk_table)
            return ModelLifecycle(model, "deprecated" if sdk_date else None, sdk_date,
                                  getattr(info, "max_tokens", None),
                                  "anthropic sdk" if sdk_date else "models api")
    sdk_date = sdk_end_of_life(model, sdk_table)
    if sdk_date is None:
        return ModelLifecycle(model)
    return ModelLifecycle(model, "deprecated", sdk_date, None, "anthropic sdk")


async def lookup_lifecycles(
    models: Iterable[str],
    client: anthropic.AsyncAnthropic | None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, ModelLifecycle]:
    """Several models at once (the report's primary models, the shadow, the judge)."""
    unique = list(dict.fromkeys(m for m in models if m))
    found = await asyncio.gather(*(lookup_lifecycle(m, client, timeout_s=timeout_s)
                                   for m in unique))
    return dict(zip(unique, found, strict=True))

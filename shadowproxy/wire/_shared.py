"""Helpers the provider normalisers share; private to :mod:`shadowproxy.wire`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from shadowproxy.wire.normalized import Normalized

_SNIPPET = 200


class StreamNormalizer(Protocol):
    """What the mirror needs from either provider's stream normaliser."""

    # True from the feed() that parsed the first generated content (TTFT).
    content_seen: bool

    def feed(self, chunk: bytes) -> None: ...

    def finish(self, headers: Mapping[str, str] | None = None) -> Normalized: ...


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive lookup that works on plain dicts as well as multidicts."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value or None


def snippet(body: bytes) -> str:
    """The start of a body, enough for a human to recognise it (an HTML page, a proxy's note)."""
    return body[: _SNIPPET * 4].decode("utf-8", errors="replace")[:_SNIPPET].strip()


def describe_body(status: int, body: bytes) -> str:
    text = snippet(body)
    return f"HTTP {status}: {text}" if text else f"HTTP {status}: empty body"


def describe_error(error: Any) -> str:
    """``"type: message"`` from a provider error object; lenient, because gateways vary."""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        message = error.get("message")
        if not isinstance(message, str):
            message = json.dumps(error, default=str)
        return f"{kind}: {message}" if isinstance(kind, str | int) and kind != "" else message
    return str(error)


def parse_arguments(raw: str) -> Any:
    """Tool arguments as JSON; ``{}`` when empty; the raw string when it does not parse."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_json(data: str | bytes) -> Any:
    """JSON, or None when it is not JSON (a malformed event is skipped, not fatal)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None

"""The Messages features of 2026 in the simulated Claude, and the Models API.

Rules and shapes from the anthropic SDK's own types (``OutputConfigParam``,
``JSONOutputFormatParam``, ``ThinkingConfigEnabledParam``, ``Usage``/``CacheCreation``,
``ModelInfo``) and WIRE.md: a request the real API refuses is refused here, so a shadow
request that breaks a rule fails in the tests as it would in production.

- Structured outputs: ``output_config.format = {type: "json_schema", schema}``; the answer
  text is a JSON instance of the schema (strings carry the usual sentence).
- Thinking: ``budget_tokens`` ≥ 1024 and below ``max_tokens``; no forced ``tool_choice``.
- Prompt caching: each ``cache_control`` breakpoint caches the prompt up to it; the first
  request writes it (5-minute or 1-hour TTL), later ones with the same prefix read it.
- Models API: ``GET /v1/models/{id}`` with ``lifecycle``, ``retires_at``, ``max_tokens``
  from a catalogue a test may change (``app[MODEL_CATALOGUE]``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

MIN_THINKING_BUDGET = 1024
FORCED_TOOL_CHOICES = ("any", "tool")


@dataclass(slots=True, frozen=True)
class CatalogueEntry:
    display_name: str
    lifecycle: str  # active | deprecated | retired
    max_tokens: int
    max_input_tokens: int = 200_000
    retires_at: str | None = None  # RFC 3339
    deprecated_at: str | None = None
    created_at: str = "2025-01-01T00:00:00Z"


def default_catalogue() -> dict[str, CatalogueEntry]:
    haiku = CatalogueEntry("Claude Haiku 4.5", "active", 64_000,
                           created_at="2025-10-01T00:00:00Z")
    sonnet_45 = CatalogueEntry("Claude Sonnet 4.5", "deprecated", 64_000,
                               retires_at="2026-11-30T00:00:00Z",
                               deprecated_at="2026-05-30T00:00:00Z",
                               created_at="2025-09-29T00:00:00Z")
    sonnet_46 = CatalogueEntry("Claude Sonnet 4.6", "active", 64_000)
    old_haiku = CatalogueEntry("Claude Haiku 3", "retired", 4_096,
                               retires_at="2026-04-20T00:00:00Z",
                               deprecated_at="2025-10-20T00:00:00Z",
                               created_at="2024-03-07T00:00:00Z")
    return {
        "claude-haiku-4-5-20251001": haiku, "claude-haiku-4-5": haiku,
        "claude-sonnet-4-5-20250929": sonnet_45, "claude-sonnet-4-5": sonnet_45,
        "claude-sonnet-4-6": sonnet_46,
        "claude-3-haiku-20240307": old_haiku,
    }


MODEL_CATALOGUE = web.AppKey("model_catalogue", dict[str, CatalogueEntry])


def model_info(model_id: str, entry: CatalogueEntry) -> dict[str, Any]:
    return {
        "type": "model", "id": model_id, "display_name": entry.display_name,
        "created_at": entry.created_at, "lifecycle": entry.lifecycle,
        "deprecated_at": entry.deprecated_at, "retires_at": entry.retires_at,
        "max_tokens": entry.max_tokens, "max_input_tokens": entry.max_input_tokens,
    }


# ------------------------------------------------------------------------ request rules


def feature_problem(body: Mapping[str, Any]) -> str | None:
    """Why the Messages API would refuse this body's 2026 features, or None."""
    output_config = body.get("output_config")
    if output_config is not None:
        if not isinstance(output_config, dict):
            return "output_config: Input should be a valid dictionary"
        fmt = output_config.get("format")
        if fmt is not None and (
            not isinstance(fmt, dict) or fmt.get("type") != "json_schema"
            or not isinstance(fmt.get("schema"), dict)
        ):
            return "output_config.format: expected {type: 'json_schema', schema: {...}}"
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                return "thinking.enabled.budget_tokens: Field required"
            if budget < MIN_THINKING_BUDGET:
                return ("thinking.enabled.budget_tokens: Input should be greater than or "
                        f"equal to {MIN_THINKING_BUDGET}")
            if budget >= body.get("max_tokens", 0):
                return "`max_tokens` must be greater than `thinking.budget_tokens`."
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in FORCED_TOOL_CHOICES:
            return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def output_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    return schema if isinstance(schema, dict) else None


def schema_instance(schema: Any, sentence: str, depth: int = 0) -> Any:
    """A small value that validates against ``schema``: what constrained decoding yields."""
    if not isinstance(schema, dict) or depth > 8:
        return sentence
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_instance(schema[key][0], sentence, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties")
        props = properties if isinstance(properties, dict) else {}
        return {name: schema_instance(sub, sentence, depth + 1) for name, sub in props.items()}
    if kind == "array":
        count = schema.get("minItems", 1)
        count = count if isinstance(count, int) and 0 <= count <= 5 else 1
        return [schema_instance(schema.get("items"), sentence, depth + 1)] * count
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(
        str(kind), sentence)


# ----------------------------------------------------------------------- prompt caching


@dataclass(slots=True, frozen=True)
class CacheUsage:
    write_5m: int = 0
    write_1h: int = 0
    read: int = 0

    @property
    def cached(self) -> int:
        return self.write_5m + self.write_1h + self.read


NO_CACHE = CacheUsage()
PROMPT_CACHE = web.AppKey("prompt_cache", set[str])


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str):
            return len(text)
        return _chars(value.get("content"))
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0


def cache_usage(body: Mapping[str, Any], seen: set[str]) -> CacheUsage:
    """Tokens written and read at each ``cache_control`` breakpoint, in prompt order
    (tools, system, messages); ``seen`` is the cache, updated in place."""
    pieces: list[tuple[Any, Any]] = []  # (block, its cache_control or None)
    for tool in body.get("tools") or []:
        pieces.append((None, tool.get("cache_control") if isinstance(tool, dict) else None))
    system = body.get("system")
    for block in system if isinstance(system, list) else [system]:
        pieces.append((block, block.get("cache_control") if isinstance(block, dict) else None))
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else [content]:
            control = block.get("cache_control") if isinstance(block, dict) else None
            pieces.append((block, control))
    usage = CacheUsage()
    digest = hashlib.sha256(str(body.get("model")).encode())
    segment = 0
    for block, control in pieces:
        digest.update(json.dumps(block, sort_keys=True, default=str).encode())
        segment += _chars(block)
        if not isinstance(control, dict):
            continue
        tokens, segment = segment // 4, 0
        key = digest.hexdigest()
        if key in seen:
            usage = CacheUsage(usage.write_5m, usage.write_1h, usage.read + tokens)
        elif control.get("ttl") == "1h":
            usage = CacheUsage(usage.write_5m, usage.write_1h + tokens, usage.read)
        else:
            usage = CacheUsage(usage.write_5m + tokens, usage.write_1h, usage.read)
        seen.add(key)
    return usage


# ------------------------------------------------------------------------ server tools

SEARCH_URL = "https://docs.example.com/answer"


def uses_web_search(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    return any(isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_")
               for t in (tools if isinstance(tools, list) else []))


def search_blocks(query: str, tool_use_id: str) -> list[dict[str, Any]]:
    """The ``server_tool_use`` and ``web_search_tool_result`` blocks a search leaves."""
    return [
        {"type": "server_tool_use", "id": tool_use_id, "name": "web_search",
         "input": {"query": query}},
        {"type": "web_search_tool_result", "tool_use_id": tool_use_id, "content": [
            {"type": "web_search_result", "url": SEARCH_URL, "title": "Answer",
             "encrypted_content": "sim", "page_age": None}]},
    ]


def citation(cited_text: str) -> dict[str, Any]:
    return {"type": "web_search_result_location", "url": SEARCH_URL, "title": "Answer",
            "encrypted_index": "sim", "cited_text": cited_text}

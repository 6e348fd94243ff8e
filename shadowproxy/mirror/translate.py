"""Application requests → the Messages request the shadow sends to Haiku 4.5.

Pure functions over parsed JSON. Anything the shadow cannot ask faithfully (several
answers, audio, roles or parts with no Messages equivalent, a conversation the API
would refuse) raises :class:`Untranslatable`, whose ``reason`` the mirror records with
the ``skipped`` outcome. No other exception leaves this module, whatever the input.

Legacy OpenAI function calling (``functions``, ``function_call``, assistant
``function_call`` and ``function``-role messages) is translated like tools; a legacy
call gets a synthetic tool-use id, and a ``function`` message answers the latest legacy
call of that name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from shadowproxy.mirror.turns import (
    FreshIds,
    Turn,
    Untranslatable,
    image_block,
    is_int,
    merge_turns,
    show,
    text_block,
    tool_use_id,
)

__all__ = [
    "SHADOW_MAX_OUTPUT_TOKENS",
    "Untranslatable",
    "openai_to_messages",
    "prepare_messages_request",
    "server_tools_in",
]

SHADOW_MAX_OUTPUT_TOKENS = 64_000  # Haiku 4.5's output limit

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
DEFAULT_INPUT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
# The smallest thinking budget the Messages API accepts.
MIN_THINKING_BUDGET = 1024
# tool_choice types the Messages API refuses together with thinking.
FORCED_TOOL_CHOICES = frozenset({"any", "tool"})
# Anthropic server tools (run and billed at the provider): versioned tool types such as
# web_search_20250305, web_fetch_20250910, code_execution_20250825,
# tool_search_tool_regex_20251119 (the anthropic SDK's tool param types).
_SERVER_TOOL_TYPE = re.compile(
    r"(web_search|web_fetch|code_execution|tool_search_tool_(?:regex|bm25))_[0-9]{8}"
)
# What the shadow asks for when an OpenAI application sets web_search_options and
# SHADOW_SERVER_TOOLS=allow.
WEB_SEARCH_TOOL: dict[str, Any] = {"type": "web_search_20250305", "name": "web_search"}
SERVER_TOOLS_ALLOW = "allow"

_SYSTEM_ROLES = ("system", "developer")




# ---------------------------------------------------------------- Anthropic → Anthropic


def prepare_messages_request(
    body: Any,
    *,
    model: str,
    max_tokens_limit: int = SHADOW_MAX_OUTPUT_TOKENS,
    server_tools: str = "skip",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The application's own Messages request, retargeted at the shadow model.

    Only what Haiku 4.5 would refuse but the primary model accepts is changed: the
    output limit, thinking settings outside Haiku's rules, and temperature with top_p;
    each thinking change is described in ``notes`` so the pair says what the shadow was
    really asked. Everything else (``output_config``, ``cache_control`` blocks, strict
    tools) goes through as sent. A request using server tools raises
    :class:`Untranslatable` unless ``server_tools`` is ``"allow"``. The application's
    body is not modified.
    """
    if not isinstance(body, dict):
        raise Untranslatable("request body is not a JSON object")
    if not isinstance(body.get("messages"), list):
        raise Untranslatable("messages is missing or not a list")
    max_tokens = body.get("max_tokens")
    if not is_int(max_tokens):
        raise Untranslatable("max_tokens is missing or not an integer")
    used = server_tools_in(body)
    if used and server_tools != SERVER_TOOLS_ALLOW:
        raise Untranslatable(_server_tools_reason(used))
    request = dict(body)
    request["model"] = model
    request["max_tokens"] = min(max_tokens, max_tokens_limit)
    _fit_thinking(request, notes if notes is not None else [])
    if request.get("temperature") is not None and request.get("top_p") is not None:
        del request["top_p"]
    return request


def _fit_thinking(request: dict[str, Any], notes: list[str]) -> None:
    """Keep the application's thinking within Haiku 4.5's rules (WIRE.md): a manual
    budget of at least 1,024 and below ``max_tokens``, and no forced tool_choice.

    Adaptive thinking becomes a manual budget of half the output limit: Haiku 4.5
    thinks on a budget. With a forced tool_choice the thinking goes and the forced tool
    stays, because the tool call is the answer the application consumes and thinking is
    never compared.
    """
    thinking = request.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return
    max_tokens = request["max_tokens"]
    choice = request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in FORCED_TOOL_CHOICES:
        del request["thinking"]
        notes.append(f"thinking dropped: tool_choice {choice.get('type')!r} forces a tool, "
                     "which the Messages API refuses with thinking")
        return
    extra = {k: v for k, v in thinking.items() if k == "display"}
    if thinking["type"] == "adaptive":
        budget = max(max_tokens // 2, MIN_THINKING_BUDGET)
        wanted = f"adaptive thinking became budget_tokens={budget}"
    else:
        raw = thinking.get("budget_tokens")
        if not is_int(raw):
            return  # the primary refuses it as well; the shadow is asked the same
        budget, wanted = raw, ""
    fitted = min(max(budget, MIN_THINKING_BUDGET), max_tokens - 1)
    if fitted < MIN_THINKING_BUDGET:
        del request["thinking"]
        notes.append(f"thinking dropped: max_tokens={max_tokens} leaves no room for the "
                     f"minimum budget of {MIN_THINKING_BUDGET}")
        return
    request["thinking"] = {"type": "enabled", "budget_tokens": fitted, **extra}
    if wanted:
        notes.append(wanted + ("" if fitted == budget else f", fitted to {fitted}"))
    elif fitted != budget:
        notes.append(f"thinking budget_tokens {budget} -> {fitted} "
                     f"(at least {MIN_THINKING_BUDGET}, below max_tokens={max_tokens})")


def server_tools_in(body: dict[str, Any]) -> list[str]:
    """The server tools a Messages request uses: declared tool types, and server tool
    calls in its history (``server_tool_use`` blocks name the tool)."""
    used: list[str] = []
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and _SERVER_TOOL_TYPE.fullmatch(kind) and kind not in used:
            used.append(kind)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "server_tool_use":
                name = block.get("name")
                label = f"server_tool_use {name}" if isinstance(name, str) else "server_tool_use"
                if label not in used:
                    used.append(label)
    return used


def _server_tools_reason(used: list[str]) -> str:
    return (f"server tools ({', '.join(used)}) run at the provider and are billed there; "
            "set SHADOW_SERVER_TOOLS=allow to mirror them")


# ------------------------------------------------------------------- OpenAI → Anthropic


def openai_to_messages(
    body: Any,
    *,
    model: str,
    default_max_tokens: int,
    max_tokens_limit: int = SHADOW_MAX_OUTPUT_TOKENS,
    server_tools: str = "skip",
) -> dict[str, Any]:
    """An OpenAI Chat Completions request as the Messages request Haiku 4.5 should get."""
    try:
        return _translate(
            body, model=model, default_max_tokens=default_max_tokens, limit=max_tokens_limit,
            server_tools=server_tools,
        )
    except Untranslatable:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        # A shape this module did not foresee; the mirror must still get a reason.
        raise Untranslatable(f"malformed request: {type(exc).__name__}: {exc}") from exc


def _translate(
    body: Any, *, model: str, default_max_tokens: int, limit: int, server_tools: str
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Untranslatable("request body is not a JSON object")
    _refuse_unsupported(body)
    web_search = body.get("web_search_options") is not None
    if web_search and server_tools != SERVER_TOOLS_ALLOW:
        raise Untranslatable(_server_tools_reason(["web search (web_search_options)"]))
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise Untranslatable("messages is missing or not a list")

    conversation = _Conversation()
    for index, message in enumerate(raw_messages):
        conversation.add(index, message)
    turns = conversation.turns()

    request: dict[str, Any] = {
        "model": model,
        "max_tokens": _max_tokens(body, default_max_tokens, limit),
    }
    instructions, output_config = _response_format(body.get("response_format"))
    system = conversation.system + instructions
    if system:
        request["system"] = "\n\n".join(system)
    request["messages"] = turns
    tools = _tools(body)
    if tools:
        request["tools"] = tools
        tool_choice = _tool_choice(body, {tool["name"] for tool in tools})
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
    if web_search:
        request["tools"] = [*tools, dict(WEB_SEARCH_TOOL)]
    if output_config is not None:
        request["output_config"] = output_config
    stop_sequences = _stop_sequences(body.get("stop"))
    if stop_sequences:
        request["stop_sequences"] = stop_sequences
    sampling_and_stream(body, request)
    return request


def sampling_and_stream(body: dict[str, Any], request: dict[str, Any]) -> None:
    """OpenAI's temperature (0 to 2) clamped to Anthropic's 0 to 1; Haiku 4.5 refuses
    temperature and top_p together, so temperature wins; ``stream`` only as a boolean.
    The same rules for Chat Completions and the Responses API."""
    temperature = _number(body, "temperature")
    top_p = _number(body, "top_p")
    if temperature is not None:
        request["temperature"] = min(max(temperature, 0.0), 1.0)
    elif top_p is not None:
        request["top_p"] = min(max(top_p, 0.0), 1.0)
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise Untranslatable("stream is not a boolean")
        request["stream"] = stream


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        if is_int(n) and n > 1:
            raise Untranslatable(f"n={n}: Messages returns one answer")
        raise Untranslatable(f"n={show(n)} is not a valid number of choices")
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise Untranslatable("audio output (modalities includes audio): Haiku answers in text")
    if body.get("audio") is not None:
        raise Untranslatable("audio output (audio parameter): Haiku answers in text")


def _max_tokens(body: dict[str, Any], default: int, limit: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not is_int(value) or value < 1:
            raise Untranslatable(f"{key}={show(value)} is not a positive integer")
        return max(1, min(value, limit))
    return max(1, min(default, limit))


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Untranslatable(f"{key}={show(value)} is not a number")
    return float(value)


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise Untranslatable("stop is not a string or a list of strings")
    # The Messages API refuses whitespace-only stop sequences.
    return [s for s in stops if s.strip()]


def _response_format(response_format: Any) -> tuple[list[str], dict[str, Any] | None]:
    """(system instructions, ``output_config``) for an OpenAI response format.

    A JSON schema becomes Messages structured outputs (``output_config.format``), so the
    shadow is held to the same schema the primary was; JSON mode without a schema has no
    Messages equivalent and stays an instruction. The answer is text either way.
    """
    if response_format is None:
        return [], None
    if not isinstance(response_format, dict):
        raise Untranslatable("response_format is not an object")
    kind = response_format.get("type")
    if kind == "text":
        return [], None
    if kind == "json_object":
        return [JSON_OBJECT_INSTRUCTION], None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            return [JSON_OBJECT_INSTRUCTION], None
        if not isinstance(schema, dict):
            raise Untranslatable("response_format json_schema.schema is not an object")
        return [], json_schema_output_config(schema)
    raise Untranslatable(f"response_format type {show(kind)} has no Messages equivalent")


def json_schema_output_config(schema: dict[str, Any]) -> dict[str, Any]:
    """Messages structured outputs for a JSON schema (``OutputConfigParam`` with a
    ``JSONOutputFormatParam`` in the anthropic SDK's types)."""
    return {"format": {"type": "json_schema", "schema": schema}}


# ------------------------------------------------------------------------------- tools


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools, functions = body.get("tools"), body.get("functions")
    if tools is not None and functions is not None:
        raise Untranslatable("both tools and legacy functions are given")
    if functions is not None:
        if not isinstance(functions, list):
            raise Untranslatable("functions is not a list")
        return [_tool(function) for function in functions]
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Untranslatable("tools is not a list")
    translated = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise Untranslatable(f"tool of type {show(kind)}: only function tools translate")
        translated.append(_tool(tool.get("function")))
    return translated


def _tool(function: Any) -> dict[str, Any]:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Untranslatable("a function tool has no name")
    tool: dict[str, Any] = {"name": function["name"]}
    description = function.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise Untranslatable(f"tool {show(function['name'])}: description is not a string")
        if description:
            tool["description"] = description
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise Untranslatable(f"tool {show(function['name'])}: strict is not a boolean")
    if strict:  # Messages strict tools: the input is held to the schema, as on OpenAI
        tool["strict"] = True
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise Untranslatable(f"tool {show(function['name'])}: parameters is not an object")
    if not parameters:
        tool["input_schema"] = dict(DEFAULT_INPUT_SCHEMA)
    else:
        tool["input_schema"] = parameters if "type" in parameters else {
            "type": "object", **parameters
        }
    return tool


def _tool_choice(body: dict[str, Any], names: set[str]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    if choice is None:
        choice = body.get("function_call")
    translated: dict[str, Any] | None
    if choice is None:
        translated = None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        translated = {"type": "none"}
    elif isinstance(choice, dict):
        name = _chosen_function(choice)
        if name not in names:
            raise Untranslatable(f"tool_choice names {show(name)}, which is not among the tools")
        translated = {"type": "tool", "name": name}
    else:
        raise Untranslatable(f"tool_choice {show(choice)} has no Messages equivalent")

    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise Untranslatable("parallel_tool_calls is not a boolean")
    if parallel is False:
        translated = translated or {"type": "auto"}
        if translated["type"] != "none":
            translated["disable_parallel_tool_use"] = True
    return translated


def _chosen_function(choice: dict[str, Any]) -> str:
    if "type" not in choice and isinstance(choice.get("name"), str):  # legacy function_call
        return str(choice["name"])
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, dict):
        name = function.get("name")
        if isinstance(name, str):
            return name
    raise Untranslatable(f"tool_choice {show(choice)} has no Messages equivalent")


# ------------------------------------------------------------------------ conversation








@dataclass(slots=True)
class _Conversation:
    """Collects OpenAI messages into the alternating turns Messages requires."""

    system: list[str] = field(default_factory=list)
    raw_turns: list[Turn] = field(default_factory=list)
    # OpenAI tool_call_id → tool_use id, for the latest assistant message with calls.
    call_ids: dict[str, str] = field(default_factory=dict)
    # Legacy function name → tool_use id of its latest call.
    legacy_calls: dict[str, str] = field(default_factory=dict)
    fresh_id: FreshIds = field(default_factory=FreshIds)

    def add(self, index: int, message: Any) -> None:
        if not isinstance(message, dict):
            raise Untranslatable(f"messages[{index}] is not an object")
        role = message.get("role")
        where = f"messages[{index}] ({role})"
        if role in _SYSTEM_ROLES:
            text = _plain_text(message.get("content"), where)
            if text.strip():
                self.system.append(text)
        elif role == "user":
            self.raw_turns.append(Turn("user", _user_blocks(message.get("content"), where)))
        elif role == "assistant":
            self.raw_turns.append(Turn("assistant", self._assistant_blocks(index, message)))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in self.call_ids:
                raise Untranslatable(f"{where}: tool_call_id {show(call_id)} answers no tool call")
            result = _tool_result(self.call_ids[call_id], message.get("content"), where)
            self.raw_turns.append(Turn("user", [result]))
        elif role == "function":
            name = message.get("name")
            if not isinstance(name, str) or name not in self.legacy_calls:
                raise Untranslatable(f"{where}: answers no function_call named {show(name)}")
            result = _tool_result(self.legacy_calls[name], message.get("content"), where)
            self.raw_turns.append(Turn("user", [result]))
        else:
            raise Untranslatable(
                f"messages[{index}]: role {show(role)} has no Messages equivalent"
            )

    def _assistant_blocks(self, index: int, message: dict[str, Any]) -> list[dict[str, Any]]:
        where = f"messages[{index}] (assistant)"
        if message.get("audio") is not None:
            raise Untranslatable(f"{where}: refers to an earlier audio answer")
        blocks = _text_blocks(message.get("content"), where, part_types=("text", "refusal"))
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise Untranslatable(f"{where}: tool_calls is not a list")
            if tool_calls:
                self.call_ids = {}
            for call in tool_calls:
                blocks.append(self._tool_use(call, where))
        legacy = message.get("function_call")
        if legacy is not None:
            block = _tool_use_block(f"call_legacy_{index}", legacy, where)
            block["id"] = self.fresh_id(block["id"])
            self.legacy_calls[block["name"]] = block["id"]
            blocks.append(block)
        return blocks

    def _tool_use(self, call: Any, where: str) -> dict[str, Any]:
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise Untranslatable(f"{where}: a tool call has no id")
        if call.get("type", "function") != "function":
            raise Untranslatable(f"{where}: tool call of type {show(call.get('type'))}")
        raw_id = call["id"]
        if raw_id in self.call_ids:
            raise Untranslatable(f"{where}: tool call id {show(raw_id)} appears twice")
        block = _tool_use_block(raw_id, call.get("function"), where)
        block["id"] = self.fresh_id(block["id"])
        self.call_ids[raw_id] = block["id"]
        return block

    def turns(self) -> list[dict[str, Any]]:
        return merge_turns(self.raw_turns)






def _tool_use_block(raw_id: str, function: Any, where: str) -> dict[str, Any]:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise Untranslatable(f"{where}: a tool call has no function name")
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        if not arguments.strip():
            parsed: Any = {}  # no-argument calls are sometimes sent as ""
        else:
            try:
                parsed = json.loads(arguments)
            except (ValueError, RecursionError) as exc:
                raise Untranslatable(
                    f"{where}: arguments of {show(function['name'])} are not JSON"
                ) from exc
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        raise Untranslatable(f"{where}: arguments of {show(function['name'])} are not an object")
    return {"type": "tool_use", "id": tool_use_id(raw_id), "name": function["name"],
            "input": parsed}




def _tool_result(tool_use_id: str, content: Any, where: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    if isinstance(content, str):
        if content.strip():
            result["content"] = content
    elif content is not None:
        blocks = _text_blocks(content, where, part_types=("text",))
        if blocks:
            result["content"] = blocks
    return result


# ------------------------------------------------------------------------------ content


def _plain_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b["text"] for b in _text_blocks(content, where, part_types=("text",)))


def _text_blocks(
    content: Any, where: str, *, part_types: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Text (and refusal) parts as text blocks; blank ones dropped (the API refuses them)."""
    if content is None:
        return []
    if isinstance(content, str):
        return text_block(content)
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: content is not a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in part_types:
            raise Untranslatable(f"{where}: {show(kind)} content parts are not supported here")
        text = part.get(kind)
        if not isinstance(text, str):
            raise Untranslatable(f"{where}: {kind} part has no text")
        blocks.extend(text_block(text))
    return blocks




def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return text_block(content)
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: content is not a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.extend(_text_blocks([part], where, part_types=("text",)))
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), where))
        elif kind == "input_audio":
            raise Untranslatable(f"{where}: audio input has no Messages equivalent")
        else:
            raise Untranslatable(f"{where}: content part of type {show(kind)} is not supported")
    return blocks







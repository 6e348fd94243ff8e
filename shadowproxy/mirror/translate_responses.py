"""OpenAI Responses API requests → the Messages request the shadow sends to Haiku 4.5.

Pure functions over parsed JSON, with the same contract as :mod:`shadowproxy.mirror.translate`:
anything the shadow cannot ask faithfully raises :class:`Untranslatable` with a reason
the mirror records as ``skipped`` — built-in tools that run at OpenAI (web search, file
search, code interpreter, computer use, MCP, …), stored prompts, server-side
conversations, background mode, files the shadow cannot fetch. No other exception leaves
this module, whatever the input.

A request that continues a stored response (``previous_response_id``) holds only the new
turn: the caller passes the earlier items (inputs and outputs, oldest first) as
``history``; without it such a request is untranslatable, never sent half-blind.
Reasoning items are dropped (the shadow thinks for itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shadowproxy.mirror.translate import (
    _SYSTEM_ROLES,
    JSON_OBJECT_INSTRUCTION,
    SHADOW_MAX_OUTPUT_TOKENS,
    _tool,
    sampling_and_stream,
)
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

__all__ = ["responses_input_items", "responses_to_messages"]

# Item types that record work done at OpenAI by its built-in tools; the shadow has none.
_BUILT_IN_ITEMS = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "code_interpreter_call", "image_generation_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "custom_tool_call", "custom_tool_call_output",
})


def responses_input_items(body: Any) -> list[Any]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    if not isinstance(body, dict):
        return []
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return list(raw) if isinstance(raw, list) else []


def responses_to_messages(
    body: Any,
    *,
    model: str,
    default_max_tokens: int,
    max_tokens_limit: int = SHADOW_MAX_OUTPUT_TOKENS,
    history: list[Any] | None = None,
) -> dict[str, Any]:
    """A Responses API request as the Messages request Haiku 4.5 should get."""
    try:
        return _translate(body, model=model, default_max_tokens=default_max_tokens,
                          limit=max_tokens_limit, history=history)
    except Untranslatable:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise Untranslatable(f"malformed request: {type(exc).__name__}: {exc}") from exc


def _translate(
    body: Any, *, model: str, default_max_tokens: int, limit: int, history: list[Any] | None
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Untranslatable("request body is not a JSON object")
    _refuse_unsupported(body)
    previous = body.get("previous_response_id")
    if previous is not None and history is None:
        raise Untranslatable(
            f"previous_response_id {show(previous)}: the earlier turns are unknown"
        )
    if history is not None and not isinstance(history, list):
        raise Untranslatable("the earlier turns are not a list of items")
    raw_input = body.get("input")
    if not isinstance(raw_input, str | list):
        raise Untranslatable("input is missing or not a string or a list of items")

    conversation = _Items()
    conversation.add_instructions(body.get("instructions"))
    for index, item in enumerate(history or []):
        conversation.add(f"earlier item {index}", item)
    for index, item in enumerate(responses_input_items(body)):
        conversation.add(f"input[{index}]", item)
    turns = conversation.turns()

    request: dict[str, Any] = {"model": model,
                               "max_tokens": _max_tokens(body, default_max_tokens, limit)}
    instruction, output_config = _text_format(body.get("text"))
    system = conversation.system + instruction
    if system:
        request["system"] = "\n\n".join(system)
    request["messages"] = turns
    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = tools
        tool_choice = _tool_choice(body, {tool["name"] for tool in tools})
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
    if output_config is not None:
        request["output_config"] = output_config
    sampling_and_stream(body, request)
    return request


def _refuse_unsupported(body: dict[str, Any]) -> None:
    if body.get("conversation") is not None:
        raise Untranslatable("conversation: the history lives in an OpenAI Conversations "
                             "object the shadow cannot read")
    if body.get("prompt") is not None:
        raise Untranslatable("prompt: a stored prompt template the shadow cannot read")
    if body.get("background") is True:
        raise Untranslatable("background mode: the primary answers later, by polling")


def _max_tokens(body: dict[str, Any], default: int, limit: int) -> int:
    value = body.get("max_output_tokens")
    if value is None:
        return max(1, min(default, limit))
    if not is_int(value) or value < 1:
        raise Untranslatable(f"max_output_tokens={show(value)} is not a positive integer")
    return min(value, limit)


def _text_format(text: Any) -> tuple[list[str], dict[str, Any] | None]:
    """``text.format`` as Chat Completions' ``response_format`` is translated: a JSON
    schema becomes Haiku's structured output (``output_config``), plain JSON mode an
    instruction."""
    if text is None:
        return [], None
    if not isinstance(text, dict):
        raise Untranslatable("text is not an object")
    spec = text.get("format")
    if spec is None:
        return [], None
    if not isinstance(spec, dict):
        raise Untranslatable("text.format is not an object")
    kind = spec.get("type")
    if kind == "text":
        return [], None
    if kind == "json_object":
        return [JSON_OBJECT_INSTRUCTION], None
    if kind == "json_schema":
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise Untranslatable("text.format json_schema has no schema object")
        return [], {"format": {"type": "json_schema", "schema": schema}}
    raise Untranslatable(f"text.format type {show(kind)} has no Messages equivalent")


# ------------------------------------------------------------------------------- tools


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Untranslatable("tools is not a list")
    translated = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            translated.append(_tool(tool))
        elif kind == "custom":
            raise Untranslatable("custom tool: free-form tool input has no Messages equivalent")
        elif isinstance(kind, str):
            raise Untranslatable(
                f"built-in tool {show(kind)}: it runs at OpenAI; the shadow has no equivalent"
            )
        else:
            raise Untranslatable(f"tool {show(tool)} has no type")
    return translated


def _tool_choice(body: dict[str, Any], names: set[str]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    translated: dict[str, Any] | None
    if choice is None:
        translated = None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        translated = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or name not in names:
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


# ------------------------------------------------------------------------------ items


@dataclass(slots=True)
class _Items:
    """Collects Responses items into the alternating turns Messages requires."""

    system: list[str] = field(default_factory=list)
    raw_turns: list[Turn] = field(default_factory=list)
    # call_id → tool_use id
    call_ids: dict[str, str] = field(default_factory=dict)
    fresh_id: FreshIds = field(default_factory=FreshIds)

    def add_instructions(self, instructions: Any) -> None:
        if instructions is None:
            return
        if isinstance(instructions, str):
            if instructions.strip():
                self.system.append(instructions)
            return
        if not isinstance(instructions, list):
            raise Untranslatable("instructions is not a string or a list of items")
        for index, item in enumerate(instructions):
            if not isinstance(item, dict) or item.get("role") not in (*_SYSTEM_ROLES, "user"):
                raise Untranslatable(f"instructions[{index}] is not a message")
            text = _plain_text(item.get("content"), f"instructions[{index}]")
            if text.strip():
                self.system.append(text)

    def add(self, where: str, item: Any) -> None:
        if not isinstance(item, dict):
            raise Untranslatable(f"{where} is not an object")
        kind = item.get("type", "message" if "role" in item else None)
        if not isinstance(kind, str):
            raise Untranslatable(f"{where}: item has no type")
        if kind == "message":
            self._message(where, item)
        elif kind == "function_call":
            self.raw_turns.append(Turn("assistant", [self._tool_use(where, item)]))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or call_id not in self.call_ids:
                raise Untranslatable(f"{where}: call_id {show(call_id)} answers no function call")
            result = _tool_result(self.call_ids[call_id], item.get("output"), where)
            self.raw_turns.append(Turn("user", [result]))
        elif kind == "reasoning":
            return  # the primary's private reasoning; the shadow reasons on its own
        elif kind == "item_reference":
            raise Untranslatable(f"{where}: item_reference points into OpenAI's store")
        elif kind in _BUILT_IN_ITEMS:
            raise Untranslatable(f"{where}: {kind} is a built-in tool's work at OpenAI")
        else:
            raise Untranslatable(f"{where}: item of type {show(kind)} has no Messages equivalent")

    def _message(self, where: str, item: dict[str, Any]) -> None:
        role = item.get("role")
        where = f"{where} ({role})"
        content = item.get("content")
        if role in _SYSTEM_ROLES:
            text = _plain_text(content, where)
            if text.strip():
                self.system.append(text)
        elif role == "user":
            self.raw_turns.append(Turn("user", _user_blocks(content, where)))
        elif role == "assistant":
            self.raw_turns.append(Turn("assistant", _assistant_blocks(content, where)))
        else:
            raise Untranslatable(f"{where}: role {show(role)} has no Messages equivalent")

    def _tool_use(self, where: str, item: dict[str, Any]) -> dict[str, Any]:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise Untranslatable(f"{where}: a function call has no call_id")
        if not isinstance(name, str):
            raise Untranslatable(f"{where}: a function call has no name")
        if call_id in self.call_ids:
            raise Untranslatable(f"{where}: call_id {show(call_id)} appears twice")
        arguments = item.get("arguments")
        parsed: Any
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise Untranslatable(f"{where}: arguments of {show(name)} are not JSON") from exc
        else:
            parsed = arguments
        if not isinstance(parsed, dict):
            raise Untranslatable(f"{where}: arguments of {show(name)} are not an object")
        unique = self.fresh_id(tool_use_id(call_id))
        self.call_ids[call_id] = unique
        return {"type": "tool_use", "id": unique, "name": name, "input": parsed}

    def turns(self) -> list[dict[str, Any]]:
        return merge_turns(self.raw_turns)


def _parts(content: Any, where: str) -> list[Any]:
    if not isinstance(content, list):
        raise Untranslatable(f"{where}: content is not a string or a list of parts")
    return content


def _part_text(part: dict[str, Any], key: str, where: str) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise Untranslatable(f"{where}: {part.get('type')} part has no text")
    return text


def _plain_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for part in _parts(content, where):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "input_text":
            raise Untranslatable(f"{where}: {show(kind)} parts are not supported here")
        texts.append(_part_text(part, "text", where))
    return "\n".join(text for text in texts if text.strip())


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return text_block(content)
    blocks: list[dict[str, Any]] = []
    for part in _parts(content, where):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "input_text":
            blocks.extend(text_block(_part_text(part, "text", where)))
        elif kind == "input_image":
            blocks.append(_input_image(part, where))
        elif kind == "input_file":
            raise Untranslatable(f"{where}: input_file parts are not translated")
        elif kind == "input_audio":
            raise Untranslatable(f"{where}: audio input has no Messages equivalent")
        else:
            raise Untranslatable(f"{where}: content part of type {show(kind)} is not supported")
    return blocks


def _assistant_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return text_block(content)
    blocks: list[dict[str, Any]] = []
    for part in _parts(content, where):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("output_text", "refusal"):
            blocks.extend(text_block(_part_text(part, "text" if kind == "output_text"
                                                 else "refusal", where)))
        else:
            raise Untranslatable(f"{where}: {show(kind)} parts are not supported here")
    return blocks


def _input_image(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id") is not None:
        raise Untranslatable(f"{where}: an image by file_id lives in OpenAI's file store")
    return image_block(part.get("image_url"), where)


def _tool_result(tool_use_id: str, output: Any, where: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    if isinstance(output, str):
        if output.strip():
            result["content"] = output
        return result
    blocks = _user_blocks(output, where)
    if blocks:
        result["content"] = blocks
    return result

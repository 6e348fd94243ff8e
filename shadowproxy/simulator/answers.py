"""What the simulated model says and how: prompt parsing, answers, controls, ids.

Shared by every API the simulator speaks, so the same conversation gets the same
answer whichever provider is asked.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from shadowproxy.simulator.features import NO_CACHE, CacheUsage

SHADOW_MODEL_PREFIX = "claude-haiku"
ANTHROPIC_VERSIONS = ("2023-06-01", "2026-10-21")
# Under this version the Messages API no longer accepts the sampling parameters.
SAMPLING_FREE_VERSION = "2026-10-21"
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")
MODEL_ALIASES = {"claude-haiku-4-5": "claude-haiku-4-5-20251001"}
DISAGREEMENT = "I cannot tell from what you wrote; please rephrase the question."
_SYSTEM_FINGERPRINT = "fp_simulator"
_PROMPT_ERROR = re.compile(r"#error=(\d{3})")
_PROMPT_SLOW = re.compile(r"#slow=(\d+(?:\.\d+)?)")
_RETRY_AFTER_STATUSES = (429, 503, 529)


@dataclass
class SimulatorConfig:
    latency_s: float = 0.0
    chunk_interval_s: float = 0.0
    text_chunks: int = 8
    gzip: bool = True
    # Overrides latency_s for claude-haiku* models: one simulator, fast primary, slow shadow.
    shadow_latency_s: float | None = None
    record: bool = True
    # Ids, request ids and ``created`` derived from the request, so the same request gets
    # byte-identical answers: what a test needs to prove a relay changed nothing.
    deterministic: bool = False
    # Shadow answers with a known truth and the simulated judge (variants.py, judge.py):
    # tag ("*" for any) -> share of subtly wrong shadow answers; share of paraphrases;
    # probability that the judge answers "A" whatever the answers.
    shadow_worse_rate: dict[str, float] = field(default_factory=dict)
    shadow_paraphrase_rate: float = 0.0
    judge_position_bias: float = 0.0
    # tag ("*" for any) -> share of the subtly wrong shadow answers the judge misses
    # (calls as good as the other): a judge biased in a way only people can see.
    judge_misses_worse: dict[str, float] = field(default_factory=dict)
    # Prompt text -> the control words (``#tag=… #seq=… #tool``) it stands for, so a
    # caller (the demo) can send prompts that read like real ones and still script them.
    scripts: dict[str, str] = field(default_factory=dict)

    def scripted(self, prompt: Prompt) -> Prompt:
        """``prompt`` with the control words its text is scripted to carry."""
        script = self.scripts.get(prompt.text)
        return replace(prompt, script=script) if script else prompt


@dataclass(slots=True, frozen=True)
class ReceivedRequest:
    """A request exactly as the provider saw it, for tests to assert on."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # None when the body is not JSON


RECEIVED = web.AppKey("received", list[ReceivedRequest])
CONFIG = web.AppKey("simulator_config", SimulatorConfig)


# --- what the simulated model reacts to ---------------------------------------------


@dataclass(slots=True, frozen=True)
class Prompt:
    text: str  # the text of the last user turn
    after_tool_result: bool  # that turn hands back a tool result
    chars: int  # all conversation text, for token counts
    script: str = ""  # control words from SimulatorConfig.scripts, not in the text

    @property
    def controls(self) -> str:
        """Where control words are looked for: the text itself, then the script."""
        return f"{self.text} {self.script}" if self.script else self.text


@dataclass(slots=True, frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Answer:
    text: str
    tool_use: ToolUse | None
    thinking: str | None
    stop_reason: str  # Anthropic's words
    input_tokens: int
    output_tokens: int
    # Prompt-cache writes and reads (Messages only); input_tokens excludes them.
    cache: CacheUsage = NO_CACHE
    # A web search the simulated Claude ran first (server tool): its query.
    web_search: str | None = None


@dataclass(slots=True, frozen=True)
class Controls:
    """How, rather than what, the simulator answers."""

    delay_s: float
    chunk_interval_s: float
    chunks: int
    error_status: int | None
    midstream_error: bool


def _texts(content: Any, *, tool_results: bool) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif tool_results and block.get("type") == "tool_result":
                texts.extend(_texts(block.get("content"), tool_results=False))
    return texts


def _last_user_turn(messages: Sequence[Any], roles: tuple[str, ...]) -> list[dict[str, Any]]:
    """The trailing run of user-side messages: what a translator merges into one turn."""
    run: list[dict[str, Any]] = []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in roles:
            run.append(message)
        elif run:
            break
    return run[::-1]


def _conversation_chars(messages: Sequence[Any], system: Any = None) -> int:
    chars = sum(len(t) for t in _texts(system, tool_results=False))
    for message in messages:
        if isinstance(message, dict):
            chars += sum(len(t) for t in _texts(message.get("content"), tool_results=True))
    return chars


def _user_text(messages: Sequence[Any], turn: list[dict[str, Any]]) -> str:
    """The last user turn's text; after a turn of bare tool results, the question before it.

    Both APIs land on the same text for the same conversation, so a translated shadow
    request gets the primary's answer.
    """
    texts = [
        t
        for m in turn
        if m.get("role") == "user"
        for t in _texts(m.get("content"), tool_results=False)
    ]
    if texts:
        return "\n".join(texts)
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            earlier = _texts(message.get("content"), tool_results=False)
            if earlier:
                return "\n".join(earlier)
    return ""


def anthropic_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = body["messages"]
    turn = _last_user_turn(messages, ("user",))
    after_tool = any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for message in turn
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )
    chars = _conversation_chars(messages, body.get("system"))
    return Prompt(_user_text(messages, turn), after_tool, chars)


def openai_prompt(body: Mapping[str, Any]) -> Prompt:
    messages = body["messages"]
    turn = _last_user_turn(messages, ("user", "tool"))
    after_tool = any(m.get("role") == "tool" for m in turn)
    return Prompt(_user_text(messages, turn), after_tool, _conversation_chars(messages))


def is_shadow_model(model: str) -> bool:
    return model.startswith(SHADOW_MODEL_PREFIX)


def _tokens(chars: int) -> int:
    return max(1, chars // 4)


def compose_answer(
    prompt: Prompt,
    model: str,
    *,
    tool_names: Sequence[str],
    tool_mode: str = "auto",
    forced_tool: str | None = None,
    json_mode: bool = False,
    thinking: bool = False,
    max_tokens: int | None = None,
    sentence: str | None = None,
) -> Answer:
    """What the simulated model says; ``tool_mode`` is ``auto``, ``any`` or ``none``."""
    disagree = is_shadow_model(model) and "#disagree" in prompt.controls
    if disagree:
        sentence = DISAGREEMENT
    elif sentence is None or not is_shadow_model(model):
        sentence = f"Answer to: {prompt.text[:60]}"
    wants_json = json_mode or "#json" in prompt.controls
    text = json.dumps({"answer": sentence}) if wants_json else sentence
    asked_for_tool = "#tool" in prompt.controls and not prompt.after_tool_result
    forced = forced_tool is not None or tool_mode == "any"
    thought = f"The user wrote {len(prompt.text)} characters." if thinking else None
    thought_tokens = _tokens(len(thought)) if thought else 0
    input_tokens = _tokens(prompt.chars)
    if is_shadow_model(model) and "#refusal" in prompt.text:
        # Claude's safety classifiers stopping an answer part way: stop_reason "refusal".
        cut = "I can't help with"
        return Answer(cut, None, thought, "refusal", input_tokens,
                      _tokens(len(cut)) + thought_tokens)
    if tool_names and tool_mode != "none" and not disagree and (forced or asked_for_tool):
        arguments: dict[str, Any] = (
            {"answer": sentence} if wants_json and not asked_for_tool else {"query": prompt.text}
        )
        tool = ToolUse(forced_tool or tool_names[0], arguments)
        output = _tokens(len(tool.name) + len(json.dumps(arguments))) + thought_tokens
        return Answer("", tool, thought, "tool_use", input_tokens, output)
    output = _tokens(len(text)) + thought_tokens
    if max_tokens is not None and output > max_tokens:
        return Answer(text[: max_tokens * 4], None, thought, "max_tokens", input_tokens, max_tokens)
    return Answer(text, None, thought, "end_turn", input_tokens, output)


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def read_controls(
    headers: Mapping[str, str], prompt: Prompt, model: str, config: SimulatorConfig
) -> Controls:
    shadow = is_shadow_model(model)
    delay = config.latency_s
    if shadow and config.shadow_latency_s is not None:
        delay = config.shadow_latency_s
    delay = _number(headers.get("x-sim-delay-ms"), delay * 1000) / 1000
    interval = _number(headers.get("x-sim-chunk-ms"), config.chunk_interval_s * 1000) / 1000
    chunks = max(1, int(_number(headers.get("x-sim-chunks"), config.text_chunks)))
    error = int(_number(headers.get("x-sim-error"), 0)) or None
    attempts = headers.get("x-sim-error-attempts")
    if attempts is not None and _number(headers.get("x-stainless-retry-count"), 0) >= _number(
        attempts, 0
    ):
        error = None
    midstream = headers.get("x-sim-midstream-error", "").lower() in ("1", "true", "yes")
    if shadow:
        if match := _PROMPT_ERROR.search(prompt.controls):
            error = int(match[1])
        if match := _PROMPT_SLOW.search(prompt.controls):
            delay = float(match[1]) / 1000
        midstream = midstream or "#midstream-error" in prompt.controls
    if error is not None and not 400 <= error <= 599:
        error = None
    return Controls(delay, interval, chunks, error, midstream)


def split_text(text: str, pieces: int) -> list[str]:
    """Split into at most ``pieces`` non-empty, nearly equal parts."""
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


_EPOCH = 1_750_000_000  # deterministic ``created`` values land near mid-2025


class IdSource:
    """Where one answer's ids and timestamp come from.

    Unseeded: random ids and the clock, like a real provider. Seeded with the request:
    the n-th id of an answer is a hash of (request, n), so answering the same request
    twice gives the same bytes.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        self._seed = seed
        self._issued = 0

    @classmethod
    def for_request(cls, method: str, path: str, body: bytes) -> IdSource:
        return cls(hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).digest())

    def new(self, prefix: str) -> str:
        if self._seed is None:
            return _new_id(prefix)
        self._issued += 1
        digest = hashlib.sha256(self._seed + self._issued.to_bytes(4, "big")).hexdigest()
        return prefix + digest[:24]

    def now(self) -> int:
        if self._seed is None:
            return int(time.time())
        return _EPOCH + int.from_bytes(self._seed[:3], "big")


_UNSEEDED = IdSource()


def _dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))

"""The judge client: one verdict call, its cost, and nothing that can leak its key.

``JUDGE_PROVIDER`` ``anthropic``, ``bedrock`` or ``vertex`` use the anthropic SDK's
clients (built like the shadow's, speaking ``anthropic-version: 2023-06-01``);
``openai`` uses the openai SDK's Chat Completions with the forced function ``verdict``,
so any Chat Completions endpoint can judge. Our own policy, not the SDK defaults:
``JUDGE_TIMEOUT_S`` per attempt, ``JUDGE_MAX_RETRIES`` retries (``retry-after``
honoured). SDK exceptions are mapped here, once, to :attr:`CallResult.error`; a judge
call never raises into ``diff``.

The key lives only in the SDK client built here: it is not in any result, reason,
log line or table.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anthropic
import openai

from shadowproxy.anthropic_sdk import PLATFORM_API_VERSIONS, anthropic_client, error_text
from shadowproxy.decision.judge_prompt import (
    JUDGE_MAX_TOKENS,
    SYSTEM_PROMPT,
    VERDICT_TOOL,
    JudgeAnswerError,
    Vote,
    judge_messages_request,
    judge_openai_request,
    parse_messages_response,
    parse_openai_response,
)
from shadowproxy.pricing import Price, PriceFileError, PriceTable
from shadowproxy.settings import ENV_PREFIX, Settings, SettingsError

__all__ = ["CallResult", "Judge", "load_rubrics", "make_judge", "worst_case_usd"]

# The tool definition and the system prompt cost tokens too; a generous allowance.
_OVERHEAD_CHARS = len(SYSTEM_PROMPT) + len(str(VERDICT_TOOL)) + 2_000
# Reserving for a call assumes 2 characters per input token: most text is ~4, dense
# code and non-Latin scripts can be closer to 1-2, so the budget holds for them too.
_CHARS_PER_TOKEN_WORST = 2


@dataclass(frozen=True, slots=True)
class CallResult:
    vote: Vote | None
    cost_usd: float
    error: str | None = None


class Judge(Protocol):
    model: str

    def worst_case_usd(self, prompt: str) -> float: ...

    async def ask(self, prompt: str) -> CallResult: ...

    async def close(self) -> None: ...


def worst_case_usd(price: Price, prompt: str) -> float:
    """The most one call with this prompt can cost: what the budget reserves."""
    input_tokens = (len(prompt) + _OVERHEAD_CHARS) // _CHARS_PER_TOKEN_WORST + 1
    return price.cost(input_tokens, JUDGE_MAX_TOKENS) or 0.0


def _cost(price: Price, input_tokens: Any, output_tokens: Any) -> float:
    if not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
        return 0.0
    return price.cost(input_tokens, output_tokens) or 0.0


class AnthropicJudge:
    """Messages API judge through the anthropic SDK (direct, Bedrock or Vertex)."""

    def __init__(self, model: str, price: Price, client: Any, provider: str) -> None:
        self.model = model
        self._price = price
        self._client = client
        version = PLATFORM_API_VERSIONS.get(provider)
        self._extra_body = {"anthropic_version": version} if version else None

    def worst_case_usd(self, prompt: str) -> float:
        return worst_case_usd(self._price, prompt)

    async def close(self) -> None:
        await self._client.close()

    async def ask(self, prompt: str) -> CallResult:
        body = judge_messages_request(self.model, prompt)
        try:
            message = await self._client.messages.create(**body, extra_body=self._extra_body)
        except anthropic.APITimeoutError:
            return CallResult(None, 0.0, "judge call timed out (JUDGE_TIMEOUT_S)")
        except anthropic.APIStatusError as exc:
            return CallResult(None, 0.0, f"judge answered {error_text(exc)}")
        except anthropic.APIConnectionError as exc:
            return CallResult(None, 0.0, f"judge connection failed: {exc.message}")
        except anthropic.AnthropicError as exc:
            return CallResult(None, 0.0, f"judge call failed: {type(exc).__name__}")
        usage = getattr(message, "usage", None)
        cost = _cost(self._price, getattr(usage, "input_tokens", None),
                     getattr(usage, "output_tokens", None))
        try:
            return CallResult(parse_messages_response(message.to_dict()), cost)
        except JudgeAnswerError as exc:
            return CallResult(None, cost, f"judge answered without a valid verdict: {exc}")


class OpenAIJudge:
    """Chat Completions judge through the openai SDK (any compatible endpoint)."""

    def __init__(self, model: str, price: Price, client: openai.AsyncOpenAI) -> None:
        self.model = model
        self._price = price
        self._client = client

    def worst_case_usd(self, prompt: str) -> float:
        return worst_case_usd(self._price, prompt)

    async def close(self) -> None:
        await self._client.close()

    async def ask(self, prompt: str) -> CallResult:
        body = judge_openai_request(self.model, prompt)
        try:
            completion = await self._client.chat.completions.create(**body)
        except openai.APITimeoutError:
            return CallResult(None, 0.0, "judge call timed out (JUDGE_TIMEOUT_S)")
        except openai.APIStatusError as exc:
            return CallResult(None, 0.0, f"judge answered HTTP {exc.status_code}: {exc.message}")
        except openai.APIConnectionError as exc:
            return CallResult(None, 0.0, f"judge connection failed: {exc.message}")
        except openai.OpenAIError as exc:
            return CallResult(None, 0.0, f"judge call failed: {type(exc).__name__}")
        usage = completion.usage
        cost = _cost(self._price, getattr(usage, "prompt_tokens", None),
                     getattr(usage, "completion_tokens", None))
        try:
            return CallResult(parse_openai_response(completion.to_dict()), cost)
        except JudgeAnswerError as exc:
            return CallResult(None, cost, f"judge answered without a valid verdict: {exc}")


def make_judge(settings: Settings) -> Judge | None:
    """The configured judge, or ``None`` without ``JUDGE_MODEL``.

    Refused (:class:`SettingsError`, one line) when the price table does not know the
    model: a spending cap needs a price.
    """
    model = settings.judge_model
    if not model:
        return None
    try:
        prices = PriceTable.load(settings.prices_file)
    except PriceFileError as exc:
        raise SettingsError(f"{ENV_PREFIX}PRICES_FILE: {exc}") from None
    price = prices.lookup(model)
    if price is None:
        raise SettingsError(
            f"{ENV_PREFIX}JUDGE_MODEL: {model!r} has no price, so JUDGE_MAX_USD cannot hold;"
            f" add [models.\"{model}\"] input = …, output = … (USD per million tokens) to a "
            f"file named by {ENV_PREFIX}PRICES_FILE"
        )
    key = settings.judge_key()
    if settings.judge_provider == "anthropic" and key is None:
        raise SettingsError(f"{ENV_PREFIX}JUDGE_API_KEY: required for JUDGE_PROVIDER=anthropic "
                            f"(or {ENV_PREFIX}SHADOW_API_KEY, or ANTHROPIC_API_KEY)")
    if settings.judge_provider == "openai":
        if key is None:
            raise SettingsError(f"{ENV_PREFIX}JUDGE_API_KEY: required for JUDGE_PROVIDER=openai")
        client = openai.AsyncOpenAI(
            api_key=key, base_url=settings.judge_base_url,
            timeout=settings.judge_timeout_s, max_retries=settings.judge_max_retries,
        )
        return OpenAIJudge(model, price, client)
    sdk = anthropic_client(
        settings.judge_provider, key, settings.judge_base_url,
        timeout=settings.judge_timeout_s, max_retries=settings.judge_max_retries,
        connections=settings.judge_concurrency,
    )
    return AnthropicJudge(model, price, sdk, settings.judge_provider)


def load_rubrics(path: Path | None) -> dict[str, str]:
    """``JUDGE_RUBRIC_FILE``: ``[tags.<tag>] rubric = "…"``, tag → extra instructions."""
    if path is None:
        return {}
    where = f"{ENV_PREFIX}JUDGE_RUBRIC_FILE: {path}"
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    extra = set(raw) - {"tags"}
    if extra:
        raise SettingsError(f"{where}: unknown key {sorted(extra)[0]!r} (expected [tags.<tag>])")
    tags = raw.get("tags", {})
    if not isinstance(tags, Mapping):
        raise SettingsError(f"{where}: 'tags' must be a table of [tags.<tag>] tables")
    rubrics: dict[str, str] = {}
    for tag, entry in tags.items():
        if not isinstance(entry, Mapping) or set(entry) != {"rubric"}:
            raise SettingsError(f"{where}: tags.{tag}: must hold exactly rubric = \"…\"")
        rubric = entry["rubric"]
        if not isinstance(rubric, str) or not rubric.strip():
            raise SettingsError(f"{where}: tags.{tag}.rubric: must be a non-empty string")
        rubrics[str(tag)] = rubric.strip()
    return rubrics

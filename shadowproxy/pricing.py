"""Prices: what an answer's tokens cost, from a table the user can override.

An unknown model costs ``None``, never a guess. A model id resolves to a table entry
only when what is left over is a date, a version or a provider's wrapping
(``claude-haiku-4-5-20251001``, Bedrock's ``us.anthropic.claude-haiku-4-5-20251001-v1:0``,
Vertex's ``claude-haiku-4-5@20251001``, ``gpt-4o-2024-08-06``), so ``gpt-4o-mini`` can
never take ``gpt-4o``'s price, nor ``o3-pro`` the price of ``o3``.

The built-in table is ``prices.toml`` next to this module; an override file of the same
shape replaces fields per model and adds models.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Price", "PriceFileError", "PriceTable"]

_PER_TOKEN = 1 / 1_000_000
_FIELDS = (
    "input", "output", "cache_write", "cache_write_1h", "cache_read", "input_includes_cache"
)

# Routing prefixes: OpenRouter's ``anthropic/…``, Vertex resource paths (cut at the
# last "/"), and Bedrock's ``anthropic.…`` with an optional inference-profile region.
_BEDROCK_PREFIX = re.compile(r"(?:[a-z]+(?:-[a-z]+)*\.)?(?:anthropic|openai)\.")
# What may follow a base name: dated snapshots, aliases and provider versions.
_VERSION_SUFFIX = re.compile(
    r"(?:-[0-9]{8}|-[0-9]{4}-[0-9]{2}-[0-9]{2}|-latest|-v[0-9]+(?::[0-9]+)?|@[\w.-]*)*"
)


class PriceFileError(Exception):
    """A price file cannot be used; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for one model."""

    input: float
    output: float
    cache_write: float | None = None  # 5-minute cache writes (Anthropic's default TTL)
    cache_read: float | None = None
    cache_write_1h: float | None = None  # 1-hour cache writes (``ttl: "1h"``)
    # OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens do not.
    input_includes_cache: bool = False

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_1h_input_tokens: int | None = None,
    ) -> float | None:
        """USD, or ``None`` when cache tokens were used that the table has no price for.

        ``cache_creation_input_tokens`` is all cache writes, as the API reports it;
        ``cache_creation_1h_input_tokens`` is the part of them written with the 1-hour
        TTL (the ``cache_creation`` breakdown), priced at ``cache_write_1h``.
        """
        written = cache_creation_input_tokens or 0
        written_1h = min(cache_creation_1h_input_tokens or 0, written)
        written_5m = written - written_1h
        read = cache_read_input_tokens or 0
        uncached = input_tokens
        write_price, write_1h_price = self.cache_write, self.cache_write_1h
        if self.input_includes_cache:
            uncached = max(input_tokens - written - read, 0)
            # Where input counts cache writes, a write without its own price is input.
            write_price = self.input if write_price is None else write_price
            write_1h_price = self.input if write_1h_price is None else write_1h_price
        if ((written_5m and write_price is None) or (written_1h and write_1h_price is None)
                or (read and self.cache_read is None)):
            return None
        total = uncached * self.input + output_tokens * self.output
        total += written_5m * (write_price or 0.0) + written_1h * (write_1h_price or 0.0)
        total += read * (self.cache_read or 0.0)
        return total * _PER_TOKEN


class PriceTable:
    """Model name → :class:`Price`, resolving the many spellings of one model id."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = {_canonical(name): price for name, price in prices.items()}
        # Longest first, so a more specific base (gpt-4o-mini) is tried before gpt-4o.
        self._bases = sorted(self._prices, key=len, reverse=True)
        self._resolved: dict[str, Price | None] = {}

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The built-in table, with ``override``'s entries replacing or adding models."""
        builtin = resources.files("shadowproxy").joinpath("prices.toml").read_text("utf-8")
        prices = _parse(tomllib.loads(builtin), "built-in prices.toml", {})
        if override is not None:
            try:
                raw = tomllib.loads(override.read_text("utf-8"))
            except OSError as exc:
                raise PriceFileError(
                    f"prices file {override}: cannot read: {exc.strerror or exc}"
                ) from exc
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise PriceFileError(f"prices file {override}: not valid TOML: {exc}") from exc
            prices.update(_parse(raw, f"prices file {override}", prices))
        return cls(prices)

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        if model not in self._resolved:
            if len(self._resolved) > 4096:  # ids come from traffic; keep the memo bounded
                self._resolved.clear()
            self._resolved[model] = self._resolve(model)
        return self._resolved[model]

    def cost(
        self,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_creation_input_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_1h_input_tokens: int | None = None,
    ) -> float | None:
        """USD for one answer; ``None`` when the model or the token counts are unknown."""
        price = self.lookup(model)
        if price is None or input_tokens is None or output_tokens is None:
            return None
        return price.cost(
            input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens,
            cache_creation_1h_input_tokens,
        )

    def _resolve(self, model: str) -> Price | None:
        name = _canonical(model.rsplit("/", 1)[-1])
        name = _canonical(_BEDROCK_PREFIX.sub("", name, count=1))
        for base in self._bases:
            if name.startswith(base) and _VERSION_SUFFIX.fullmatch(name, len(base)):
                return self._prices[base]
        return None


def _canonical(name: str) -> str:
    """Lower case; Claude ids spelled with dots (OpenRouter's ``claude-3.5-haiku``) dashed."""
    name = name.strip().lower()
    return name.replace(".", "-") if name.startswith("claude") else name


def _parse(raw: dict[str, Any], source: str, known: Mapping[str, Price]) -> dict[str, Price]:
    """Validate a price file; fields an entry leaves out come from ``known``."""
    extra = set(raw) - {"models"}
    if extra:
        raise PriceFileError(f"{source}: unknown top-level key {sorted(extra)[0]!r} "
                             "(expected [models.<name>] tables)")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise PriceFileError(f"{source}: 'models' must be a table of [models.<name>] tables")
    prices: dict[str, Price] = {}
    for name, entry in models.items():
        where = f"{source}: models.{name}"
        if not isinstance(entry, dict):
            raise PriceFileError(f"{where}: must be a table with input and output prices")
        unknown = set(entry) - set(_FIELDS)
        if unknown:
            raise PriceFileError(
                f"{where}: unknown field {sorted(unknown)[0]!r} (expected {', '.join(_FIELDS)})"
            )
        values: dict[str, Any] = {}
        for field, value in entry.items():
            if field == "input_includes_cache":
                if not isinstance(value, bool):
                    raise PriceFileError(f"{where}.{field}: must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PriceFileError(
                    f"{where}.{field}: must be a non-negative number (USD per million "
                    f"tokens), got {value!r}"
                )
            else:
                value = float(value)
            values[field] = value
        base = known.get(_canonical(name))
        if base is not None:
            prices[_canonical(name)] = replace(base, **values)
        elif "input" in values and "output" in values:
            prices[_canonical(name)] = Price(**values)
        else:
            missing = "input" if "input" not in values else "output"
            raise PriceFileError(f"{where}: missing {missing!r} (required for a new model)")
    return prices

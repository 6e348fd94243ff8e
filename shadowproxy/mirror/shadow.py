"""The shadow call: one Messages request to Haiku 4.5 through the official anthropic SDK.

Our own policy, not the SDK's defaults (600 s, 2 retries): ``SHADOW_TIMEOUT_S`` bounds the
whole call including retries, ``SHADOW_MAX_RETRIES`` honours ``retry-after``. SDK
exceptions are mapped once, here, to a :class:`ShadowResult` — a shadow never raises
into the mirror.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import anthropic

from shadowproxy.anthropic_sdk import (
    PLATFORM_API_VERSIONS,
    anthropic_client,
    error_text,
)
from shadowproxy.mirror.assemble import side_from_normalized
from shadowproxy.pricing import PriceTable
from shadowproxy.records import ShadowOutcome, Side
from shadowproxy.settings import Settings
from shadowproxy.wire.anthropic import AnthropicStream, normalize_message

_KWARGS = ("model", "max_tokens", "messages")


@dataclass(slots=True)
class ShadowResult:
    side: Side
    outcome: ShadowOutcome
    reason: str | None = None


def make_client(settings: Settings) -> anthropic.AsyncAnthropic | Any:
    """The SDK client for ``SHADOW_PROVIDER``, with retries set by us."""
    key = settings.shadow_api_key.get_secret_value() if settings.shadow_api_key else None
    return anthropic_client(
        settings.shadow_provider, key, settings.shadow_base_url,
        timeout=settings.shadow_timeout_s, max_retries=settings.shadow_max_retries,
        connections=settings.shadow_concurrency,
    )


class ShadowCaller:
    def __init__(
        self, settings: Settings, client: Any | None = None, *, prices: PriceTable | None = None
    ) -> None:
        self._client = client if client is not None else make_client(settings)
        self._prices = prices  # priced here, from the full usage (cache TTL breakdown)
        self._timeout = settings.shadow_timeout_s
        version = PLATFORM_API_VERSIONS.get(settings.shadow_provider)
        self._body_defaults = {"anthropic_version": version} if version else {}

    async def close(self) -> None:
        await self._client.close()

    async def call(self, params: dict[str, Any], headers: dict[str, str]) -> ShadowResult:
        body = {**self._body_defaults, **params}
        # Only JSON true streams: bool("false") is True, and the primary refuses a string.
        stream = body.pop("stream", False) is True
        kwargs = {k: body.pop(k) for k in _KWARGS if k in body}
        started = time.monotonic()
        side = Side()
        try:
            async with asyncio.timeout(self._timeout):
                if stream:
                    norm_stream = AnthropicStream()
                    events = await self._client.messages.create(
                        **kwargs, stream=True, extra_body=body, extra_headers=headers
                    )
                    response = getattr(events, "response", None)
                    async for event in events:
                        norm_stream.on_event(event.type, event.to_dict())
                        if side.ttft_ms is None and norm_stream.content_seen:
                            side.ttft_ms = (time.monotonic() - started) * 1000
                    resp_headers = dict(response.headers) if response is not None else {}
                    norm = norm_stream.finish(resp_headers)
                    status = response.status_code if response is not None else 200
                else:
                    message = await self._client.messages.create(
                        **kwargs, extra_body=body, extra_headers=headers
                    )
                    norm = normalize_message(message.to_dict())
                    norm.request_id = getattr(message, "_request_id", None)
                    status = 200
        except TimeoutError:
            side.latency_ms = (time.monotonic() - started) * 1000
            side.error = f"no answer within SHADOW_TIMEOUT_S={self._timeout:g}s"
            return ShadowResult(side, ShadowOutcome.TIMEOUT, side.error)
        except anthropic.APITimeoutError:
            side.latency_ms = (time.monotonic() - started) * 1000
            side.error = "timed out (SDK)"
            return ShadowResult(side, ShadowOutcome.TIMEOUT, side.error)
        except anthropic.APIStatusError as exc:
            side.latency_ms = (time.monotonic() - started) * 1000
            side.status = exc.status_code
            side.error = error_text(exc)
            side.request_id = exc.request_id or exc.response.headers.get("x-amzn-requestid")
            return ShadowResult(side, ShadowOutcome.ERROR, side.error)
        except anthropic.APIConnectionError as exc:
            side.latency_ms = (time.monotonic() - started) * 1000
            side.error = f"connection failed: {exc.message}"
            return ShadowResult(side, ShadowOutcome.ERROR, side.error)
        except anthropic.AnthropicError as exc:
            side.latency_ms = (time.monotonic() - started) * 1000
            side.error = f"{type(exc).__name__}: {exc}"
            return ShadowResult(side, ShadowOutcome.ERROR, side.error)
        result_side = side_from_normalized(norm, status=status, prices=self._prices)
        result_side.latency_ms = (time.monotonic() - started) * 1000
        result_side.ttft_ms = side.ttft_ms
        if norm.error:
            return ShadowResult(result_side, ShadowOutcome.ERROR, norm.error)
        return ShadowResult(result_side, ShadowOutcome.OK)

"""The shadow call: one Messages request to Haiku 4.5 through the official anthropic SDK.

Our own policy, not the SDK's defaults (600 s, 2 retries): ``SHADOW_TIMEOUT_S`` bounds the
whole call including retries, ``SHADOW_MAX_RETRIES`` honours ``retry-after``. SDK
exceptions are mapped once, here, to a :class:`ShadowResult` — a shadow never raises
into the mirror.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2  # the anthropic SDK's HTTP client

from shadowproxy.mirror.assemble import side_from_normalized
from shadowproxy.pricing import PriceTable
from shadowproxy.records import ShadowOutcome, Side
from shadowproxy.settings import Settings
from shadowproxy.wire.anthropic import AnthropicStream, normalize_message

# Under the 2.x SDK's default version (2026-10-21) the API rejects temperature/top_p/top_k;
# the shadow must carry the application's sampling parameters, so it speaks 2023-06-01
# unless the application named its own version.
SHADOW_API_VERSION = "2023-06-01"
# Bedrock and Vertex take the version as ``anthropic_version`` in the body, where the SDK's
# default is 2026-10-21 as well; their own dated versions keep the sampling parameters.
PLATFORM_API_VERSIONS = {"bedrock": "bedrock-2023-05-31", "vertex": "vertex-2023-10-16"}
_KWARGS = ("model", "max_tokens", "messages")


@dataclass(slots=True)
class ShadowResult:
    side: Side
    outcome: ShadowOutcome
    reason: str | None = None


def make_client(settings: Settings) -> anthropic.AsyncAnthropic | Any:
    """The SDK client for ``SHADOW_PROVIDER``, with retries set by us."""
    key = settings.shadow_api_key.get_secret_value() if settings.shadow_api_key else None
    common: dict[str, Any] = {
        "max_retries": settings.shadow_max_retries,
        "timeout": settings.shadow_timeout_s,
        # The SDK's pool stops at 1,000 connections; past that, shadows would wait for a
        # connection and spend their timeout there. One connection per allowed shadow.
        "http_client": anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(
                max_connections=max(settings.shadow_concurrency, 1),
                max_keepalive_connections=min(settings.shadow_concurrency, 100),
            ),
        ),
    }
    if settings.shadow_base_url:
        common["base_url"] = settings.shadow_base_url
    if settings.shadow_provider == "bedrock":
        return anthropic.AsyncAnthropicBedrock(
            aws_region=os.environ.get("AWS_REGION", "us-east-1"), **common
        )
    if settings.shadow_provider == "vertex":
        return anthropic.AsyncAnthropicVertex(
            region=os.environ.get("CLOUD_ML_REGION", "us-east5"),
            project_id=os.environ.get("ANTHROPIC_VERTEX_PROJECT_ID", "shadowproxy"),
            access_token=key,
            **common,
        )
    return anthropic.AsyncAnthropic(
        api_key=key or "missing-shadow-key",
        default_headers={"anthropic-version": SHADOW_API_VERSION},
        **common,
    )


def _error_text(exc: anthropic.APIStatusError) -> str:
    """``type: message`` from Anthropic's error shape; Bedrock's ``{"message"}`` with its
    ``x-amzn-errortype``; otherwise the status and the SDK's description."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and "type" in err:
            return f"{err.get('type')}: {err.get('message', '')}"
        if isinstance(body.get("message"), str):
            kind = exc.response.headers.get("x-amzn-errortype", f"HTTP {exc.status_code}")
            return f"{kind.split(':', 1)[0]}: {body['message']}"
    return f"HTTP {exc.status_code}: {exc.message}"


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
            side.error = _error_text(exc)
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

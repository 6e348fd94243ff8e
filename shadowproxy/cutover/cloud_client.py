"""The shadow serving users on Amazon Bedrock or Google Vertex AI, through the anthropic
SDK's own platform clients (SigV4 signing and AWS event-stream decoding for Bedrock,
Google credentials for Vertex: not ours to re-implement).

The proxy process loads this module, and with it the SDK, only when
``SHADOW_PROVIDER`` is ``bedrock`` or ``vertex`` and a plan routes traffic (an explicit
exception in the proxy's import contract, pyproject.toml). SDK exceptions are mapped
here, once, to :class:`ShadowFailed` and ``error`` events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

from shadowproxy.anthropic_sdk import PLATFORM_API_VERSIONS, anthropic_client, error_text
from shadowproxy.cutover.shadow_reply import (
    FailureKind,
    ShadowEvent,
    ShadowFailed,
    broken_stream,
    event_from_dict,
    kind_of_status,
)

__all__ = ["CloudMessagesClient"]

_KWARGS = ("model", "max_tokens", "messages")


class _SdkStream:
    def __init__(self, events: Any) -> None:
        self._events = events
        response = getattr(events, "response", None)
        self.status = response.status_code if response is not None else 200
        headers = dict(response.headers) if response is not None else {}
        self.request_id: str | None = headers.get("request-id") or headers.get(
            "x-amzn-requestid")

    async def __aiter__(self) -> AsyncIterator[ShadowEvent]:
        try:
            async for event in self._events:
                yield event_from_dict(event.to_dict())
        except anthropic.APIStatusError as exc:
            # The SDK raises an ``error`` event as an exception: hand it on as the event.
            yield broken_stream(error_text(exc), _error_type(exc))
        except anthropic.AnthropicError as exc:
            yield broken_stream(f"the stream failed: {type(exc).__name__}")

    async def aclose(self) -> None:
        await self._events.close()


def _error_type(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
    return "api_error"


class CloudMessagesClient:
    def __init__(self, provider: str, key: str | None, base_url: str | None, *,
                 timeout_s: float, connections: int) -> None:
        self._client = anthropic_client(provider, key, base_url, timeout=timeout_s,
                                        max_retries=0, connections=connections)
        version = PLATFORM_API_VERSIONS.get(provider)
        self._defaults = {"anthropic_version": version} if version else {}

    async def open(self, body: dict[str, Any], headers: dict[str, str]) -> _SdkStream:
        extra = {**self._defaults, **body}
        extra.pop("stream", None)
        kwargs = {k: extra.pop(k) for k in _KWARGS if k in extra}
        beta = {k: v for k, v in headers.items() if k == "anthropic-beta"}
        try:
            events = await self._client.messages.create(**kwargs, stream=True, extra_body=extra,
                                                        extra_headers=beta)
        except anthropic.APIStatusError as exc:
            raise ShadowFailed(error_text(exc), kind_of_status(exc.status_code),
                               status=exc.status_code, request_id=exc.request_id) from None
        except anthropic.APIConnectionError as exc:  # includes the SDK's timeouts
            raise ShadowFailed(f"connection failed: {exc.message}",
                               FailureKind.CONNECTION) from None
        return _SdkStream(events)

    async def close(self) -> None:
        await self._client.close()

"""The shadow model's answer on the user's path: a streamed Messages call with the
shadow's own key, never the application's.

For ``SHADOW_PROVIDER=anthropic`` this is plain HTTP from the proxy process (aiohttp,
already loaded, one connection pool): the SDK would add its import time and memory to
every worker for a call whose wire format is one POST and a server-sent-event stream.
Bedrock and Vertex need their request signing and, for Bedrock, AWS event-stream
decoding: there the SDK's platform clients are used (:mod:`shadowproxy.cutover.
cloud_client`), loaded only then. Both raise :class:`ShadowFailed` when there is no
answer and yield :class:`ShadowEvent` s when there is one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp

from shadowproxy.cutover.shadow_reply import (
    FailureKind,
    ShadowEvent,
    ShadowFailed,
    broken_stream,
    event_from_sse,
    kind_of_status,
)
from shadowproxy.settings import Settings
from shadowproxy.wire.sse import SSEParser

__all__ = [
    "ANTHROPIC_API",
    "MessagesClient",
    "ShadowClient",
    "ShadowStream",
    "load_client_code",
    "make_client",
]

ANTHROPIC_API = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"  # see shadowproxy.anthropic_sdk.SHADOW_API_VERSION
_ERROR_BODY_LIMIT = 8192


class ShadowStream(Protocol):
    status: int
    request_id: str | None

    def __aiter__(self) -> AsyncIterator[ShadowEvent]: ...

    async def aclose(self) -> None: ...


class ShadowClient(Protocol):
    async def open(self, body: dict[str, Any], headers: dict[str, str]) -> ShadowStream: ...

    async def close(self) -> None: ...


def _error_text(status: int, body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return f"HTTP {status} {err.get('type', 'error')}: {err.get('message', '')}"[:300]
    return f"HTTP {status}"


class _RawStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.request_id: str | None = response.headers.get("request-id")

    async def __aiter__(self) -> AsyncIterator[ShadowEvent]:
        parser = SSEParser()
        try:
            async for chunk in self._response.content.iter_any():
                for event in parser.feed(chunk):
                    yield event_from_sse(event.event, event.data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            yield broken_stream(f"the stream failed: {type(exc).__name__}")
            return
        for event in parser.close():
            yield event_from_sse(event.event, event.data)

    async def aclose(self) -> None:
        self._response.release()


class MessagesClient:
    """``POST {SHADOW_BASE_URL}/v1/messages`` with ``stream: true`` and the shadow's key."""

    def __init__(self, base_url: str | None, api_key: str | None, *, connect_timeout_s: float,
                 read_timeout_s: float) -> None:
        self._url = (base_url or ANTHROPIC_API).rstrip("/") + "/v1/messages"
        self._key = api_key or "missing-shadow-key"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout_s,
                                          sock_read=read_timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
        )

    async def open(self, body: dict[str, Any], headers: dict[str, str]) -> _RawStream:
        sent = {"x-api-key": self._key, "content-type": "application/json",
                "accept": "text/event-stream",
                "anthropic-version": headers.get("anthropic-version", DEFAULT_VERSION)}
        if "anthropic-beta" in headers:
            sent["anthropic-beta"] = headers["anthropic-beta"]
        try:
            response = await self._session.post(
                self._url, data=json.dumps({**body, "stream": True}).encode(), headers=sent)
        except TimeoutError:
            raise ShadowFailed("connection timed out", FailureKind.CONNECTION) from None
        except aiohttp.ClientError as exc:
            raise ShadowFailed(f"connection failed: {type(exc).__name__}",
                               FailureKind.CONNECTION) from None
        if response.status != 200:
            try:
                text = _error_text(response.status,
                                   await response.content.read(_ERROR_BODY_LIMIT))
            except (TimeoutError, aiohttp.ClientError):
                text = f"HTTP {response.status}"
            finally:
                response.release()
            raise ShadowFailed(text, kind_of_status(response.status), status=response.status,
                               request_id=response.headers.get("request-id"))
        return _RawStream(response)

    async def close(self) -> None:
        await self._session.close()


def make_client(settings: Settings) -> ShadowClient:
    key = settings.shadow_api_key.get_secret_value() if settings.shadow_api_key else None
    if settings.shadow_provider == "anthropic":
        return MessagesClient(settings.shadow_base_url, key,
                              connect_timeout_s=settings.upstream_connect_timeout_s,
                              read_timeout_s=settings.shadow_timeout_s)
    # Loaded only here: the SDK stays out of proxies that do not serve from the cloud.
    from shadowproxy.cutover.cloud_client import CloudMessagesClient

    return CloudMessagesClient(settings.shadow_provider, key, settings.shadow_base_url,
                               timeout_s=settings.shadow_timeout_s,
                               connections=settings.shadow_concurrency)


def load_client_code(settings: Settings) -> None:
    """Import what :func:`make_client` needs (the SDK, for bedrock and vertex): slow, so
    run in a thread, once, when a plan first routes traffic."""
    if settings.shadow_provider != "anthropic":
        from shadowproxy.cutover import cloud_client  # noqa: F401

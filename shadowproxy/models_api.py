"""Ask the Anthropic Models API (``GET /v1/models/{id}``) what it knows of a model's life.

With aiohttp rather than the SDK, so any process may ask (the proxy process, whose
dashboard warns, must not load the SDK). Never raises: a Models API that is unreachable,
refuses the key or does not know the model leaves the SDK's data as the answer
(:func:`shadowproxy.lifecycle.from_sdk`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp

from shadowproxy.lifecycle import ModelLifecycle, from_model_info, from_sdk

__all__ = ["DEFAULT_BASE_URL", "lookup_lifecycle", "lookup_lifecycles"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT_S = 5.0
API_VERSION = "2023-06-01"


async def lookup_lifecycle(
    model: str,
    session: aiohttp.ClientSession | None,
    *,
    api_key: str | None,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ModelLifecycle:
    """The model's lifecycle from the Models API when it answers, else the SDK's data.
    Without a session or a key only the SDK's data is used."""
    if session is None or not api_key:
        return from_sdk(model)
    url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v1/models/{model}"
    headers = {"x-api-key": api_key, "anthropic-version": API_VERSION}
    try:
        async with asyncio.timeout(timeout_s), session.get(url, headers=headers) as reply:
            if reply.status != 200:
                return from_sdk(model)
            info = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return from_sdk(model)
    return from_model_info(model, info) if isinstance(info, dict) else from_sdk(model)


async def lookup_lifecycles(
    models: Iterable[str],
    *,
    api_key: str | None,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, ModelLifecycle]:
    """Several models at once (the report's primary models, the shadow, the judge)."""
    unique = list(dict.fromkeys(m for m in models if m))
    async with aiohttp.ClientSession(trust_env=False) as session:
        found = await asyncio.gather(*(
            lookup_lifecycle(m, session, api_key=api_key, base_url=base_url,
                             timeout_s=timeout_s) for m in unique))
    return dict(zip(unique, found, strict=True))

"""Ask the Anthropic Models API (``GET /v1/models/{id}``) what it knows of a model's life.

With aiohttp rather than the SDK, so any process may ask (the proxy process, whose
dashboard warns, must not load the SDK). Never raises: a Models API that is unreachable,
refuses the key or does not know the model answers None, and the offline data decides
(:meth:`shadowproxy.lifecycle.LifecycleView.of` merges the answer with it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp

from shadowproxy.lifecycle import ModelLifecycle, from_model_info

__all__ = ["DEFAULT_BASE_URL", "lookup_lifecycle", "lookup_lifecycles"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_TIMEOUT_S = 5.0
API_VERSION = "2023-06-01"


async def lookup_lifecycle(
    model: str,
    session: aiohttp.ClientSession,
    *,
    api_key: str,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ModelLifecycle | None:
    """The Models API's answer for ``model``, or None when it gives none."""
    url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/v1/models/{model}"
    headers = {"x-api-key": api_key, "anthropic-version": API_VERSION}
    try:
        async with asyncio.timeout(timeout_s), session.get(url, headers=headers) as reply:
            if reply.status != 200:
                return None
            info = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return from_model_info(model, info) if isinstance(info, dict) else None


async def lookup_lifecycles(
    models: Iterable[str],
    *,
    api_key: str | None,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, ModelLifecycle | None]:
    """Several models at once (the shadow and the judge); without a key, no call and
    every answer None."""
    unique = list(dict.fromkeys(m for m in models if m))
    if not api_key:
        return dict.fromkeys(unique)
    async with aiohttp.ClientSession(trust_env=False) as session:
        found = await asyncio.gather(*(
            lookup_lifecycle(m, session, api_key=api_key, base_url=base_url,
                             timeout_s=timeout_s) for m in unique))
    return dict(zip(unique, found, strict=True))

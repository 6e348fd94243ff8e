"""The anthropic SDK's clients (direct, Bedrock, Vertex) on our own timeout and retries.

Shared by the shadow (:mod:`shadowproxy.mirror.shadow`) and the judge
(:mod:`shadowproxy.decision.judge`): the SDK's defaults (600 s, 2 retries) suit neither.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic
import httpx2  # the anthropic SDK's HTTP client

__all__ = ["PLATFORM_API_VERSIONS", "SHADOW_API_VERSION", "anthropic_client", "error_text"]

# Under the 2.x SDK's default version (2026-10-21) the API rejects temperature/top_p/top_k;
# the shadow must carry the application's sampling parameters, so it speaks 2023-06-01
# unless the application named its own version.
SHADOW_API_VERSION = "2023-06-01"
# Bedrock and Vertex take the version as ``anthropic_version`` in the body, where the SDK's
# default is 2026-10-21 as well; their own dated versions keep the sampling parameters.
PLATFORM_API_VERSIONS = {"bedrock": "bedrock-2023-05-31", "vertex": "vertex-2023-10-16"}


def anthropic_client(
    provider: str, key: str | None, base_url: str | None, *, timeout: float,
    max_retries: int, connections: int,
) -> anthropic.AsyncAnthropic | Any:
    """An anthropic SDK client (direct, Bedrock or Vertex) on our timeout and retries,
    speaking :data:`SHADOW_API_VERSION`; shared by the shadow and the judge."""
    common: dict[str, Any] = {
        "max_retries": max_retries,
        "timeout": timeout,
        # The SDK's pool stops at 1,000 connections; past that, calls would wait for a
        # connection and spend their timeout there. One connection per allowed call.
        "http_client": anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(
                max_connections=max(connections, 1),
                max_keepalive_connections=min(connections, 100),
            ),
        ),
    }
    if base_url:
        common["base_url"] = base_url
    if provider == "bedrock":
        return anthropic.AsyncAnthropicBedrock(
            aws_region=os.environ.get("AWS_REGION", "us-east-1"), **common
        )
    if provider == "vertex":
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


def error_text(exc: anthropic.APIStatusError) -> str:
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



"""Drop-in: the official SDKs get through the proxy exactly what they get from the
provider directly — same objects, same errors, same streamed bytes.

The simulator runs in deterministic mode (ids and timestamps derived from the request),
so a direct call and a proxied call of the same request must match byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.simulator import SimulatorConfig
from tests.fakes.providers import SimulatedProvider

TOOLS = [{"type": "function", "function": {
    "name": "search", "description": "Search",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
A_TOOLS = [{"name": "search", "description": "Search",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(deterministic=True, chunk_interval_s=0.002)


@pytest.fixture
async def proxy_url(simulator: SimulatedProvider, aiohttp_server: Any) -> str:
    app = make_proxy_app(primary_url=simulator.url, mirror=None,
                         tag_header="x-shadow-tag", max_body_bytes=1 << 20)
    server: TestServer = await aiohttp_server(app)
    return f"http://{server.host}:{server.port}"


Call = Callable[[str], Awaitable[Any]]


def openai_client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-test", max_retries=0)


def anthropic_client(base: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-test", max_retries=0)


async def oa_json(base: str) -> Any:
    r = await openai_client(base).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    return r.model_dump()


async def oa_tools_stream(base: str) -> Any:
    stream = await openai_client(base).chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True}, tools=TOOLS,
        messages=[{"role": "user", "content": "find it #tool"}])
    return [chunk.model_dump() async for chunk in stream]


async def an_json_tools(base: str) -> Any:
    r = await anthropic_client(base).messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=A_TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "find it #tool"}])
    return r.model_dump()


async def an_stream(base: str) -> Any:
    async with anthropic_client(base).messages.stream(
        model="claude-sonnet-4-6", max_tokens=100,
        messages=[{"role": "user", "content": "tell me"}],
    ) as stream:
        events = [e.model_dump() async for e in stream]
    return events


@pytest.mark.parametrize("call", [oa_json, oa_tools_stream, an_json_tools, an_stream],
                         ids=lambda f: f.__name__)
async def test_sdks_get_the_same_result_through_the_proxy(
    call: Call, simulator: SimulatedProvider, proxy_url: str
) -> None:
    assert await call(proxy_url) == await call(simulator.url)


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/v1/chat/completions",
         {"model": "gpt-4o", "stream": True, "tools": TOOLS,
          "stream_options": {"include_usage": True},
          "messages": [{"role": "user", "content": "stream a call #tool"}]},
         {"Authorization": "Bearer sk-test"}),
        ("/v1/messages",
         {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
          "messages": [{"role": "user", "content": "stream text"}]},
         {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}),
        ("/v1/chat/completions",
         {"model": "gpt-4o", "messages": [{"role": "user", "content": "gzip me"}]},
         {"Authorization": "Bearer sk-test", "Accept-Encoding": "gzip"}),
    ],
    ids=["openai-sse", "anthropic-sse", "gzip-json"],
)
async def test_answers_are_byte_identical_through_the_proxy(
    path: str, body: dict[str, Any], headers: dict[str, str],
    simulator: SimulatedProvider, proxy_url: str,
) -> None:
    async def fetch(base: str) -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession(auto_decompress=False) as s, s.post(
            base + path, data=json.dumps(body), headers=headers,
        ) as resp:
            keep = ("content-type", "content-encoding", "request-id", "x-request-id")
            return (resp.status, {k: v for k, v in resp.headers.items() if k.lower() in keep},
                    await resp.read())

    direct, proxied = await fetch(simulator.url), await fetch(proxy_url)
    assert proxied == direct
    assert direct[2]  # a real body, not two empty answers


@pytest.mark.parametrize(
    ("error", "exc"),
    [("429", openai.RateLimitError), ("500", openai.InternalServerError),
     ("401", openai.AuthenticationError)],
)
async def test_provider_errors_reach_the_sdk_unchanged(
    error: str, exc: type[openai.APIStatusError], simulator: SimulatedProvider, proxy_url: str
) -> None:
    async def fail(base: str) -> openai.APIStatusError:
        with pytest.raises(exc) as info:
            await openai_client(base).chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-sim-error": error})
        return info.value

    direct, proxied = await fail(simulator.url), await fail(proxy_url)
    assert proxied.status_code == direct.status_code
    assert proxied.body == direct.body
    assert proxied.response.headers.get("retry-after") == direct.response.headers.get(
        "retry-after")

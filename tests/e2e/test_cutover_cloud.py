"""The shadow serving users from Vertex AI and Bedrock: the SDK's platform clients sign
and decode, the user gets the same answers as from the Anthropic API, and the
application's key never reaches the platform."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from shadowproxy.simulator import SimulatorConfig
from tests.fakes.cutover_rig import APP_KEY, TAG, cutover_rig
from tests.fakes.providers import SimulatedProvider

PLATFORMS = {
    "vertex": ("claude-haiku-4-5@20251001", ":streamRawPredict"),
    "bedrock": ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "/invoke-with-response-stream"),
}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(chunk_interval_s=0.001)


@pytest.fixture(autouse=True)
def platform_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "shadow-test")
    for name in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSHADOWTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shadow-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    yield


@pytest.mark.parametrize("platform", list(PLATFORMS))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_the_platforms_shadow_serves_openai_callers(
    simulator: SimulatedProvider, aiohttp_server: Any, platform: str, stream: bool,
) -> None:
    model, suffix = PLATFORMS[platform]
    async with cutover_rig(aiohttp_server, primary_url=simulator.url, shadow_url=simulator.url,
                           shadow_provider=platform, shadow_model=model,
                           shadow_api_key="ya29.vertex-access-token") as rig:
        client = openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key=APP_KEY,
                                    max_retries=0)
        kwargs: dict[str, Any] = {"model": "gpt-4o-mini", "extra_headers": {"x-shadow-tag": TAG},
                                  "messages": [{"role": "user", "content": "find it #tool"}],
                                  "tools": [{"type": "function", "function": {
                                      "name": "search", "parameters": {"type": "object"}}}]}
        if stream:
            async with client.chat.completions.stream(**kwargs) as events:
                async for _ in events:
                    pass
                completion = await events.get_final_completion()
        else:
            completion = await client.chat.completions.create(**kwargs)
        (pair,) = await rig.wait_records(1)

    assert completion.model == "claude-haiku-4-5-20251001"
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"query": "find it #tool"}
    assert pair.served_by == "shadow" and pair.shadow_outcome == "ok"
    (sent,) = [r for r in simulator.received if r.path.endswith(suffix)]
    assert APP_KEY not in json.dumps(sent.headers)
    if platform == "vertex":
        assert sent.headers["authorization"] == "Bearer ya29.vertex-access-token"
    else:
        assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256")

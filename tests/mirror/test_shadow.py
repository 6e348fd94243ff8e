"""The shadow call through Claude on Vertex AI and on Amazon Bedrock.

The official SDK's platform clients talk to the simulator's Vertex and Bedrock routes, so
the paths, auth, body fields and Bedrock's event-stream framing are the SDK's own, and a
shadow that works here sends what those platforms expect.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.mirror.translate import openai_to_messages, prepare_messages_request
from shadowproxy.records import ShadowOutcome
from shadowproxy.settings import Settings
from shadowproxy.simulator import BEDROCK_VERSION, VERTEX_VERSION
from tests.fakes.providers import SimulatedProvider

VERTEX_MODEL = "claude-haiku-4-5@20251001"
BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
SERVED_MODEL = "claude-haiku-4-5-20251001"
PROJECT, REGION = "shadow-test", "us-east5"
VERTEX_PREFIX = f"/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models/"
PROMPT = "What is the capital of France?"
EXPECTED_TEXT = f"Answer to: {PROMPT}"
# The application's own Messages request: the shadow must carry its temperature.
APP_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def vertex_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUD_ML_REGION", REGION)
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", PROJECT)


@pytest.fixture
def bedrock_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSHADOWTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "shadow-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


def settings_for(provider: str, simulator: SimulatedProvider) -> Settings:
    return Settings.model_validate(
        {
            "shadow_provider": provider,
            "shadow_base_url": simulator.url,
            "shadow_api_key": SecretStr("ya29.vertex-access-token"),
            "shadow_max_retries": 0,
            "shadow_timeout_s": 10,
        }
    )


def anthropic_request(model: str, prompt: str = PROMPT, *, stream: bool) -> dict[str, Any]:
    app_body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 512,
        "temperature": 0.2,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    return prepare_messages_request(app_body, model=model)


async def call(provider: str, simulator: SimulatedProvider, params: dict[str, Any]) -> Any:
    caller = ShadowCaller(settings_for(provider, simulator))
    try:
        return await caller.call(params, dict(APP_HEADERS))
    finally:
        await caller.close()


# --- Vertex AI -------------------------------------------------------------------------


@pytest.mark.usefixtures("vertex_env")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_vertex_shadow_answers_through_raw_predict(
    simulator: SimulatedProvider, stream: bool
) -> None:
    result = await call("vertex", simulator, anthropic_request(VERTEX_MODEL, stream=stream))

    assert result.outcome == ShadowOutcome.OK, result.reason
    side = result.side
    assert (side.text, side.stop_reason, side.model) == (EXPECTED_TEXT, "end_turn", SERVED_MODEL)
    assert side.input_tokens == len("Answer briefly." + PROMPT) // 4
    assert side.output_tokens == len(EXPECTED_TEXT) // 4
    assert side.status == 200
    assert (side.ttft_ms is not None) == stream
    method = "streamRawPredict" if stream else "rawPredict"
    sent = simulator.last(f"{VERTEX_PREFIX}{VERTEX_MODEL}:{method}")
    assert sent.headers["authorization"] == "Bearer ya29.vertex-access-token"
    assert "model" not in sent.json
    assert sent.json["anthropic_version"] == VERTEX_VERSION
    assert sent.json["temperature"] == 0.2


@pytest.mark.usefixtures("vertex_env")
async def test_vertex_shadow_of_an_openai_request_calls_the_tool(
    simulator: SimulatedProvider,
) -> None:
    openai_body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "find penguins #tool"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "search",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
    }
    params = openai_to_messages(openai_body, model=VERTEX_MODEL, default_max_tokens=1024)

    result = await call("vertex", simulator, params)

    assert result.outcome == ShadowOutcome.OK, result.reason
    assert result.side.stop_reason == "tool_use"
    assert result.side.tool_calls == [
        {"name": "search", "arguments": {"query": "find penguins #tool"}}
    ]


@pytest.mark.usefixtures("vertex_env")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_vertex_overload_is_an_error_outcome_with_its_status(
    simulator: SimulatedProvider, stream: bool
) -> None:
    params = anthropic_request(VERTEX_MODEL, "busy? #error=529", stream=stream)

    result = await call("vertex", simulator, params)

    assert result.outcome == ShadowOutcome.ERROR
    assert result.side.status == 529
    assert result.side.error == "overloaded_error: Simulated overloaded_error"


@pytest.mark.usefixtures("vertex_env")
async def test_vertex_stream_failing_after_200_is_an_error_outcome(
    simulator: SimulatedProvider,
) -> None:
    params = anthropic_request(VERTEX_MODEL, "go #midstream-error", stream=True)

    result = await call("vertex", simulator, params)

    assert result.outcome == ShadowOutcome.ERROR
    assert "overloaded" in (result.reason or "")


# --- Amazon Bedrock --------------------------------------------------------------------


@pytest.mark.usefixtures("bedrock_env")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_bedrock_shadow_answers_through_invoke(
    simulator: SimulatedProvider, stream: bool
) -> None:
    result = await call("bedrock", simulator, anthropic_request(BEDROCK_MODEL, stream=stream))

    assert result.outcome == ShadowOutcome.OK, result.reason
    side = result.side
    assert (side.text, side.stop_reason, side.model) == (EXPECTED_TEXT, "end_turn", SERVED_MODEL)
    assert side.input_tokens == len("Answer briefly." + PROMPT) // 4
    assert side.output_tokens == len(EXPECTED_TEXT) // 4
    assert side.status == 200
    assert (side.ttft_ms is not None) == stream
    action = "invoke-with-response-stream" if stream else "invoke"
    sent = simulator.last(f"/model/{BEDROCK_MODEL}/{action}")
    authorization = sent.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDSHADOWTEST/")
    assert "/us-west-2/bedrock/aws4_request" in authorization
    assert "model" not in sent.json and "stream" not in sent.json
    assert sent.json["anthropic_version"] == BEDROCK_VERSION
    assert sent.json["temperature"] == 0.2


@pytest.mark.usefixtures("bedrock_env")
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_bedrock_overload_is_an_error_outcome_with_its_status(
    simulator: SimulatedProvider, stream: bool
) -> None:
    params = anthropic_request(BEDROCK_MODEL, "busy? #error=529", stream=stream)

    result = await call("bedrock", simulator, params)

    assert result.outcome == ShadowOutcome.ERROR
    assert result.side.status == 529
    assert result.side.error is not None
    # Bedrock's error type (x-amzn-errortype) and message, not the SDK's repr of the body.
    assert result.side.error == (
        "ServiceUnavailableException: Simulated ServiceUnavailableException")
    assert result.side.request_id  # from x-amzn-requestid


@pytest.mark.usefixtures("bedrock_env")
async def test_bedrock_stream_exception_after_200_is_an_error_outcome(
    simulator: SimulatedProvider,
) -> None:
    params = anthropic_request(BEDROCK_MODEL, "go #midstream-error", stream=True)

    result = await call("bedrock", simulator, params)

    assert result.outcome == ShadowOutcome.ERROR
    assert "serviceUnavailableException" in (result.reason or "")

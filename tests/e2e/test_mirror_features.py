"""Today's Messages features mirrored end to end: official SDKs → proxy → simulated
primary, and the mirror's shadow call to the simulated Haiku, which enforces the
Messages rules for structured outputs, thinking and server tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.mirror_rig import SHADOW_KEY, MirrorRig, mirror_rig
from tests.fakes.providers import SimulatedProvider

PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture
def rig_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def rig(aiohttp_server: Any, simulator: SimulatedProvider,
              rig_overrides: dict[str, Any]) -> AsyncIterator[MirrorRig]:
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url, **rig_overrides) as rig:
        yield rig


def shadow_bodies(simulator: SimulatedProvider) -> list[Any]:
    return [r.json for r in simulator.received if r.path == "/v1/messages"
            and r.headers.get("authorization") == f"Bearer {SHADOW_KEY}"]


def app_anthropic(rig: MirrorRig) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app", max_retries=0,
                                    timeout=30)


# ------------------------------------------------------------------ structured outputs


async def test_openai_json_schema_asks_the_shadow_for_the_same_schema(
    rig: MirrorRig, simulator: SimulatedProvider
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key="sk-app",
                                max_retries=0)
    answer = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Who is Ada?"}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )
    (record,) = await rig.wait_records(1)
    await client.close()
    (body,) = shadow_bodies(simulator)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": PERSON}}
    assert "system" not in body  # no prose instruction beside the schema
    assert record.shadow_outcome == "ok", record.shadow.error
    assert json.loads(answer.choices[0].message.content or "") == json.loads(
        record.shadow.text or "")
    assert set(json.loads(record.shadow.text or "")) == {"name", "age"}


async def test_anthropic_output_config_goes_to_the_shadow_as_sent(
    rig: MirrorRig, simulator: SimulatedProvider
) -> None:
    client = app_anthropic(rig)
    output_config: Any = {"format": {"type": "json_schema", "schema": PERSON}}
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=300, output_config=output_config,
        messages=[{"role": "user", "content": "Who is Ada?"}])
    (record,) = await rig.wait_records(1)
    await client.close()
    (body,) = shadow_bodies(simulator)
    assert body["output_config"] == output_config
    assert record.primary.text == message.content[0].text == record.shadow.text  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- thinking


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_thinking_is_fitted_to_haiku_said_and_never_compared(
    rig: MirrorRig, simulator: SimulatedProvider, stream: bool
) -> None:
    client = app_anthropic(rig)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-6", "max_tokens": 100_000,
        "thinking": {"type": "enabled", "budget_tokens": 80_000},
        "messages": [{"role": "user", "content": "Think about proxies"}],
    }
    if stream:
        async with client.messages.stream(**params) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**params)
    (record,) = await rig.wait_records(1)
    await client.close()
    thought = next(b.thinking for b in message.content if b.type == "thinking")
    (body,) = shadow_bodies(simulator)
    assert body["max_tokens"] == 64_000
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 63_999}
    assert record.shadow_outcome == "ok", record.shadow.error
    assert record.shadow_reason == ("thinking budget_tokens 80000 -> 63999 "
                                    "(at least 1024, below max_tokens=64000)")
    assert thought not in (record.primary.text or "")
    assert record.primary.text == record.shadow.text
    assert (record.primary.text or "").startswith("Answer to: Think about proxies")
    # Thinking tokens are output tokens on both sides, and priced as such.
    assert message.usage.output_tokens_details is not None
    assert record.primary.output_tokens == message.usage.output_tokens
    assert message.usage.output_tokens_details.thinking_tokens < message.usage.output_tokens
    assert record.primary.cost_usd == pytest.approx(
        (record.primary.input_tokens * 3 + record.primary.output_tokens * 15) / 1e6)  # type: ignore[operator]


async def test_adaptive_thinking_reaches_haiku_as_a_budget(
    rig: MirrorRig, simulator: SimulatedProvider
) -> None:
    client = app_anthropic(rig)
    await client.messages.create(model="claude-sonnet-4-6", max_tokens=8000,
                                 thinking={"type": "adaptive"},
                                 messages=[{"role": "user", "content": "Think"}])
    (record,) = await rig.wait_records(1)
    await client.close()
    (body,) = shadow_bodies(simulator)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert record.shadow_outcome == "ok", record.shadow.error
    assert "adaptive" in (record.shadow_reason or "")


# ------------------------------------------------------------------------ server tools

WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}


async def test_server_tools_are_skipped_with_the_reason_by_default(
    rig: MirrorRig, simulator: SimulatedProvider
) -> None:
    client = app_anthropic(rig)
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=300, tools=[WEB_SEARCH],
        messages=[{"role": "user", "content": "Latest proxy news"}])
    (record,) = await rig.wait_records(1)
    await client.close()
    assert any(b.type == "server_tool_use" for b in message.content)
    assert shadow_bodies(simulator) == []  # nothing billed at the shadow's provider
    assert record.shadow_outcome == "skipped"
    assert "web_search_20250305" in (record.shadow_reason or "")
    assert "SHADOW_SERVER_TOOLS=allow" in (record.shadow_reason or "")


@pytest.mark.parametrize("rig_overrides", [{"shadow_server_tools": "allow"}])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_allowed_server_tools_are_mirrored_and_citations_kept_out_of_the_text(
    rig: MirrorRig, simulator: SimulatedProvider, stream: bool
) -> None:
    client = app_anthropic(rig)
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-6", "max_tokens": 300, "tools": [WEB_SEARCH],
        "messages": [{"role": "user", "content": "Latest proxy news"}],
    }
    if stream:
        async with client.messages.stream(**params) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**params)
    (record,) = await rig.wait_records(1)
    await client.close()
    (body,) = shadow_bodies(simulator)
    assert body["tools"] == [WEB_SEARCH]
    cited = next(b for b in message.content if b.type == "text")
    assert cited.citations  # the answer really carried citations
    assert record.shadow_outcome == "ok", record.shadow.error
    assert record.primary.text == cited.text == record.shadow.text
    assert "docs.example.com" not in (record.primary.text or "")
    assert record.primary.tool_calls == [] == record.shadow.tool_calls

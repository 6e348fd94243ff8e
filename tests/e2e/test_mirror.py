"""Mirroring end to end: official SDKs → proxy → simulated primary, and the shadow call
the mirror makes through the anthropic SDK to the simulated Haiku.

The mirror engine runs in the test's event loop here (``InlineMirrorLink``) so each test
can read the records it emits; ``test_serve.py`` covers the same engine in its own
process behind ``shadowproxy serve``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.redact import Redactor
from shadowproxy.mirror.replay import Replayer
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.pricing import PriceTable
from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.records import PairRecord
from shadowproxy.settings import Settings
from shadowproxy.simulator import SimulatorConfig
from tests.fakes.mirror import InlineMirrorLink
from tests.fakes.providers import SimulatedProvider

APP_KEY = "sk-app-secret-0123456789"
SHADOW_KEY = "sk-ant-shadow-secret-0123456789"
TOOLS = [{
    "type": "function",
    "function": {"name": "search", "description": "Search the docs",
                 "parameters": {"type": "object",
                                "properties": {"query": {"type": "string"}}}},
}]


@dataclass
class Rig:
    proxy_url: str
    simulator: SimulatedProvider
    engine: MirrorEngine
    records: list[PairRecord] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_records(self, n: int) -> list[PairRecord]:
        async with asyncio.timeout(10):
            while len(self.records) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.records

    def shadow_requests(self) -> list[Any]:
        return [r for r in self.simulator.received if r.path == "/v1/messages"
                and r.headers.get("authorization") == f"Bearer {SHADOW_KEY}"]

    def openai(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.proxy_url}/v1", api_key=APP_KEY,
                                  max_retries=0)

    def anthropic(self, **kw: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.proxy_url, api_key=APP_KEY,
                                        max_retries=0, timeout=30, **kw)


def rig_settings(simulator: SimulatedProvider, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "primary_url": simulator.url, "shadow_base_url": simulator.url,
        "shadow_api_key": SHADOW_KEY, "shadow_max_retries": 0, "shadow_timeout_s": 5,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def rig_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def rig(
    simulator: SimulatedProvider, aiohttp_server: Any, rig_overrides: dict[str, Any]
) -> AsyncIterator[Rig]:
    settings = rig_settings(simulator, **rig_overrides)
    records: list[PairRecord] = []
    arrived = asyncio.Event()

    def sink(record: PairRecord) -> None:
        records.append(record)
        arrived.set()

    caller = ShadowCaller(settings)
    replayer = Replayer(simulator.url, concurrency=4, timeout_s=10)
    engine = MirrorEngine(
        caller=caller, sink=sink,
        limits=EngineLimits(concurrency=settings.shadow_concurrency,
                            queue=settings.shadow_queue, model=settings.shadow_model,
                            timeout_s=settings.shadow_timeout_s),
        redactor=Redactor.from_names(settings.redactors), prices=PriceTable.load(),
        replayer=replayer,
    )
    app = make_proxy_app(
        primary_url=simulator.url, mirror=InlineMirrorLink(engine),
        tag_header=settings.tag_header, max_body_bytes=settings.max_body_bytes,
        sample_rate=settings.sample_rate, replay_rate=settings.replay_rate,
    )
    server: TestServer = await aiohttp_server(app)
    yield Rig(f"http://{server.host}:{server.port}", simulator, engine, records, arrived)
    await engine.drain(1)
    await caller.close()
    await replayer.close()


def assert_no_app_credentials(rig: Rig) -> None:
    for req in rig.shadow_requests():
        flat = json.dumps(req.headers) + req.body.decode(errors="replace")
        assert APP_KEY not in flat
        assert "x-shadow-tag" not in req.headers


async def test_openai_json_request_is_mirrored_translated_with_the_shadows_own_key(
    rig: Rig,
) -> None:
    client = rig.openai()
    answer = await client.chat.completions.create(
        model="gpt-4o", max_tokens=300, temperature=0.2,
        messages=[{"role": "system", "content": "Be terse."},
                  {"role": "user", "content": "What is a proxy?"}],
        tools=TOOLS, extra_headers={"x-shadow-tag": "faq"},
    )
    assert answer.choices[0].message.content.startswith("Answer to: What is a proxy?")
    (record,) = await rig.wait_records(1)
    (shadow_req,) = rig.shadow_requests()
    body = shadow_req.json
    assert body["model"] == "claude-haiku-4-5"
    assert body["system"] == "Be terse."
    assert body["tools"][0]["name"] == "search"
    assert body["tools"][0]["input_schema"]["properties"]["query"]["type"] == "string"
    assert body["max_tokens"] == 300 and body["temperature"] == 0.2
    assert shadow_req.headers["anthropic-version"] == "2023-06-01"
    assert_no_app_credentials(rig)
    # The primary never saw the tag header either.
    primary_req = rig.simulator.last("/v1/chat/completions")
    assert "x-shadow-tag" not in primary_req.headers

    assert record.tag == "faq" and record.api == "openai.chat" and not record.stream
    assert record.shadow_outcome == "ok"
    assert record.primary.text == answer.choices[0].message.content
    assert record.shadow.text == record.primary.text
    assert record.primary.model == "gpt-4o"
    assert record.shadow.model == "claude-haiku-4-5-20251001"
    assert record.primary.stop_reason == "end_turn" == record.shadow.stop_reason
    assert record.primary.input_tokens == answer.usage.prompt_tokens  # type: ignore[union-attr]
    assert record.primary.latency_ms and record.shadow.latency_ms
    assert record.shadow.cost_usd is not None and record.shadow.cost_usd > 0


async def test_openai_streaming_tool_call_is_mirrored_in_streaming_mode(rig: Rig) -> None:
    client = rig.openai()
    stream = await client.chat.completions.create(
        model="gpt-4o", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Find the refund policy #tool"}],
        tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
    )
    pieces = []
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                pieces.append(call.function.arguments or "")  # type: ignore[union-attr]
    assert json.loads("".join(pieces)) == {"query": "Find the refund policy #tool"}
    (record,) = await rig.wait_records(1)
    (shadow_req,) = rig.shadow_requests()
    assert shadow_req.json["stream"] is True
    assert shadow_req.json["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert record.stream
    assert record.primary.tool_calls == [
        {"name": "search", "arguments": {"query": "Find the refund policy #tool"}}]
    assert record.shadow.tool_calls == record.primary.tool_calls
    assert record.primary.stop_reason == "tool_use" == record.shadow.stop_reason
    assert record.primary.ttft_ms is not None and record.shadow.ttft_ms is not None
    assert record.primary.ttft_ms <= record.primary.latency_ms  # type: ignore[operator]
    assert record.primary.output_tokens  # the include_usage chunk was read


async def test_anthropic_requests_keep_sampling_parameters_and_version(rig: Rig) -> None:
    client = rig.anthropic(default_headers={"anthropic-version": "2023-06-01",
                                            "anthropic-beta": "tools-2024-04-04"})
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100_000,
        messages=[{"role": "user", "content": "Hello there"}],
        extra_body={"temperature": 0.3, "top_p": 0.9},
        extra_headers={"x-shadow-tag": "chat"},
    )
    assert message.content[0].text.startswith("Answer to: Hello there")  # type: ignore[union-attr]
    (record,) = await rig.wait_records(1)
    (shadow_req,) = rig.shadow_requests()
    assert shadow_req.json["model"] == "claude-haiku-4-5"
    assert shadow_req.json["max_tokens"] == 64_000  # clamped to Haiku's limit
    assert shadow_req.json["temperature"] == 0.3 and "top_p" not in shadow_req.json
    assert shadow_req.headers["anthropic-version"] == "2023-06-01"
    assert shadow_req.headers["anthropic-beta"] == "tools-2024-04-04"
    assert_no_app_credentials(rig)
    assert record.shadow_outcome == "ok", record.shadow.error
    assert record.api == "anthropic.messages" and record.tag == "chat"


async def test_anthropic_streaming_with_the_sdks_default_version(rig: Rig) -> None:
    client = rig.anthropic()
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=200,
        messages=[{"role": "user", "content": "Stream me something"}],
    ) as stream:
        text = await stream.get_final_text()
    assert text.startswith("Answer to: Stream me something")
    (record,) = await rig.wait_records(1)
    (shadow_req,) = rig.shadow_requests()
    assert shadow_req.json["stream"] is True
    assert record.shadow_outcome == "ok", record.shadow.error
    assert record.primary.text == text == record.shadow.text
    assert record.primary.ttft_ms is not None


async def test_openai_temperature_is_clamped_and_top_p_dropped_for_haiku(rig: Rig) -> None:
    await rig.openai().chat.completions.create(
        model="gpt-4o", temperature=1.7, top_p=0.5, stop=["END", "  "],
        messages=[{"role": "user", "content": "hi"}],
    )
    (record,) = await rig.wait_records(1)
    body = rig.shadow_requests()[0].json
    assert body["temperature"] == 1.0 and "top_p" not in body
    assert body["stop_sequences"] == ["END"]  # whitespace-only stops dropped
    assert body["max_tokens"] == 4096
    assert record.shadow_outcome == "ok", record.shadow.error


async def test_shadow_errors_are_recorded_and_never_reach_the_user(rig: Rig) -> None:
    answer = await rig.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "boom #error=529"}])
    assert answer.choices[0].message.content
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "error"
    assert record.shadow.status == 529
    assert "overloaded" in (record.shadow.error or "")
    assert record.primary.status == 200 and record.primary.error is None


async def test_shadow_midstream_error_after_200_is_an_error_outcome(rig: Rig) -> None:
    stream = await rig.anthropic().messages.create(
        model="claude-sonnet-4-6", max_tokens=50, stream=True,
        messages=[{"role": "user", "content": "go #midstream-error"}])
    chunks = [chunk async for chunk in stream]
    assert chunks
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "error"
    assert record.primary.error is None


@pytest.mark.parametrize("rig_overrides", [{"shadow_timeout_s": 2.0}])
async def test_slow_shadow_times_out_while_the_user_is_answered_at_once(rig: Rig) -> None:
    # The user's answer must not wait for the shadow's 2 s timeout. The margin is wide
    # on purpose: a loaded CI machine can take a few hundred ms for any request, and a
    # 0.4 s bound here once failed a clean run for that reason alone.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rig.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "slow one #slow=8000"}])
    assert loop.time() - started < 1.5
    assert rig.records == []  # the shadow is still out when the user has the answer
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "timeout"


@pytest.mark.parametrize("rig_overrides", [{"shadow_concurrency": 1, "shadow_queue": 1}])
async def test_full_shadow_queue_drops_explicitly(rig: Rig) -> None:
    client = rig.openai()
    await asyncio.gather(*[
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"n{i} #slow=300"}])
        for i in range(5)
    ])
    records = await rig.wait_records(5)
    outcomes = sorted(r.shadow_outcome for r in records)
    assert outcomes.count("dropped") == 3 and outcomes.count("ok") == 2
    dropped = next(r for r in records if r.shadow_outcome == "dropped")
    assert dropped.primary.status == 200 and "SHADOW_QUEUE" in (dropped.shadow_reason or "")


async def test_malformed_json_is_forwarded_unchanged_and_recorded_skipped(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s, s.post(
        f"{rig.proxy_url}/v1/chat/completions", data=b'{"model": "gpt-4o", ',
        headers={"Authorization": f"Bearer {APP_KEY}", "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400  # the provider's answer, not ours
        assert "error" in await resp.json()
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "skipped"
    assert "not valid JSON" in (record.shadow_reason or "")
    assert record.request is None and record.primary.status == 400
    assert rig.shadow_requests() == []


async def test_untranslatable_request_is_skipped_with_the_reason(rig: Rig) -> None:
    await rig.openai().chat.completions.create(
        model="gpt-4o", n=2, messages=[{"role": "user", "content": "two answers"}])
    (record,) = await rig.wait_records(1)
    assert record.shadow_outcome == "skipped" and "n" in (record.shadow_reason or "")
    assert rig.shadow_requests() == []


@pytest.mark.parametrize("rig_overrides", [{"sample_rate": 0.0}])
async def test_unsampled_requests_are_not_mirrored(rig: Rig) -> None:
    await rig.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    await asyncio.sleep(0.2)
    assert rig.records == [] and rig.shadow_requests() == []


async def test_client_hangup_mid_stream_is_recorded(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            f"{rig.proxy_url}/v1/chat/completions",
            json={"model": "gpt-4o", "stream": True,
                  "messages": [{"role": "user", "content": "a long story"}]},
            headers={"Authorization": f"Bearer {APP_KEY}", "x-sim-chunk-ms": "200",
                     "x-sim-chunks": "20"},
        )
        await resp.content.readuntil(b"\n\n")
        resp.close()
    (record,) = await rig.wait_records(1)
    assert record.client_disconnected
    assert "client disconnected" in (record.primary.error or "")


async def test_non_mirrored_paths_leave_no_record(rig: Rig) -> None:
    models = await rig.openai().models.list()
    assert models.data
    await asyncio.sleep(0.2)
    assert rig.records == []


@pytest.mark.parametrize("rig_overrides", [{"replay_rate": 1.0}])
async def test_replay_asks_the_primary_again_with_the_applications_own_headers(
    rig: Rig,
) -> None:
    await rig.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "same question twice"}],
        extra_headers={"x-shadow-tag": "faq"})
    (record,) = await rig.wait_records(1)
    primary_calls = [r for r in rig.simulator.received if r.path == "/v1/chat/completions"]
    assert len(primary_calls) == 2
    assert all(r.headers["authorization"] == f"Bearer {APP_KEY}" for r in primary_calls)
    assert all("x-shadow-tag" not in r.headers for r in primary_calls)
    assert record.replay is not None
    assert record.replay.text == record.primary.text and record.replay.status == 200
    assert record.replay.latency_ms is not None


async def test_anthropic_tool_call_is_mirrored_with_tools_and_tool_choice(rig: Rig) -> None:
    tools = [{"name": "search", "description": "Search the docs",
              "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]
    message = await rig.anthropic().messages.create(
        model="claude-sonnet-4-6", max_tokens=200, tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "look it up #tool"}],
    )
    assert message.stop_reason == "tool_use"
    (record,) = await rig.wait_records(1)
    body = rig.shadow_requests()[0].json
    assert body["tools"] == tools and body["tool_choice"] == {"type": "any"}
    assert record.shadow.tool_calls == record.primary.tool_calls == [
        {"name": "search", "arguments": {"query": "look it up #tool"}}]


@pytest.mark.parametrize(
    "simulator_config",
    [SimulatorConfig(latency_s=0.2, chunk_interval_s=0.05, text_chunks=6)],
)
async def test_ttft_and_latency_are_measured_from_send_to_first_content_and_last_byte(
    rig: Rig,
) -> None:
    stream = await rig.openai().chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "time me"}])
    chunks = [chunk async for chunk in stream]
    assert chunks
    (record,) = await rig.wait_records(1)
    primary, shadow = record.primary, record.shadow
    assert primary.ttft_ms is not None and primary.latency_ms is not None
    # 200 ms before the first event; the role chunk (no content) comes before the first
    # content piece, one chunk interval later; then six pieces and the closing chunks.
    # At least the role chunk's interval after the 200 ms wait, and well before the last
    # byte; no upper bound in wall-clock ms, which a loaded machine can stretch.
    assert primary.ttft_ms >= 240, primary.ttft_ms
    assert primary.latency_ms - primary.ttft_ms >= 5 * 50 - 10
    assert shadow.ttft_ms is not None and shadow.latency_ms is not None
    assert 200 <= shadow.ttft_ms < shadow.latency_ms


@pytest.mark.parametrize("rig_overrides", [{"shadow_concurrency": 1, "shadow_timeout_s": 0.6}])
async def test_shadow_timeout_bounds_the_wait_for_a_slot_too(rig: Rig) -> None:
    client = rig.openai()
    await asyncio.gather(*[
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"q{i} #slow=2000"}])
        for i in range(3)
    ])
    records = await rig.wait_records(3)
    assert [r.shadow_outcome for r in records] == ["timeout"] * 3
    waited = [r for r in records if "waited for a free" in (r.shadow_reason or "")]
    # One held the only slot; the others queued behind it (on a slow machine a late one
    # may get the slot when the first times out, and then time out in the call).
    assert 1 <= len(waited) <= 2
    assert rig.engine.waiting == 0 and rig.engine.in_flight == 0

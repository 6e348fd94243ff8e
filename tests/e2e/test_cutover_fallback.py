"""The shadow failing at each point, as the user and the pair see it: before its first
content byte the current model answers (the user never sees the shadow's failure);
after it nothing is taken back; the guard counts both and rolls the tag back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shadowproxy.simulator import SimulatorConfig, make_app
from tests.fakes.cutover_rig import APP_KEY, SHADOW_KEY, TAG, CutoverRig, cutover_rig
from tests.fakes.providers import SimulatedProvider

TAGGED = {"x-shadow-tag": TAG}
HAIKU = "claude-haiku-4-5-20251001"
START = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01x",'
         '"type":"message","role":"assistant","model":"' + HAIKU + '","content":[],'
         '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,'
         '"output_tokens":1}}}\n\n')
TEXT = ('event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"Half an ans"}}\n\n')
OVERLOADED = ('event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
              '"message":"Overloaded"}}\n\n')


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(chunk_interval_s=0.001)


def oa(rig: CutoverRig) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{rig.proxy_url}/v1", api_key=APP_KEY, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fake_shadow(aiohttp_server: Any, body: str, *, cut: bool = False) -> str:
    """A Messages endpoint that streams ``body`` (and then, with ``cut``, drops the
    connection): the failures no simulator script produces."""
    seen: list[dict[str, str]] = []

    async def messages(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body.encode())
        if cut:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    server: TestServer = await aiohttp_server(app)
    return f"http://{server.host}:{server.port}"


@pytest.fixture
async def rig(simulator: SimulatedProvider, aiohttp_server: Any) -> AsyncIterator[CutoverRig]:
    async with cutover_rig(aiohttp_server, primary_url=simulator.url, shadow_url=simulator.url,
                           ttfb_s=0.5) as made:
        yield made


async def assert_fell_back(rig: CutoverRig, reply: Any, cause: str, reason: str,
                           outcome: str = "error", current: str = "gpt-4o-mini") -> None:
    assert reply.model == current  # the current model answered
    (pair,) = await rig.wait_records(1)
    assert (pair.served_by, pair.shadow_outcome) == ("fallback", outcome)
    assert pair.shadow_reason is not None and pair.shadow_reason.startswith(
        f"fallback: {reason}"), pair.shadow_reason
    assert pair.primary.status == 200 and pair.primary.text
    assert rig.sample("shadowproxy_cutover_fallbacks_total", tag=TAG, cause=cause) == 1
    assert rig.sample("shadowproxy_cutover_served_total", tag=TAG, served_by="fallback") == 1


@pytest.mark.parametrize(("script", "cause", "reason"), [
    ("#error=529", "5xx", "HTTP 529 overloaded_error"),
    ("#error=500", "5xx", "HTTP 500 api_error"),
    ("#error=429", "429", "HTTP 429 rate_limit_error"),
    ("#error=400", "4xx", "HTTP 400 invalid_request_error"),
])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_error_status_falls_back_to_the_current_model(
    rig: CutoverRig, script: str, cause: str, reason: str, stream: bool,
) -> None:
    reply: Any = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user(f"help {script}"), extra_headers=TAGGED,
        stream=stream)
    if stream:
        chunks = [c async for c in reply]
        reply = chunks[0]
    await assert_fell_back(rig, reply, cause, reason)


async def test_no_content_within_the_ttfb_falls_back_as_a_timeout(rig: CutoverRig) -> None:
    reply = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("slow one #slow=2000"), extra_headers=TAGGED)
    await assert_fell_back(rig, reply, "ttfb", "no content within CUTOVER_TTFB_S=0.5s",
                           outcome="timeout")


async def test_an_unreachable_shadow_falls_back(simulator: SimulatedProvider,
                                                aiohttp_server: Any) -> None:
    async with cutover_rig(aiohttp_server, primary_url=simulator.url,
                           shadow_url=f"http://127.0.0.1:{closed_port()}") as rig:
        reply = await oa(rig).chat.completions.create(
            model="gpt-4o-mini", messages=user("hello"), extra_headers=TAGGED)
        await assert_fell_back(rig, reply, "connection", "connection failed")


async def test_an_error_event_before_any_content_falls_back(
    simulator: SimulatedProvider, aiohttp_server: Any,
) -> None:
    shadow = await fake_shadow(aiohttp_server, START + OVERLOADED)
    async with cutover_rig(aiohttp_server, primary_url=simulator.url, shadow_url=shadow) as rig:
        async with anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key=APP_KEY,
                                            max_retries=0).messages.stream(
            model="claude-sonnet-4-5", max_tokens=50, messages=user("hello"),
            extra_headers=TAGGED,
        ) as stream:
            final = await stream.get_final_message()
        await assert_fell_back(rig, final, "5xx", "error before any content: overloaded_error",
                               current="claude-sonnet-4-5")


async def test_a_failure_after_the_first_byte_is_not_taken_back(rig: CutoverRig) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIError):
        stream = await oa(rig).chat.completions.create(
            model="gpt-4o-mini", messages=user("a long answer #midstream-error"), stream=True,
            extra_headers=TAGGED)
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(seen)  # the user read part of Haiku's answer
    (pair,) = await rig.wait_records(1)
    assert (pair.served_by, pair.shadow_outcome) == ("shadow", "error")
    assert pair.shadow_reason is not None and pair.shadow_reason.startswith(
        "after the first byte: the shadow's stream ended with an error: overloaded_error")
    assert pair.primary.status == 200  # still compared
    assert rig.sample("shadowproxy_cutover_fallbacks_total", tag=TAG,
                      cause="after_first_byte") == 1


async def test_an_anthropic_stream_ends_with_the_shadows_error(rig: CutoverRig) -> None:
    client = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key=APP_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=50,
            messages=user("a long answer #midstream-error"), extra_headers=TAGGED,
        ) as stream:
            async for _ in stream:
                pass
    assert "Overloaded" in str(caught.value)


async def test_a_cut_stream_cuts_the_users_stream(simulator: SimulatedProvider,
                                                  aiohttp_server: Any) -> None:
    shadow = await fake_shadow(aiohttp_server, START + TEXT, cut=True)
    async with cutover_rig(aiohttp_server, primary_url=simulator.url, shadow_url=shadow) as rig:
        with pytest.raises(openai.APIError):
            stream = await oa(rig).chat.completions.create(
                model="gpt-4o-mini", messages=user("hello"), stream=True,
                extra_headers=TAGGED)
            async for _ in stream:
                pass
        (pair,) = await rig.wait_records(1)
        assert pair.served_by == "shadow" and pair.shadow.text == "Half an ans"
        assert pair.shadow_reason is not None and "the stream broke" in pair.shadow_reason


async def test_a_json_caller_gets_the_primary_when_the_stream_fails_before_it_is_whole(
    rig: CutoverRig,
) -> None:
    reply = await oa(rig).chat.completions.create(
        model="gpt-4o-mini", messages=user("a long answer #midstream-error"),
        extra_headers=TAGGED)
    await assert_fell_back(rig, reply, "stream",
                           "the stream failed before the answer was complete: overloaded_error")


async def test_the_guard_rolls_the_tag_back_once_its_window_is_over_the_rate(
    simulator: SimulatedProvider, aiohttp_server: Any,
) -> None:
    async with cutover_rig(aiohttp_server, primary_url=simulator.url, shadow_url=simulator.url,
                           guard_window=4, max_fallback_rate=0.25) as rig:
        async def ask(text: str) -> str:
            r = await oa(rig).chat.completions.create(
                model="gpt-4o-mini", messages=user(text), extra_headers=TAGGED)
            return r.model

        assert await ask("fine") == HAIKU
        assert await ask("bad #error=529") == "gpt-4o-mini"
        assert TAG in rig.cutover.routed  # 1 of 2: the window is not full yet
        assert await ask("fine again") == HAIKU
        assert await ask("bad #error=503") == "gpt-4o-mini"  # 2 of 4 = 50% > 25%
        assert TAG not in rig.cutover.routed
        assert rig.sample("shadowproxy_cutover_percent", tag=TAG) == 0
        assert await ask("fine") == "gpt-4o-mini"  # back on the current model for everyone
        # A later poll of the same plan (the rollback not yet written) keeps it held back.
        rig.plan(100)
        assert TAG not in rig.cutover.routed
        # A new plan starts clean.
        from datetime import UTC, datetime
        rig.plan(100, started=datetime(2026, 12, 2, tzinfo=UTC))
        assert rig.cutover.routed == {TAG: 100}


def _keys(simulator: SimulatedProvider) -> Callable[[str], list[str]]:
    def at(prefix: str) -> list[str]:
        return [r.headers.get("x-api-key", r.headers.get("authorization", ""))
                for r in simulator.received if r.path.startswith(prefix)]
    return at


async def test_the_application_key_never_reaches_the_shadow_even_on_fallback(
    rig: CutoverRig, simulator: SimulatedProvider,
) -> None:
    await oa(rig).chat.completions.create(model="gpt-4o-mini", messages=user("x #error=529"),
                                          extra_headers=TAGGED)
    await oa(rig).chat.completions.create(model="gpt-4o-mini", messages=user("y"),
                                          extra_headers=TAGGED)
    await asyncio.sleep(0)
    at = _keys(simulator)
    assert set(at("/v1/messages")) == {SHADOW_KEY}
    assert set(at("/v1/chat/completions")) == {f"Bearer {APP_KEY}"}


async def test_a_user_hanging_up_is_recorded_and_not_a_fallback(aiohttp_server: Any) -> None:
    slow = await aiohttp_server(make_app(SimulatorConfig(chunk_interval_s=0.3)))
    url = f"http://{slow.host}:{slow.port}"
    async with cutover_rig(aiohttp_server, primary_url=url, shadow_url=url) as rig:
        async with aiohttp.ClientSession() as session, session.post(
            f"{rig.proxy_url}/v1/chat/completions",
            headers={**TAGGED, "authorization": f"Bearer {APP_KEY}"},
            json={"model": "gpt-4o-mini", "stream": True, "messages": user("a long story")},
        ) as response:
            assert response.headers["x-shadowproxy-served-by"] == "shadow"
            await response.content.readany()  # the first chunk, then the user leaves
        (pair,) = await rig.wait_records(1)
    assert pair.served_by == "shadow" and pair.client_disconnected
    assert rig.sample("shadowproxy_cutover_fallbacks_total", tag=TAG,
                      cause="after_first_byte") == 0

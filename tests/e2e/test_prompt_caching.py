"""Prompt caching end to end: the shadow keeps the application's ``cache_control`` blocks,
and both sides are priced from their cache writes (by TTL) and reads."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from shadowproxy.pricing import PriceTable
from tests.fakes.mirror_rig import SHADOW_KEY, mirror_rig
from tests.fakes.providers import SimulatedProvider

LONG_POLICY = "Refunds are accepted within 30 days of purchase. " * 40
CACHED = len(LONG_POLICY) // 4  # the simulator counts four characters a token


def shadow_requests(simulator: SimulatedProvider) -> list[Any]:
    return [r.json for r in simulator.received if r.path == "/v1/messages"
            and r.headers.get("authorization") == f"Bearer {SHADOW_KEY}"]


async def test_cache_control_reaches_the_shadow_and_cache_tokens_are_priced(
    aiohttp_server: Any, simulator: SimulatedProvider
) -> None:
    prices = PriceTable.load()
    async with mirror_rig(aiohttp_server, primary_url=simulator.url,
                          shadow_url=simulator.url) as rig:
        client = anthropic.AsyncAnthropic(base_url=rig.proxy_url, api_key="sk-app",
                                          max_retries=0, timeout=30)
        system = [{"type": "text", "text": LONG_POLICY,
                   "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        answers = []
        for question in ("Can I return shoes?", "Can I return a hat?"):
            answers.append(await client.messages.create(
                model="claude-sonnet-4-6", max_tokens=200, system=system,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": question}]))
            await rig.wait_records(len(answers))
        await client.close()
    first, second = sorted(rig.records, key=lambda r: r.received_at)
    # The application's own cache usage, as the SDK saw it: written once, then read.
    assert answers[0].usage.cache_creation_input_tokens == CACHED
    assert answers[1].usage.cache_read_input_tokens == CACHED
    for body in shadow_requests(simulator):
        assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    for record, side_name in ((first, "primary"), (first, "shadow"),
                              (second, "primary"), (second, "shadow")):
        side = getattr(record, side_name)
        assert side.error is None
        expected_1h = side.cache_creation_input_tokens  # all writes used the 1-hour TTL
        price = prices.lookup(side.model)
        assert price is not None and price.cache_write_1h is not None
        assert price.cache_read is not None
        by_hand = (side.input_tokens * price.input + side.output_tokens * price.output
                   + expected_1h * price.cache_write_1h
                   + side.cache_read_input_tokens * price.cache_read) / 1e6
        assert side.cost_usd == pytest.approx(by_hand)
    assert first.primary.cache_creation_input_tokens == CACHED
    assert first.shadow.cache_creation_input_tokens == CACHED
    assert second.primary.cache_read_input_tokens == CACHED
    assert second.shadow.cache_read_input_tokens == CACHED
    # Reads cost a tenth of input: the second exchange is the cheaper one on both sides.
    assert second.primary.cost_usd < first.primary.cost_usd  # type: ignore[operator]
    assert second.shadow.cost_usd < first.shadow.cost_usd  # type: ignore[operator]

"""The mirror's own work on the worst inputs found against it, beside normal requests.

    .venv/bin/python bench/bench_worst_inputs.py [--rounds 5]

Each body goes through the real mirror engine in this process: ``on_start`` (parse,
depth check, translation: the part that blocks the mirror's event loop), then the pair's
assembly (normalisation, redaction with ``secrets``, pricing) and the database row
encoding. The shadow call is a stub that answers at once, so the figures are the
mirror's CPU time per exchange, not a provider's latency. Baselines, measured in the
same run: a normal request, and a plain-text request as large as the largest worst
input (the cost of size alone). Bounded means: time grows with size at most like the
plain-text baseline, and doubling a worst input doubles its time, not quadruples it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shadowproxy.exchange import ExchangeEnd, ExchangeStart
from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.shadow import ShadowResult
from shadowproxy.pricing import PriceTable
from shadowproxy.records import PairRecord, ShadowOutcome, Side
from shadowproxy.redact import Redactor
from shadowproxy.store.sink import pair_row
from tests.fakes import worst

ANSWER = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",'
          b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
          b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,'
          b'"total_tokens":10}}')


class _InstantShadow:
    """Answers every shadow call at once: the bench measures the mirror, not a provider."""

    async def call(self, params: dict[str, Any], headers: dict[str, str]) -> ShadowResult:
        return ShadowResult(Side(model="claude-haiku-4-5", status=200, text="ok"),
                            ShadowOutcome.OK, None)


def inputs() -> list[tuple[str, Callable[[], bytes]]]:
    largest = len(worst.reused_tool_ids(64_000))
    return [
        ("baseline: normal request", worst.normal),
        ("baseline: plain text, 1 MB", lambda: worst.plain_text(1 << 20)),
        (f"baseline: plain text, {largest / 1e6:.0f} MB", lambda: worst.plain_text(largest)),
        ("16k reused tool-call ids", lambda: worst.reused_tool_ids(16_000)),
        ("64k reused tool-call ids", lambda: worst.reused_tool_ids(64_000)),
        ("16k unanswered tool calls", lambda: worst.reused_tool_ids(16_000, answered=False)),
        ("100,000 nested [ (poison)", worst.poison),
        ("900 levels nested", lambda: worst.nested(900)),
        ("200k-part message", lambda: worst.huge_array(200_000)),
        ("100k lone surrogates", lambda: worst.lone_surrogates(100_000)),
    ]


async def measure(body: bytes) -> tuple[float, float, float, PairRecord]:
    """(on_start s, assembly s, row encoding s, the record) for one exchange."""
    records: list[PairRecord] = []
    engine = MirrorEngine(
        caller=_InstantShadow(),  # type: ignore[arg-type]
        sink=records.append, limits=EngineLimits(),
        redactor=Redactor.from_names(["secrets"]), prices=PriceTable.load(),
    )
    exchange = uuid.uuid4().hex
    start = ExchangeStart(exchange, "openai.chat", "/v1/chat/completions", None, body, {},
                          received_at=time.time(), sent_at=time.monotonic())
    t0 = time.perf_counter()
    engine.on_start(start)
    t1 = time.perf_counter()
    await asyncio.sleep(0)  # the stub shadow answers
    await asyncio.sleep(0)
    end = ExchangeEnd(exchange, 200, {"content-type": "application/json"},
                      chunks=[(time.monotonic(), ANSWER)], ended_at=time.monotonic())
    t2 = time.perf_counter()
    engine.on_end(end)
    t3 = time.perf_counter()
    assert len(records) == 1, "no record"
    pair_row(records[0], scrub=True)
    t4 = time.perf_counter()
    return t1 - t0, t3 - t2, t4 - t3, records[0]


async def main(rounds: int) -> None:
    print(f"{'input':34} {'body':>9} {'on_start':>10} {'assembly':>10} {'row':>9} "
          f"{'total':>9} {'µs/KB':>7}  outcome")
    for name, build in inputs():
        body = build()
        samples = [await measure(body) for _ in range(rounds)]
        start_s = statistics.median(s[0] for s in samples)
        emit_s = statistics.median(s[1] for s in samples)
        row_s = statistics.median(s[2] for s in samples)
        total = start_s + emit_s + row_s
        record = samples[-1][3]
        reason = f" ({record.shadow_reason[:60]})" if record.shadow_reason else ""
        print(f"{name:34} {len(body) / 1e6:8.2f}M {start_s * 1e3:8.1f}ms {emit_s * 1e3:8.1f}ms "
              f"{row_s * 1e3:7.1f}ms {total * 1e3:7.1f}ms {total * 1e6 / (len(body) / 1024):7.1f}"
              f"  {record.shadow_outcome}{reason}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))

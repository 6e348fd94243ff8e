"""What an application sends cannot stop the evidence: ``shadowproxy serve`` as users run
it (its mirror process, a real PostgreSQL, the official ``openai`` SDK), fed the worst
inputs found against it. Every exchange ends in a stored pair or a counted loss, and
losses add up: ``pairs_lost_total`` = outcomes minus pairs written.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import openai

from shadowproxy.mirror.engine import EngineLimits, MirrorEngine
from shadowproxy.mirror.shadow import ShadowCaller
from shadowproxy.pricing import PriceTable
from shadowproxy.proxy.app import make_proxy_app
from shadowproxy.records import PairRecord
from shadowproxy.redact import Redactor
from shadowproxy.settings import Settings
from shadowproxy.store.sink import asyncpg_dsn
from tests.fakes.database import TestPostgres
from tests.fakes.mirror import InlineMirrorLink
from tests.fakes.providers import SimulatedProvider
from tests.fakes.serve import ServeProcess, running_serve

APP_KEY = "sk-app-live-key-ABCDEF0123456789"
SHADOW_KEY = "sk-ant-shadow-key-ZYXWVU9876543210"
POISON = b"[" * 100_000  # json.loads raises RecursionError on it


async def pairs(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(await conn.fetch("SELECT * FROM pairs ORDER BY received_at"))
    finally:
        await conn.close()


async def wait_pairs(database_url: str, n: int, timeout: float = 60) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await pairs(database_url)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def post_raw(url: str, body: bytes, **headers: str) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/v1/chat/completions", data=body,
        headers={"Authorization": f"Bearer {APP_KEY}", "Content-Type": "application/json",
                 **headers},
    ) as response:
        await response.read()
        return response.status


def chat_body(text: str, **extra: object) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}],
                       **extra}).encode()


_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? ([0-9.e+-]+)$')


async def metrics(served: ServeProcess) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value}."""
    async with aiohttp.ClientSession() as session, session.get(
            f"{served.admin_url}/metrics") as response:
        text = await response.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if (m := _SAMPLE.match(line)) is not None:
            labels = ",".join(sorted(p for p in (m[2] or "").split(",")
                                     if p and not p.startswith("pid=")))
            key = f"{m[1]}{{{labels}}}" if labels else m[1]
            out[key] = out.get(key, 0.0) + float(m[3])
    return out


def total(sample: dict[str, float], name: str) -> float:
    return sum(v for k, v in sample.items() if k == name or k.startswith(name + "{"))


async def test_a_poison_request_then_100_normal_ones_are_all_stored(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str
) -> None:
    async with running_serve(
        tmp_path, primary_url=simulator.url, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url,
    ) as served:
        assert await post_raw(served.url, POISON) == 400  # the primary's own answer
        client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=APP_KEY,
                                    max_retries=0)
        for batch in range(10):
            answers = await asyncio.gather(*(
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"q{batch}-{i}"}])
                for i in range(10)))
            assert all(a.choices[0].message.content for a in answers)
        rows = await wait_pairs(database_url, 101)
        served_log = served.log()
    assert len(rows) == 101, served_log[-3000:]
    poison = [r for r in rows if r["shadow_outcome"] == "skipped"]
    assert len(poison) == 1
    assert "nested too deep" in poison[0]["shadow_reason"]
    assert sorted({r["shadow_outcome"] for r in rows if r is not poison[0]}) == ["ok"]


async def test_hostile_inputs_are_stored_repaired_and_losses_add_up(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str,
    hostile_primary: str, postgres_server: TestPostgres,
) -> None:
    deep_request = json.dumps({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "deep"}], "metadata": json.loads(
            "[" * 600 + "]" * 600)}).encode()
    async with running_serve(
        tmp_path, primary_url=hostile_primary, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url, spool_max_mb=0.0001,
    ) as served:
        statuses = [
            await post_raw(served.url, POISON),
            await post_raw(served.url, b'{"model":"gpt-4o","messages":[{"role":"user",'
                                       b'"content":"half \\ud800 of a pair"}]}'),
            await post_raw(served.url, chat_body("answer me", stream=True),
                           **{"x-hostile": "split-emoji"}),
            await post_raw(served.url, chat_body("lone"), **{"x-hostile": "lone-surrogate"}),
            await post_raw(served.url, chat_body("deep"), **{"x-hostile": "deep-answer"}),
            await post_raw(served.url, chat_body("deeper"), **{"x-hostile": "deep-answer",
                                                                "x-hostile-depth": "5000"}),
            await post_raw(served.url, deep_request),
            await post_raw(served.url, chat_body("plain")),
        ]
        assert statuses == [400, 200, 200, 200, 200, 200, 200, 200]
        rows = await wait_pairs(database_url, 8)
        assert len(rows) == 8, served.log()[-3000:]

        # The database goes away and the spool is too small to hold anything: real
        # losses, which must be counted under one name.
        postgres_server.stop()
        try:
            for i in range(3):
                assert await post_raw(served.url, chat_body(f"while down {i}")) == 200
            deadline = time.monotonic() + 30
            while total(await metrics(served), "shadowproxy_pairs_lost_total") < 3:
                assert time.monotonic() < deadline, served.log()[-3000:]
                await asyncio.sleep(0.2)
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while (await metrics(served)).get("shadowproxy_database_up") != 1.0:
            assert time.monotonic() < deadline, served.log()[-3000:]
            await asyncio.sleep(0.2)
        sample = await metrics(served)
    rows = await pairs(database_url)
    assert len(rows) == 8
    by_text = {r["primary_text"]: r for r in rows}
    assert "smile \U0001f600" in by_text  # both halves, joined into the emoji
    assert "lone \ufffd half" in by_text
    surrogate_request = next(r for r in rows if r["request"] and "of a pair" in r["request"])
    assert "half \ufffd of a pair" in surrogate_request["request"]
    deep = [r for r in rows if r["primary_tool_calls"] and "nested deeper" in
            r["primary_tool_calls"]]
    assert len(deep) == 1  # 600 levels: stored with the part below 64 levels cut
    deeper = next(r for r in rows if r["primary_error"] and "normalised" in r["primary_error"])
    assert deeper["primary_status"] == 200
    deep_req = next(r for r in rows if r["request"] and '"deep"' in r["request"]
                    and "nested deeper" in r["request"])
    assert deep_req["shadow_outcome"] == "skipped"

    # (series that exist at zero from the start, such as restart_gap, say nothing here)
    lost = {k: v for k, v in sample.items()
            if k.startswith("shadowproxy_pairs_lost_total") and v}
    assert lost == {'shadowproxy_pairs_lost_total{reason="spool_full"}': 3.0}, lost
    outcomes = total(sample, "shadowproxy_shadow_outcomes_total")
    written = total(sample, "shadowproxy_pairs_written_total")
    assert (outcomes, written) == (11, 8)
    assert total(sample, "shadowproxy_pairs_lost_total") == outcomes - written


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_a_gzip_bomb_is_recorded_truncated_and_never_inflated(
    tmp_path: Path, simulator: SimulatedProvider, database_url: str, hostile_primary: str
) -> None:
    """~200 KB of gzip that inflate to 200 MB: the user gets the bytes as sent; the
    mirror inflates no more than the capture limit and stays under 150 MB."""
    async with running_serve(
        tmp_path, primary_url=hostile_primary, shadow_base_url=simulator.url,
        shadow_api_key=SHADOW_KEY, database_url=database_url,
    ) as served:
        mirrors = [p for p in _descendants(served.proc.pid)
                   if b"mirror" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(mirrors) == 1
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.post(
            f"{served.url}/v1/chat/completions", data=chat_body("boom"),
            headers={"Authorization": f"Bearer {APP_KEY}", "x-hostile": "gzip-bomb"},
        ) as response:
            assert response.status == 200
            assert len(await response.read()) < 1 << 20
        rows = await wait_pairs(database_url, 1)
        peak = _peak_rss_mb(mirrors[0])
    assert len(rows) == 1
    assert "truncated" in rows[0]["primary_error"]
    assert peak < 150, f"mirror peak RSS {peak:.0f} MB"


async def _engine_rig(
    simulator: SimulatedProvider, aiohttp_server: Any, *, queue_bytes: int = 256 << 20,
    capture_budget_bytes: int = 256 << 20,
) -> tuple[str, MirrorEngine, list[PairRecord], list[str], ShadowCaller]:
    settings = Settings(primary_url=simulator.url, shadow_base_url=simulator.url,
                        shadow_api_key=SHADOW_KEY, shadow_max_retries=0, shadow_timeout_s=10)
    records: list[PairRecord] = []
    lost: list[str] = []
    caller = ShadowCaller(settings)
    engine = MirrorEngine(
        caller=caller, sink=records.append,
        limits=EngineLimits(queue_bytes=queue_bytes, timeout_s=10),
        redactor=Redactor.from_names(["secrets"]), prices=PriceTable.load(),
    )
    app = make_proxy_app(primary_url=simulator.url, mirror=InlineMirrorLink(engine),
                         tag_header="x-shadow-tag", max_body_bytes=32 << 20,
                         on_lost=lost.append, capture_budget_bytes=capture_budget_bytes)
    server = await aiohttp_server(app)
    return f"http://{server.host}:{server.port}", engine, records, lost, caller


async def test_the_mirror_queue_is_bounded_in_bytes(
    simulator: SimulatedProvider, aiohttp_server: Any
) -> None:
    url, engine, records, _lost, caller = await _engine_rig(
        simulator, aiohttp_server, queue_bytes=1 << 20)
    big = chat_body("#slow=1500 " + "x" * (600 << 10))
    statuses = await asyncio.gather(*(post_raw(url, big) for _ in range(3)))
    assert statuses == [200, 200, 200]
    await engine.drain(15)
    await caller.close()
    assert sorted(r.shadow_outcome for r in records) == ["dropped", "dropped", "ok"]
    assert all("SHADOW_QUEUE_MB" in (r.shadow_reason or "") for r in records
               if r.shadow_outcome == "dropped")
    assert engine.pending_bytes == 0


async def test_over_the_capture_budget_a_pair_is_served_not_mirrored_and_counted(
    simulator: SimulatedProvider, aiohttp_server: Any
) -> None:
    url, engine, records, lost, caller = await _engine_rig(
        simulator, aiohttp_server, capture_budget_bytes=64 << 10)
    assert await post_raw(url, chat_body("small")) == 200
    assert await post_raw(url, chat_body("y" * (100 << 10))) == 200  # the user is served
    await engine.drain(15)
    await caller.close()
    assert len(records) == 1 and lost == ["capture_budget"]

"""``shadowproxy demo``: the whole product offline, in under a minute, with no keys.

A simulated provider (both wire formats, a slower primary and a faster shadow that
disagrees on a known share of requests per tag), the embedded PostgreSQL, a real
``shadowproxy serve`` child process, mixed traffic through the official SDKs, then
``diff``, the HTML report and the gate verdict.

The traffic has a known truth per tag: some shadow answers are paraphrases that say the
same thing (equivalent) and some are subtly wrong (worse). ``diff`` judges them offline
with the simulator as the judge (:func:`demo_judge`), so the first run
shows a real verdict rather than string overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import openai
from aiohttp import web

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.gate import Policy, evaluate, format_table
from shadowproxy.decision.judge import Judge, make_judge
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.lifecycle_sources import current_lifecycle
from shadowproxy.settings import Settings
from shadowproxy.simulator import SimulatorConfig, make_app
from shadowproxy.simulator.demo_next import next_steps
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade
from shadowproxy.store.urls import asyncpg_dsn

DEMO_POLICY = Policy(
    min_pairs=20, max_worse_rate=0.25, min_tool_call_match=0.60,
    max_shadow_error_rate=0.05, max_p95_latency_ratio=1.0, max_cost_ratio=0.6, per_tag=True,
)
TOOLS = [{"type": "function", "function": {
    "name": "search_orders", "description": "Find a customer's orders",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]


@dataclass(frozen=True)
class UseCase:
    tag: str
    worse: float  # share of subtly wrong shadow answers: the truth the report should find
    api: str


USE_CASES = (
    UseCase("support", 0.05, "openai"),
    # Tool calls: compared as JSON values (the structural tier), no judge needed.
    UseCase("order-lookup", 0.0, "openai-tools"),
    UseCase("summaries", 0.10, "anthropic-stream"),
    # Haiku answers this use case worse often enough that the gate should say FAIL.
    UseCase("refunds", 0.30, "openai"),
)

# The simulator gives Haiku's answers a known truth: per tag, a share of subtly wrong
# answers (a digit changed, or the answer quietly negated) and a share of paraphrases
# (other words, same answer); the simulator also answers the judge protocol, grading both
# answers against what it would itself have said. Prompts carry #tag= and #seq= so the
# shares come out exact (the proxy strips the tag header before the shadow sees it).
JUDGE_MODEL = "claude-sonnet-4-6"  # priced in prices.toml, so JUDGE_MAX_USD holds
JUDGE_POSITION_BIAS = 0.1  # a judge that says "A" one time in ten, whatever it reads
PARAPHRASE_RATE = 0.3


def simulator_config() -> SimulatorConfig:
    """The demo's simulator: slower primary, faster shadow, known-truth answer variants."""
    return SimulatorConfig(
        latency_s=0.25, shadow_latency_s=0.12, chunk_interval_s=0.01, record=False,
        shadow_worse_rate={c.tag: c.worse for c in USE_CASES},
        shadow_paraphrase_rate=PARAPHRASE_RATE, judge_position_bias=JUDGE_POSITION_BIAS,
    )


def demo_judge(sim_url: str) -> Judge:
    """The simulator as the judge: offline, no real key."""
    judge = make_judge(Settings.model_validate({
        "judge_model": JUDGE_MODEL, "judge_provider": "anthropic", "judge_base_url": sim_url,
        "judge_api_key": "sk-ant-demo-judge-key"}))
    assert judge is not None
    return judge


async def start_simulator() -> tuple[web.AppRunner, str]:
    config = simulator_config()
    runner = web.AppRunner(make_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def start_serve(sim_url: str, data_dir: Path, db_url: str) -> tuple[Any, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env.update({
        "SHADOWPROXY_PRIMARY_URL": sim_url, "SHADOWPROXY_SHADOW_BASE_URL": sim_url,
        "SHADOWPROXY_SHADOW_API_KEY": "sk-ant-demo-shadow-key",
        "SHADOWPROXY_DATABASE_URL": db_url, "SHADOWPROXY_DATA_DIR": str(data_dir),
        "SHADOWPROXY_PORT": "0", "SHADOWPROXY_ADMIN_PORT": "0",
        "SHADOWPROXY_LOG_LEVEL": "WARNING", "SHADOWPROXY_WORKERS": "1",
    })
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "serve", "--no-migrate",
        "--ready-fd", str(write_end), env=env, pass_fds=(write_end,),
        stdout=asyncio.subprocess.DEVNULL,
    )
    os.close(write_end)
    # serve's machine-readable ready message; its banner is for people, not for us.
    with os.fdopen(read_end, "rb") as pipe:
        line = await asyncio.wait_for(asyncio.to_thread(pipe.readline), 60)
    if not line:
        raise RuntimeError(f"serve did not start (exit {await proc.wait()})")
    return proc, f"http://127.0.0.1:{json.loads(line)['proxy_port']}"


def prompt_for(case: UseCase, i: int, rng: random.Random) -> str:
    text = f"{case.tag} question {i}: where is my order {rng.randint(1000, 9999)}?"
    text += f" #tag={case.tag} #seq={i // len(USE_CASES)}"
    if case.api == "openai-tools":
        text += " #tool"
    if rng.random() < 0.01:
        text += " #error=529"
    return text


async def one_request(case: UseCase, i: int, rng: random.Random, proxy: str) -> None:
    prompt = prompt_for(case, i, rng)
    tag = {"x-shadow-tag": case.tag}
    if case.api.startswith("openai"):
        client = openai.AsyncOpenAI(base_url=f"{proxy}/v1", api_key="sk-demo-app-key",
                                    max_retries=0)
        kwargs: dict[str, Any] = {"tools": TOOLS} if case.api == "openai-tools" else {}
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": prompt}],
            extra_headers=tag, **kwargs)
        await client.close()
    else:
        aclient = anthropic.AsyncAnthropic(base_url=proxy, api_key="sk-ant-demo-app-key",
                                           max_retries=0)
        async with aclient.messages.stream(
            model="claude-sonnet-4-5", max_tokens=256, extra_headers=tag,
            messages=[{"role": "user", "content": prompt}],
        ) as stream:
            await stream.get_final_text()
        await aclient.close()


async def send_traffic(proxy: str, total: int, seed: int) -> None:
    rng = random.Random(seed)
    sem = asyncio.Semaphore(12)

    async def guarded(case: UseCase, i: int) -> None:
        async with sem:
            await one_request(case, i, rng, proxy)

    jobs = [guarded(USE_CASES[i % len(USE_CASES)], i) for i in range(total)]
    await asyncio.gather(*jobs)


async def wait_for_pairs(db_url: str, n: int, timeout_s: float = 30) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        deadline = time.monotonic() + timeout_s
        count = 0
        while time.monotonic() < deadline:
            count = int(await conn.fetchval("SELECT count(*) FROM pairs"))
            if count >= n:
                break
            await asyncio.sleep(0.3)
        return count
    finally:
        await conn.close()


async def reset(db_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        await conn.execute("TRUNCATE pairs CASCADE")
    finally:
        await conn.close()


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


async def run_demo(data_dir: Path, out: Path, total: int, seed: int = 7) -> int:
    started = time.monotonic()
    embedded = EmbeddedPostgres()
    say(f"starting the embedded PostgreSQL in {data_dir / 'pg'}")
    db_url = await asyncio.to_thread(embedded.start, data_dir)
    sim_runner = None
    try:
        await upgrade(db_url)
        await reset(db_url)
        sim_runner, sim_url = await start_simulator()
        say(f"simulated providers on {sim_url} (primary 250 ms, Haiku 120 ms)")
        proc, proxy = await start_serve(sim_url, data_dir, db_url)
        say(f"shadowproxy serve on {proxy}; sending {total} requests through the SDKs")
        try:
            await send_traffic(proxy, total, seed)
            stored = await wait_for_pairs(db_url, total)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        say(f"{stored} pairs stored; scoring and judging them (the simulator is the judge)")
        judge = demo_judge(sim_url)
        try:
            summary = await run_diff(db_url, progress=sys.stderr.isatty(), judge=judge)
        finally:
            await judge.close()
        say(f"scored {summary.scored} pairs")
        # The real day and the installed end-of-life data: the demo is a command.
        report = await build_report(db_url, lifecycle=current_lifecycle())
        result = evaluate(report, DEMO_POLICY)
        out.write_text(render_html(report, result), encoding="utf-8")
        truth = ", ".join(f"{c.tag} {c.worse:.0%}" for c in USE_CASES)
        found = ", ".join(
            f"{tag} {numbers.worse_rate:.0%}" for tag, numbers in report.by_tag.items()
            if numbers.worse_rate is not None
        ) or "none judged"
        say(f"shadow worse by tag: {found} (simulated truth: {truth})")
        for advice in (u.advice for u in report.overall.unjudged):
            say(advice)
        print(format_table(result))
        say(f"report: {out.resolve()}")
        say(f"done in {time.monotonic() - started:.0f}s")
        print(next_steps(data_dir, out), flush=True)
        (data_dir / "last-demo.json").write_text(json.dumps(report.to_json(), default=str))
        return 0
    finally:
        if sim_runner is not None:
            await sim_runner.cleanup()
        await asyncio.to_thread(embedded.stop)

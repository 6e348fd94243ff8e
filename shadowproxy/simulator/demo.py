"""``shadowproxy demo``: the whole product offline, in under a minute, with no keys.

A simulated provider (both wire formats, a slower primary and a faster shadow that
disagrees on a known share of requests per tag), the embedded PostgreSQL, a real
``shadowproxy serve`` child process, mixed traffic through the official SDKs, then
``diff``, the HTML report and the gate verdict.

Then people check the judge: two simulated reviewers label the first pairs of each tag
in the review queue's order, from the simulated truth (:mod:`.reviewers`). The simulated
judge has a bias only they can see: it misses a third of the subtly wrong refunds
answers. The judge alone passes refunds; the rate calibrated by the labels fails it, and
the demo says why.

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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import openai
from aiohttp import web

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.gate import GateResult, Policy, evaluate, format_table
from shadowproxy.decision.judge import Judge, make_judge
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.decision.report_model import Report
from shadowproxy.lifecycle_sources import current_lifecycle
from shadowproxy.settings import Settings
from shadowproxy.simulator import SimulatorConfig, make_app
from shadowproxy.simulator.demo_next import next_steps
from shadowproxy.simulator.demo_review import calibration_story
from shadowproxy.simulator.reviewers import label_in_queue_order
from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import upgrade
from shadowproxy.store.urls import asyncpg_dsn

DEMO_POLICY = Policy(
    min_pairs=20, max_worse_rate=0.25, min_tool_call_match=0.60,
    max_shadow_error_rate=0.05, max_p95_latency_ratio=1.0, max_cost_ratio=0.6, per_tag=True,
)
# The same policy with the judge checked by people: worse rates on the calibrated interval.
CALIBRATED_POLICY = replace(DEMO_POLICY, min_human_labels=30, min_judge_kappa=0.4)
# Simulated reviewers label this many pairs of each tag, in the queue's order.
LABELS_PER_TAG = 40
TOOLS = [{"type": "function", "function": {
    "name": "search_orders", "description": "Find a customer's orders",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]


@dataclass(frozen=True)
class UseCase:
    tag: str
    worse: float  # share of subtly wrong shadow answers: the truth the report should find
    api: str
    weight: int = 1  # requests of this use case per round of traffic
    judge_misses: float = 0.0  # share of the wrong answers the simulated judge misses


USE_CASES = (
    UseCase("support", 0.05, "openai"),
    # Tool calls: compared as JSON values (the structural tier), no judge needed.
    UseCase("order-lookup", 0.0, "openai-tools"),
    UseCase("summaries", 0.10, "anthropic-stream"),
    # Haiku answers this use case worse often enough that the gate should say FAIL, but
    # the judge misses a third of those answers: only people's labels show it. Over half
    # the traffic, so the judge's own interval is narrow enough to pass on its word.
    UseCase("refunds", 0.27, "openai", weight=4, judge_misses=1 / 3),
)

# The simulator gives Haiku's answers a known truth: per tag, a share of subtly wrong
# answers (a digit changed, or the answer quietly negated) and a share of paraphrases
# (other words, same answer); the simulator also answers the judge protocol, grading both
# answers against what it would itself have said. The prompts read like a support desk's;
# which tag and place in the sequence each one has (so the shares come out exact), is
# handed to the simulator beside them (SimulatorConfig.scripts), never written into them.
JUDGE_MODEL = "simulated-judge"  # the simulator judges; priced by the demo's prices file
JUDGE_PRICE = {"input": 3.0, "output": 15.0}  # per million tokens, as a Sonnet judge
JUDGE_POSITION_BIAS = 0.1  # a judge that says "A" one time in ten, whatever it reads
PARAPHRASE_RATE = 0.3
SHADOW_ERROR_RATE = 0.01

# Per tag, questions a customer or an agent would send; {n} is an order or ticket number,
# early in the text so a subtly wrong answer can get it wrong.
PROMPTS: dict[str, tuple[str, ...]] = {
    "support": (
        "Order #{n} was due on Tuesday and the tracking has not moved since. Can you check?",
        "I was charged twice for order {n}. Which of the two charges will be reversed?",
        "Can I still change the delivery address on order #{n}? It has not shipped yet.",
        "Order {n} shows as delivered but nothing arrived. What should I do now?",
    ),
    "order-lookup": (
        "Look up order #{n} and tell me when it ships.",
        "What is in order {n}? I cannot find the confirmation email.",
        "Find order #{n} for me, I need the invoice for my expenses.",
    ),
    "summaries": (
        "Summarise ticket {n} in two sentences: the customer's screen arrived cracked and "
        "they want a replacement, not a refund.",
        "Give me a one-line summary of ticket {n}: the app logs the user out every few "
        "minutes since the last update.",
        "Summarise ticket {n} for the morning handover: a delivery was left with a neighbour "
        "who is away until Friday.",
    ),
    "refunds": (
        "Order #{n} arrived damaged. Do I get a full refund or only store credit?",
        "I returned order {n} three weeks ago and there is still no refund. When will it come?",
        "Can I get a refund on order #{n} if I already opened the box?",
    ),
}


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the demo's traffic: what is sent, and what the simulator is told."""

    case: UseCase
    prompt: str  # what the application sends, as a person would write it
    script: str  # the simulator's control words for it (SimulatorConfig.scripts)


def traffic_plan(total: int, seed: int) -> list[PlannedRequest]:
    """``total`` requests round-robin over the use cases (by weight), each prompt
    distinct; ``#seq`` counts each tag's requests, so each tag's truth comes out exact."""
    rng = random.Random(seed)
    numbers = rng.sample(range(10_000, 100_000), total)
    rotation = [case for case in USE_CASES for _ in range(case.weight)]
    seen: dict[str, int] = {}
    plan = []
    for i in range(total):
        case = rotation[i % len(rotation)]
        templates = PROMPTS[case.tag]
        prompt = templates[rng.randrange(len(templates))].format(n=numbers[i])
        seq = seen[case.tag] = seen.get(case.tag, -1) + 1
        script = f"#tag={case.tag} #seq={seq}"
        if case.api == "openai-tools":
            script += " #tool"
        if rng.random() < SHADOW_ERROR_RATE:
            script += " #error=529"
        plan.append(PlannedRequest(case, prompt, script))
    return plan


def simulator_config(plan: list[PlannedRequest]) -> SimulatorConfig:
    """The demo's simulator: slower primary, faster shadow, known-truth answer variants."""
    return SimulatorConfig(
        latency_s=0.25, shadow_latency_s=0.12, chunk_interval_s=0.01, record=False,
        shadow_worse_rate={c.tag: c.worse for c in USE_CASES},
        shadow_paraphrase_rate=PARAPHRASE_RATE, judge_position_bias=JUDGE_POSITION_BIAS,
        judge_misses_worse={c.tag: c.judge_misses for c in USE_CASES if c.judge_misses},
        scripts={r.prompt: r.script for r in plan},
    )


def demo_judge(sim_url: str, data_dir: Path) -> Judge:
    """The simulator as the judge: offline, no real key, named for what it is."""
    prices = data_dir / "demo-prices.toml"
    prices.write_text(f'[models.{JUDGE_MODEL}]\ninput = {JUDGE_PRICE["input"]}\n'
                      f'output = {JUDGE_PRICE["output"]}\n', encoding="utf-8")
    judge = make_judge(Settings.model_validate({
        "judge_model": JUDGE_MODEL, "judge_provider": "anthropic", "judge_base_url": sim_url,
        "judge_api_key": "sk-ant-demo-judge-key", "prices_file": prices}))
    assert judge is not None
    return judge


async def start_simulator(config: SimulatorConfig) -> tuple[web.AppRunner, str]:
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


async def one_request(planned: PlannedRequest, proxy: str) -> None:
    case, prompt = planned.case, planned.prompt
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


async def send_traffic(proxy: str, plan: list[PlannedRequest]) -> None:
    sem = asyncio.Semaphore(12)

    async def guarded(planned: PlannedRequest) -> None:
        async with sem:
            await one_request(planned, proxy)

    await asyncio.gather(*(guarded(planned) for planned in plan))


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


def _tell(report: Report, judge_only: GateResult, calibrated: GateResult) -> None:
    """The gate on the calibrated rates, then what people's labels changed and why."""
    truth = ", ".join(f"{c.tag} {c.worse:.0%}" for c in USE_CASES)
    found = ", ".join(
        f"{tag} {numbers.worse_rate:.0%}" for tag, numbers in report.by_tag.items()
        if numbers.worse_rate is not None
    ) or "none judged"
    say(f"shadow worse by tag, by the judge alone: {found} (simulated truth: {truth})")
    for advice in (u.advice for u in report.overall.unjudged):
        say(advice)
    print(format_table(calibrated))
    say("what people's labels changed (gate: max_worse_rate "
        f"{DEMO_POLICY.max_worse_rate:.0%}, on the upper bound of each interval):")
    for line in calibration_story(report, judge_only, calibrated,
                                  {c.tag: c.worse for c in USE_CASES}):
        say(f"  {line}")


async def run_demo(data_dir: Path, out: Path, total: int, seed: int = 7) -> int:
    started = time.monotonic()
    embedded = EmbeddedPostgres()
    say(f"starting the embedded PostgreSQL in {data_dir / 'pg'}")
    db_url = await asyncio.to_thread(embedded.start, data_dir)
    sim_runner = None
    try:
        await upgrade(db_url)
        await reset(db_url)
        plan = traffic_plan(total, seed)
        sim_runner, sim_url = await start_simulator(simulator_config(plan))
        say(f"simulated providers on {sim_url} (primary 250 ms, Haiku 120 ms)")
        proc, proxy = await start_serve(sim_url, data_dir, db_url)
        say(f"shadowproxy serve on {proxy}; sending {total} requests through the SDKs")
        try:
            await send_traffic(proxy, plan)
            stored = await wait_for_pairs(db_url, total)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        say(f"{stored} pairs stored; scoring and judging them (the simulator judges, "
            f"as {JUDGE_MODEL!r})")
        judge = demo_judge(sim_url, data_dir)
        try:
            summary = await run_diff(db_url, progress=sys.stderr.isatty(), judge=judge)
        finally:
            await judge.close()
        say(f"scored {summary.scored} pairs")
        say(f"two simulated reviewers label the first {LABELS_PER_TAG} pairs of each tag in "
            "the review queue's order, blind, from the simulated truth (written straight to "
            "the database, as the review API stores them)")
        labels = await label_in_queue_order(db_url, LABELS_PER_TAG, start=datetime.now(UTC))
        say(f"{labels} labels written")
        # The real day and the installed end-of-life data: the demo is a command.
        report = await build_report(db_url, lifecycle=current_lifecycle())
        judge_only = evaluate(report, DEMO_POLICY)
        result = evaluate(report, CALIBRATED_POLICY)
        out.write_text(render_html(report, result), encoding="utf-8")
        _tell(report, judge_only, result)
        say(f"report: {out.resolve()}")
        say(f"done in {time.monotonic() - started:.0f}s")
        print(next_steps(data_dir, out), flush=True)
        (data_dir / "last-demo.json").write_text(json.dumps(report.to_json(), default=str))
        return 0
    finally:
        if sim_runner is not None:
            await sim_runner.cleanup()
        await asyncio.to_thread(embedded.stop)

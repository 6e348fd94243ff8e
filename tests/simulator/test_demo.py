"""The offline demo, as the README's first command runs it: prompts that read like a
support desk's, the known truth still exact, and a judge named for what it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from shadowproxy.simulator import DISAGREEMENT, SimulatorConfig
from shadowproxy.simulator.demo import JUDGE_MODEL, USE_CASES, traffic_plan
from shadowproxy.simulator.demo import simulator_config as demo_simulator_config
from shadowproxy.simulator.variants import Grade, grade
from tests.fakes.providers import SimulatedProvider

# The simulator's control words (shadowproxy/simulator/__init__.py), not "#48213".
CONTROL_WORD = re.compile(r"#(?:tag|seq|tool|error|json|disagree|slow|midstream)\b")


def test_the_demo_s_prompts_carry_no_control_words_and_are_distinct() -> None:
    plan = traffic_plan(400, seed=7)
    assert not [p.prompt for p in plan if CONTROL_WORD.search(p.prompt)]
    assert len({p.prompt for p in plan}) == 400
    assert all(p.script.startswith(f"#tag={p.case.tag} #seq=") for p in plan)


PLAN = traffic_plan(240, seed=11)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """The demo's simulator, without its pauses."""
    config = demo_simulator_config(PLAN)
    config.latency_s = config.chunk_interval_s = 0.0
    config.shadow_latency_s = 0.0
    return config


async def test_the_simulator_reads_the_scripts_so_the_truth_per_tag_is_exact(
        simulator: SimulatedProvider) -> None:
    """What Haiku answers to the demo's clean prompts: per tag, the configured share is
    subtly wrong (graded as the simulated judge grades), so the truth the report should
    find is still known exactly."""
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=simulator.url,
                                      max_retries=0)
    bad: dict[str, list[bool]] = {}
    try:
        for planned in PLAN:
            if "#error" in planned.script or planned.case.api == "openai-tools":
                continue
            message = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=200,
                messages=[{"role": "user", "content": planned.prompt}])
            text = "".join(b.text for b in message.content if b.type == "text")
            graded = grade(text, f"[user]\n{planned.prompt}", DISAGREEMENT)
            bad.setdefault(planned.case.tag, []).append(graded == Grade.BAD)
    finally:
        await client.close()
    truth = {c.tag: c.worse for c in USE_CASES}
    for tag, marks in bad.items():
        assert abs(sum(marks) / len(marks) - truth[tag]) <= 2 / len(marks), (tag, marks)
    assert sum(bad["refunds"]) > sum(bad["support"]) > 0


def test_the_demo_runs_offline_and_its_report_reads_like_real_traffic(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATA_DIR"] = str(tmp_path / "data")
    out = tmp_path / "demo.html"
    done = subprocess.run(
        [sys.executable, "-m", "shadowproxy", "demo", "--requests", "40", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr
    html = out.read_text()
    assert JUDGE_MODEL in html and "claude-sonnet-4-6" not in html
    assert "Order #" in html or "order " in html  # the prompts are shown...
    assert not CONTROL_WORD.search(html), "control words in the report"  # ...clean
    report = json.loads((tmp_path / "data" / "demo" / "last-demo.json").read_text())
    assert report["overall"]["judge"]["model"] == JUDGE_MODEL
    assert f"as {JUDGE_MODEL!r}" in done.stdout

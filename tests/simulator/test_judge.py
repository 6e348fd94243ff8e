"""The simulator answers the judge protocol, and its shadow answers carry a known truth:
a judged diff over them recovers the worse share per tag."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.judge import make_judge
from shadowproxy.decision.judge_prompt import (
    AnswerText,
    judge_messages_request,
    judge_prompt,
    parse_messages_response,
    render_conversation,
)
from shadowproxy.decision.stats import wilson_interval
from shadowproxy.records import Api, Side
from shadowproxy.settings import Settings
from shadowproxy.simulator import DISAGREEMENT, SimulatorConfig
from shadowproxy.simulator.variants import (
    Grade,
    Kind,
    canonical,
    grade,
    paraphrase,
    shadow_kind,
    subtly_wrong,
)
from tests.decision.test_diff import fetch
from tests.fakes.database import make_pair
from tests.fakes.providers import SimulatedProvider
from tests.fakes.traffic import store

TRUTH = {"support": 0.20, "billing": 0.05}
PER_TAG = 400


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(shadow_worse_rate=TRUTH, shadow_paraphrase_rate=0.10,
                           judge_position_bias=0.10)


def question(tag: str, i: int) -> str:
    return f"#seq={i} #tag={tag} What is the status of order {1000 + i}?"


def test_paraphrases_are_good_and_wrong_variants_bad() -> None:
    q = "How many days until order 4417 arrives?"
    conversation = f"[user]\n{q}"
    assert grade(canonical(q), conversation, DISAGREEMENT) == Grade.GOOD
    assert {grade(paraphrase(q, n), conversation, DISAGREEMENT) for n in range(3)} == {
        Grade.GOOD}
    assert grade(subtly_wrong(q), conversation, DISAGREEMENT) == Grade.BAD
    assert grade(subtly_wrong("Is it raining?"), "[user]\nIs it raining?",
                 DISAGREEMENT) == Grade.BAD
    assert grade(DISAGREEMENT, conversation, DISAGREEMENT) == Grade.BAD
    assert grade(json.dumps({"answer": canonical(q)}), conversation, DISAGREEMENT) == (
        Grade.GOOD)


def test_sequenced_prompts_hit_the_configured_rates_closely() -> None:
    kinds = [shadow_kind(question("support", i), TRUTH, 0.10) for i in range(PER_TAG)]
    assert abs(kinds.count(Kind.WRONG) / PER_TAG - 0.20) <= 0.01
    assert abs(kinds.count(Kind.PARAPHRASE) / PER_TAG - 0.10) <= 0.01
    untagged = [shadow_kind(f"#seq={i} hi", TRUTH, 0.0) for i in range(100)]
    assert set(untagged) == {Kind.CANONICAL}


@given(st.text(), st.text())
def test_grading_never_raises(answer: str, conversation: str) -> None:
    assert grade(answer, conversation, DISAGREEMENT) in set(Grade)


# A judge without the position bias: this test is about grading, not the bias.
@pytest.mark.parametrize("simulator_config", [SimulatorConfig()])
async def test_the_simulator_judges_through_the_sdk(simulator: SimulatedProvider) -> None:
    q = "What is the status of order 1234?"
    conversation = render_conversation({"messages": [{"role": "user", "content": q}]})
    client = anthropic.AsyncAnthropic(api_key="sk-judge", base_url=simulator.url,
                                      default_headers={"anthropic-version": "2023-06-01"})
    try:
        winners = []
        for a, b in ((canonical(q), subtly_wrong(q)), (subtly_wrong(q), canonical(q)),
                     (canonical(q), paraphrase(q))):
            body = judge_messages_request("claude-sonnet-4-6", judge_prompt(
                conversation, AnswerText(a), AnswerText(b), None))
            message = await client.messages.create(**body)
            winners.append(parse_messages_response(message.to_dict()).winner)
    finally:
        await client.close()
    assert winners == ["A", "B", "tie"]


async def shadow_answer(client: anthropic.AsyncAnthropic, text: str) -> str:
    message = await client.messages.create(
        model="claude-haiku-4-5", max_tokens=200,
        messages=[{"role": "user", "content": text}])
    return "".join(b.text for b in message.content if b.type == "text")


async def test_a_judged_diff_recovers_the_known_worse_share_per_tag(
        simulator: SimulatedProvider, database_url: str) -> None:
    client = anthropic.AsyncAnthropic(api_key="sk-shadow", base_url=simulator.url,
                                      default_headers={"anthropic-version": "2023-06-01"})
    pairs = []
    try:
        for tag in TRUTH:
            for i in range(PER_TAG):
                text = question(tag, i)
                request: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 200,
                                           "messages": [{"role": "user", "content": text}]}
                pairs.append(make_pair(
                    tag=tag, api=Api.ANTHROPIC_MESSAGES.value, path="/v1/messages",
                    request=request,
                    primary=Side(model="claude-sonnet-4-5", status=200, text=canonical(text),
                                 stop_reason="end_turn"),
                    shadow=Side(model="claude-haiku-4-5", status=200,
                                text=await shadow_answer(client, text),
                                stop_reason="end_turn")))
    finally:
        await client.close()
    await store(database_url, pairs)
    judge = make_judge(Settings(judge_model="claude-sonnet-4-6", judge_base_url=simulator.url,
                                judge_api_key="sk-judge", judge_max_retries=0))
    assert judge is not None
    try:
        summary = await run_diff(database_url, progress=False, judge=judge,
                                 judge_max_usd=100, judge_concurrency=8)
    finally:
        await judge.close()
    rows = await fetch(database_url, "SELECT tag, verdict, count(*) AS n FROM comparisons "
                                     "GROUP BY tag, verdict")
    counts = {(r["tag"], r["verdict"]): r["n"] for r in rows}
    for tag, truth in TRUTH.items():
        judged = sum(n for (t, v), n in counts.items() if t == tag and v != "unjudged")
        assert judged == PER_TAG
        worse_count = counts.get((tag, "worse"), 0)
        worse = worse_count / judged
        assert abs(worse - truth) <= 0.03, (tag, worse)
        low, high = wilson_interval(worse_count, judged)
        assert low <= truth <= high, (tag, low, high)
        assert counts.get((tag, "better"), 0) == 0
    assert summary.verdicts.get("unjudged", 0) == 0
    assert summary.judge_calls > 0


@pytest.mark.parametrize(("provider", "model"), [
    ("vertex", "claude-sonnet-4-6@20260101"),
    ("bedrock", "us.anthropic.claude-sonnet-4-6-v1:0"),
])
async def test_bedrock_and_vertex_judges_through_the_anthropic_sdk(
        simulator: SimulatedProvider, database_url: str, monkeypatch: pytest.MonkeyPatch,
        provider: str, model: str) -> None:
    monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
    monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "judge-test")
    for name in ("AWS_BEARER_TOKEN_BEDROCK", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDJUDGETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "judge-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    text = "What is the status of order 4417?"
    await store(database_url, [make_pair(
        request={"messages": [{"role": "user", "content": text}]},
        primary=Side(status=200, text=canonical(text), stop_reason="end_turn"),
        shadow=Side(status=200, text=subtly_wrong(text), stop_reason="end_turn"))])
    judge = make_judge(Settings(judge_model=model, judge_provider=provider,
                                judge_base_url=simulator.url, judge_api_key="ya29.judge",
                                judge_max_retries=0))
    assert judge is not None
    try:
        await run_diff(database_url, progress=False, judge=judge)
    finally:
        await judge.close()
    [row] = await fetch(database_url, "SELECT verdict, judge_model FROM comparisons")
    assert row == {"verdict": "worse", "judge_model": model}
    assert len([r for r in simulator.received if "sonnet" in r.path]) == 2


def test_the_position_bias_answers_a_whatever_the_answers() -> None:
    from shadowproxy.simulator.judge import judge_winner

    q = "Is order 12 late?"
    conversation = render_conversation({"messages": [{"role": "user", "content": q}]})
    bodies = [judge_messages_request("claude-sonnet-4-6", judge_prompt(
        conversation, AnswerText(subtly_wrong(q) + " " * i), AnswerText(canonical(q)), None))
        for i in range(50)]
    assert {judge_winner(b, SimulatorConfig(judge_position_bias=1.0))[0] for b in bodies} == {
        "A"}
    assert {judge_winner(b, SimulatorConfig())[0] for b in bodies} == {"B"}
    some = [judge_winner(b, SimulatorConfig(judge_position_bias=0.5))[0] for b in bodies]
    assert 10 < some.count("A") < 40

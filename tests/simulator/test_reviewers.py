"""Simulated people check the simulated judge: a judge biased in a way only labels show,
reviewers who label in the review queue's order, and the demo's moment, where the
judge alone passes refunds and the calibrated rate fails it."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import random
import uuid
from pathlib import Path
from typing import Any

import anthropic
import pytest

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.gate import evaluate
from shadowproxy.decision.judge_prompt import (
    AnswerText,
    combine,
    judge_messages_request,
    judge_prompt,
    parse_messages_response,
    render_conversation,
)
from shadowproxy.decision.report import build_report
from shadowproxy.decision.review_frame import OVERLAP_KEY, overlap_threshold
from shadowproxy.records import Api, Side
from shadowproxy.simulator import SimulatorConfig
from shadowproxy.simulator.demo import (
    CALIBRATED_POLICY,
    DEMO_POLICY,
    LABELS_PER_TAG,
    USE_CASES,
    demo_judge,
    traffic_plan,
)
from shadowproxy.simulator.demo import simulator_config as demo_simulator_config
from shadowproxy.simulator.demo_review import calibration_story
from shadowproxy.simulator.reviewers import QUEUE_RANK, choice_for, label_in_queue_order
from shadowproxy.simulator.variants import Kind, canonical, shadow_kind, shadow_sentence
from tests.decision.test_diff import fetch
from tests.fakes.database import make_pair
from tests.fakes.providers import SimulatedProvider
from tests.fakes.traffic import store
from tests.fakes.verdicts import START, mix, write

WORSE = {"refunds": 0.3, "support": 0.3}
CONFIG = SimulatorConfig(shadow_worse_rate=WORSE, judge_misses_worse={"refunds": 1 / 3})


def _question(tag: str, i: int) -> str:
    return f"#tag={tag} #seq={i} Can I get a refund on order {10_000 + i}?"


@pytest.mark.parametrize("simulator_config", [CONFIG])
async def test_the_biased_judge_misses_a_third_of_the_wrong_refunds_answers(
        simulator: SimulatedProvider) -> None:
    """Asked in both orders, as diff asks: every wrong support answer is found; a third
    of the wrong refunds answers are called as good as the primary's, in both orders."""
    client = anthropic.AsyncAnthropic(api_key="sk-judge", base_url=simulator.url,
                                      max_retries=0)
    found: dict[str, list[str]] = {}
    try:
        for tag in WORSE:
            for i in range(150):
                q = _question(tag, i)
                if shadow_kind(q, WORSE, 0.0) is not Kind.WRONG:
                    continue
                shadow = shadow_sentence(q, WORSE, 0.0) or ""
                conversation = render_conversation({"messages": [
                    {"role": "user", "content": q}]})
                votes = []
                for a, b in ((canonical(q), shadow), (shadow, canonical(q))):
                    body = judge_messages_request("simulated-judge", judge_prompt(
                        conversation, AnswerText(a), AnswerText(b), None))
                    message = await client.messages.create(**body)
                    votes.append(parse_messages_response(message.to_dict()))
                found.setdefault(tag, []).append(combine(*votes).verdict.value)
    finally:
        await client.close()
    assert set(found["support"]) == {"worse"}
    refunds = found["refunds"]
    assert len(refunds) == pytest.approx(45, abs=1)
    assert refunds.count("equivalent") == pytest.approx(len(refunds) / 3, abs=1)
    assert set(refunds) == {"worse", "equivalent"}


def _rank(pair_id: uuid.UUID) -> int:
    return int(hashlib.md5(str(pair_id).encode()).hexdigest()[:15], 16)


async def test_reviewers_label_the_first_pairs_of_each_tag_in_queue_order(
        database_url: str) -> None:
    rows = [*mix("support", worse=10, equivalent=30),
            *mix("billing", worse=5, equivalent=15, first=100),
            *mix("support", equivalent=50, first=200, method="exact", judge_model=None,
                 calls=0, cost_usd=0.0)]
    draw = random.Random(20261203)  # the ids, and so the queue's ranks, are the test's own
    rows = [(dataclasses.replace(r, id=uuid.UUID(int=draw.getrandbits(128), version=4)), j)
            for r, j in rows]
    await write(database_url, rows)
    frame = {tag: sorted((r.id for r, j in rows if r.tag == tag and j.method == "judge"),
                         key=_rank) for tag in ("support", "billing")}
    written = await label_in_queue_order(
        database_url, 12, lambda pair, reviewer: ("worse", "bad") if reviewer == "ana"
        else ("equivalent", None), reviewers=("ana", "ben"), overlap=0.25, start=START)

    reviews = await fetch(database_url, "SELECT r.pair_id, r.reviewer, r.choice, r.verdict, "
                          "r.shadow_first, r.note, i.shadow_first AS item_first, p.tag "
                          "FROM reviews r JOIN review_items i USING (pair_id, reviewer) "
                          "JOIN pairs p ON p.id = r.pair_id ORDER BY r.created_at")
    assert written == len(reviews)
    for tag in ("support", "billing"):
        labelled = list(dict.fromkeys(r["pair_id"] for r in reviews if r["tag"] == tag))
        assert labelled == frame[tag][:12]  # the queue's first 12, never a tier's pair
    # A second person looked at exactly the pairs whose overlap key falls in the quarter
    # REVIEW_OVERLAP names (the key is a hash of the id, so which pairs is fixed).
    labelled_ids = {r["pair_id"] for r in reviews}
    keys = await fetch(database_url, f"SELECT id, {OVERLAP_KEY.replace('p.id', 'id')} "
                       "AS key FROM pairs")
    overlapping = {r["id"] for r in keys if r["key"] < overlap_threshold(0.25)}
    counts = collections.Counter(r["pair_id"] for r in reviews)
    assert {pid for pid, n in counts.items() if n == 2} == overlapping & labelled_ids
    assert set(counts.values()) <= {1, 2}
    assert overlapping & labelled_ids  # the draw gave the test a second look to check
    for r in reviews:
        assert r["shadow_first"] == r["item_first"]
        assert r["choice"] == choice_for(r["verdict"], r["shadow_first"])
    assert {r["choice"] for r in reviews if r["verdict"] == "worse"} <= {"1", "2"}
    ranks = await fetch(database_url, f"SELECT id, {QUEUE_RANK} AS rank FROM pairs")
    assert all(r["rank"] == _rank(r["id"]) for r in ranks)


def test_the_key_pressed_follows_the_side_shown_first() -> None:
    assert choice_for("worse", shadow_first=True) == "2"
    assert choice_for("worse", shadow_first=False) == "1"
    assert choice_for("better", shadow_first=True) == "1"
    assert choice_for("equivalent", shadow_first=False) == "tie"
    assert choice_for(None, shadow_first=True) == "skip"


# --- the demo's moment, without the proxy in between ------------------------------------

PLAN = traffic_plan(300, seed=7)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    config = demo_simulator_config(PLAN)
    config.latency_s = config.chunk_interval_s = 0.0
    config.shadow_latency_s = 0.0
    return config


async def _demo_pairs(simulator: SimulatedProvider) -> list[Any]:
    """The demo's 300 requests as stored pairs: the primary's canonical answer beside
    Haiku's answer from the simulator (ids fixed, so the queue's order is too)."""
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=simulator.url,
                                      max_retries=0)
    pairs = []
    try:
        for i, planned in enumerate(PLAN):
            if "#error" in planned.script:
                continue
            message = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=200,
                messages=[{"role": "user", "content": planned.prompt}])
            request = {"model": "gpt-4o", "messages": [
                {"role": "user", "content": planned.prompt}]}
            pairs.append(make_pair(
                id=uuid.UUID(int=0xDE70 << 64 | i), tag=planned.case.tag,
                api=Api.OPENAI_CHAT.value, request=request,
                primary=Side(model="gpt-4o", status=200, text=canonical(planned.prompt),
                             stop_reason="end_turn"),
                shadow=Side(model="claude-haiku-4-5", status=200,
                            text="".join(b.text for b in message.content if b.type == "text"),
                            stop_reason="end_turn")))
    finally:
        await client.close()
    return pairs


async def test_the_demo_judge_passes_refunds_and_people_fail_it(
        simulator: SimulatedProvider, database_url: str, tmp_path: Path) -> None:
    await store(database_url, await _demo_pairs(simulator))
    judge = demo_judge(simulator.url, tmp_path)
    try:
        await run_diff(database_url, progress=False, judge=judge)
    finally:
        await judge.close()
    await label_in_queue_order(database_url, LABELS_PER_TAG, start=START)
    report = await build_report(database_url)
    judge_only = evaluate(report, DEMO_POLICY)
    calibrated = evaluate(report, CALIBRATED_POLICY)

    def worse_row(result: Any, tag: str) -> Any:
        return next(c for c in result.criteria
                    if c.scope == f"tag:{tag}" and c.criterion == "max_worse_rate")

    truth = {c.tag: c.worse for c in USE_CASES}
    refunds = report.by_tag["refunds"]
    human = refunds.human
    assert human is not None and human.worse is not None
    print(f"refunds: truth {truth['refunds']:.1%}, judge alone {refunds.worse_rate:.1%} "
          f"{refunds.worse_rate_ci95}, calibrated {human.worse}")
    assert worse_row(judge_only, "refunds").result == "pass"
    assert worse_row(calibrated, "refunds").result == "fail"
    assert human.worse.low <= truth["refunds"] <= human.worse.high
    for tag in ("support", "summaries"):
        assert worse_row(calibrated, tag).result == "pass"
    story = "\n".join(calibration_story(report, judge_only, calibrated, truth))
    assert "refunds: the judge alone passes it, people's labels fail it." in story
    assert "the judge missed worse answers" in story

"""Judging by sample, end to end: diff with a real judge server asks about a uniform,
reproducible sample of each tag's pairs, and the report says so and estimates from it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from shadowproxy.decision.gate import Verdict, evaluate, parse_policy
from shadowproxy.decision.judge import make_judge
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_model import UnjudgedCause
from shadowproxy.decision.sampling import judge_rank
from shadowproxy.records import PairRecord
from shadowproxy.store.urls import asyncpg_dsn
from tests.decision.test_judging import free_form, settings_for, text_side
from tests.fakes.database import make_pair
from tests.fakes.judge import FakeJudge
from tests.fakes.traffic import START, store


def tagged(tag: str, count: int, *, first: int = 0, wrong_every: int = 5) -> list[PairRecord]:
    """Free-form pairs (the tiers cannot settle them); every ``wrong_every``-th shadow
    answer is one the fake judge finds worse."""
    return [free_form(f"Answer {first + i}.",
                      f"Other answer {first + i}." + (" WRONG" if i % wrong_every == 0 else ""),
                      id=uuid.uuid4(), tag=tag, received_at=START + timedelta(minutes=first + i))
            for i in range(count)]


async def judged_ids(url: str) -> set[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch("SELECT pair_id FROM scores WHERE verdict_method = 'judge'")
    finally:
        await conn.close()
    return {r["pair_id"] for r in rows}


async def diff(url: str, fake_judge: FakeJudge, sample: str, **overrides: Any) -> Any:
    from shadowproxy.decision.diff import run_diff

    settings = settings_for(fake_judge, judge_sample=sample, **overrides)
    judge = make_judge(settings)
    assert judge is not None
    try:
        return await run_diff(url, progress=False, judge=judge, sample=settings.judge_sample,
                              judge_max_usd=settings.judge_max_usd,
                              judge_concurrency=settings.judge_concurrency)
    finally:
        await judge.close()


async def test_a_fixed_sample_per_tag_is_what_the_judge_sees_and_the_report_says(
        database_url: str, fake_judge: FakeJudge) -> None:
    support, billing, tiny = tagged("support", 80), tagged("billing", 60, first=100), \
        tagged("tiny", 6, first=200)
    exact = [free_form("Same.", "same", id=uuid.uuid4(), tag="support") for _ in range(20)]
    await store(database_url, [*support, *billing, *tiny, *exact])
    summary = await diff(database_url, fake_judge, "20")
    judged = await judged_ids(database_url)
    per_tag = {tag: len({r.id for r in records} & judged)
               for tag, records in (("support", support), ("billing", billing),
                                    ("tiny", tiny))}
    assert per_tag == {"support": 20, "billing": 20, "tiny": 6}
    assert summary.judge_calls == 2 * 46 == len(fake_judge.asked)
    # The sample is the lowest ranks of each tag: reproducible, and uniform.
    assert {r.id for r in support if r.id in judged} == {
        r.id for r in sorted(support, key=lambda r: judge_rank(r.id))[:20]}

    report = await build_report(database_url)
    s = report.by_tag["support"]
    assert s.to_json()["sample"] == {"frame": 80, "judged": 20, "not_sampled": 60,
                                     "share": 0.25, "estimated": True}
    assert s.unjudged_for(UnjudgedCause.NOT_SAMPLED) == 60
    assert "left out of the judge's sample" in next(
        u.advice for u in s.unjudged if u.cause is UnjudgedCause.NOT_SAMPLED)
    # 20 exact pairs known equivalent, 80 free-form estimated from 20: the worse rate is
    # the frame's share (80 of 100) of the judged sample's, with a wider interval than
    # if the 20 judged were all there were.
    worse_in_sample = sum(1 for r in support if r.id in judged
                          and "WRONG" in (r.shadow.text or ""))
    assert s.worse_rate == pytest.approx(0.8 * worse_in_sample / 20)
    interval = s.worse_rate_ci95
    assert interval is not None and interval.low <= s.worse_rate <= interval.high
    assert report.by_tag["tiny"].sampled is False  # all judged: plain counts, as before
    # Not-sampled pairs are by design, not "not enough data".
    gate = evaluate(report, parse_policy({"min_pairs": 10, "max_worse_rate": 0.9,
                                          "per_tag": True}))
    assert not [c for c in gate.criteria if c.insufficient and c.scope != "tag:tiny"]


async def test_the_same_pairs_are_chosen_on_every_run_and_machine(
        database_url: str, fake_judge: FakeJudge) -> None:
    records = tagged("support", 60)
    await store(database_url, records)
    await diff(database_url, fake_judge, "15")
    first = await judged_ids(database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("TRUNCATE pairs CASCADE; TRUNCATE judge_samples")
    finally:
        await conn.close()
    await store(database_url, records)
    await diff(database_url, fake_judge, "15")
    assert await judged_ids(database_url) == first and len(first) == 15


async def test_later_traffic_is_sampled_at_the_same_rate(
        database_url: str, fake_judge: FakeJudge) -> None:
    """The threshold stays where the first run put it: every pair below it is judged,
    old or new, so any window's judged pairs are a uniform sample of that window."""
    first = tagged("support", 100)
    await store(database_url, first)
    await diff(database_url, fake_judge, "25")
    later = tagged("support", 100, first=1000)
    await store(database_url, later)
    await diff(database_url, fake_judge, "25")
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        threshold = await conn.fetchval("SELECT threshold FROM judge_samples WHERE tag = 'support'")
    finally:
        await conn.close()
    judged = await judged_ids(database_url)
    assert judged == {r.id for r in [*first, *later] if judge_rank(r.id) < threshold}
    assert len({r.id for r in first} & judged) == 25


async def test_auto_sizes_the_sample_then_spends_what_the_budget_allows(
        database_url: str, fake_judge: FakeJudge) -> None:
    """400 free-form and 400 exact pairs, a judge that never finds one worse: after the
    pilot, about 100 pairs are enough for ±2 points on the worse rate; with budget left,
    the rest of the frame is judged too, lowest rank first."""
    fake_judge.decide = lambda a, b: "tie"
    records = tagged("support", 400, wrong_every=10**9)
    exact = [free_form(f"Same {i}.", f"same {i}", id=uuid.uuid4(), tag="support")
             for i in range(400)]
    await store(database_url, [*records, *exact])
    await diff(database_url, fake_judge, "auto", judge_max_usd=0.9)
    judged = await judged_ids(database_url)
    assert 100 <= len(judged) < 400
    ranked = sorted(records, key=lambda r: judge_rank(r.id))
    assert {r.id for r in ranked[:100]} <= judged  # the pilot, then in rank order
    assert (await build_report(database_url)).by_tag["support"].sampled
    await diff(database_url, fake_judge, "auto", judge_max_usd=1000)
    assert await judged_ids(database_url) == {r.id for r in records}
    report = await build_report(database_url)
    assert report.by_tag["support"].sampled is False


async def test_replays_are_judged_for_the_pairs_in_the_sample(
        database_url: str, fake_judge: FakeJudge) -> None:
    records = [make_pair(id=uuid.uuid4(), tag="support",
                         primary=text_side(f"Paris {i}."), shadow=text_side(f"Lyon {i}."),
                         replay=text_side(f"Marseille {i}."))
               for i in range(30)]
    await store(database_url, records)
    await diff(database_url, fake_judge, "10")
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT pair_id, verdict_method, replay_verdict_method "
                                "FROM scores")
    finally:
        await conn.close()
    shadow = {r["pair_id"] for r in rows if r["verdict_method"] == "judge"}
    replay = {r["pair_id"] for r in rows if r["replay_verdict_method"] == "judge"}
    assert len(shadow) == 10 and replay == shadow
    floor = (await build_report(database_url)).by_tag["support"].noise_floor
    assert floor is not None and floor.pairs == 10


def test_the_setting_is_checked_when_read() -> None:
    from shadowproxy.settings import Settings

    assert Settings(judge_sample="ALL").judge_sample == "all"
    assert Settings().judge_sample == "auto"
    with pytest.raises(ValueError, match="auto, all or a number"):
        Settings(judge_sample="most")
    assert Verdict.PASS.exit_code == 0


async def test_the_page_says_the_shares_come_from_the_judges_sample(
        database_url: str, fake_judge: FakeJudge) -> None:
    from shadowproxy.decision.report_html import render_html

    await store(database_url, tagged("support", 40))
    await diff(database_url, fake_judge, "10")
    page = render_html(await build_report(database_url))
    assert "the judge saw 10 of the 40 pairs that needed it" in page
    assert "estimated from the judge&#39;s uniform random sample" in page
    assert "30 pairs left out of the judge&#39;s sample (SHADOWPROXY_JUDGE_SAMPLE)" in page

"""The report's ``human`` section, from real labels in a real database: counts that
match what people did, calibrated rates from those counts, and pages that show them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadowproxy.decision.calibration import Stratum, calibrate, cohen_kappa, labels_needed
from shadowproxy.decision.gate import Policy, evaluate
from shadowproxy.decision.report import build_report
from shadowproxy.decision.report_html import render_html
from shadowproxy.simulator.reviewers import QueuedPair, label_in_queue_order
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.verdicts import START, mix, write

HUMAN_KEYS = {
    "labels", "labelled_pairs", "reviewers", "skips", "skip_rate", "judge_agreement",
    "judge_kappa", "confusion", "human_agreement", "human_agreement_pairs",
    "worse_rate_calibrated", "worse_rate_calibrated_ci95", "better_rate_calibrated",
    "better_rate_calibrated_ci95", "lambda", "labels_needed", "note", "summary",
}
EVIL = "<script>alert('note')</script>"


def queue_rank(pair_id: uuid.UUID) -> int:
    """The review queue's rank, in Python: the first 15 hex digits of md5(id)."""
    return int(hashlib.md5(str(pair_id).encode()).hexdigest()[:15], 16)


class People:
    """People whose labels the test knows: each pair's truth (the first look at a pair),
    a second look that sometimes sees it otherwise, and a skip now and then; every call
    is recorded."""

    def __init__(self, truth: dict[uuid.UUID, str], skip: set[uuid.UUID] = frozenset(),
                 ) -> None:
        self.truth = truth
        self.skip = skip
        self.calls: list[tuple[uuid.UUID, str, str | None]] = []

    def __call__(self, pair: QueuedPair, reviewer: str) -> tuple[str | None, str | None]:
        verdict: str | None = self.truth.get(pair.id, "equivalent")
        if pair.id in self.skip:
            verdict = None
        elif verdict == "worse" and any(seen == pair.id for seen, _, _ in self.calls):
            verdict = "equivalent"  # a second look is more lenient than the first
        self.calls.append((pair.id, reviewer, verdict))
        return verdict, (f"Wrong refund amount {EVIL}" if verdict == "worse" else None)


async def _judged_support(database_url: str) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, str]]:
    """60 pairs the judge decided (12 worse, 45 equivalent, 3 better), 40 exact matches;
    the truth: every fourth pair the judge called equivalent is worse."""
    rows = [*mix("support", worse=12, better=3, equivalent=45),
            *mix("support", equivalent=40, first=60, method="exact", judge_model=None,
                 calls=0, cost_usd=0.0)]
    for i, (record, _) in enumerate(rows):  # fixed ids: the queue's order is fixed too
        record.id = uuid.UUID(int=0x5EED << 64 | i)
    await write(database_url, rows)
    judge = {record.id: judged.verdict for record, judged in rows
             if judged.method == "judge" and judged.verdict}
    truth = {}
    for i, (pair_id, verdict) in enumerate(judge.items()):
        truth[pair_id] = "worse" if verdict == "equivalent" and i % 4 == 0 else verdict
    return judge, truth


async def test_the_human_section_counts_what_people_did(database_url: str) -> None:
    judge, truth = await _judged_support(database_url)
    by_rank = sorted(judge, key=queue_rank)
    people = People(truth, skip={by_rank[3]})
    await label_in_queue_order(database_url, 30, people, reviewers=("ana", "ben"),
                               overlap=0.25, start=START)

    # What people did, from the recorded calls: the first 30 pairs by rank were offered.
    offered = list(dict.fromkeys(pair_id for pair_id, _, _ in people.calls))
    assert offered == by_rank[:30]
    firsts: dict[uuid.UUID, str] = {}
    seconds: dict[uuid.UUID, str] = {}
    for pair_id, _, verdict in people.calls:
        if verdict is not None:
            (seconds if pair_id in firsts else firsts).setdefault(pair_id, verdict)
    confusion: dict[tuple[str, str], int] = {}
    for pair_id, verdict in firsts.items():
        cell = (judge[pair_id], verdict)
        confusion[cell] = confusion.get(cell, 0) + 1
    unlabelled: dict[str, int] = {}
    for pair_id, verdict in judge.items():
        if pair_id not in firsts:
            unlabelled[verdict] = unlabelled.get(verdict, 0) + 1
    stratum = Stratum(confusion, unlabelled, {"equivalent": 40})
    expected = calibrate([stratum], "worse")
    assert expected is not None

    report = await build_report(database_url)
    human = json.loads(json.dumps(report.to_json()))["by_tag"]["support"]["human"]
    assert set(human) >= HUMAN_KEYS
    assert human["labels"] == len(firsts) + len(seconds)
    assert human["labelled_pairs"] == len(firsts) == 29  # one pair skipped
    assert human["reviewers"] == 2
    assert human["skips"] == sum(1 for _, _, v in people.calls if v is None) >= 1
    assert human["skip_rate"] == pytest.approx(
        human["skips"] / (human["skips"] + human["labels"]))
    assert human["confusion"]["equivalent"]["worse"] == confusion.get(
        ("equivalent", "worse"), 0) > 0
    assert human["judge_agreement"] == pytest.approx(
        sum(n for (j, h), n in confusion.items() if j == h) / 29)
    assert human["judge_kappa"] == pytest.approx(cohen_kappa(confusion))
    assert human["human_agreement_pairs"] == len(seconds) > 0
    assert human["human_agreement"] == pytest.approx(
        sum(firsts[p] == v for p, v in seconds.items()) / len(seconds))
    assert human["worse_rate_calibrated"] == pytest.approx(expected.rate)
    assert human["worse_rate_calibrated_ci95"] == pytest.approx([expected.low, expected.high])
    assert human["lambda"] == pytest.approx(expected.lam)
    assert human["labels_needed"] == labels_needed([stratum])
    assert human["note"] is None
    # The judge called 12 of 100 pairs worse; people's labels say more are (23 are;
    # how often the interval holds the truth is test_calibration's coverage simulation).
    assert report.by_tag["support"].worse_rate == pytest.approx(0.12)
    assert human["worse_rate_calibrated"] > 0.12
    agreed = sum(confusion.get((v, v), 0) for v in ("worse", "equivalent", "better"))
    assert human["summary"].startswith(f"people disagreed with the judge on {29 - agreed} "
                                       "of 29 pairs; the judge missed worse answers")
    shown = {d["pair"] for d in human["disagreements"]}
    assert shown == {str(p) for p, v in firsts.items() if v != judge[p]}
    reasons = {"worse": "The shadow gives the wrong date.",
               "equivalent": "Same date, different words."}
    assert all(d["judge_reason"] == reasons[d["judge"]] for d in human["disagreements"])
    # One tag, so overall is the same stratum (no λ for a combination, though).
    overall = report.to_json()["overall"]["human"]
    assert overall["worse_rate_calibrated"] == pytest.approx(expected.rate)


async def test_too_few_labels_leave_the_calibrated_rate_out_and_say_how_many_more(
        database_url: str) -> None:
    _, truth = await _judged_support(database_url)
    await write(database_url, mix("billing", worse=2, equivalent=18, first=200))
    await label_in_queue_order(database_url, 7, People(truth), reviewers=("ana",),
                               start=START)
    payload = (await build_report(database_url)).to_json()
    support = payload["by_tag"]["support"]["human"]
    assert support["labelled_pairs"] == 7
    assert support["worse_rate_calibrated"] is None
    assert support["worse_rate_calibrated_ci95"] is None and support["lambda"] is None
    assert support["note"].startswith("3 more labels needed")
    assert "/review" in support["note"]
    billing = payload["by_tag"]["billing"]["human"]
    assert billing["labelled_pairs"] == 7 and billing["worse_rate_calibrated"] is None
    assert billing["summary"].endswith("3 more labels needed for a calibrated rate "
                                       "(label pairs on the review page, /review)")
    # Overall needs every tag the judge decided: 3 + 3 more.
    overall = payload["overall"]["human"]
    assert overall["labelled_pairs"] == 14 and overall["worse_rate_calibrated"] is None
    assert overall["note"].startswith("6 more labels needed")


async def test_a_tag_the_judge_never_decided_needs_no_labels(database_url: str) -> None:
    await write(database_url, mix("lookup", equivalent=30, method="structural",
                                  judge_model=None, calls=0, cost_usd=0.0))
    report = await build_report(database_url)
    human = report.by_tag["lookup"].human
    assert human is not None and human.frame == 0 and human.labels_needed == 0
    assert human.worse is None and "no pair needed the judge" in (human.note or "")
    # The gate judges it on its own interval (30 pairs, none worse: up to 11.4%).
    result = evaluate(report, Policy(min_human_labels=30, max_worse_rate=0.15, per_tag=True))
    assert result.exit_code == 0, result.to_json()
    labels_row = next(c for c in result.criteria if c.criterion == "min_human_labels")
    assert labels_row.result == "n/a" and labels_row.note == (
        "no pair needed the judge: nothing to label")


async def test_labels_outside_the_window_or_the_tag_do_not_count(database_url: str) -> None:
    _, truth = await _judged_support(database_url)
    await label_in_queue_order(database_url, 20, People(truth), start=START)
    later = await build_report(database_url, since=START.replace(year=START.year + 1))
    assert later.overall.human is not None and later.overall.human.labels == 0
    other = await build_report(database_url, tag="billing")
    assert other.overall.human is not None and other.overall.human.labels == 0


async def test_the_page_shows_both_rates_and_the_disagreements_escaped(
        database_url: str) -> None:
    _, truth = await _judged_support(database_url)
    await label_in_queue_order(database_url, 30, People(truth), reviewers=("ana",),
                               start=START)
    report = await build_report(database_url)
    human = report.by_tag["support"].human
    assert human is not None and human.worse is not None and human.disagreements
    html = render_html(report)
    assert EVIL not in html and "&lt;script&gt;alert(" in html
    assert "worse, calibrated by people (95% CI)" in html
    calibrated = f"{human.worse.rate:.1%}"
    assert f"12.0% / {calibrated}" in html  # judge alone beside calibrated, per tag
    assert "Where people and the judge disagree" in html
    assert str(human.disagreements[0].pair_id) in html
    # Each disagreement says what the user asked, so a reader knows what it was about.
    assert human.disagreements[0].question.startswith("When will my order arrive?")
    assert "the user asked" in html and "When will my order arrive?" in html.split(
        "Where people and the judge disagree")[1]
    assert "the judge missed worse answers" in html


def test_the_line_for_a_release_manager_says_what_people_found() -> None:
    from shadowproxy.decision.human_review import HumanReview

    def review(cells: dict[tuple[str, str], int], unlabelled: int = 100) -> HumanReview:
        return HumanReview((Stratum(cells, {"equivalent": unlabelled}),), labels=40)

    assert review({}).summary == ("no labels yet: label pairs on the review page (/review); "
                                  "10 needed for a calibrated rate")
    assert review({("equivalent", "equivalent"): 40}).summary == (
        "people agreed with the judge on all 40 labelled pairs")
    missed = review({("equivalent", "equivalent"): 25, ("worse", "worse"): 6,
                     ("equivalent", "worse"): 7, ("worse", "equivalent"): 2})
    assert missed.summary == ("people disagreed with the judge on 9 of 40 pairs; the judge "
                              "missed worse answers (7 that people found worse, it did not)")
    harsh = review({("equivalent", "equivalent"): 30, ("worse", "equivalent"): 10})
    assert harsh.summary.endswith("the judge called answers worse that people did not (10)")
    assert HumanReview((Stratum(decided={"equivalent": 5}),)).summary == (
        "no pair needed the judge here, so there is nothing for people to check")


async def _run_gate(database_url: str, policy: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "gate", "--policy", str(policy), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None, err.decode()
    return proc.returncode, out.decode()


async def test_gate_exits_2_naming_the_review_page_then_fails_on_the_calibrated_rate(
        database_url: str, tmp_path: Path) -> None:
    judge, truth = await _judged_support(database_url)
    policy = tmp_path / "gate.toml"
    policy.write_text("max_worse_rate = 0.25\nper_tag = true\n")
    code, _ = await _run_gate(database_url, policy)
    assert code == 0  # the judge alone: 12% worse, upper bound under 25%

    policy.write_text("max_worse_rate = 0.25\nper_tag = true\nmin_human_labels = 30\n")
    await label_in_queue_order(database_url, 12, People(truth), reviewers=("ana",),
                               start=START)
    code, text = await _run_gate(database_url, policy)
    assert code == 2, text
    assert "tag:support: 12 of 30 human labels needed" in text
    assert "/review on the admin listener" in text

    await _relabel_everything(database_url, truth)
    code, text = await _run_gate(database_url, policy)
    assert "upper bound of calibrated 95% CI" in text
    assert code == (0 if _calibrated_high(truth, judge) <= 0.25 else 1), text


def _calibrated_high(truth: dict[uuid.UUID, str], judge: dict[uuid.UUID, str]) -> float:
    confusion: dict[tuple[str, str], int] = {}
    for pair_id, verdict in truth.items():
        confusion[(judge[pair_id], verdict)] = confusion.get((judge[pair_id], verdict), 0) + 1
    result = calibrate([Stratum(confusion, {}, {"equivalent": 40})], "worse")
    assert result is not None
    return result.high


async def _relabel_everything(database_url: str, truth: dict[uuid.UUID, str]) -> None:
    """The rest of the queue, labelled by a second reviewer who agrees with the truth."""
    conn: Any = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("DELETE FROM reviews")
        await conn.execute("DELETE FROM review_items")
    finally:
        await conn.close()
    await label_in_queue_order(database_url, 60, People(truth), reviewers=("ana",),
                               start=START)

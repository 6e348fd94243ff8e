"""The report: numbers a release manager signs off on, as JSON and as one HTML file."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.gate import GateResult, evaluate, parse_policy
from shadowproxy.decision.histogram import bucket_of
from shadowproxy.decision.report import (
    Distribution,
    assemble_report,
    build_report,
    last_user_turn,
)
from shadowproxy.decision.report_html import render_html, usd, word_diff
from shadowproxy.decision.report_model import Report, UnjudgedCause
from shadowproxy.decision.stats import cdf_points, percentiles
from shadowproxy.decision.summaries import TagFacts
from shadowproxy.lifecycle import LifecycleData, ModelLifecycle
from tests.fakes import verdicts
from tests.fakes.traffic import START, seeded, store, traffic
from tests.fakes.verdicts import BUDGET, NO_JUDGE, Judged, mix, pair, write

SCOPE_KEYS = {
    "pairs", "verdicts", "worse_rate", "worse_rate_ci95", "better_rate", "better_rate_ci95",
    "agreement", "agreement_ci95", "noise_floor", "judge", "tool_call_match",
    "shadow_error_rate", "latency_ms", "ttft_ms", "cost_usd_per_1k",
}


async def test_worse_rate_per_tag_matches_the_truth(database_url: str) -> None:
    # Truth: 20% worse in "support", 5% in "billing".
    await write(database_url, [*mix("support", worse=40, better=10, equivalent=150),
                               *mix("billing", worse=15, better=15, equivalent=270,
                                    first=200)])
    report = await build_report(database_url)
    payload = json.loads(json.dumps(report.to_json()))  # --format json serialises as is

    assert set(payload["by_tag"]) == {"support", "billing"}
    for tag, truth, pairs in (("support", 0.20, 200), ("billing", 0.05, 300)):
        numbers = payload["by_tag"][tag]
        assert set(numbers) >= SCOPE_KEYS
        assert numbers["pairs"] == pairs
        assert numbers["worse_rate"] == pytest.approx(truth, abs=0.03)
        low, high = numbers["worse_rate_ci95"]
        assert low < truth < high
        assert set(numbers["latency_ms"]["shadow"]) == {"p50", "p95", "p99"}
    assert payload["by_tag"]["support"]["verdicts"] == {
        "equivalent": 150, "better": 10, "worse": 40, "unjudged": 0}
    assert payload["by_tag"]["billing"]["agreement"] == pytest.approx(270 / 300)
    assert payload["overall"]["worse_rate"] == pytest.approx(55 / 500)
    judge = payload["overall"]["judge"]
    assert judge["model"] == verdicts.JUDGE_MODEL and judge["calls"] == 1000
    assert judge["cost_usd"] == pytest.approx(2.0)
    assert judge["position_inconsistent"] == 0.0
    assert payload["overall"]["models"] == {"primary": ["gpt-4o"],
                                            "shadow": ["claude-haiku-4-5"]}


async def test_unjudged_pairs_say_why_and_what_to_do(database_url: str) -> None:
    await write(database_url, [
        *mix("support", equivalent=5),
        *[(pair("support", 10 + i), Judged("unjudged", reason=NO_JUDGE)) for i in range(7)],
        *[(pair("support", 20 + i), Judged("unjudged", reason=BUDGET)) for i in range(3)],
        *[(pair("support", 30 + i), Judged(None)) for i in range(2)],  # diff not run yet
        *[(pair("support", 40 + i), Judged(None, scored_only=True)) for i in range(4)],
    ])
    support = (await build_report(database_url)).by_tag["support"]
    assert support.pairs == 5 and support.verdicts.unjudged == 16
    causes = {u.cause: u.pairs for u in support.unjudged}
    assert causes == {UnjudgedCause.NO_JUDGE: 7, UnjudgedCause.BUDGET: 3,
                      UnjudgedCause.AWAITING_DIFF: 2, UnjudgedCause.NO_VERDICT: 4}
    advice = {u.cause: u.advice for u in support.unjudged}
    assert "SHADOWPROXY_JUDGE_MODEL" in advice[UnjudgedCause.NO_JUDGE]
    assert "run `shadowproxy diff` again" in advice[UnjudgedCause.BUDGET].lower()
    assert advice[UnjudgedCause.AWAITING_DIFF].startswith("2 pairs not yet judged")
    assert "diff --rejudge" in advice[UnjudgedCause.NO_VERDICT]


async def test_noise_floor_comes_from_replay_verdicts(database_url: str) -> None:
    rows = [(pair("support", i, replay=True),
             Judged("worse" if i < 30 else "equivalent",
                    replay_verdict="worse" if i < 8 else "equivalent"))
            for i in range(100)]
    await write(database_url, rows)
    support = (await build_report(database_url)).by_tag["support"]
    floor = support.noise_floor
    assert floor is not None and floor.pairs == 100 and floor.worse_rate == 0.08
    assert support.worse_over_noise == pytest.approx(0.22)
    interval = support.worse_over_noise_ci95
    assert interval is not None and interval.low < 0.22 < interval.high
    assert support.judge.calls == 400  # both orders, for the pair and for its replay


async def test_json_paths_that_differ_most_often_per_tag(database_url: str) -> None:
    rows = [*mix("orders", worse=6, json_diff_paths=["$.items[0].price", "$.total"]),
            *mix("orders", worse=2, json_diff_paths=["$.currency"], first=10),
            *mix("refunds", equivalent=3, json_diff_paths=[], first=20)]
    await write(database_url, rows)
    report = await build_report(database_url)
    orders = report.by_tag["orders"].json_diff_paths
    assert [(p.path, p.pairs) for p in orders] == [
        ("$.items[0].price", 6), ("$.total", 6), ("$.currency", 2)]
    assert report.by_tag["refunds"].json_diff_paths == ()


async def test_worst_pairs_are_the_worse_verdicts_spread_across_tags(
        database_url: str) -> None:
    await write(database_url, [*mix("support", worse=8, equivalent=20),
                               *mix("billing", worse=2, better=5, first=100)])
    worst = (await build_report(database_url, worst=6)).worst
    assert [w.tag for w in worst[:4]] == ["billing", "support", "billing", "support"]
    assert [w.tag for w in worst[4:]] == ["support", "support"]
    assert all(w.judge_reason == "The shadow gives the wrong date." for w in worst)
    assert worst[0].prompt.startswith("When will my order arrive? (#")
    assert worst[0].shadow.text == "Friday." and worst[0].primary.model == "gpt-4o"


async def test_error_drop_latency_and_cost_have_their_own_denominators(
        database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    support = (await build_report(database_url)).by_tag["support"]
    assert support.shadow_error_rate == pytest.approx(5 / (240 + 5))
    assert support.shadow_drop_rate == pytest.approx(3 / (240 + 5 + 3 + 2))
    assert support.shadow_outcomes == {"dropped": 3, "ok": 242, "skipped": 1, "timeout": 5}
    assert support.tool_call_pairs == 80
    assert support.tool_call_match == pytest.approx((80 - 24) / 80)
    assert support.latency_ms.primary.p50 == pytest.approx(1119.5)
    assert support.latency_ms.shadow.p50 == pytest.approx(719.5)
    assert support.ttft_ms.shadow.p95 < support.ttft_ms.primary.p95  # type: ignore[operator]
    assert support.cost_usd_per_1k.primary == pytest.approx(3.0)
    assert support.cost_usd_per_1k.shadow == pytest.approx(1.0)
    # 251 pairs in a window of ~20,000 minutes: saving of $0.002 each, scaled to 30 days.
    window_days = (20_019 / 60) / 24
    assert support.projection.saving_usd == pytest.approx(0.002 * 251 / window_days * 30)
    # The replays repeat the primary's answers: the exact tier settles them, no judge.
    assert support.noise_floor is not None
    assert (support.noise_floor.pairs, support.noise_floor.worse) == (240, 0)


async def test_filters_by_tag_and_since(database_url: str) -> None:
    await write(database_url, [*mix("support", worse=3, equivalent=10),
                               *mix("billing", worse=4, equivalent=6, first=1000)])
    only_billing = await build_report(database_url, tag="billing")
    assert list(only_billing.by_tag) == ["billing"]
    assert only_billing.overall.pairs == 10
    assert {w.tag for w in only_billing.worst} == {"billing"}
    since = verdicts.START + timedelta(minutes=1000)
    recent = await build_report(database_url, since=since)
    assert recent.overall.pairs == 10 and list(recent.by_tag) == ["billing"]
    assert recent.to_json()["window"]["since"] == since.isoformat()


async def test_projection_refused_under_an_hour_of_traffic(database_url: str) -> None:
    # 40 pairs 30 seconds apart: under 20 minutes of traffic.
    await store(database_url, [pair("support", i, minutes=0.5) for i in range(40)])
    report = await build_report(database_url)
    projection = report.overall.projection
    assert projection.saving_usd is None
    assert projection.refused is not None and "at least 1 hour" in projection.refused
    page = render_html(report)
    assert "no projection: only 20 minutes of traffic" in page
    assert "per 30 days" not in page.replace("no projection", "")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["role", "content", "type", "text", "messages"]),
                      inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_last_user_turn_takes_any_stored_body(request: Any) -> None:
    assert isinstance(last_user_turn(request), str)
    assert isinstance(last_user_turn({"messages": [{"role": "user", "content": request}]}),
                      str)


def test_last_user_turn_from_either_wire_format() -> None:
    openai = {"messages": [{"role": "user", "content": "first"},
                           {"role": "assistant", "content": "ok"},
                           {"role": "user", "content": [
                               {"type": "text", "text": "What is in"},
                               {"type": "image_url", "image_url": {"url": "data:…"}}]}]}
    assert last_user_turn(openai) == "What is in\n[image]"
    anthropic = {"system": "be brief", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Sum 2 and 2"}]}]}
    assert last_user_turn(anthropic) == "Sum 2 and 2"
    assert last_user_turn({"messages": "nope"}) == "" and last_user_turn(None) == ""


# --- HTML: rendered from fetched rows, no database needed ----------------------------

def _group(tag: str | None, pairs: int, worse: int, *, equivalent: int | None = None,
           hours: float = 24.0, primary_cost: float = 0.002,
           shadow_cost: float = 0.0005, models: tuple[str, ...] | None = None,
           **counts: int) -> TagFacts:
    """One tag's summed facts: ``pairs`` answered pairs, all with verdicts from the
    judge, latencies 900 ms and up (as the summaries' histograms)."""
    latencies = [900.0 + i for i in range(pairs)]
    same = pairs - worse if equivalent is None else equivalent
    facts: Counter[str] = Counter({
        "n.total": pairs, "n.outcome.ok": pairs, "n.verdict.equivalent": same,
        "n.verdict.better": pairs - worse - same, "n.verdict.worse": worse,
        "n.scored": pairs, "n.stop_matched": pairs, "n.attempted": pairs,
        "n.judge_calls": 2 * pairs, "usd.judge": 0.004 * pairs, "n.judge_pairs": pairs,
        "n.position_inconsistent": pairs // 10, "n.frame": pairs,
        "n.frame.equivalent": same, "n.frame.better": pairs - worse - same,
        "n.frame.worse": worse,
        "usd.primary": primary_cost * pairs, "usd.primary.n": pairs,
        "usd.shadow": shadow_cost * pairs, "usd.shadow.n": pairs,
    })
    for metric, values in (("primary_latency_ms", latencies),
                           ("shadow_latency_ms", [v - 400 for v in latencies]),
                           ("primary_ttft_ms", [200.0] * pairs),
                           ("shadow_ttft_ms", [150.0] * pairs)):
        facts.update(f"h.{metric}.{bucket_of(v)}" for v in values)
    facts.update({f"n.{name}": n for name, n in counts.items()})
    facts.update({f"n.{name}": n - facts[f"n.{name}"] for name, n in counts.items()})
    if models is None:
        models = ("primary:gpt-4o", "shadow:claude-haiku-4-5", "judge:gpt-4.1")
    return TagFacts(tag, START, START + timedelta(hours=hours), dict(facts), models, {})


def _exact(values: dict[str, list[float]]) -> dict[str, Distribution]:
    """Exact distributions, as a small scope's report gets them from SQL."""
    return {m: Distribution(**percentiles(v), cdf=tuple(cdf_points(v)), samples=len(v))
            for m, v in values.items()}


EVIL = "<script>alert(1)</script>"


def _evil_report() -> Report:
    groups = [_group(EVIL, 40, 10), _group(None, 1, 0)]
    worst = [{
        "id": uuid.uuid4(), "tag": EVIL, "received_at": START,
        "request": {"messages": [{"role": "user", "content": f"Add 2 and 2 {EVIL}"}]},
        "primary_model": "gpt-4o", "shadow_model": "claude-haiku-4-5",
        "primary_text": f"The answer is 4. {EVIL}", "shadow_text": f"It is five. {EVIL}",
        "primary_tool_calls": [{"name": "f", "arguments": {"q": EVIL}}],
        "shadow_tool_calls": [], "primary_stop_reason": "end_turn",
        "shadow_stop_reason": "end_turn", "verdict_method": "judge",
        "judge_model": "gpt-4.1", "judge_reason": f"Five is wrong. {EVIL}",
        "json_diff_paths": [f"$.{EVIL}"],
    }]
    return assemble_report(groups, worst)


def test_html_escapes_model_text_prompts_judge_reasons_and_tag_names() -> None:
    page = render_html(_evil_report())
    assert "<script" not in page.lower()
    assert "Tag: &lt;script&gt;" in page
    assert "Five is wrong. &lt;script&gt;alert(1)&lt;/script&gt;" in page  # the reason
    assert "Add 2 and 2 &lt;script&gt;" in page  # the user's prompt
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_is_self_contained() -> None:
    page = render_html(_evil_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page  # the CDF charts, inline
    # Nothing to fetch: no external scripts, stylesheets, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_html_shows_verdicts_with_intervals_judge_models_and_window() -> None:
    page = render_html(_evil_report())
    assert "25.0%" in page  # worse in the tagged scope: 10 of 40
    assert "worse (95% CI)" in page and "14.2% to 40.2%" in page  # Wilson, 10 of 40
    assert "cost per 1,000 requests" in page and "$2.00" in page and "$0.500" in page
    assert "p95" in page and "time to first token" in page
    assert "primary: gpt-4o · shadow: claude-haiku-4-5 · judge: gpt-4.1" in page
    assert "2026-03-01 00:00:00 to 2026-03-02 00:00:00 UTC (24.0 hours)" in page
    assert "80 calls" in page
    assert "position-inconsistent in 10.0% of the 40 pairs the judge decided" in page


def test_html_heads_with_the_gate_verdict_and_says_what_is_compared() -> None:
    report = _evil_report()
    result: GateResult = evaluate(report, parse_policy({"max_worse_rate": 0.2,
                                                        "per_tag": True}))
    page = render_html(report, result)
    assert "FAIL" in page and "max_worse_rate" in page
    assert "upper bound of 95% CI 40.2% ≤ 20.0%" in page
    assert '<span class="mark fail">fail</span>' in page  # the tag's own mark


def test_a_dearer_shadow_reads_as_an_extra_cost_not_a_negative_saving() -> None:
    report = assemble_report([_group("support", 50, 1, primary_cost=0.0004,
                                     shadow_cost=0.0010, hours=72)], [])
    page = render_html(report)
    assert "costs $" in page and "more per 30 days" in page
    assert "$-" not in page and "-$" not in page
    assert "the shadow costs 150% more per request" in page


def test_costs_carry_enough_digits_for_the_ratio_beside_them() -> None:
    assert usd(0.0412) == "$0.0412" and usd(0.0358) == "$0.0358"
    assert usd(2.0) == "$2.00" and usd(1234.5) == "$1,234.50"
    report = assemble_report([_group("support", 50, 1, primary_cost=0.0000412,
                                     shadow_cost=0.0000358)], [])
    page = render_html(report)
    assert "$0.0412" in page and "$0.0358" in page and "0.87x" in page


def test_nothing_judged_never_reads_as_no_worse_pairs() -> None:
    group = _group("support", 20, 0, equivalent=0, scored=0, unscored=20)
    group.facts.update({"n.verdict.better": 0, "n.frame.better": 0})  # type: ignore[attr-defined]
    report = assemble_report([group], [])
    page = render_html(report)
    assert "No pair has a verdict yet" in page
    assert "judged worse." not in page


async def test_unjudged_advice_reaches_the_page(database_url: str) -> None:
    await store(database_url, traffic("support", 30, 3))
    report = await build_report(database_url)
    assert report.overall.pairs == 0 and report.overall.agreement is None
    assert report.overall.pairs_unscored == 41
    assert "run `shadowproxy diff`" in render_html(report)


def test_word_diff_marks_inserted_and_deleted_words() -> None:
    left, right = word_diff("the cat sat on the mat", "the dog sat on the mat")
    assert ("del", "cat") in left and ("ins", "dog") in right
    assert "".join(t for _, t in left) == "the cat sat on the mat"
    page = render_html(_evil_report())
    assert "<del>" in page and "<ins>" in page


def test_charts_mark_few_points_and_stay_small_for_many() -> None:
    five = [900.0 + i for i in range(5)]
    few = render_html(assemble_report([_group("support", 5, 1)], [], exact={
        "support": _exact({"primary_latency_ms": five,
                           "shadow_latency_ms": [v - 400 for v in five]})}))
    assert few.count('class="dot') >= 10  # every request of both sides is a marker
    assert "Latency (5 requests)" in few
    flat = render_html(assemble_report([_group("support", 3, 0)], [], exact={
        "support": _exact({"primary_latency_ms": [700.0] * 3,
                           "shadow_latency_ms": [700.0] * 3})}))
    assert "Latency (3 requests)" in flat and 'class="dot' in flat  # a width, not a line
    many = render_html(assemble_report([_group("support", 100_000, 5_000)], []))
    assert 'class="dot' not in many and "Latency (100,000 requests)" in many
    assert len(many) < 400_000  # the CDF is sampled, not 100,000 points per side


def test_without_a_judge_the_page_says_one_is_needed_and_qualifies_the_shares() -> None:
    group = _group("support", 40, 0, models=("primary:gpt-4o", "shadow:claude-haiku-4-5"),
                   total=340, attempted=340, frame=340)
    group.facts.update({"n.outcome.ok": 340,  # type: ignore[attr-defined]
                        "unjudged.no judge configured": 300})
    page = render_html(assemble_report([group], []))
    assert "A judge is needed: 300 of 340 pairs could not be compared" in page
    assert "so they flatter the shadow" in page
    assert "no judge: identical answers only" in page
    assert "judge: none configured" in page


async def test_report_command_prints_the_documented_json(database_url: str) -> None:
    import asyncio
    import os
    import sys

    await write(database_url, mix("support", worse=3, equivalent=17))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "report", "--format", "json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    payload = json.loads(out)
    support = payload["by_tag"]["support"]
    assert set(support) >= SCOPE_KEYS
    assert support["verdicts"] == {"equivalent": 17, "better": 0, "worse": 3, "unjudged": 0}
    assert support["worse_rate"] == pytest.approx(0.15)


async def test_conversations_with_a_worse_shadow_and_the_turn_it_first_happens(
        database_url: str) -> None:
    """Three support conversations of three turns: one goes worse at turn 2, one at turn 3,
    one never; the report counts conversations, not pairs."""
    rows: list[tuple[Any, Judged]] = []
    plan = {"a": ["equivalent", "worse", "worse"], "b": ["equivalent", "equivalent", "worse"],
            "c": ["equivalent", "equivalent", "equivalent"]}
    for conversation, verdict_by_turn in plan.items():
        for turn, verdict in enumerate(verdict_by_turn, start=1):
            record = pair("support", len(rows))
            record.conversation_id, record.turn = f"conv-{conversation}", turn
            rows.append((record, Judged(verdict)))
    await write(database_url, rows)
    report = await build_report(database_url)
    support = report.conversations["support"]
    assert (support.conversations, support.with_worse) == (3, 2)
    assert dict(support.first_worse_turns) == {2: 1, 3: 1}
    assert report.to_json()["conversations"]["support"]["worse_share"] == pytest.approx(2 / 3)
    html = render_html(report)
    assert "2 of 3 conversations (66.7%) have a shadow answer judged worse" in html
    assert "turn 2: 1, turn 3: 1" in html


async def test_a_retired_primary_is_named_with_its_errors_since_that_day(
        database_url: str) -> None:
    """claude-sonnet-4-5 retired on 30 November 2026: the report says so above
    everything else, with the share of its pairs since then that failed at the
    provider, counted by PostgreSQL. The day and the end-of-life data are the test's."""
    retired_on = datetime(2026, 11, 30, tzinfo=UTC)
    rows: list[tuple[Any, Judged]] = []
    for i, (day, status) in enumerate([(-2, 200), (-1, 200), (0, 404), (1, 404), (2, 200)]):
        record, judged = mix("support", equivalent=1, first=i)[0]
        record.received_at = retired_on + timedelta(days=day, hours=1)
        record.primary.model = "claude-sonnet-4-5"
        if status >= 400:
            record.primary.status, record.primary.error = status, "not_found_error: model"
            judged = Judged(None)
        rows.append((record, judged))
    await write(database_url, rows)
    data = LifecycleData({"claude-sonnet-4-5": ModelLifecycle(
        "claude-sonnet-4-5", "deprecated", date(2026, 11, 30), source="our table")})

    report = await build_report(database_url, lifecycle=data.as_of(date(2026, 12, 3)))
    (notice,) = report.lifecycle
    line = "claude-sonnet-4-5 retired on 2026-11-30: its requests fail at the provider"
    assert (notice.role, notice.message) == ("primary", line)
    assert (notice.pairs_since, notice.errors_since) == (3, 2)
    payload = json.loads(json.dumps(report.to_json(), default=str))
    assert payload["lifecycle_warnings"] == [line]
    assert payload["lifecycle"][0] | {"error_share_since": None} == {
        "role": "primary", "model": "claude-sonnet-4-5", "state": "retired",
        "date": "2026-11-30", "source": "our table", "message": line, "pairs_since": 3,
        "errors_since": 2, "error_share_since": None}
    assert payload["lifecycle"][0]["error_share_since"] == pytest.approx(2 / 3)
    page = render_html(report)
    assert line in page
    assert "Since 2026-11-30, 2 of its 3 pairs (66.7%) had a primary error." in page
    assert "haiku" not in " ".join(report.lifecycle_warnings)

    before = await build_report(database_url, lifecycle=data.as_of(date(2026, 11, 28)))
    (notice,) = before.lifecycle
    assert notice.message == ("claude-sonnet-4-5 is deprecated and retires on 2026-11-30 "
                              "(in 2 days)") and notice.pairs_since is None
    assert (await build_report(database_url)).lifecycle == ()  # no day, no data: no notice


async def test_ttft_rows_say_they_cover_streamed_requests_only(database_url: str) -> None:
    """TTFT exists for streamed requests, latency for all: the rows say so, with n."""
    rows = mix("support", equivalent=5)
    for i, (record, _) in enumerate(rows):
        record.stream = i < 2
        if not record.stream:
            record.primary.ttft_ms = record.shadow.ttft_ms = None
    await write(database_url, rows)
    report = await build_report(database_url)
    assert report.to_json()["overall"]["ttft_streamed_pairs"] == 2
    page = render_html(report)
    for q in ("p50", "p95", "p99"):
        assert re.search(rf"time to first token {q}<br><span[^>]*>streamed requests only "
                         r"\(n = 2\)</span>", page)
    assert "Latency (5 requests)" in page

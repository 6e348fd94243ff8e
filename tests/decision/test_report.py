"""The report: numbers a release manager signs off on, as JSON and as one HTML file."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.gate import GateResult, evaluate, parse_policy
from shadowproxy.decision.report import assemble_report, build_report
from shadowproxy.decision.report_html import render_html, word_diff
from tests.fakes.traffic import ANSWER, START, seeded, store, traffic


async def test_agreement_per_tag_matches_the_truth(database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    report = await build_report(database_url)
    json.dumps(report)  # the --format json output must serialise as is

    support, billing = report["by_tag"]["support"], report["by_tag"]["billing"]
    for numbers, truth, pairs in ((support, 0.70, 240), (billing, 0.95, 160)):
        assert numbers["pairs"] == pairs  # timeouts, drops, failed primaries left out
        assert numbers["agreement"] == pytest.approx(truth, abs=0.03)
        low, high = numbers["agreement_ci95"]
        assert low < truth < high
    assert set(report["by_tag"]) == {"support", "billing"}  # untagged: overall only
    assert report["overall"]["pairs"] == 240 + 160 + 20
    assert report["overall"]["pairs_unscored"] == 0


async def test_error_drop_latency_and_cost_have_their_own_denominators(
        database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    support = (await build_report(database_url))["by_tag"]["support"]
    assert support["shadow_error_rate"] == pytest.approx(5 / (240 + 5))
    assert support["shadow_drop_rate"] == pytest.approx(3 / (240 + 5 + 3 + 2))
    assert support["shadow_outcomes"] == {"dropped": 3, "ok": 242, "skipped": 1, "timeout": 5}
    assert support["tool_call_pairs"] == 80
    assert support["tool_call_match"] == pytest.approx((80 - 24) / 80)
    latency = support["latency_ms"]
    assert latency["primary"]["p50"] == pytest.approx(1119.5)
    assert latency["shadow"]["p50"] == pytest.approx(719.5)
    assert support["ttft_ms"]["shadow"]["p95"] < support["ttft_ms"]["primary"]["p95"]
    assert support["cost_usd_per_1k"] == {"primary": pytest.approx(3.0),
                                          "shadow": pytest.approx(1.0)}
    # 251 pairs in a window of ~20,000 minutes: saving of $0.002 each, scaled to 30 days.
    window_days = (20_019 / 60) / 24
    assert support["projected_saving_usd"] == pytest.approx(0.002 * 251 / window_days * 30)
    assert support["noise_floor"]["agreement"] == 1.0
    assert support["noise_floor"]["pairs"] == 240


async def test_noise_floor_is_null_without_replays(database_url: str) -> None:
    await store(database_url, traffic("billing", 20, 2))
    await run_diff(database_url, progress=False)
    assert (await build_report(database_url))["overall"]["noise_floor"] is None


async def test_unscored_pairs_are_counted_but_not_judged(database_url: str) -> None:
    await store(database_url, traffic("support", 30, 3))
    report = await build_report(database_url)
    assert report["overall"]["pairs"] == 0 and report["overall"]["agreement"] is None
    assert report["overall"]["pairs_unscored"] == 41
    assert "run `shadowproxy diff`" in render_html(report)


async def test_filters_by_tag_and_since(database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    only_billing = await build_report(database_url, tag="billing")
    assert list(only_billing["by_tag"]) == ["billing"]
    assert only_billing["overall"]["pairs"] == 160
    assert all(w["tag"] == "billing" for w in only_billing["worst"])
    recent = await build_report(database_url, since=START + timedelta(minutes=20_000))
    assert recent["overall"]["pairs"] == 20 and recent["by_tag"] == {}
    assert recent["window"]["since"] == (START + timedelta(minutes=20_000)).isoformat()


async def test_worst_disagreements_come_least_similar_first(database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    worst = (await build_report(database_url, worst=5))["worst"]
    assert len(worst) == 5
    similarities = [w["text_similarity"] for w in worst]
    assert similarities == sorted(similarities)
    assert {w["primary"]["text"] for w in worst} <= {ANSWER, ""}
    assert worst[0]["id"] and worst[0]["tag"] in ("support", "billing")


# --- HTML: rendered from a report dict, no database needed -------------------------

def _group(tag: str | None, pairs: int, agreed: int) -> dict[str, Any]:
    """One group row of the summary query: ``pairs`` judged pairs, all answered."""
    latencies = [900.0 + i for i in range(pairs)]
    return {
        "tag": tag, "total": pairs, "unscored": 0, "outcome_ok": pairs, "outcome_error": 0,
        "outcome_timeout": 0, "outcome_dropped": 0, "outcome_skipped": 0, "judged": pairs,
        "agreed": agreed, "stop_matched": pairs, "tool_pairs": 0, "tool_matched": 0,
        "attempted": pairs, "shadow_failed": 0, "replays": 0, "replay_agreed": 0,
        "first": START, "last": START + timedelta(days=1),
        "primary_latency_ms": latencies, "shadow_latency_ms": [v - 400 for v in latencies],
        "primary_ttft_ms": [200.0] * pairs, "shadow_ttft_ms": [150.0] * pairs,
        "primary_cost_usd": [0.002] * pairs, "shadow_cost_usd": [0.0005] * pairs,
    }


EVIL = "<script>alert(1)</script>"


def _evil_report() -> dict[str, Any]:
    groups = [_group(EVIL, 40, 30), _group(None, 1, 1)]
    worst = [{
        "id": uuid.uuid4(), "tag": EVIL, "received_at": START, "text_similarity": 0.12,
        "primary_text": f"The answer is 4. {EVIL}", "shadow_text": f"It is five. {EVIL}",
        "primary_tool_calls": [{"name": "f", "arguments": {"q": EVIL}}],
        "shadow_tool_calls": [], "primary_stop_reason": "end_turn",
        "shadow_stop_reason": "end_turn",
    }]
    return assemble_report(groups, worst)


def test_html_escapes_model_text_and_tag_names() -> None:
    page = render_html(_evil_report())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Tag: &lt;script&gt;" in page


def test_html_is_self_contained() -> None:
    page = render_html(_evil_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page  # the CDF charts, inline
    # Nothing to fetch: no external scripts, stylesheets, images or fonts.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_html_shows_the_numbers_side_by_side() -> None:
    page = render_html(_evil_report())
    assert "75.0%" in page  # agreement of the tagged scope: 30 of 40
    assert "cost per 1,000 requests" in page and "$2.00" in page and "$0.50" in page
    assert "p95" in page and "time to first token" in page


def test_html_heads_with_the_gate_verdict_when_given() -> None:
    report = _evil_report()
    result: GateResult = evaluate(report, parse_policy({"min_agreement": 0.9}))
    page = render_html(report, result)
    assert "FAIL" in page and "min_agreement" in page


def test_word_diff_marks_inserted_and_deleted_words() -> None:
    left, right = word_diff("the cat sat on the mat", "the dog sat on the mat")
    assert ("del", "cat") in left and ("ins", "dog") in right
    assert "".join(t for _, t in left) == "the cat sat on the mat"
    page = render_html(_evil_report())
    assert "<del>" in page and "<ins>" in page

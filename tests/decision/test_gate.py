"""The gate: a policy file and a report give an exit code a CI pipeline can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shadowproxy.decision.gate import Policy as GatePolicy
from shadowproxy.decision.gate import PolicyError, Verdict, evaluate, format_table, load_policy


def scope(pairs: int = 500, agreed: float = 0.95, **kw: Any) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "pairs": pairs,
        "agreement": agreed,
        "agreement_ci95": [agreed - 0.02, min(1.0, agreed + 0.02)],
        "tool_call_match": 0.98,
        "shadow_error_rate": 0.004,
        "latency_ms": {"primary": {"p50": 400.0, "p95": 1000.0, "p99": 1500.0},
                       "shadow": {"p50": 300.0, "p95": 800.0, "p99": 1200.0}},
        "cost_usd_per_1k": {"primary": 3.0, "shadow": 1.0},
    }
    numbers.update(kw)
    return numbers


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(body)
    return path


PRODUCT_EXAMPLE = """
min_pairs = 200               # fewer scored pairs: exit 2, "not enough data"
min_agreement = 0.90          # judged on the lower bound of the 95% interval
min_tool_call_match = 0.95
max_shadow_error_rate = 0.01
max_p95_latency_ratio = 1.0   # shadow p95 / primary p95
max_cost_ratio = 0.5          # shadow cost / primary cost
per_tag = true                # every tag must pass on its own
"""


def test_the_documented_policy_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, PRODUCT_EXAMPLE))
    assert policy.min_pairs == 200 and policy.min_agreement == 0.9 and policy.per_tag
    assert policy.max_p95_latency_ratio == 1.0  # a TOML integer or float both work


@pytest.mark.parametrize(("body", "named"), [
    ("min_agreemnt = 0.9", "min_agreemnt"),
    ('min_agreement = "high"', "min_agreement"),
    ("min_agreement = 90", "min_agreement"),
    ("min_pairs = 1.5", "min_pairs"),
    ("per_tag = 1", "per_tag"),
    ("max_cost_ratio = true", "max_cost_ratio"),
    ("min_pairs = ", "not valid TOML"),
])
def test_a_bad_policy_is_one_line_naming_the_key(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, body))
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.toml")


def test_good_numbers_pass_with_exit_0(tmp_path: Path) -> None:
    report = {"overall": scope(), "by_tag": {"search": scope()}}
    result = evaluate(report, load_policy(write(tmp_path, PRODUCT_EXAMPLE)))
    assert result.verdict is Verdict.PASS and result.exit_code == 0
    assert {c.scope for c in result.criteria} == {"overall", "tag:search"}


def test_agreement_is_judged_on_the_lower_bound() -> None:
    # 0.91 observed, but the interval reaches down to 0.89: not good enough for 0.90.
    result = evaluate({"overall": scope(agreed=0.91), "by_tag": {}},
                      GatePolicy(min_agreement=0.90))
    assert result.exit_code == 1
    row = next(c for c in result.criteria if c.criterion == "min_agreement")
    assert row.observed == pytest.approx(0.89) and row.passed is False


def test_one_failing_tag_fails_the_gate_only_with_per_tag() -> None:
    report = {"overall": scope(), "by_tag": {"ok": scope(), "slow": scope(
        latency_ms={"primary": {"p95": 100.0}, "shadow": {"p95": 250.0}})}}
    policy = GatePolicy(max_p95_latency_ratio=1.0)
    assert evaluate(report, policy).exit_code == 0
    per_tag = evaluate(report, GatePolicy(max_p95_latency_ratio=1.0, per_tag=True))
    assert per_tag.exit_code == 1
    failed = [c for c in per_tag.criteria if c.passed is False]
    assert [(c.scope, c.criterion, c.observed) for c in failed] == [
        ("tag:slow", "max_p95_latency_ratio", 2.5)]


def test_too_few_pairs_anywhere_judged_is_not_enough_data() -> None:
    report = {"overall": scope(pairs=900), "by_tag": {"rare": scope(pairs=12, agreed=0.5)}}
    result = evaluate(report, GatePolicy(min_pairs=200, min_agreement=0.9, per_tag=True))
    assert result.verdict is Verdict.INSUFFICIENT and result.exit_code == 2
    assert evaluate(report, GatePolicy(min_pairs=200, min_agreement=0.9)).exit_code == 0


def test_no_pairs_at_all_is_not_enough_data_even_without_min_pairs() -> None:
    empty = scope(pairs=0, agreement=None, agreement_ci95=None, tool_call_match=None,
                  shadow_error_rate=None)
    assert evaluate({"overall": empty, "by_tag": {}}, GatePolicy(min_agreement=0.5)
                    ).exit_code == 2


def test_unavailable_numbers_are_na_and_do_not_decide() -> None:
    report = {"overall": scope(tool_call_match=None,
                               cost_usd_per_1k={"primary": None, "shadow": 1.0}),
              "by_tag": {}}
    result = evaluate(report, GatePolicy(min_tool_call_match=0.95, max_cost_ratio=0.5))
    assert result.exit_code == 0
    assert [c.result for c in result.criteria] == ["pass", "n/a", "n/a"]


def test_table_and_json_say_the_same_thing() -> None:
    report = {"overall": scope(shadow_error_rate=0.05), "by_tag": {}}
    result = evaluate(report, GatePolicy(max_shadow_error_rate=0.01))
    table = format_table(result)
    assert "max_shadow_error_rate" in table and "5.0%" in table and "FAIL" in table
    assert table.splitlines()[-1] == "verdict: FAIL (exit 1)"
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["verdict"] == "fail" and payload["exit_code"] == 1
    assert payload["criteria"][1] == {
        "scope": "overall", "criterion": "max_shadow_error_rate", "observed": 0.05,
        "threshold": 0.01, "passed": False, "insufficient": False}


# --- against a real report -----------------------------------------------------------

async def test_policy_around_the_truth_decides_on_real_traffic(database_url: str) -> None:
    from shadowproxy.decision.diff import run_diff
    from shadowproxy.decision.report import build_report
    from tests.fakes.traffic import seeded

    await seeded(database_url)
    await run_diff(database_url, progress=False)
    report = await build_report(database_url)
    support = report["by_tag"]["support"]  # truth: 70% agree (billing: 95%)
    low = support["agreement_ci95"][0]

    def gate(**policy: Any) -> int:
        return evaluate(report, GatePolicy(per_tag=True, **policy)).exit_code

    assert gate(min_agreement=0.71) == 1  # just above the truth
    assert gate(min_agreement=low - 0.01) == 0  # just below the interval's lower bound
    # Shadow errors: 5 of 245 in support, 5 of 165 (3.03%) in billing, the worst tag.
    assert gate(max_shadow_error_rate=0.029) == 1
    assert gate(max_shadow_error_rate=0.031) == 0
    assert gate(min_pairs=241, min_agreement=0.1) == 2  # support has 240 scored pairs
    assert gate(min_pairs=160, max_cost_ratio=0.34, max_p95_latency_ratio=0.7) == 0

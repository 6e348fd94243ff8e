"""The gate: a policy file and a report give an exit code a CI pipeline can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shadowproxy.decision.gate import Policy as GatePolicy
from shadowproxy.decision.gate import PolicyError, Verdict, evaluate, format_table, load_policy
from shadowproxy.decision.report_model import (
    Costs,
    JudgeSummary,
    Models,
    NoiseFloor,
    Percentiles,
    Report,
    ScopeSummary,
    Timing,
    Unjudged,
    UnjudgedCause,
    Verdicts,
    Window,
    project,
)
from shadowproxy.decision.stats import newcombe_difference, wilson_interval


def scope(pairs: int = 500, agreed: float = 0.95, *, worse: float | None = None,
          no_judge: int = 0, replays: int = 0, replay_worse: int = 0,
          tool_call_match: float | None = 0.98, shadow_error_rate: float | None = 0.004,
          latency_p95: tuple[float, float] = (1000.0, 800.0),
          cost: tuple[float | None, float | None] = (3.0, 1.0)) -> ScopeSummary:
    """A scope with ``pairs`` verdicts: ``agreed`` equivalent, the rest worse unless
    ``worse`` says otherwise (then the remainder is better)."""
    equivalent = round(pairs * agreed)
    bad = pairs - equivalent if worse is None else round(pairs * worse)
    attempted = 1000

    def rate(share: float | None, n: int) -> tuple[int, int]:
        return (0, 0) if share is None else (round(share * n), n)

    tool_hits, tool_pairs = rate(tool_call_match, 100)
    failed, _ = rate(shadow_error_rate, attempted)
    return ScopeSummary(
        pairs_total=pairs + no_judge, pairs_unscored=0,
        verdicts=Verdicts(equivalent, pairs - equivalent - bad, bad, no_judge),
        unjudged=(Unjudged(UnjudgedCause.NO_JUDGE, no_judge),) if no_judge else (),
        judge=JudgeSummary(), noise_floor=NoiseFloor(replays, replay_worse) if replays else None,
        tool_call_pairs=tool_pairs, tool_call_matched=tool_hits,
        stop_reason_pairs=pairs, stop_reason_matched=pairs,
        shadow_attempted=attempted if shadow_error_rate is not None else 0,
        shadow_failed=failed, mirrored=attempted, shadow_outcomes={"ok": attempted},
        latency_ms=Timing(Percentiles(400.0, latency_p95[0], 1500.0),
                          Percentiles(300.0, latency_p95[1], 1200.0)),
        ttft_ms=Timing(), cost_usd_per_1k=Costs(*cost),
        projection=project(Costs(*cost), pairs, 48.0), json_diff_paths=(), models=Models(),
    )


def report_of(overall: ScopeSummary, **by_tag: ScopeSummary) -> Report:
    return Report(generated_at=datetime.now(UTC), window=Window(), tag_filter=None,
                  overall=overall, by_tag=by_tag)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(body)
    return path


PRODUCT_EXAMPLE = """
min_pairs = 200               # fewer pairs with a verdict: exit 2, "not enough data"
max_worse_rate = 0.05         # judged on the upper bound of the 95% interval
max_worse_rate_over_noise = 0.02  # worse_rate minus the noise floor's, upper bound
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
    assert policy.max_worse_rate == 0.05 and policy.max_worse_rate_over_noise == 0.02


@pytest.mark.parametrize(("body", "named"), [
    ("min_agreemnt = 0.9", "min_agreemnt"),
    ('min_agreement = "high"', "min_agreement"),
    ("min_agreement = 90", "min_agreement"),
    ("max_worse_rate = 5", "max_worse_rate"),
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
    good = scope(agreed=0.97, worse=0.01, replays=400, replay_worse=4)
    report = report_of(good, search=good)
    result = evaluate(report, load_policy(write(tmp_path, PRODUCT_EXAMPLE)))
    assert result.verdict is Verdict.PASS and result.exit_code == 0
    assert {c.scope for c in result.criteria} == {"overall", "tag:search"}


def test_agreement_is_judged_on_the_lower_bound() -> None:
    # 0.91 observed over 500 pairs, but the interval reaches down to 0.882.
    result = evaluate(report_of(scope(agreed=0.91)), GatePolicy(min_agreement=0.90))
    assert result.exit_code == 1
    row = next(c for c in result.criteria if c.criterion == "min_agreement")
    assert row.observed == pytest.approx(wilson_interval(455, 500)[0])
    assert row.passed is False
    assert row.compared == f"lower bound of 95% CI {row.observed:.1%} ≥ 90.0%"


def test_worse_rate_is_judged_on_the_upper_bound_and_flips_around_it() -> None:
    report = report_of(scope(pairs=400, agreed=0.96, worse=0.03))  # 12 of 400 worse
    upper = wilson_interval(12, 400)[1]  # about 5.2%: above the observed 3%

    def gate(threshold: float) -> int:
        return evaluate(report, GatePolicy(max_worse_rate=threshold)).exit_code

    assert gate(0.04) == 1  # the observed 3% is below, but the sample cannot show it
    assert gate(upper - 0.001) == 1 and gate(upper + 0.001) == 0
    row = evaluate(report, GatePolicy(max_worse_rate=0.05)).criteria[1]
    assert row.compared == "upper bound of 95% CI 5.2% ≤ 5.0%" and row.result == "fail"


def test_worse_rate_over_the_noise_floor_uses_newcombes_interval() -> None:
    # The shadow is worse in 30 of 300, the current model against itself in 18 of 300.
    numbers = scope(pairs=300, agreed=0.9, worse=0.1, replays=300, replay_worse=18)
    report = report_of(numbers)
    upper = newcombe_difference(30, 300, 18, 300)[1]
    row = evaluate(report, GatePolicy(max_worse_rate_over_noise=0.1)).criteria[1]
    assert row.criterion == "max_worse_rate_over_noise"
    assert row.observed == pytest.approx(upper) and row.passed is True
    assert row.compared.startswith("upper bound of 95% CI of the difference ")
    assert evaluate(report, GatePolicy(max_worse_rate_over_noise=upper - 0.001)
                    ).exit_code == 1
    # Without replays there is no floor: n/a, not a pass or a fail.
    bare = evaluate(report_of(scope(pairs=300, agreed=0.9, worse=0.1)),
                    GatePolicy(max_worse_rate_over_noise=0.01))
    assert bare.criteria[1].result == "n/a" and bare.exit_code == 0


def test_one_failing_tag_fails_the_gate_only_with_per_tag() -> None:
    report = report_of(scope(), ok=scope(), slow=scope(latency_p95=(100.0, 250.0)))
    policy = GatePolicy(max_p95_latency_ratio=1.0)
    assert evaluate(report, policy).exit_code == 0
    per_tag = evaluate(report, GatePolicy(max_p95_latency_ratio=1.0, per_tag=True))
    assert per_tag.exit_code == 1
    failed = [c for c in per_tag.criteria if c.passed is False]
    assert [(c.scope, c.criterion, c.observed) for c in failed] == [
        ("tag:slow", "max_p95_latency_ratio", 2.5)]


def test_too_few_pairs_anywhere_judged_is_not_enough_data() -> None:
    report = report_of(scope(pairs=900), rare=scope(pairs=12, agreed=0.5))
    result = evaluate(report, GatePolicy(min_pairs=200, min_agreement=0.9, per_tag=True))
    assert result.verdict is Verdict.INSUFFICIENT and result.exit_code == 2
    assert "tag:rare: 12 pairs with a verdict, 200 needed" in format_table(result)
    assert evaluate(report, GatePolicy(min_pairs=200, min_agreement=0.9)).exit_code == 0


def test_a_clear_failure_beats_a_tag_without_enough_data() -> None:
    # Overall: 25% worse over 900 pairs; one tag has too few pairs to say anything.
    report = report_of(scope(pairs=900, agreed=0.75), rare=scope(pairs=12, agreed=1.0))
    result = evaluate(report, GatePolicy(min_pairs=200, max_worse_rate=0.05, per_tag=True))
    assert result.verdict is Verdict.FAIL and result.exit_code == 1
    rows = {(c.scope, c.criterion): c.result for c in result.criteria}
    assert rows[("overall", "max_worse_rate")] == "fail"
    assert rows[("tag:rare", "max_worse_rate")] == "not enough data"


def test_without_a_judge_the_gate_says_a_judge_is_needed() -> None:
    # 300 pairs matched exactly (equivalent without a judge); 700 free-form pairs wait.
    report = report_of(scope(pairs=300, agreed=1.0, no_judge=700))
    result = evaluate(report, GatePolicy(min_pairs=200, min_agreement=0.9,
                                         max_worse_rate=0.05))
    assert result.verdict is Verdict.INSUFFICIENT and result.exit_code == 2
    table = format_table(result)
    assert "700 pairs unjudged because no judge is configured" in table
    assert "SHADOWPROXY_JUDGE_MODEL" in table
    assert not any(c.passed is False for c in result.criteria)
    # Nor a FAIL from whatever few pairs were compared without one.
    harsh = evaluate(report_of(scope(pairs=300, agreed=0.5, no_judge=700)),
                     GatePolicy(max_worse_rate=0.01))
    assert harsh.exit_code == 2


def test_no_pairs_at_all_is_not_enough_data_even_without_min_pairs() -> None:
    empty = scope(pairs=0, tool_call_match=None, shadow_error_rate=None)
    assert evaluate(report_of(empty), GatePolicy(min_agreement=0.5)).exit_code == 2


def test_unavailable_numbers_are_na_and_do_not_decide() -> None:
    report = report_of(scope(tool_call_match=None, cost=(None, 1.0)))
    result = evaluate(report, GatePolicy(min_tool_call_match=0.95, max_cost_ratio=0.5))
    assert result.exit_code == 0
    assert [c.result for c in result.criteria] == ["pass", "n/a", "n/a"]


def test_table_and_json_say_the_same_thing() -> None:
    report = report_of(scope(shadow_error_rate=0.05))
    result = evaluate(report, GatePolicy(max_shadow_error_rate=0.01))
    table = format_table(result)
    assert "max_shadow_error_rate" in table and "5.0% ≤ 1.0%" in table and "FAIL" in table
    assert table.splitlines()[-1] == "verdict: FAIL (exit 1)"
    payload = json.loads(json.dumps(result.to_json()))
    assert payload["verdict"] == "fail" and payload["exit_code"] == 1
    assert payload["criteria"][1] == {
        "scope": "overall", "criterion": "max_shadow_error_rate", "observed": 0.05,
        "threshold": 0.01, "passed": False, "insufficient": False, "basis": "observed",
        "compared": "5.0% ≤ 1.0%", "note": None}


# --- against a real report -----------------------------------------------------------

async def test_policy_around_the_truth_decides_on_judged_traffic(database_url: str) -> None:
    from shadowproxy.decision.report import build_report
    from tests.fakes.verdicts import mix
    from tests.fakes.verdicts import write as write_judged

    # Truth: 20% worse in "support" (60 of 300), 5% in "billing" (15 of 300).
    await write_judged(database_url, [
        *mix("support", worse=60, better=15, equivalent=225),
        *mix("billing", worse=15, better=15, equivalent=270, first=300)])
    report = await build_report(database_url)
    support = report.by_tag["support"]
    assert support.worse_rate == pytest.approx(0.20)
    interval = support.worse_rate_ci95
    assert interval is not None and interval.low < 0.20 < interval.high

    def gate(**policy: Any) -> int:
        return evaluate(report, GatePolicy(per_tag=True, **policy)).exit_code

    assert gate(max_worse_rate=interval.high + 0.002) == 0  # just above: pass
    assert gate(max_worse_rate=interval.high - 0.002) == 1  # just below: fail
    assert gate(max_worse_rate=0.21) == 1  # above the observed 20%, below the bound
    assert gate(min_pairs=301, max_worse_rate=0.5) == 2  # each tag has 300


async def test_gate_command_without_a_judge_exits_2_naming_the_judge(
        database_url: str, tmp_path: Path) -> None:
    import asyncio
    import os
    import sys

    from tests.fakes.verdicts import NO_JUDGE, Judged, mix, pair
    from tests.fakes.verdicts import write as write_judged

    # What ``diff`` leaves without JUDGE_MODEL: identical answers equivalent (exact),
    # every free-form pair unjudged. Even a harsh policy must not FAIL on that.
    await write_judged(database_url, [
        *mix("support", equivalent=250, method="exact", judge_model=None, calls=0,
             cost_usd=0.0),
        *[(pair("support", 300 + i), Judged("unjudged", method=None, reason=NO_JUDGE))
          for i in range(400)]])
    policy = write(tmp_path, "min_pairs = 200\nmax_worse_rate = 0.05\nmin_agreement = 0.99\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadowproxy", "gate", "--policy", str(policy), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, err.decode()
    text = out.decode()
    assert "400 pairs unjudged because no judge is configured" in text
    assert "SHADOWPROXY_JUDGE_MODEL" in text
    assert text.strip().splitlines()[-1] == "verdict: NOT ENOUGH DATA (exit 2)"


# --- people's labels: min_human_labels, the calibrated interval, min_judge_kappa -------

def _reviewed(frame: dict[str, int], labelled: dict[tuple[str, str], int], *,
              decided: int = 0, **shape: Any) -> ScopeSummary:
    """A scope whose judge decided ``frame`` pairs (judge verdict → pairs, labelled ones
    included) beside ``decided`` exact matches; ``labelled``: judge x person counts."""
    from dataclasses import replace

    from shadowproxy.decision.calibration import Stratum
    from shadowproxy.decision.human_review import HumanReview

    unlabelled = {v: n - sum(c for (j, _), c in labelled.items() if j == v)
                  for v, n in frame.items()}
    pairs = sum(frame.values()) + decided
    worse = frame.get("worse", 0) / pairs
    numbers = scope(pairs, agreed=1 - worse, **shape)
    human = HumanReview((Stratum(labelled, unlabelled, {"equivalent": decided}),),
                        labels=sum(labelled.values()), reviewers=2)
    return replace(numbers, human=human)


# The judge calls 10% of 500 pairs worse; of 40 labelled pairs people find 10 worse
# where the judge saw 4: it misses worse answers.
MISSED = _reviewed({"worse": 50, "equivalent": 450},
                   {("worse", "worse"): 4, ("equivalent", "worse"): 6,
                    ("equivalent", "equivalent"): 30})


@pytest.mark.parametrize(("body", "named"), [
    ("min_human_labels = 2.5", "min_human_labels"),
    ("min_human_labels = -1", "min_human_labels"),
    ("min_judge_kappa = 1.5", "min_judge_kappa"),
    ('min_judge_kappa = "fair"', "min_judge_kappa"),
])
def test_bad_human_review_keys_are_one_line_naming_the_key(
        tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, body))
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_the_documented_human_review_keys_load(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "min_human_labels = 30\nmin_judge_kappa = 0.4\n"))
    assert policy.min_human_labels == 30 and policy.min_judge_kappa == 0.4


def test_too_few_labels_is_not_enough_data_naming_the_review_page() -> None:
    few = _reviewed({"worse": 50, "equivalent": 450},
                    {("worse", "worse"): 4, ("equivalent", "equivalent"): 16})
    result = evaluate(report_of(few), GatePolicy(min_human_labels=30, max_worse_rate=0.5))
    assert result.exit_code == 2
    row = next(c for c in result.criteria if c.criterion == "min_human_labels")
    assert row.insufficient and row.compared == "20 labelled pairs ≥ 30"
    assert result.reasons[0] == ("overall: 20 of 30 human labels needed; label pairs on the "
                                 "review page (/review on the admin listener)")


def test_a_wholly_labelled_frame_has_enough_labels() -> None:
    small = _reviewed({"worse": 3, "equivalent": 17},
                      {("worse", "worse"): 3, ("equivalent", "equivalent"): 17}, decided=480)
    result = evaluate(report_of(small), GatePolicy(min_human_labels=30, max_worse_rate=0.5))
    assert result.exit_code == 0, format_table(result)
    # The table says why 20 labels pass a rule asking 30, not "20 ≥ 30".
    row = next(c for c in result.criteria if c.criterion == "min_human_labels")
    assert row.compared == "20 labelled pairs: every pair the judge decided (30 asked)"


def test_with_labels_the_worse_rate_is_judged_on_the_calibrated_interval() -> None:
    judge_only = evaluate(report_of(MISSED), GatePolicy(max_worse_rate=0.14))
    assert judge_only.exit_code == 0  # 10% worse, Wilson upper bound 12.9%
    calibrated = evaluate(report_of(MISSED),
                          GatePolicy(max_worse_rate=0.14, min_human_labels=30))
    assert calibrated.exit_code == 1
    row = next(c for c in calibrated.criteria if c.criterion == "max_worse_rate")
    human = MISSED.human
    assert human is not None and human.worse is not None
    assert row.observed == human.worse.high and row.observed > 0.14
    assert row.compared.startswith("upper bound of calibrated 95% CI")


def test_with_labels_the_rate_over_noise_uses_the_calibrated_interval() -> None:
    from dataclasses import replace

    from shadowproxy.decision.calibration import mover_difference

    numbers = replace(MISSED, noise_floor=NoiseFloor(400, 8))
    policy = GatePolicy(max_worse_rate_over_noise=0.12, min_human_labels=30)
    result = evaluate(report_of(numbers), policy)
    row = next(c for c in result.criteria if c.criterion == "max_worse_rate_over_noise")
    human = numbers.human
    assert human is not None and human.worse is not None
    low, high = wilson_interval(8, 400)
    assert row.observed == pytest.approx(mover_difference(human.worse, 0.02, low, high)[1])
    assert row.basis.value == "upper bound of calibrated 95% CI of the difference"
    # The judge alone would have passed: its difference's upper bound is under 12%.
    upper = newcombe_difference(50, 500, 8, 400)[1]
    assert upper < 0.12 < row.observed and result.exit_code == 1


def test_a_judge_people_disagree_with_fails_min_judge_kappa() -> None:
    result = evaluate(report_of(MISSED), GatePolicy(min_judge_kappa=0.6))
    row = next(c for c in result.criteria if c.criterion == "min_judge_kappa")
    human = MISSED.human
    assert human is not None and human.judge_kappa is not None
    assert row.observed == pytest.approx(human.judge_kappa) and human.judge_kappa < 0.6
    assert result.exit_code == 1 and row.compared.startswith("κ 0.")
    agreeing = _reviewed({"worse": 50, "equivalent": 450},
                         {("worse", "worse"): 10, ("equivalent", "equivalent"): 30})
    assert evaluate(report_of(agreeing), GatePolicy(min_judge_kappa=0.6)).exit_code == 0


def test_kappa_over_too_few_labels_is_not_enough_data() -> None:
    few = _reviewed({"worse": 50, "equivalent": 450},
                    {("worse", "worse"): 1, ("equivalent", "worse"): 4,
                     ("equivalent", "equivalent"): 3})
    result = evaluate(report_of(few), GatePolicy(min_judge_kappa=0.4))
    assert result.exit_code == 2  # κ is low, but 8 labels cannot say so yet
    assert "8 of 10 human labels needed" in result.reasons[0]

"""``shadowproxy cutover …`` as a release manager and a pipeline run it: the real command
line in a child process, against a real PostgreSQL, exit codes and all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes import verdicts

POLICY = "min_pairs = 10\nmax_worse_rate = 0.3\n"
# Pairs in tests/fakes/verdicts.py arrive from 2026-05-04 09:00 UTC: the step began before.
STEP_BEGAN = "2026-05-04 08:00:00+00"


def run(tmp_path: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env["SHADOWPROXY_DATA_DIR"] = str(tmp_path / "data")
    if url is not None:
        env["SHADOWPROXY_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "shadowproxy", "cutover", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def events(url: str) -> list[tuple[str, int, int, str]]:
    rows = await fetch(url, "SELECT action, from_percent, to_percent, actor FROM "
                            "cutover_events ORDER BY id")
    return [(r["action"], r["from_percent"], r["to_percent"], r["actor"]) for r in rows]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(POLICY)
    return path


@pytest.mark.parametrize("steps", ["0,50", "5,101", "50,25", "10,10", "ten", ""])
def test_bad_steps_exit_2_with_one_line_before_touching_the_database(
    tmp_path: Path, steps: str
) -> None:
    result = run(tmp_path, "postgresql://u@127.0.0.1:1/nowhere", "start", "--tag", "support",
                 "--steps", steps)
    assert result.returncode == 2
    assert one_line(result).startswith("shadowproxy: error: --steps: ")


async def test_start_status_pause_resume_rollback_leave_an_event_each(
    tmp_path: Path, database_url: str
) -> None:
    def cut(*args: str) -> subprocess.CompletedProcess[str]:
        return run(tmp_path, database_url, *args, "--actor", "rm@ci")

    started = await asyncio.to_thread(cut, "start", "--tag", "support", "--steps", "5,25,100")
    assert started.returncode == 0, started.stderr
    assert "support: 5% of conversations" in started.stdout

    status = await asyncio.to_thread(run, tmp_path, database_url, "status")
    assert "support: 5% (step 1 of 3: 5,25,100)" in status.stdout
    assert "last: start 0% -> 5% by" in status.stdout
    assert "Responses API requests (/v1/responses) are not routed" in status.stdout

    assert (await asyncio.to_thread(cut, "pause", "--tag", "support")).returncode == 0
    again = await asyncio.to_thread(cut, "pause", "--tag", "support")
    assert again.returncode == 0 and "already paused" in again.stdout
    assert (await asyncio.to_thread(cut, "resume", "--tag", "support")).returncode == 0
    rolled = await asyncio.to_thread(cut, "rollback", "--tag", "support")
    assert rolled.returncode == 0 and "support: 0% (rolled back" in rolled.stdout
    assert (await asyncio.to_thread(cut, "start", "--tag", "support", "--steps", "100")
            ).returncode == 0

    assert await events(database_url) == [
        ("start", 0, 5, "rm@ci"), ("pause", 5, 5, "rm@ci"), ("resume", 5, 5, "rm@ci"),
        ("rollback", 5, 0, "rm@ci"), ("start", 0, 100, "rm@ci")]
    as_json = json.loads((await asyncio.to_thread(run, tmp_path, database_url, "status",
                                                  "--json")).stdout)
    assert as_json["plans"][0] | {"step_started_at": None, "last_event": None} == {
        "tag": "support", "steps": [100], "step": 1, "percent": 100, "paused": False,
        "step_started_at": None, "last_event": None}
    assert as_json["responses_api"] == "not routed"


async def test_a_tag_without_a_plan_is_bad_input(tmp_path: Path, database_url: str) -> None:
    for command in ("pause", "resume", "rollback"):
        result = await asyncio.to_thread(run, tmp_path, database_url, command, "--tag", "nope")
        assert result.returncode == 2
        assert "tag 'nope' has no cutover plan" in one_line(result)


def test_an_unreachable_database_exits_3(tmp_path: Path) -> None:
    result = run(tmp_path, "postgresql://u@127.0.0.1:1/db", "status")
    assert result.returncode == 3
    assert "127.0.0.1:1" in one_line(result)


async def _started_with_pairs(url: str, tmp_path: Path, rows: list[Any],
                              steps: str = "5,25,100") -> None:
    result = await asyncio.to_thread(run, tmp_path, url, "start", "--tag", "support",
                                     "--steps", steps)
    assert result.returncode == 0, result.stderr
    await fetch(url, f"UPDATE cutover_plans SET step_started_at = '{STEP_BEGAN}'")
    await verdicts.write(url, rows)


async def advance(tmp_path: Path, url: str, policy: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, tmp_path, url, "advance", "--tag", "support",
                                   "--policy", str(policy), "--no-progress", "--actor", "ci")


async def percent(url: str) -> int:
    return int((await fetch(url, "SELECT percent FROM cutover_plans"))[0]["percent"])


async def test_a_pass_moves_to_the_next_step(
    tmp_path: Path, database_url: str, policy: Path
) -> None:
    await _started_with_pairs(database_url, tmp_path, verdicts.mix("support", equivalent=30))
    result = await advance(tmp_path, database_url, policy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS" in result.stdout
    assert "passed: support 5% → 25% (step 2 of 3)" in result.stdout
    assert await percent(database_url) == 25
    assert (await events(database_url))[-1] == ("advance", 5, 25, "ci")


async def test_a_fail_goes_back_to_zero(tmp_path: Path, database_url: str,
                                        policy: Path) -> None:
    await _started_with_pairs(database_url, tmp_path,
                              verdicts.mix("support", worse=20, equivalent=10))
    result = await advance(tmp_path, database_url, policy)
    assert result.returncode == 1
    assert await percent(database_url) == 0
    (reason,) = [r["reason"] for r in await fetch(
        database_url, "SELECT reason FROM cutover_events WHERE action = 'rollback'")]
    assert reason.startswith("failed: support 5% → 0% (gate on 30 pairs since 2026-05-04")
    assert "max_worse_rate" in reason


async def test_not_enough_data_stays_and_pairs_before_the_step_do_not_count(
    tmp_path: Path, database_url: str, policy: Path
) -> None:
    await _started_with_pairs(database_url, tmp_path, verdicts.mix("support", equivalent=30))
    # The step began after all of these pairs arrived.
    await fetch(database_url, "UPDATE cutover_plans SET step_started_at = '2026-05-05Z'")
    result = await advance(tmp_path, database_url, policy)
    assert result.returncode == 2
    assert "not enough data: support stays at 5%" in result.stdout
    assert await percent(database_url) == 5


async def test_a_paused_tag_refuses_to_advance_with_exit_2(
    tmp_path: Path, database_url: str, policy: Path
) -> None:
    await _started_with_pairs(database_url, tmp_path, verdicts.mix("support", equivalent=30))
    assert (await asyncio.to_thread(run, tmp_path, database_url, "pause", "--tag",
                                    "support")).returncode == 0
    result = await advance(tmp_path, database_url, policy)
    assert result.returncode == 2
    assert "support is paused at 5%: advance refuses" in result.stdout
    assert await percent(database_url) == 5


async def test_two_advances_at_once_one_wins_and_the_other_says_so(
    tmp_path: Path, database_url: str, policy: Path
) -> None:
    await _started_with_pairs(database_url, tmp_path, verdicts.mix("support", equivalent=30))
    # The first advance holds the tag's lock while it judges; the second arrives then.
    holder = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        key = await holder.fetchval(
            "SELECT hashtextextended('shadowproxy.cutover.advance:' || $1, 0)", "support")
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", key)
        second = await advance(tmp_path, database_url, policy)
    finally:
        await holder.close()
    assert second.returncode == 3
    assert "another `cutover advance --tag support` is running" in one_line(second)
    assert await percent(database_url) == 5
    first = await advance(tmp_path, database_url, policy)  # the lock is free again
    assert first.returncode == 0


async def test_advance_errors_exit_3_like_gate(tmp_path: Path, database_url: str) -> None:
    missing = await asyncio.to_thread(run, tmp_path, database_url, "advance", "--tag",
                                      "support", "--policy", "nowhere.toml")
    assert missing.returncode == 3
    assert "nowhere.toml" in one_line(missing)
    no_policy = await asyncio.to_thread(run, tmp_path, database_url, "advance", "--tag", "s")
    assert no_policy.returncode == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("min_pairs = 10\n")
    no_plan = await asyncio.to_thread(run, tmp_path, database_url, "advance", "--tag",
                                      "support", "--policy", str(bad))
    assert no_plan.returncode == 3
    assert "has no cutover plan" in one_line(no_plan)


async def test_a_database_without_the_migration_says_to_migrate(
    tmp_path: Path, empty_database_url: str,
) -> None:
    result = await asyncio.to_thread(run, tmp_path, empty_database_url, "status")
    assert result.returncode == 3
    assert "run `shadowproxy migrate`" in one_line(result)

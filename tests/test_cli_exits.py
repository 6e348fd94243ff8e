"""Exit codes that mean one thing, and one line for every failure a new user meets first.

Every case runs the real command line in a child process, as a shell or CI pipeline does,
and checks what they see: the exit code and the whole of stderr.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.database import TestPostgres

GOOD_POLICY = "min_pairs = 1\n"


def run(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWPROXY_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env["SHADOWPROXY_DATA_DIR"] = str(tmp_path / "data")
    env.update({f"SHADOWPROXY_{k.upper()}": v for k, v in settings.items()})
    return subprocess.run([sys.executable, "-m", "shadowproxy", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(GOOD_POLICY)
    return path


@pytest.mark.parametrize("command", [
    ["diff"], ["report", "--out", "r.html"], ["gate", "--policy", "gate.toml"],
    ["export", "--out", "pairs.jsonl"],
])
def test_an_unreachable_database_exits_3_naming_host_and_port(
    tmp_path: Path, policy: Path, command: list[str]
) -> None:
    port = closed_port()
    result = run(tmp_path, *command, database_url=f"postgresql://u@127.0.0.1:{port}/db")
    assert result.returncode == 3
    line = one_line(result)
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)" in line
    assert "SHADOWPROXY_DATABASE_URL" in line


async def test_a_database_that_does_not_exist_is_named(
    tmp_path: Path, policy: Path, postgres_server: TestPostgres
) -> None:
    url = postgres_server.url_for("no_such_database")
    for command in (["gate", "--policy", str(policy)], ["migrate"]):
        result = run(tmp_path, *command, database_url=url)
        assert result.returncode == 3, result.stderr
        line = one_line(result)
        assert "no database 'no_such_database'" in line, line
        assert "Background on this error" not in line


async def test_serve_whose_migrations_cannot_run_says_why_and_exits_3(
    tmp_path: Path, postgres_server: TestPostgres
) -> None:
    result = run(tmp_path, "serve", primary_url="http://127.0.0.1:1", workers="1",
                 database_url=postgres_server.url_for("no_such_database"))
    assert result.returncode == 3
    line = one_line(result)
    assert line.startswith("shadowproxy: error: migrations failed: PostgreSQL at ")
    assert "no database 'no_such_database'" in line and "sqlalche.me" not in line


@pytest.mark.parametrize(("policy_text", "named"), [
    (None, "policy file not found"),
    ("min_agreement = [", "not valid TOML"),
    ("min_agremeent = 0.9\n", "'min_agremeent'"),
])
def test_gate_policy_problems_exit_3_not_2(
    tmp_path: Path, policy_text: str | None, named: str
) -> None:
    path = tmp_path / "gate.toml"
    if policy_text is not None:
        path.write_text(policy_text)
    for command in (["gate", "--policy", str(path)],
                    ["report", "--policy", str(path), "--out", "r.html"]):
        result = run(tmp_path, *command, database_url="postgresql://u@127.0.0.1:1/db")
        assert result.returncode == 3, (command, result.stderr)
        assert named in one_line(result)


def test_a_policy_that_is_a_directory_exits_3(tmp_path: Path) -> None:
    result = run(tmp_path, "gate", "--policy", str(tmp_path))
    assert result.returncode == 3
    assert str(tmp_path) in one_line(result)


def test_gate_exits_3_for_a_bad_setting_and_bad_usage_others_exit_2(
    tmp_path: Path, policy: Path
) -> None:
    gate = run(tmp_path, "gate", "--policy", str(policy), port="eighty")
    assert gate.returncode == 3 and "SHADOWPROXY_PORT" in one_line(gate)
    report = run(tmp_path, "report", port="eighty")
    assert report.returncode == 2 and "SHADOWPROXY_PORT" in one_line(report)
    assert run(tmp_path, "gate").returncode == 3  # --policy missing
    since = run(tmp_path, "gate", "--policy", str(policy), "--since", "99999999d")
    assert since.returncode == 3 and "Traceback" not in since.stderr
    assert run(tmp_path, "diff", "--batch-size", "0").returncode == 2


def test_no_embedded_database_yet_exits_3_and_says_what_to_run(tmp_path: Path) -> None:
    result = run(tmp_path, "diff")
    assert result.returncode == 3
    assert "run serve or demo first" in one_line(result)


async def test_an_unwritable_output_file_exits_3_naming_it(
    tmp_path: Path, database_url: str
) -> None:
    target = tmp_path / "no-such-dir" / "out"
    for command in (["export", "--format", "csv", "--out", f"{target}.csv"],
                    ["report", "--out", str(tmp_path)],  # a directory
                    ["report", "--format", "json", "--out", f"{target}.json"]):
        result = run(tmp_path, *command, database_url=database_url)
        assert result.returncode == 3, (command, result.stderr)
        line = one_line(result)
        assert command[-1] in line, line


# -- bad settings: one line, exit 2 ---------------------------------------------------


def prices(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("make", "named"), [
    (lambda p: prices(p, "[models.x\n"), "not valid TOML"),
    (lambda p: prices(p, '[models."gpt-4o"]\ninput = -1\n'), "models.gpt-4o.input"),
    (lambda p: prices(p, '[models."my-model"]\ninput = 1.0\n'), "missing 'output'"),
    (lambda p: str(p / "missing.toml"), "No such file"),
    (lambda p: str(p), "Is a directory"),
])
def test_every_malformed_prices_file_is_one_line_exit_2(
    tmp_path: Path, make: object, named: str
) -> None:
    assert callable(make)
    path = make(tmp_path)
    for command in (["serve"], ["diff"]):
        result = run(tmp_path, *command, primary_url="http://127.0.0.1:1", prices_file=path)
        assert result.returncode == 2, result.stderr
        line = one_line(result)
        assert line.startswith("shadowproxy: error: SHADOWPROXY_PRICES_FILE: ")
        assert named in line and path in line


@pytest.mark.parametrize("setting", ["max_body_mb", "spool_max_mb", "grace_s",
                                     "shadow_timeout_s"])
def test_infinite_numbers_are_refused(tmp_path: Path, setting: str) -> None:
    result = run(tmp_path, "serve", primary_url="http://127.0.0.1:1", **{setting: "inf"})
    assert result.returncode == 2
    assert f"SHADOWPROXY_{setting.upper()}: Input should be a finite number" in one_line(result)


def test_a_data_dir_that_is_a_file_or_unwritable_is_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [(str(a_file), "is not a directory"),
             (str(a_file / "below"), "is not a writable directory")]
    if Path("/sys/fs").is_dir() and not os.access("/sys/fs", os.W_OK):
        cases.append(("/sys/fs", "is not a writable directory"))  # read-only (sysfs)
    elif os.geteuid() != 0:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
        cases.append((str(read_only), "is not a writable directory"))
    for data_dir, named in cases:
        for command in (["serve"], ["demo"]):
            result = run(tmp_path, *command, primary_url="http://127.0.0.1:1",
                         data_dir=data_dir)
            assert result.returncode == 2, result.stderr
            line = one_line(result)
            assert f"SHADOWPROXY_DATA_DIR: {data_dir} {named}" in line, line


def test_toml_errors_name_the_file_and_key_and_config_goes_after_the_command(
    tmp_path: Path
) -> None:
    config = tmp_path / "shadowproxy.toml"
    config.write_text('primary_url = "http://127.0.0.1:1"\nport = "eighty"\n')
    for args in (["--config", str(config), "serve"], ["serve", "--config", str(config)]):
        result = run(tmp_path, *args)
        assert result.returncode == 2
        line = one_line(result)
        assert f"{config}: port: Input should be a valid integer" in line
        assert "SHADOWPROXY_PORT" not in line
    flag = run(tmp_path, "serve", "--primary-url", "ftp://x")
    assert flag.returncode == 2 and "--primary-url: must be an http" in one_line(flag)


def test_simulate_and_psql_are_in_the_help(tmp_path: Path) -> None:
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    assert "simulate" in result.stdout and "psql" in result.stdout
    sim = run(tmp_path, "simulate", "--help")
    assert "SHADOWPROXY_PRIMARY_URL=http://127.0.0.1:8001" in sim.stdout

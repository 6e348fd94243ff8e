"""``shadowproxy reviewer add|list|remove`` and ``export --reviews`` as an operator runs
them: the token once on stdout and never again, one line and exit 2 for a bad name."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from shadowproxy.store.reviewers import token_sha256
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.review import fetch, judged
from tests.test_cli_exits import one_line, run


async def test_add_prints_the_token_once_and_stores_only_its_hash(
    database_url: str, tmp_path: Path
) -> None:
    added = run(tmp_path, "reviewer", "add", "alice", database_url=database_url)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("spr_") and len(token) > 40 and "\n" not in token
    assert token not in added.stderr and "shown this once" in added.stderr
    (row,) = await fetch(database_url, "SELECT * FROM reviewers")
    assert row["name"] == "alice" and row["token_sha256"] == token_sha256(token)
    assert token not in json.dumps({k: str(v) for k, v in dict(row).items()})

    listed = run(tmp_path, "reviewer", "list", database_url=database_url)
    assert listed.returncode == 0 and "alice" in listed.stdout and token not in listed.stdout

    again = run(tmp_path, "reviewer", "add", "alice", database_url=database_url)
    assert again.returncode == 2 and "exists" in one_line(again)

    removed = run(tmp_path, "reviewer", "remove", "alice", database_url=database_url)
    assert removed.returncode == 0 and "labels stay" in removed.stderr
    assert await fetch(database_url, "SELECT * FROM reviewers") == []
    gone = run(tmp_path, "reviewer", "remove", "alice", database_url=database_url)
    assert gone.returncode == 2 and "no reviewer named 'alice'" in one_line(gone)


def test_bad_names_are_one_line_and_exit_2(database_url: str, tmp_path: Path) -> None:
    for name in ("admin", "-x", "a b", "x" * 65, "é", ""):
        result = run(tmp_path, "reviewer", "add", "--", name, database_url=database_url)
        assert result.returncode == 2, name
        assert "reviewer name" in one_line(result), name


async def test_a_database_without_the_review_tables_says_to_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    result = run(tmp_path, "reviewer", "list", database_url=empty_database_url)
    assert result.returncode == 3 and "run `shadowproxy migrate`" in one_line(result)


async def test_export_carries_the_labels_and_export_reviews_the_rows(
    database_url: str, tmp_path: Path
) -> None:
    rows = await judged(database_url, "support", worse=1, equivalent=1)
    first, second = (record.id for record, _ in rows)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.executemany(
            "INSERT INTO reviews (pair_id, reviewer, choice, verdict, shadow_first, note, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(first, "alice", "2", "worse", True, "wrong date", rows[0][0].received_at),
             (first, "bob", "tie", "equivalent", False, None, rows[1][0].received_at),
             (second, "alice", "skip", None, False, None, rows[1][0].received_at)])
    finally:
        await conn.close()
    pairs = run(tmp_path, "export", "--format", "jsonl", database_url=database_url)
    assert pairs.returncode == 0, pairs.stderr
    by_id = {row["id"]: row for row in map(json.loads, pairs.stdout.splitlines())}
    assert (by_id[str(first)]["human_verdict"], by_id[str(first)]["human_labels"]) == (
        "worse", 2)
    assert (by_id[str(second)]["human_verdict"], by_id[str(second)]["human_labels"]) == (
        None, 0)
    out = tmp_path / "labels.csv"
    labels = run(tmp_path, "export", "--reviews", "--format", "csv", "--out", str(out),
                 database_url=database_url)
    assert labels.returncode == 0 and "wrote 3 labels" in labels.stderr
    text = out.read_text()
    assert text.splitlines()[0] == ("pair_id,received_at,tag,reviewer,choice,human_verdict,"
                                    "judge_verdict,verdict_method,shadow_first,note,labelled_at")
    assert "wrong date" in text and text.count("\n") == 4

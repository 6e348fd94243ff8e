"""The README's promises: its SQL examples run against the view and mean what they say,
and its settings table names every setting."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from shadowproxy.decision.diff import run_diff
from shadowproxy.settings import Settings
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes import verdicts
from tests.fakes.traffic import seeded

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def sql_examples() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README, flags=re.S)


async def test_the_analyst_queries_run_on_the_comparisons_view(database_url: str) -> None:
    await seeded(database_url)
    await run_diff(database_url, progress=False)
    queries = sql_examples()
    assert len(queries) >= 3
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # The seeded pairs are from March 2026: let "the last week" include them.
        per_tag = await conn.fetch(queries[0].replace("interval '7 days'", "interval '10 years'"))
        by_tag = {r["tag"]: r for r in per_tag}
        assert abs(float(by_tag["support"]["agreement"]) - 0.70) < 0.01
        assert abs(float(by_tag["billing"]["agreement"]) - 0.95) < 0.01
        latency = await conn.fetch(queries[1])
        assert latency and all(len(r["primary_ms"]) == 2 for r in latency)
        mismatched = await conn.fetch(queries[2])
        assert mismatched and all(r["primary_tool_calls"] != r["shadow_tool_calls"]
                                  for r in mismatched)
    finally:
        await conn.close()


async def test_the_verdict_query_counts_what_the_report_counts(database_url: str) -> None:
    await verdicts.write(database_url, [
        *verdicts.mix("support", worse=2, equivalent=8),
        *verdicts.mix("billing", worse=1, better=1, equivalent=2, first=100)])
    (query,) = [q for q in sql_examples() if "verdict" in q]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = {r["tag"]: r for r in await conn.fetch(query)}
    finally:
        await conn.close()
    assert (rows["support"]["judged"], float(rows["support"]["worse_rate"])) == (10, 0.2)
    assert (rows["billing"]["judged"], float(rows["billing"]["worse_rate"])) == (4, 0.25)


def test_the_settings_table_names_every_setting() -> None:
    table = README.split("## Settings", 1)[1].split("## Commands", 1)[0]
    named = {n.lower() for n in re.findall(r"`([A-Z_]+)`", table)}
    assert set(Settings.model_fields) <= named, set(Settings.model_fields) - named

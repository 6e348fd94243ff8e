"""export: the analyst's rows, whole, in CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shadowproxy.decision.diff import run_diff
from shadowproxy.decision.export import export_pairs
from tests.fakes.traffic import START, store, traffic

EXPECTED = 30 + 11  # comparable pairs plus timeouts, drops, failures, a skipped one


@pytest.fixture
async def stored(database_url: str) -> str:
    await store(database_url, traffic("support", 30, 6))
    await run_diff(database_url, progress=False)
    return database_url


async def test_csv_round_trips_rows_with_json_columns_as_text(
        stored: str, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    assert await export_pairs(stored, fmt="csv", out=out) == EXPECTED
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == EXPECTED
    assert {"id", "tag", "primary_text", "shadow_tool_calls", "agree"} <= set(rows[0])
    with_calls = [r for r in rows if r["shadow_tool_calls"] not in ("", "[]")]
    assert json.loads(with_calls[0]["shadow_tool_calls"])[0]["name"] == "lookup_order"
    assert {r["agree"] for r in rows} == {"true", "false"}


async def test_jsonl_keeps_json_columns_nested(stored: str) -> None:
    buffer = io.StringIO()
    assert await export_pairs(stored, fmt="jsonl", out=buffer) == EXPECTED
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert len(lines) == EXPECTED
    assert isinstance(lines[0]["request"], dict)
    assert lines[0]["received_at"] == START.isoformat()


async def test_parquet_is_typed_even_for_all_null_columns(stored: str, tmp_path: Path) -> None:
    out = tmp_path / "pairs.parquet"
    assert await export_pairs(stored, fmt="parquet", out=out) == EXPECTED
    table = pq.read_table(out)
    assert table.num_rows == EXPECTED
    assert table.schema.field("primary_latency_ms").type == pa.float64()
    assert table.schema.field("replay_latency_ms").type == pa.float64()  # always null here
    assert table.schema.field("agree").type == pa.bool_()
    assert table.schema.field("received_at").type == pa.timestamp("us", tz="UTC")


async def test_since_limits_the_rows(stored: str, tmp_path: Path) -> None:
    since = START + timedelta(minutes=30)  # the 11 extra pairs come after the 30
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"recent.{fmt}"
        assert await export_pairs(stored, fmt=fmt, out=out, since=since) == 11


async def test_an_empty_database_exports_a_valid_empty_file(
        database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "none.parquet"
    assert await export_pairs(database_url, fmt="parquet", out=out) == 0
    assert pq.read_table(out).num_rows == 0
    text_out = io.StringIO()
    assert await export_pairs(database_url, fmt="csv", out=text_out) == 0
    assert text_out.getvalue().startswith("id,received_at,")

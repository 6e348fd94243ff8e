"""``shadowproxy export``: the ``comparisons`` view as CSV, JSON Lines or Parquet (with
``--reviews``, the ``human_reviews`` view: the people's labels, one row each).

Rows stream from a server-side cursor in batches, so an export of millions of pairs
needs the memory of one batch. The columns are whatever the view has (analysts may see
columns added, never renamed), read from ``information_schema`` so Parquet gets a typed
schema even for columns that are null in the first batch. JSON columns (``request``,
``*_tool_calls``) are JSON text in CSV and Parquet, nested values in JSON Lines, where
PostgreSQL writes each line itself (``row_to_json``). Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

__all__ = ["ExportFormat", "export_pairs"]

ExportFormat = Literal["csv", "jsonl", "parquet"]
BATCH_ROWS = 1000

_ARROW_TYPES: dict[str, pa.DataType] = {
    "uuid": pa.string(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "text": pa.string(),
    "character varying": pa.string(),
    "boolean": pa.bool_(),
    "smallint": pa.int64(),
    "integer": pa.int64(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "real": pa.float64(),
    "numeric": pa.float64(),
    "jsonb": pa.string(),
    "json": pa.string(),
}


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    pg_type: str

    @property
    def is_json(self) -> bool:
        return self.pg_type in ("json", "jsonb")


async def _columns(conn: AsyncConnection, relation: str) -> list[_Column]:
    rows = await conn.execute(text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = :relation AND table_schema = current_schema() "
        "ORDER BY ordinal_position"
    ), {"relation": relation})
    return [_Column(name, pg_type) for name, pg_type in rows]


def _select_list(columns: list[_Column]) -> str:
    """Let PostgreSQL turn ids, JSON and exotic types into text: far cheaper than
    decoding JSON only to encode it again, row by row, in Python."""
    items = []
    for c in columns:
        quoted = '"' + c.name.replace('"', '""') + '"'
        as_text = c.pg_type == "uuid" or c.is_json or c.pg_type not in _ARROW_TYPES
        if as_text:
            items.append(f"{quoted}::text AS {quoted}")
        elif c.pg_type == "numeric":  # asyncpg would hand back Decimal
            items.append(f"{quoted}::float8 AS {quoted}")
        else:
            items.append(quoted)
    return ", ".join(items)


# What can be exported, and its order: the pairs, or the human labels (`--reviews`).
_RELATIONS = {"comparisons": "ORDER BY c.received_at, c.id",
              "human_reviews": "ORDER BY c.received_at, c.pair_id, c.labelled_at, c.reviewer"}


def _query(columns: list[_Column], fmt: ExportFormat, where: str, relation: str) -> str:
    order = _RELATIONS[relation]
    if fmt == "jsonl":
        # row_to_json nests jsonb as is and writes timestamps in ISO 8601 (UTC, see the
        # SET LOCAL below): no decode and re-encode of every request body in Python.
        return f"SELECT row_to_json(c)::text FROM {relation} c {where} {order}"
    return f"SELECT {_select_list(columns)} FROM {relation} c {where} {order}"


class _Sink:
    """Writes batches of row tuples in one format; ``close`` finishes the file."""

    def __init__(self, fmt: ExportFormat, columns: list[_Column], stream: IO[Any]) -> None:
        self.fmt, self.columns, self.stream = fmt, columns, stream
        self.names = [c.name for c in columns]
        self._parquet: pq.ParquetWriter | None = None
        self._csv: Any = None
        self._schema = pa.schema(
            [(c.name, _ARROW_TYPES.get(c.pg_type, pa.string())) for c in columns])
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(stream, self._schema)
        elif fmt == "csv":
            self._csv = csv.writer(stream)
            self._csv.writerow(self.names)
        # Cells that need a Python touch in CSV: booleans as true/false, ISO timestamps.
        self._csv_fixups = [i for i, c in enumerate(columns)
                            if c.pg_type == "boolean" or c.pg_type.startswith("timestamp")]

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.fmt == "jsonl":  # PostgreSQL wrote each line (see _query)
            self.stream.writelines(row[0] + "\n" for row in rows)
        elif self.fmt == "csv":
            self._csv.writerows(self._csv_row(row) for row in rows)
        else:
            assert self._parquet is not None
            arrays = [pa.array(list(values), type=field.type)
                      for values, field in zip(zip(*rows, strict=True), self._schema,
                                               strict=True)]
            self._parquet.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def _csv_row(self, row: Sequence[Any]) -> list[Any]:
        cells = list(row)
        for i in self._csv_fixups:
            value = cells[i]
            if isinstance(value, bool):
                cells[i] = "true" if value else "false"
            elif isinstance(value, datetime):
                cells[i] = value.isoformat()
        return cells

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def _open(out: Path | IO[Any], fmt: ExportFormat, stack: ExitStack) -> IO[Any]:
    if isinstance(out, Path):
        if fmt == "parquet":
            return stack.enter_context(out.open("wb"))
        return stack.enter_context(out.open("w", encoding="utf-8", newline=""))
    if fmt == "parquet" and isinstance(out, io.TextIOBase):
        buffer = getattr(out, "buffer", None)  # e.g. sys.stdout: Parquet is bytes
        if buffer is None:
            raise TypeError("parquet needs a binary file or a path, not a text stream")
        return cast(IO[Any], buffer)
    return out


async def export_pairs(
    url: str,
    *,
    fmt: ExportFormat,
    out: Path | IO[Any],
    since: datetime | None = None,
    reviews: bool = False,
) -> int:
    """Write ``comparisons`` rows (received at or after ``since``) to ``out``; the row count.
    With ``reviews``, the ``human_reviews`` rows instead: one per label or skip.

    ``out`` is a path or an open file: text for csv/jsonl, binary for parquet (a text
    stream with a ``buffer``, such as ``sys.stdout``, is written through its buffer).
    """
    where, params = ("WHERE c.received_at >= :since", {"since": since}) if since else ("", {})
    engine = create_async_engine(url)
    count = 0
    try:
        async with engine.connect() as conn:
            relation = "human_reviews" if reviews else "comparisons"
            columns = await _columns(conn, relation)
            if not columns:
                raise RuntimeError(f"the {relation} view is missing: run `shadowproxy migrate`")
            with ExitStack() as stack:
                sink = _Sink(fmt, columns, _open(out, fmt, stack))
                try:
                    await conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
                    result = await conn.stream(
                        text(_query(columns, fmt, where, relation)),
                        params,
                        execution_options={"yield_per": BATCH_ROWS},
                    )
                    async for batch in result.partitions(BATCH_ROWS):
                        sink.write(batch)
                        count += len(batch)
                finally:
                    sink.close()
    finally:
        await engine.dispose()
    return count

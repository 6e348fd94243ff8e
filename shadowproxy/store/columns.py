"""The ``pairs`` columns the writer fills, derived from :mod:`shadowproxy.records`.

No SQLAlchemy here: the mirror process (the writer) needs only the names, in
``PairRecord.to_row()``'s order, and their SQL types; :mod:`.models` builds the ORM table
from the same declaration.
"""

from __future__ import annotations

from dataclasses import fields

from shadowproxy.records import SIDES, PairRecord, Side, SqlType, sql_type

__all__ = ["HEAD_COLUMNS", "JSONB_COLUMNS", "PAIR_COLUMNS", "SIDE_FIELDS", "SQL_TYPES"]


def _declared(cls: type) -> dict[str, SqlType]:
    return {f.name: t for f in fields(cls) if (t := sql_type(f)) is not None}


# Pair-level columns (id, received_at, …) and a side's fields, in declaration order.
HEAD_COLUMNS: tuple[str, ...] = tuple(_declared(PairRecord))
SIDE_FIELDS: tuple[str, ...] = tuple(_declared(Side))
SQL_TYPES: dict[str, SqlType] = {
    **_declared(PairRecord),
    **{f"{prefix}_{name}": t for prefix in SIDES for name, t in _declared(Side).items()},
}
PAIR_COLUMNS: tuple[str, ...] = tuple(SQL_TYPES)
JSONB_COLUMNS: frozenset[str] = frozenset(c for c, t in SQL_TYPES.items() if t == "jsonb")

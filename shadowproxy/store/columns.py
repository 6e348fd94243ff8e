"""The ``pairs`` columns the writer fills, without SQLAlchemy.

The writer and the mirror process need only the names (``PairRecord.to_row()``'s keys,
in order) and which of them are jsonb; :mod:`.models` checks that its table agrees.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from shadowproxy.records import PairRecord, Side


def _record_columns() -> tuple[str, ...]:
    probe = PairRecord(
        id=uuid.UUID(int=0), received_at=datetime.min, api="", path="", tag=None,
        stream=False, request=None, request_sha256="", primary=Side(), shadow=Side(),
        shadow_outcome="",
    )
    return tuple(probe.to_row())


PAIR_COLUMNS: tuple[str, ...] = _record_columns()
JSONB_COLUMNS: frozenset[str] = frozenset(
    {"request", "primary_tool_calls", "shadow_tool_calls", "replay_tool_calls"}
)

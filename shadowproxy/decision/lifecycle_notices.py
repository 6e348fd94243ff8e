"""The report's end-of-life notices: every model the pairs name (primary, shadow, judge)
that is deprecated or retired on the report's day, and for a retired primary, how many
of its pairs since that date failed at the provider.

The models come from the report's summaries; PostgreSQL counts a retired primary's
errors (one aggregate query through the report's ``fetch``); this module decides which
models to ask about and words the answer. It does no I/O of its own: the
report passes its query function and a :class:`~shadowproxy.lifecycle.LifecycleView`
(the day and the data), chosen by the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from shadowproxy.lifecycle import RETIRED, LifecycleView, effective_state

__all__ = ["LifecycleNotice", "fetch_lifecycle_notices"]

Fetch = Callable[[str, Mapping[str, Any] | None], Awaitable[list[dict[str, Any]]]]
ROLES = ("primary", "shadow", "judge")

_PRIMARY_FAILED = "(primary_error IS NOT NULL OR coalesce(primary_status, 0) >= 400)"
# For each retired primary model: its pairs received since its retirement day, and how
# many of them the provider failed.
_SINCE_QUERY = (
    "SELECT r.model, c.pairs, c.errors "
    "FROM unnest(:lifecycle_models::text[], :lifecycle_dates::timestamptz[]) "
    "AS r(model, retired_from) "
    "CROSS JOIN LATERAL (SELECT count(*) AS pairs, "
    f"count(*) FILTER (WHERE {_PRIMARY_FAILED}) AS errors FROM pairs "
    "WHERE primary_model = r.model AND received_at >= r.retired_from AND {where}) AS c"
)


@dataclass(frozen=True, slots=True)
class LifecycleNotice:
    """One model the pairs name that is deprecated or retired."""

    role: str  # primary | shadow | judge
    model: str
    state: str  # deprecated | retired
    date: date | None
    source: str | None
    message: str  # "claude-sonnet-4-5 retired on 2026-11-30: its requests fail at …"
    # A retired primary: its pairs received since ``date``, and those the provider failed
    # (an error, or a status of 400 or more).
    pairs_since: int | None = None
    errors_since: int | None = None

    @property
    def error_share(self) -> float | None:
        if self.pairs_since is None or self.errors_since is None or not self.pairs_since:
            return None
        return self.errors_since / self.pairs_since

    @property
    def errors_words(self) -> str | None:
        """The retired primary's failures since its date, in a sentence."""
        if self.pairs_since is None or self.errors_since is None or self.date is None:
            return None
        since = self.date.isoformat()
        if not self.pairs_since:
            return f"No pairs of {self.model} since {since}."
        share = self.error_share or 0.0
        pairs = f"pair{'s' if self.pairs_since != 1 else ''}"
        return (f"Since {since}, {self.errors_since:,} of its {self.pairs_since:,} {pairs} "
                f"({share:.1%}) had a primary error.")

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "model": self.model, "state": self.state,
                "date": self.date.isoformat() if self.date else None,
                "source": self.source, "message": self.message,
                "pairs_since": self.pairs_since, "errors_since": self.errors_since,
                "error_share_since": self.error_share}


def _notices(models: Mapping[str, Any], lifecycle: LifecycleView) -> list[LifecycleNotice]:
    found: list[LifecycleNotice] = []
    for role in ROLES:
        for model in sorted(m for m in models.get(role) or () if m):
            info = lifecycle.of(model)
            message = lifecycle.warning(info)
            state = effective_state(info, lifecycle.today)
            if message is not None and state is not None:
                found.append(LifecycleNotice(role, model, state, info.retires_at,
                                             info.source, message))
    return found


async def fetch_lifecycle_notices(
    fetch: Fetch, where: str, models: Mapping[str, Sequence[str]], lifecycle: LifecycleView
) -> tuple[LifecycleNotice, ...]:
    """The notices for ``models`` (per role, every id the pairs ``where`` selects name,
    from the report's summaries), with a retired primary's errors counted over those
    pairs (``where`` is the report's filter, its parameters bound by ``fetch``)."""
    notices = _notices(models, lifecycle)
    retired = {n.model: n.date for n in notices
               if n.role == "primary" and n.state == RETIRED and n.date is not None}
    if not retired:
        return tuple(notices)
    names = sorted(retired)
    rows = await fetch(_SINCE_QUERY.format(where=where), {
        "lifecycle_models": names,
        "lifecycle_dates": [datetime.combine(retired[m], time(), UTC) for m in names],
    })
    counts = {row["model"]: (int(row["pairs"]), int(row["errors"])) for row in rows}
    return tuple(
        LifecycleNotice(n.role, n.model, n.state, n.date, n.source, n.message,
                        *counts.get(n.model, (0, 0)))
        if n.role == "primary" and n.model in retired else n
        for n in notices)

"""The limit on guessing tokens, in the database so no worker or replica is a fresh start.

Two limits, both checked *before* a token is compared, so a blocked client learns
nothing from what it sends (the right token included) until the block ends:

- per client: :attr:`FailureLimits.per_client` failures in :attr:`~FailureLimits.client_window`;
- everyone together: :attr:`FailureLimits.overall` failures per
  :attr:`~FailureLimits.overall_window`, so a guesser rotating addresses gets no more
  tries than that. While it holds, no token is compared for anyone (signed-in browsers
  keep their sessions).

A failure is recorded only when it was compared, so rows stay bounded (at most
``overall`` per window) and a blocked client does not extend its own block. Rows older
than the longer window are deleted as new ones come.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shadowproxy.store.reviewers import Executor

__all__ = ["FailureLimits", "record_failure", "retry_after"]


@dataclass(frozen=True, slots=True)
class FailureLimits:
    per_client: int = 5
    client_window: timedelta = timedelta(minutes=5)
    overall: int = 30
    overall_window: timedelta = timedelta(minutes=1)


async def retry_after(db: Executor, client: str, now: datetime, limits: FailureLimits
                      ) -> float:
    """Seconds until ``client`` may have a token compared; 0 when it may now."""
    row = await db.fetchrow(
        "SELECT (SELECT failed_at FROM admin_login_failures "
        "        WHERE client = $1 AND failed_at > $2 "
        "        ORDER BY failed_at DESC OFFSET $3 LIMIT 1) AS client_nth, "
        "       (SELECT failed_at FROM admin_login_failures "
        "        WHERE failed_at > $4 "
        "        ORDER BY failed_at DESC OFFSET $5 LIMIT 1) AS overall_nth",
        client, now - limits.client_window, limits.per_client - 1,
        now - limits.overall_window, limits.overall - 1)
    assert row is not None
    ends = []
    if row["client_nth"] is not None:
        ends.append(row["client_nth"] + limits.client_window)
    if row["overall_nth"] is not None:
        ends.append(row["overall_nth"] + limits.overall_window)
    if not ends:
        return 0.0
    wait: float = (max(ends) - now).total_seconds()
    return max(1.0, wait)


async def record_failure(db: Executor, client: str, now: datetime, limits: FailureLimits
                         ) -> None:
    oldest = now - max(limits.client_window, limits.overall_window)
    await db.execute("DELETE FROM admin_login_failures WHERE failed_at <= $1", oldest)
    await db.execute("INSERT INTO admin_login_failures (client, failed_at) VALUES ($1, $2)",
                     client, now)

"""The dashboard's last reports: each filter's report is computed at most once per
refresh period, however many browsers (or API clients) ask.

A cache, not state: every process (worker, replica) keeps its own, and a report that
is missing or too old is computed again from the database, which holds everything a
report says. So replicas behind a load balancer may show reports a refresh period
apart; none of them is wrong, and the database does one report per period per
process instead of one per viewer. Viewers that arrive while a report is being
computed wait for that computation; one that leaves does not cancel it for the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shadowproxy.tasks import cancel_and_wait, spawn

__all__ = ["ReportCache"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    value: T
    at: float


class ReportCache(Generic[T]):
    """Values by key, fresh for ``period_s``; at most ``entries`` keys are kept."""

    def __init__(self, period_s: float, *, entries: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._period = period_s
        self._entries = entries
        self._clock = clock
        self._fresh: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._computing: dict[Hashable, asyncio.Task[T]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        entry = self._fresh.get(key)
        if entry is not None and self._clock() - entry.at < self._period:
            self._fresh.move_to_end(key)
            return entry.value
        task = self._computing.get(key)
        if task is None:
            task = spawn(self._compute(key, compute), name=f"dashboard-report:{key!r}")
            self._computing[key] = task
        # Shielded: a viewer who leaves must not cancel the report the others wait for.
        return await asyncio.shield(task)

    async def _compute(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            self._fresh[key] = _Entry(value, self._clock())
            self._fresh.move_to_end(key)
            while len(self._fresh) > self._entries:
                self._fresh.popitem(last=False)
            return value
        finally:
            self._computing.pop(key, None)

    async def close(self) -> None:
        """Stop reports still being computed (the admin app is shutting down)."""
        for task in list(self._computing.values()):
            await cancel_and_wait(task)
        self._fresh.clear()

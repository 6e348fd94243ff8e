"""An admin listener with reviewers, judged pairs and a clock the test moves.

Shared by the admin-access, review API, review page and browser tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from shadowproxy.proxy.admin import AdminAccess, make_admin_app
from shadowproxy.proxy.dashboard import Dashboard
from shadowproxy.records import PairRecord
from shadowproxy.store.review_queue import QueueRules
from shadowproxy.store.reviewers import add_reviewer
from shadowproxy.store.urls import asyncpg_dsn
from tests.fakes.verdicts import Judged, mix, write

ADMIN_TOKEN = "admin-secret-token-0123456789"
T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)


@dataclass
class Clock:
    """The admin listener's time; ``advance`` moves it."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def ready() -> dict[str, Any]:
    return {"ready": True}


@dataclass
class Rig:
    """What a test configures; :meth:`app` builds a fresh admin app (a worker or a
    replica) on the same database each time it is called."""

    database_url: str
    token: str | None = ADMIN_TOKEN
    clock: Clock = field(default_factory=Clock)
    access: dict[str, Any] = field(default_factory=dict)
    rules: QueueRules = field(default_factory=lambda: QueueRules(frame_cache_s=0))

    def app(self) -> web.Application:
        dashboard = Dashboard(self.database_url)
        return make_admin_app(
            ready=ready, metrics=lambda: (b"", "text/plain"), token=self.token,
            database_url=self.database_url,
            access=AdminAccess(token=self.token, clock=self.clock, **self.access),
            review=self.rules, extra_routes=dashboard.routes(),
            extra_cleanup=[dashboard.cleanup])


async def reviewer(database_url: str, name: str) -> str:
    """A reviewer's token, as `shadowproxy reviewer add` would print it."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await add_reviewer(conn, name)
    finally:
        await conn.close()


async def judged(database_url: str, tag: str | None, *, worse: int = 0, better: int = 0,
                 equivalent: int = 0, first: int = 0, method: str = "judge"
                 ) -> list[tuple[PairRecord, Judged]]:
    """Pairs the judge decided (or ``method``), stored as ``diff`` leaves them."""
    rows = mix(tag, worse=worse, better=better, equivalent=equivalent, first=first,
               method=method)
    await write(database_url, rows)
    return rows


async def fetch(database_url: str, sql: str, *args: Any) -> Sequence[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()

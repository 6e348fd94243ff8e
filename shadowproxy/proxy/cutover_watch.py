"""Each worker's view of the cutover plans: a short poll of ``cutover_plans`` (asyncpg).

A poll, not LISTEN/NOTIFY: a LISTEN needs a session of its own per worker that stays
open (transaction-mode poolers such as PgBouncer's do not carry it), and notifications
sent while that session is down are lost, so a poll would be needed for recovery anyway.
Reading a table of one row per tag every ``CUTOVER_POLL_S`` (2 s) costs the database
next to nothing, and bounds how late a worker follows a change. The same loop writes the
guard's rollbacks, retrying them while the database is away.

Database down: the last plans seen stay in force (logged once, and once more when it is
back); a worker that never read them routes nothing. Nothing here ever raises the
percent above what a plan said.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shadowproxy.cutover import plans_db
from shadowproxy.cutover.plan import Plan

__all__ = ["GuardRollback", "PlanWatch"]

log = logging.getLogger("shadowproxy.proxy.cutover")
_QUERY_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class GuardRollback:
    tag: str
    started_at: datetime  # the plan the guard watched
    reason: str
    actor: str


class PlanWatch:
    def __init__(self, dsn: str, *, poll_s: float,
                 on_plans: Callable[[Sequence[Plan]], None]) -> None:
        self._dsn = dsn
        self._poll_s = poll_s
        self._on_plans = on_plans
        self._conn: asyncpg.Connection | None = None
        self._rollbacks: list[GuardRollback] = []
        self._failing = False
        self.reads = 0
        self._wake = asyncio.Event()

    def roll_back(self, rollback: GuardRollback) -> None:
        """Write this guard rollback to the shared plan now (and until it is written)."""
        self._rollbacks.append(rollback)
        self._wake.set()

    async def poll_once(self) -> bool:
        """Write pending rollbacks, read the plans; False when the database did not answer."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._dsn, timeout=_QUERY_TIMEOUT_S)
            conn = self._conn
            async with asyncio.timeout(_QUERY_TIMEOUT_S * 2):
                while self._rollbacks:
                    rollback = self._rollbacks[0]
                    await plans_db.guard_rollback(conn, rollback.tag, rollback.started_at,
                                                  rollback.reason, rollback.actor)
                    self._rollbacks.pop(0)
                plans = await plans_db.read_plans(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._drop_connection()
            if not self._failing:
                self._failing = True
                log.warning("cutover plans unreadable (%s): keeping the last plans seen "
                            "until the database answers", type(exc).__name__)
            return False
        if self._failing:
            self._failing = False
            log.info("cutover plans readable again")
        self.reads += 1
        self._on_plans(plans)
        return True

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            while True:
                await self.poll_once()
                self._wake.clear()
                try:
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self._drop_connection()

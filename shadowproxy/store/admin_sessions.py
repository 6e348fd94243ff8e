"""Signed-in browsers on the admin listener, shared by every worker and replica.

A session id is 256 random bits, given to the browser as a cookie and stored only as
HMAC-SHA256(key, id) in ``admin_sessions.id_sha256``: a reader of the table cannot sign
in, and the key is the admin token, so changing ``ADMIN_TOKEN`` signs every browser out
(the way to end sessions after a leak). Each session has its own CSRF token (random,
sent back in the page, required on every state-changing request the cookie
authenticates). ``reviewer`` NULL is an admin session; removing a reviewer deletes theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from shadowproxy.store.reviewers import Executor

__all__ = ["SESSION_TTL", "Session", "SessionKeys"]

SESSION_TTL = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Session:
    reviewer: str | None  # None: the admin
    csrf_token: str
    expires_at: datetime


class SessionKeys:
    """Creates, finds and ends sessions; ``key`` keys the stored hash of each id."""

    def __init__(self, key: bytes, ttl: timedelta = SESSION_TTL) -> None:
        self._key = key
        self.ttl = ttl

    def _stored(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()

    async def create(self, db: Executor, reviewer: str | None, now: datetime
                     ) -> tuple[str, Session]:
        """A new session (expired ones are swept first); the id for the cookie."""
        session_id = secrets.token_urlsafe(32)
        session = Session(reviewer, secrets.token_urlsafe(32), now + self.ttl)
        await db.execute("DELETE FROM admin_sessions WHERE expires_at <= $1", now)
        await db.execute(
            "INSERT INTO admin_sessions (id_sha256, reviewer, csrf_token, created_at, "
            "expires_at) VALUES ($1, $2, $3, $4, $5)",
            self._stored(session_id), reviewer, session.csrf_token, now, session.expires_at)
        return session_id, session

    async def find(self, db: Executor, session_id: str | None, now: datetime
                   ) -> Session | None:
        if not session_id or len(session_id) > 200:
            return None
        row = await db.fetchrow(
            "SELECT reviewer, csrf_token, expires_at FROM admin_sessions "
            "WHERE id_sha256 = $1 AND expires_at > $2", self._stored(session_id), now)
        if row is None:
            return None
        return Session(row["reviewer"], row["csrf_token"], row["expires_at"])

    async def end(self, db: Executor, session_id: str | None) -> None:
        if session_id and len(session_id) <= 200:
            await db.execute("DELETE FROM admin_sessions WHERE id_sha256 = $1",
                             self._stored(session_id))

"""The people who label pairs: ``shadowproxy reviewer add|list|remove`` and token lookup.

A reviewer's token is drawn here, shown once by the command, and stored only as its
SHA-256: the table never holds a credential, and a 256-bit random token needs no slow
hash. Everything is in the database, so adding or removing a reviewer takes effect at
the next request on every worker and replica; removing one also ends their browser
sessions (``admin_sessions`` cascades) and keeps their labels.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = [
    "RESERVED_NAMES",
    "TOKEN_PREFIX",
    "BadReviewerName",
    "Executor",
    "ReviewerRow",
    "add_reviewer",
    "check_name",
    "find_reviewer",
    "list_reviewers",
    "remove_reviewer",
    "token_sha256",
]

# A connection (pooled or not) or a pool: anything that runs a statement.
Executor = asyncpg.Connection | asyncpg.Pool | asyncpg.pool.PoolConnectionProxy
TOKEN_PREFIX = "spr_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Labels by the admin token are stored under "admin"; no reviewer may take that name.
RESERVED_NAMES = frozenset({"admin"})


class BadReviewerName(ValueError):
    """A name the command refuses; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ReviewerRow:
    name: str
    created_at: datetime
    labels: int
    skips: int
    last_label_at: datetime | None


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise BadReviewerName(
            f"reviewer name {name!r:.80}: 1-64 characters, letters, digits and . _ @ -, "
            "starting with a letter or digit")
    if name.lower() in RESERVED_NAMES:
        raise BadReviewerName(f"reviewer name {name!r}: reserved for the admin token")
    return name


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


async def add_reviewer(db: Executor, name: str) -> str:
    """Store a new reviewer; the token, which is never stored and never shown again."""
    check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await db.fetchrow(
        "INSERT INTO reviewers (name, token_sha256) VALUES ($1, $2) "
        "ON CONFLICT (name) DO NOTHING RETURNING name", name, token_sha256(token))
    if row is None:
        raise BadReviewerName(f"reviewer {name!r} exists; `reviewer remove {name}` first "
                              "to give them a new token")
    return token


async def remove_reviewer(db: Executor, name: str) -> None:
    """Remove a reviewer (their sessions end; their labels stay)."""
    status = await db.execute("DELETE FROM reviewers WHERE name = $1", name)
    if status.endswith(" 0"):
        raise BadReviewerName(f"no reviewer named {name!r:.80} (see `reviewer list`)")


async def list_reviewers(db: Executor) -> list[ReviewerRow]:
    rows = await db.fetch(
        "SELECT r.name, r.created_at, "
        "       count(v.pair_id) FILTER (WHERE v.verdict IS NOT NULL) AS labels, "
        "       count(v.pair_id) FILTER (WHERE v.verdict IS NULL) AS skips, "
        "       max(v.created_at) AS last_label_at "
        "FROM reviewers AS r LEFT JOIN reviews AS v ON v.reviewer = r.name "
        "GROUP BY r.name, r.created_at ORDER BY r.name")
    return [ReviewerRow(r["name"], r["created_at"], r["labels"], r["skips"],
                        r["last_label_at"]) for r in rows]


async def find_reviewer(db: Executor, token: str) -> str | None:
    """The name of the reviewer holding ``token``, if any (looked up by its hash)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    name: str | None = await db.fetchval(
        "SELECT name FROM reviewers WHERE token_sha256 = $1", token_sha256(token))
    return name

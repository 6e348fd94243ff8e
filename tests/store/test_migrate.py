"""The migrations build exactly the schema the models describe, and undo it."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shadowproxy.store import migrate
from shadowproxy.store.models import Base, include_name
from shadowproxy.store.partitions import ensure_days
from shadowproxy.store.urls import asyncpg_dsn

# PRODUCT.md, "The analyst view: comparisons": these names are a promise to analysts.
DOCUMENTED_VIEW_COLUMNS = [
    "id", "received_at", "api", "path", "tag", "stream", "request", "request_sha256",
    *(
        f"{side}_{name}"
        for side in ("primary", "shadow")
        for name in ("model", "status", "latency_ms", "ttft_ms", "input_tokens",
                     "output_tokens", "cost_usd", "text", "tool_calls", "stop_reason",
                     "error")
    ),
    "shadow_outcome",
    # the scores `diff` fills in
    "exact_match", "text_similarity", "tool_call_match", "stop_reason_match", "agree",
    # human review
    "human_verdict", "human_labels",
]


async def _relations(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    assert await migrate.current(url) is None

    await migrate.upgrade(url)
    assert await migrate.current(url) == migrate.head()
    assert {"pairs", "scores", "comparisons"} <= await _relations(url)

    await migrate.downgrade(url, "base")
    assert await migrate.current(url) is None
    assert await _relations(url) == {"alembic_version"}

    await migrate.upgrade(url)
    assert await migrate.current(url) == migrate.head()


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    await migrate.upgrade(database_url)
    assert await migrate.current(database_url) == migrate.head()


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync, opts={"compare_type": True, "compare_server_default": True,
                        "include_name": include_name}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_comparisons_view_has_every_documented_column(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'comparisons'"
        )
    finally:
        await conn.close()
    columns = {r["column_name"] for r in rows}
    missing = [c for c in DOCUMENTED_VIEW_COLUMNS if c not in columns]
    assert missing == []


async def test_the_view_shows_every_stored_column(database_url: str) -> None:
    """The view is static SQL in the migrations; the tables derive from records.py.
    A field added there and forgotten in the view would be invisible to analysts."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'comparisons'"
        )
    finally:
        await conn.close()
    shown = {r["column_name"] for r in rows}
    stored = {c.name for c in Base.metadata.tables["pairs"].columns} | {
        c.name for c in Base.metadata.tables["scores"].columns if c.name != "pair_id"}
    assert stored - shown == set()


async def test_view_joins_scores_and_keeps_unscored_pairs(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await ensure_days(conn, [date(2026, 5, 4)])
        await conn.execute(
            """
            INSERT INTO pairs (id, received_at, api, path, stream, request_sha256,
                               shadow_outcome, client_disconnected)
            VALUES ('00000000-0000-0000-0000-000000000001', '2026-05-04 09:00Z',
                    'openai.chat', '/v1/chat/completions', false, 'ab', 'ok', false),
                   ('00000000-0000-0000-0000-000000000002', '2026-05-04 09:01Z',
                    'openai.chat', '/v1/chat/completions', false, 'cd', 'ok', false);
            INSERT INTO scores (pair_id, received_at, exact_match, text_similarity,
                                tool_call_match, stop_reason_match, refusal, agree)
            VALUES ('00000000-0000-0000-0000-000000000001', '2026-05-04 09:00Z',
                    true, 1.0, true, true, false, true);
            """
        )
        rows = await conn.fetch("SELECT request_sha256, agree FROM comparisons ORDER BY 1")
    finally:
        await conn.close()
    assert [(r["request_sha256"], r["agree"]) for r in rows] == [("ab", True), ("cd", None)]


def test_script_directory_holds_the_revisions() -> None:
    with migrate.script_location() as location:
        assert (location / "env.py").is_file()
        assert (location / "versions" / "0001_initial.py").is_file()


def test_every_package_is_listed_for_installation() -> None:
    """pyproject lists packages explicitly (for shadowproxy._migrations); a new
    subpackage missing from that list would be absent from `pip install` and Docker."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "shadowproxy").rglob("__init__.py")
    }
    listed = set(setuptools["packages"])
    assert on_disk - listed == set()
    assert setuptools["package-dir"]["shadowproxy._migrations"] == "migrations"
    assert {"shadowproxy._migrations", "shadowproxy._migrations.versions"} <= listed

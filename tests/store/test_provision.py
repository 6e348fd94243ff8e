"""Whether serve must migrate, asked of a real PostgreSQL: the start skips the migration
child only when the database is plainly at the shipped head."""

from __future__ import annotations

import socket

from shadowproxy.store import migrate
from shadowproxy.store.provision import at_shipped_head, migrate_if_behind


async def test_a_database_at_the_head_needs_nothing(database_url: str) -> None:
    assert await at_shipped_head(database_url)


async def test_a_database_never_migrated_or_behind_is_migrated(empty_database_url: str) -> None:
    assert not await at_shipped_head(empty_database_url)
    await migrate.upgrade(empty_database_url, "0001")
    assert not await at_shipped_head(empty_database_url)
    await migrate_if_behind(empty_database_url)  # the child, as before
    assert await migrate.current(empty_database_url) == migrate.head()
    assert await at_shipped_head(empty_database_url)


async def test_a_database_that_cannot_be_reached_is_left_to_the_migration_child() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{port}/nothing"
    assert not await at_shipped_head(url)

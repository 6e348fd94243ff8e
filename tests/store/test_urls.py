"""Every spelling a user may give reaches both drivers in the form each one speaks."""

from __future__ import annotations

import pytest

from shadowproxy.store.urls import asyncpg_dsn, sqlalchemy_url


@pytest.mark.parametrize("given", [
    "postgresql+asyncpg://u:p@db:5432/x", "postgresql://u:p@db:5432/x", "postgres://u:p@db:5432/x",
])
def test_every_spelling_gives_both_forms(given: str) -> None:
    assert sqlalchemy_url(given) == "postgresql+asyncpg://u:p@db:5432/x"
    assert asyncpg_dsn(sqlalchemy_url(given)) == "postgresql://u:p@db:5432/x"


def test_a_url_of_another_database_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sqlalchemy_url("mysql://db/x")

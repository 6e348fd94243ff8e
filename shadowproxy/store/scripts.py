"""Where the Alembic scripts are, and their head, without importing Alembic: the serve
process uses this to skip the migration child when the database is already at the head.
The scripts ship as ``shadowproxy._migrations`` in an installed package and are the
top-level ``migrations/`` directory in a source checkout."""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import shadowproxy
from shadowproxy.store.migration_heads import head_revision


@contextmanager
def script_location() -> Iterator[Path]:
    """The Alembic script directory, installed or in a source checkout."""
    try:
        resource = importlib.resources.files("shadowproxy._migrations")
    except ModuleNotFoundError:
        checkout = Path(shadowproxy.__file__).resolve().parent.parent / "migrations"
        if not (checkout / "env.py").is_file():
            raise
        yield checkout
        return
    with importlib.resources.as_file(resource) as path:
        yield path


def shipped_head() -> str | None:
    """The head revision of the shipped scripts, or None when their sources do not say
    it plainly (Alembic then decides). Alembic reads every ``*.py`` in ``versions/``
    but ``__init__``; so does this."""
    try:
        with script_location() as location:
            sources = [path.read_text(encoding="utf-8")
                       for path in sorted((location / "versions").glob("*.py"))
                       if not path.name.startswith("__init__")]
    except (OSError, ModuleNotFoundError, UnicodeDecodeError):
        return None
    return head_revision(sources)

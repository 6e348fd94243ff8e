"""The head revision of the shipped migration scripts, read from their source text.

``serve`` checks whether the database is already at the head before it starts a migration
child (Alembic and SQLAlchemy in a Python process of their own cost more than a second of
CPU on a small machine, on every start). Only each script's module-level ``revision`` and
``down_revision`` assignments are read, as Alembic's template writes them; whatever this
does not understand (no single head, a value that is not a literal) gives None, and the
child decides as before. Pure: texts in, a revision out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Revision", "head_revision", "read_revision"]


@dataclass(frozen=True, slots=True)
class Revision:
    revision: str
    down: frozenset[str]  # empty for the first revision; two or more for a merge


def _literal(node: ast.expr | None) -> frozenset[str] | None:
    """The revisions a ``down_revision`` value names; None when it is not a literal."""
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def read_revision(source: str) -> Revision | None:
    """A script's revision and the ones it revises; None if it has no readable pair."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    values: dict[str, ast.expr | None] = {}
    for node in tree.body:
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            values[target.id] = value
    if "revision" not in values or "down_revision" not in values:
        return None
    revision, down = _literal(values["revision"]), _literal(values["down_revision"])
    if revision is None or len(revision) != 1 or down is None:
        return None
    return Revision(next(iter(revision)), down)


def head_revision(sources: Iterable[str]) -> str | None:
    """The one revision no other script revises; None for none, several, or a script
    that cannot be read (the caller then lets Alembic decide)."""
    revisions: list[Revision] = []
    for source in sources:
        if (found := read_revision(source)) is None:
            return None
        revisions.append(found)
    if len({r.revision for r in revisions}) != len(revisions):
        return None
    revised = set().union(*(r.down for r in revisions))
    heads = [r.revision for r in revisions if r.revision not in revised]
    return heads[0] if len(heads) == 1 else None

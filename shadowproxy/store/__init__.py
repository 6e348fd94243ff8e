"""The comparison store: PostgreSQL schema, migrations, and the path pairs take into it.

::

    mirror ──submit()──▶ PairWriter ──COPY batch──▶ pairs ◀── scores (diff)
                            │  ▲                      │
              db down ──────▼  │ replay, in order      └─▶ view comparisons (analysts)
                           Spool (DATA_DIR/spool)
    RetentionTask: DELETE expired pairs in batches, hourly
    EmbeddedPostgres: pgserver cluster in DATA_DIR/pg when no DATABASE_URL is set

The schema lives in :mod:`.models` and in the static Alembic revisions shipped as
``shadowproxy._migrations``; :mod:`.migrate` applies them from inside an event loop.
"""

from shadowproxy.store.embedded import EmbeddedPostgres
from shadowproxy.store.migrate import asyncpg_url, current, downgrade, upgrade
from shadowproxy.store.models import Base, Pair, Score
from shadowproxy.store.retention import RetentionTask, delete_expired
from shadowproxy.store.spool import Spool
from shadowproxy.store.writer import PairWriter

__all__ = [
    "Base",
    "EmbeddedPostgres",
    "Pair",
    "PairWriter",
    "RetentionTask",
    "Score",
    "Spool",
    "asyncpg_url",
    "current",
    "delete_expired",
    "downgrade",
    "upgrade",
]

"""The comparison store: PostgreSQL schema, migrations, and the path pairs take into it.

::

    mirror ──submit()──▶ PairWriter ──COPY batch──▶ pairs ◀── scores (diff)
                            │  ▲                      │
              db down ──────▼  │ replay, in order      └─▶ view comparisons (analysts)
                           Spool (DATA_DIR/spool)
    RetentionTask: DELETE expired pairs in batches, hourly
    EmbeddedPostgres: pgserver cluster in DATA_DIR/pg when no DATABASE_URL is set

The schema lives in :mod:`.models` and in the static Alembic revisions shipped as
``shadowproxy._migrations``; :mod:`.migrate` applies them from inside an event loop;
:mod:`.scripts` finds them and their head without Alembic (read by
:mod:`.migration_heads`, pure), and :mod:`.provision` skips the migration child at
``serve``'s start when the database is already there.
:mod:`.urls` is the one place that turns a user's PostgreSQL URL into each driver's form.
"""

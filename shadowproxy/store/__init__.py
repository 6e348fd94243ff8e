"""The comparison store: PostgreSQL schema, migrations, and the path pairs take into it.

::

    mirror ──submit()──▶ PairWriter ──COPY batch──▶ pairs ◀── scores (diff)
                            │  ▲                      │
              db down ──────▼  │ replay, in order      └─▶ view comparisons (analysts)
                           Spool (DATA_DIR/spool)
    pairs, scores, reviews, review_items: one partition per UTC day (partitions.py)
    StoreMaintenance (hourly): days ahead; retention drops expired days whole and trims
        the partly expired one; moves pre-partitioning rows (legacy_move.py) until done
    EmbeddedPostgres: pgserver cluster in DATA_DIR/pg when no DATABASE_URL is set

The schema lives in :mod:`.models` and in the static Alembic revisions shipped as
``shadowproxy._migrations``; :mod:`.migrate` applies them from inside an event loop;
:mod:`.scripts` finds them and their head without Alembic (read by
:mod:`.migration_heads`, pure), and :mod:`.provision` skips the migration child at
``serve``'s start when the database is already there.
:mod:`.urls` is the one place that turns a user's PostgreSQL URL into each driver's form.
"""

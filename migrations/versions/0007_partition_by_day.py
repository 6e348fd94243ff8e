"""Partition pairs, scores, reviews and review_items by day of received_at.

Retention then drops a day's tables instead of deleting rows from one big table. A
partitioned table's unique keys must hold the partition key, so ``pairs`` is keyed by
``(id, received_at)`` and the three tables that hang off a pair carry its
``received_at``; their foreign keys live on each day's partitions
(:mod:`shadowproxy.store.partitions` creates the days; this revision creates none).

In place, in two steps, so that a big table holds neither ``serve`` nor a deploy:

1. **This revision** (one transaction, seconds at any size): the four tables and their
   indexes are set aside as ``legacy_*``, partitioned tables with the same columns take
   their names, and the writer stores new pairs in them at once. While legacy rows
   remain, ``comparisons`` is ``comparisons_partitioned`` (the view over the new tables)
   plus the legacy rows not yet moved, so analysts and reports see every pair; so is
   ``human_reviews`` (``human_reviews_partitioned`` plus the legacy labels).
2. **The move** (:mod:`shadowproxy.store.legacy_move`): rows go over in batches, a pair
   with its scores, reviews and review items in one transaction, newest first.
   ``shadowproxy migrate`` finishes it before it exits; ``serve`` (which migrates at
   start) serves at once and moves in the background. Killed at any point, nothing is
   lost or doubled: a batch commits whole or not at all, and what is left is exactly
   what ``legacy_pairs`` still holds. The batch that empties it drops the legacy tables
   and renames ``comparisons_partitioned`` and ``human_reviews_partitioned`` to
   ``comparisons`` and ``human_reviews``.

The new tables have every column, default, check and index the old ones had (0003's
review columns and indexes, 0004's ``served_by``, and whatever a revision before this one
added): columns, defaults and checks by ``LIKE``, plain indexes copied from the catalog
under their old names. Keys and unique constraints gain ``received_at``.

Moving millions of rows inside Alembic's one transaction would hold an exclusive lock on
``pairs`` for the whole copy (the writer would stall, then spool) and a kill would throw
all of it away; hence the split.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("pairs", "scores", "reviews", "review_items")
LEGACY = "legacy_"

# The view's columns, in the order analysts know them (0001 to 0004). A revision that adds
# a column to the view adds it at the end here: this one list builds the view over the
# partitioned tables, over the legacy ones, and the downgrade's.
VIEW_COLUMNS = """
    p.id, p.received_at, p.api, p.path, p.tag, p.stream, p.request, p.request_sha256,
    p.shadow_outcome, p.shadow_reason, p.client_disconnected,
    p.primary_model, p.primary_status, p.primary_latency_ms, p.primary_ttft_ms,
    p.primary_input_tokens, p.primary_output_tokens, p.primary_cache_creation_input_tokens,
    p.primary_cache_read_input_tokens, p.primary_cost_usd, p.primary_text,
    p.primary_tool_calls, p.primary_stop_reason, p.primary_error, p.primary_request_id,
    p.shadow_model, p.shadow_status, p.shadow_latency_ms, p.shadow_ttft_ms,
    p.shadow_input_tokens, p.shadow_output_tokens, p.shadow_cache_creation_input_tokens,
    p.shadow_cache_read_input_tokens, p.shadow_cost_usd, p.shadow_text,
    p.shadow_tool_calls, p.shadow_stop_reason, p.shadow_error, p.shadow_request_id,
    p.replay_model, p.replay_status, p.replay_latency_ms, p.replay_ttft_ms,
    p.replay_input_tokens, p.replay_output_tokens, p.replay_cache_creation_input_tokens,
    p.replay_cache_read_input_tokens, p.replay_cost_usd, p.replay_text,
    p.replay_tool_calls, p.replay_stop_reason, p.replay_error, p.replay_request_id,
    p.stored_at,
    s.scored_at, s.exact_match, s.text_similarity, s.tool_call_match, s.stop_reason_match,
    s.json_match, s.refusal, s.length_ratio, s.agree, s.replay_agree,
    s.replay_text_similarity, s.replay_tool_call_match,
    p.conversation_id, p.turn,
    s.verdict, s.verdict_method, s.judge_model, s.judge_reason, s.judge_cost_usd,
    s.judge_calls, s.position_inconsistent, s.json_diff_paths, s.judged_at,
    s.replay_verdict, s.replay_verdict_method, s.replay_judge_reason,
    s.replay_judge_cost_usd, s.replay_judge_calls, s.replay_position_inconsistent,
    h.human_verdict, h.human_labels,
    p.served_by"""


def view_select(prefix: str = "", *, keyed: bool = True) -> str:
    """The view's SELECT over ``{prefix}pairs``…; ``keyed`` joins on the whole pair key
    (so each day's pair meets only that day's scores and reviews)."""

    def same_pair(alias: str) -> str:
        key = f"{alias}.pair_id = p.id"
        return f"{key} AND {alias}.received_at = p.received_at" if keyed else key

    return (
        f"SELECT{VIEW_COLUMNS}\n"
        f"FROM {prefix}pairs AS p\n"
        f"LEFT JOIN {prefix}scores AS s ON {same_pair('s')}\n"
        "LEFT JOIN LATERAL (\n"
        "    SELECT (array_agg(r.verdict ORDER BY r.created_at, r.reviewer))[1]"
        " AS human_verdict,\n"
        "           count(*)::integer AS human_labels\n"
        f"    FROM {prefix}reviews AS r WHERE {same_pair('r')} AND r.verdict IS NOT NULL\n"
        ") AS h ON true"
    )


def human_reviews_select(prefix: str = "", *, keyed: bool = True) -> str:
    """0003's ``human_reviews`` (one row per label or skip) over ``{prefix}reviews``…"""
    day = " AND {a}.received_at = r.received_at" if keyed else ""
    return (
        "SELECT r.pair_id, p.received_at, p.tag, r.reviewer, r.choice,\n"
        "       r.verdict AS human_verdict, s.verdict AS judge_verdict, s.verdict_method,\n"
        "       r.shadow_first, r.note, r.created_at AS labelled_at\n"
        f"FROM {prefix}reviews AS r JOIN {prefix}pairs AS p ON p.id = r.pair_id"
        f"{day.format(a='p')}\n"
        f"LEFT JOIN {prefix}scores AS s ON s.pair_id = r.pair_id{day.format(a='s')}"
    )


# While legacy rows remain: the partitioned views plus the legacy rows not moved yet. A
# pair in both (a spooled copy written again after the upgrade) shows once.
VIEWS = ("comparisons", "human_reviews")
TRANSITIONAL_VIEWS = (
    "CREATE VIEW comparisons AS\n"
    "SELECT * FROM comparisons_partitioned\n"
    "UNION ALL\n"
    f"{view_select(LEGACY, keyed=False)}\n"
    "WHERE NOT EXISTS (SELECT 1 FROM pairs AS n "
    "WHERE n.id = p.id AND n.received_at = p.received_at)",
    "CREATE VIEW human_reviews AS\n"
    "SELECT * FROM human_reviews_partitioned\n"
    "UNION ALL\n"
    f"{human_reviews_select(LEGACY, keyed=False)}\n"
    "WHERE NOT EXISTS (SELECT 1 FROM reviews AS n "
    "WHERE n.pair_id = r.pair_id AND n.received_at = p.received_at "
    "AND n.reviewer = r.reviewer)",
)

# Keys and unique constraints gain the partition key; everything else comes from the old
# tables (LIKE: columns, defaults, checks; _copy_indexes: the plain indexes).
_KEYS = {
    "pairs": ["ALTER TABLE pairs ADD CONSTRAINT pk_pairs PRIMARY KEY (id, received_at)"],
    "scores": ["ALTER TABLE scores ADD CONSTRAINT pk_scores PRIMARY KEY (pair_id, received_at)"],
    "reviews": ["ALTER TABLE reviews ADD CONSTRAINT pk_reviews "
                "PRIMARY KEY (pair_id, received_at, reviewer)"],
    "review_items": [
        "ALTER TABLE review_items ADD CONSTRAINT pk_review_items PRIMARY KEY (id, received_at)",
        "ALTER TABLE review_items ADD CONSTRAINT uq_review_items_pair_id_received_at_reviewer"
        " UNIQUE (pair_id, received_at, reviewer)",
    ],
}

# The unpartitioned keys (0003), for the downgrade when no legacy tables are left.
_LEGACY_KEYS = {
    "pairs": ["ALTER TABLE legacy_pairs ADD CONSTRAINT legacy_pk_pairs PRIMARY KEY (id)"],
    "scores": [
        "ALTER TABLE legacy_scores ADD CONSTRAINT legacy_pk_scores PRIMARY KEY (pair_id)",
        "ALTER TABLE legacy_scores ADD CONSTRAINT fk_scores_pair_id_pairs FOREIGN KEY (pair_id)"
        " REFERENCES legacy_pairs (id) ON DELETE CASCADE",
    ],
    "reviews": [
        "ALTER TABLE legacy_reviews ADD CONSTRAINT legacy_pk_reviews "
        "PRIMARY KEY (pair_id, reviewer)",
        "ALTER TABLE legacy_reviews ADD CONSTRAINT fk_reviews_pair_id_pairs FOREIGN KEY (pair_id)"
        " REFERENCES legacy_pairs (id) ON DELETE CASCADE",
    ],
    "review_items": [
        "ALTER TABLE legacy_review_items ADD CONSTRAINT legacy_pk_review_items PRIMARY KEY (id)",
        "ALTER TABLE legacy_review_items ADD CONSTRAINT legacy_uq_review_items_pair_id_reviewer"
        " UNIQUE (pair_id, reviewer)",
        "ALTER TABLE legacy_review_items ADD CONSTRAINT fk_review_items_pair_id_pairs"
        " FOREIGN KEY (pair_id) REFERENCES legacy_pairs (id) ON DELETE CASCADE",
    ],
}

_LIKE = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"
_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (ONLY )?\S+ ")


def _indexes(table: str) -> list[str]:
    rows = op.get_bind().execute(sa.text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = CAST(:table AS regclass) ORDER BY 1"), {"table": table})
    return [r[0] for r in rows]


def _plain_indexes(table: str) -> list[tuple[str, str]]:
    """(name, definition) of the indexes on ``table`` that back no constraint."""
    rows = op.get_bind().execute(sa.text(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = CAST(:table AS regclass) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "ORDER BY 1"), {"table": table})
    return [(r[0], r[1]) for r in rows]


def _index_on(definition: str, name: str, table: str) -> str:
    """``definition`` (from pg_get_indexdef) as ``name`` on ``table``."""
    return _INDEX_DEF.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX {name} ON {table} ",
                          definition, count=1)


def _columns(table: str) -> list[str]:
    rows = op.get_bind().execute(sa.text(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = :table "
        "ORDER BY ordinal_position"), {"table": table})
    return [r[0] for r in rows]


def _exists(table: str) -> bool:
    return bool(op.get_bind().execute(
        sa.text("SELECT to_regclass(:table) IS NOT NULL"), {"table": table}).scalar())


def upgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    plain = {table: _plain_indexes(table) for table in TABLES}
    for table in TABLES:
        # Index names are per schema: the new tables' indexes take the old names.
        for index in _indexes(table):
            op.execute(f"ALTER INDEX {index} RENAME TO {(LEGACY + index)[:63]}")
        op.execute(f"ALTER TABLE {table} RENAME TO {LEGACY}{table}")
    for table in TABLES:
        day = "" if table == "pairs" else ", received_at timestamptz NOT NULL"
        op.execute(f"CREATE TABLE {table} (LIKE {LEGACY}{table} {_LIKE}{day})"
                   " PARTITION BY RANGE (received_at)")
        for statement in _KEYS[table]:
            op.execute(statement)
        for name, definition in plain[table]:
            op.execute(_index_on(definition, name, table))
    has_rows = op.get_bind().execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM legacy_pairs)")).scalar()
    if has_rows:
        op.execute(f"CREATE VIEW comparisons_partitioned AS\n{view_select()}")
        op.execute(f"CREATE VIEW human_reviews_partitioned AS\n{human_reviews_select()}")
        for statement in TRANSITIONAL_VIEWS:
            op.execute(statement)
    else:
        op.execute("DROP TABLE legacy_review_items, legacy_reviews, legacy_scores, legacy_pairs")
        op.execute(f"CREATE VIEW comparisons AS\n{view_select()}")
        op.execute(f"CREATE VIEW human_reviews AS\n{human_reviews_select()}")


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
        op.execute(f"DROP VIEW IF EXISTS {view}_partitioned")
    if not _exists("legacy_pairs"):
        for table in TABLES:
            op.execute(f"CREATE TABLE {LEGACY}{table} (LIKE {table} {_LIKE})")
            if table != "pairs":
                op.execute(f"ALTER TABLE {LEGACY}{table} DROP COLUMN received_at")
            for statement in _LEGACY_KEYS[table]:
                op.execute(statement)
            for name, definition in _plain_indexes(table):
                op.execute(_index_on(definition, LEGACY + name, LEGACY + table))
    for table in TABLES:
        columns = ", ".join(_columns(LEGACY + table))
        op.execute(f"INSERT INTO {LEGACY}{table} ({columns}) SELECT {columns} FROM {table} "
                   "ON CONFLICT DO NOTHING")
    op.execute("DROP TABLE review_items, reviews, scores, pairs")
    for table in TABLES:
        for index in _indexes(LEGACY + table):
            if index.startswith(LEGACY):
                op.execute(f"ALTER INDEX {index} RENAME TO {index[len(LEGACY):]}")
        op.execute(f"ALTER TABLE {LEGACY}{table} RENAME TO {table}")
    op.execute(f"CREATE VIEW comparisons AS\n{view_select(keyed=False)}")
    op.execute(f"CREATE VIEW human_reviews AS\n{human_reviews_select(keyed=False)}")

"""Report summaries, judging by sample, and the indexes they read.

* ``report_rollups``: the report's numbers per tag for each 10-minute slot and each
  day, so a report reads a few hundred rows whatever the number of pairs;
  ``report_stale`` (slots ``diff`` changed) and ``report_state`` (the watermark of
  pairs already summarised) keep them fresh.
* ``scores.tag``, and an index over the judge's frame by tag and each pair's place in
  the judge's sample (a hash of its id, ``shadowproxy.decision.sampling``);
  ``judge_samples`` keeps each tag's sample threshold. Rows scored before this
  migration get their pair's tag here (one UPDATE: about a minute per million scores).
* ``pairs``: an index on ``stored_at`` (pairs stored after a slot was summarised) and
  ``(conversation_id, received_at, id) INCLUDE (tag)`` in place of ``(conversation_id)``.

Nothing here rewrites a table: the new columns are nullable without a default.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Literal copies of shadowproxy.decision.sampling's JUDGE_FRAME_SQL and JUDGE_RANK_SQL
# (a migration never changes with the code; a test checks they are equal).
_FRAME = "verdict = 'unjudged' OR verdict_method = 'judge'"
_RANK = ("((('x'::text || substr(md5('shadowproxy-judge-sample:'::text || pair_id::text), "
         "1, 13)))::bit(52)::bigint::double precision / "
         "4503599627370496.0::double precision)")


def upgrade() -> None:
    op.add_column("scores", sa.Column("tag", sa.Text(), nullable=True))
    op.execute("UPDATE scores AS s SET tag = p.tag FROM pairs AS p "
               "WHERE p.id = s.pair_id AND p.tag IS NOT NULL")
    op.create_index("ix_scores_judge_frame", "scores", ["tag", sa.text(_RANK)],
                    postgresql_where=sa.text(_FRAME))
    op.create_index(op.f("ix_pairs_stored_at"), "pairs", ["stored_at"])
    # Covering: "an earlier pair of this conversation and tag?" reads the index only.
    op.create_index(op.f("ix_pairs_conversation_id_received_at_id"), "pairs",
                    ["conversation_id", "received_at", "id"], postgresql_include=["tag"])
    op.drop_index(op.f("ix_pairs_conversation_id"), table_name="pairs")
    op.create_table(
        "judge_samples",
        sa.Column("tagged", sa.Boolean(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("tagged", "tag", name=op.f("pk_judge_samples")),
    )
    op.create_table(
        "report_rollups",
        sa.Column("grain", sa.Text(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tagged", sa.Boolean(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("layout", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("facts", postgresql.JSONB(), nullable=False),
        sa.Column("models", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("examples", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "start", "tagged", "tag",
                                name=op.f("pk_report_rollups")),
    )
    op.create_table(
        "report_stale",
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_report_stale")),
    )
    op.create_table(
        "report_state",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_report_state")),
    )


def downgrade() -> None:
    op.drop_table("report_state")
    op.drop_table("report_stale")
    op.drop_table("report_rollups")
    op.drop_table("judge_samples")
    op.create_index(op.f("ix_pairs_conversation_id"), "pairs", ["conversation_id"])
    op.drop_index(op.f("ix_pairs_conversation_id_received_at_id"), table_name="pairs")
    op.drop_index(op.f("ix_pairs_stored_at"), table_name="pairs")
    op.drop_index("ix_scores_judge_frame", table_name="scores")
    op.drop_column("scores", "tag")

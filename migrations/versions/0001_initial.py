"""Initial schema: pairs, scores and the analyst view ``comparisons``.

Revision ID: 0001
Revises:
Create Date: 2025-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PRODUCT.md documents this view's columns for analysts: add columns freely, never
# rename or drop one.
COMPARISONS_VIEW = """
CREATE VIEW comparisons AS
SELECT
    p.id,
    p.received_at,
    p.api,
    p.path,
    p.tag,
    p.stream,
    p.request,
    p.request_sha256,
    p.shadow_outcome,
    p.shadow_reason,
    p.client_disconnected,
    p.primary_model,
    p.primary_status,
    p.primary_latency_ms,
    p.primary_ttft_ms,
    p.primary_input_tokens,
    p.primary_output_tokens,
    p.primary_cache_creation_input_tokens,
    p.primary_cache_read_input_tokens,
    p.primary_cost_usd,
    p.primary_text,
    p.primary_tool_calls,
    p.primary_stop_reason,
    p.primary_error,
    p.primary_request_id,
    p.shadow_model,
    p.shadow_status,
    p.shadow_latency_ms,
    p.shadow_ttft_ms,
    p.shadow_input_tokens,
    p.shadow_output_tokens,
    p.shadow_cache_creation_input_tokens,
    p.shadow_cache_read_input_tokens,
    p.shadow_cost_usd,
    p.shadow_text,
    p.shadow_tool_calls,
    p.shadow_stop_reason,
    p.shadow_error,
    p.shadow_request_id,
    p.replay_model,
    p.replay_status,
    p.replay_latency_ms,
    p.replay_ttft_ms,
    p.replay_input_tokens,
    p.replay_output_tokens,
    p.replay_cache_creation_input_tokens,
    p.replay_cache_read_input_tokens,
    p.replay_cost_usd,
    p.replay_text,
    p.replay_tool_calls,
    p.replay_stop_reason,
    p.replay_error,
    p.replay_request_id,
    p.stored_at,
    s.scored_at,
    s.exact_match,
    s.text_similarity,
    s.tool_call_match,
    s.stop_reason_match,
    s.json_match,
    s.refusal,
    s.length_ratio,
    s.agree,
    s.replay_agree,
    s.replay_text_similarity,
    s.replay_tool_call_match
FROM pairs AS p
LEFT JOIN scores AS s ON s.pair_id = p.id
"""


def upgrade() -> None:
    op.create_table(
        "pairs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("api", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("request", postgresql.JSONB(), nullable=True),
        sa.Column("request_sha256", sa.Text(), nullable=False),
        sa.Column("shadow_outcome", sa.Text(), nullable=False),
        sa.Column("shadow_reason", sa.Text(), nullable=True),
        sa.Column("client_disconnected", sa.Boolean(), nullable=False),
        sa.Column("primary_model", sa.Text(), nullable=True),
        sa.Column("primary_status", sa.Integer(), nullable=True),
        sa.Column("primary_latency_ms", sa.Double(), nullable=True),
        sa.Column("primary_ttft_ms", sa.Double(), nullable=True),
        sa.Column("primary_input_tokens", sa.Integer(), nullable=True),
        sa.Column("primary_output_tokens", sa.Integer(), nullable=True),
        sa.Column("primary_cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("primary_cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("primary_cost_usd", sa.Double(), nullable=True),
        sa.Column("primary_text", sa.Text(), nullable=True),
        sa.Column("primary_tool_calls", postgresql.JSONB(), nullable=True),
        sa.Column("primary_stop_reason", sa.Text(), nullable=True),
        sa.Column("primary_error", sa.Text(), nullable=True),
        sa.Column("primary_request_id", sa.Text(), nullable=True),
        sa.Column("shadow_model", sa.Text(), nullable=True),
        sa.Column("shadow_status", sa.Integer(), nullable=True),
        sa.Column("shadow_latency_ms", sa.Double(), nullable=True),
        sa.Column("shadow_ttft_ms", sa.Double(), nullable=True),
        sa.Column("shadow_input_tokens", sa.Integer(), nullable=True),
        sa.Column("shadow_output_tokens", sa.Integer(), nullable=True),
        sa.Column("shadow_cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("shadow_cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("shadow_cost_usd", sa.Double(), nullable=True),
        sa.Column("shadow_text", sa.Text(), nullable=True),
        sa.Column("shadow_tool_calls", postgresql.JSONB(), nullable=True),
        sa.Column("shadow_stop_reason", sa.Text(), nullable=True),
        sa.Column("shadow_error", sa.Text(), nullable=True),
        sa.Column("shadow_request_id", sa.Text(), nullable=True),
        sa.Column("replay_model", sa.Text(), nullable=True),
        sa.Column("replay_status", sa.Integer(), nullable=True),
        sa.Column("replay_latency_ms", sa.Double(), nullable=True),
        sa.Column("replay_ttft_ms", sa.Double(), nullable=True),
        sa.Column("replay_input_tokens", sa.Integer(), nullable=True),
        sa.Column("replay_output_tokens", sa.Integer(), nullable=True),
        sa.Column("replay_cache_creation_input_tokens", sa.Integer(), nullable=True),
        sa.Column("replay_cache_read_input_tokens", sa.Integer(), nullable=True),
        sa.Column("replay_cost_usd", sa.Double(), nullable=True),
        sa.Column("replay_text", sa.Text(), nullable=True),
        sa.Column("replay_tool_calls", postgresql.JSONB(), nullable=True),
        sa.Column("replay_stop_reason", sa.Text(), nullable=True),
        sa.Column("replay_error", sa.Text(), nullable=True),
        sa.Column("replay_request_id", sa.Text(), nullable=True),
        sa.Column(
            "stored_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairs")),
    )
    op.create_index(op.f("ix_pairs_received_at"), "pairs", ["received_at"])
    op.create_index(op.f("ix_pairs_tag_received_at"), "pairs", ["tag", "received_at"])
    op.create_index(op.f("ix_pairs_shadow_outcome"), "pairs", ["shadow_outcome"])
    op.create_table(
        "scores",
        sa.Column("pair_id", sa.Uuid(), nullable=False),
        sa.Column(
            "scored_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("exact_match", sa.Boolean(), nullable=False),
        sa.Column("text_similarity", sa.Double(), nullable=False),
        sa.Column("tool_call_match", sa.Boolean(), nullable=False),
        sa.Column("stop_reason_match", sa.Boolean(), nullable=False),
        sa.Column("json_match", sa.Boolean(), nullable=True),
        sa.Column("refusal", sa.Boolean(), nullable=False),
        sa.Column("length_ratio", sa.Double(), nullable=True),
        sa.Column("agree", sa.Boolean(), nullable=False),
        sa.Column("replay_agree", sa.Boolean(), nullable=True),
        sa.Column("replay_text_similarity", sa.Double(), nullable=True),
        sa.Column("replay_tool_call_match", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["pairs.id"],
            name=op.f("fk_scores_pair_id_pairs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pair_id", name=op.f("pk_scores")),
    )
    op.execute(COMPARISONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.drop_table("scores")
    op.drop_index(op.f("ix_pairs_shadow_outcome"), table_name="pairs")
    op.drop_index(op.f("ix_pairs_tag_received_at"), table_name="pairs")
    op.drop_index(op.f("ix_pairs_received_at"), table_name="pairs")
    op.drop_table("pairs")

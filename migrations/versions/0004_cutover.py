"""Cutover in steps: plans, their events, and ``served_by`` on pairs.

``cutover_plans`` holds one row per tag being moved to the shadow model (its steps, the
current percent, paused or not, a revision bumped by every change); every worker and
replica routes by it. ``cutover_events`` records every change (who, from what percent to
what, why). ``pairs.served_by`` says whose answer the application got: ``primary``,
``shadow``, or ``fallback`` (chosen for the shadow, answered by the primary because the
shadow failed first). Pairs stored before this revision were all served by the primary:
the column's default says so without rewriting the table (PostgreSQL 11+ stores a
constant default in the catalogue).

The analyst view keeps every column it had after 0003 and gains ``served_by`` at its end.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VIEW_0003_SELECT = """
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
    h.human_verdict, h.human_labels"""

_VIEW_FROM = (
    "FROM pairs AS p\nLEFT JOIN scores AS s ON s.pair_id = p.id\n"
    "LEFT JOIN LATERAL (\n"
    "    SELECT (array_agg(r.verdict ORDER BY r.created_at, r.reviewer))[1] AS human_verdict,\n"
    "           count(*)::integer AS human_labels\n"
    "    FROM reviews AS r WHERE r.pair_id = p.id AND r.verdict IS NOT NULL\n"
    ") AS h ON true"
)


def _view(extra: str) -> str:
    return f"CREATE VIEW comparisons AS\nSELECT{_VIEW_0003_SELECT}{extra}\n{_VIEW_FROM}"


VIEW_0003 = _view("")
VIEW_0004 = _view(",\n    p.served_by")


def upgrade() -> None:
    op.create_table(
        "cutover_plans",
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("steps", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("revision", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True),
                  server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("tag", name=op.f("pk_cutover_plans")),
    )
    op.create_table(
        "cutover_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tag", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_percent", sa.Integer(), nullable=False),
        sa.Column("to_percent", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cutover_events")),
    )
    op.create_index(op.f("ix_cutover_events_tag_at"), "cutover_events", ["tag", "at"])
    op.add_column("pairs", sa.Column("served_by", sa.Text(),
                                     server_default=sa.text("'primary'"), nullable=False))
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.execute(VIEW_0004)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.drop_column("pairs", "served_by")
    op.drop_index(op.f("ix_cutover_events_tag_at"), table_name="cutover_events")
    op.drop_table("cutover_events")
    op.drop_table("cutover_plans")
    op.execute(VIEW_0003)

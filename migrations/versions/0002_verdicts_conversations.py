"""Judged verdicts on scores; conversation and turn on pairs.

A verdict (``equivalent`` / ``better`` / ``worse`` / ``unjudged``, from the shadow's side)
and the method that decided it replace string overlap as what the report counts; the
replay side (the noise floor) gets the same. ``conversation_id`` and ``turn`` group an
agent's pairs. The view gains every new column at its end (analysts' names never move).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCORE_COLUMNS: list[tuple[str, sa.types.TypeEngine[object]]] = [
    ("verdict", sa.Text()),
    ("verdict_method", sa.Text()),
    ("judge_model", sa.Text()),
    ("judge_reason", sa.Text()),
    ("judge_cost_usd", sa.Double()),
    ("judge_calls", sa.Integer()),
    ("position_inconsistent", sa.Boolean()),
    ("json_diff_paths", postgresql.JSONB()),
    ("judged_at", sa.DateTime(timezone=True)),
    ("replay_verdict", sa.Text()),
    ("replay_verdict_method", sa.Text()),
    ("replay_judge_reason", sa.Text()),
    ("replay_judge_cost_usd", sa.Double()),
    ("replay_judge_calls", sa.Integer()),
    ("replay_position_inconsistent", sa.Boolean()),
]
_PAIR_COLUMNS: list[tuple[str, sa.types.TypeEngine[object]]] = [
    ("conversation_id", sa.Text()),
    ("turn", sa.Integer()),
]

_VIEW_0001_PAIRS = """
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
    s.replay_text_similarity, s.replay_tool_call_match"""


def _view(extra: Sequence[str]) -> str:
    columns = _VIEW_0001_PAIRS + "".join(f",\n    {c}" for c in extra)
    return (f"CREATE VIEW comparisons AS\nSELECT{columns}\n"
            "FROM pairs AS p\nLEFT JOIN scores AS s ON s.pair_id = p.id")


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS comparisons")
    for name, type_ in _PAIR_COLUMNS:
        op.add_column("pairs", sa.Column(name, type_, nullable=True))
    for name, type_ in _SCORE_COLUMNS:
        op.add_column("scores", sa.Column(name, type_, nullable=True))
    op.create_index(op.f("ix_pairs_conversation_id"), "pairs", ["conversation_id"])
    op.create_index(op.f("ix_scores_verdict"), "scores", ["verdict"])
    op.execute(_view([f"p.{n}" for n, _ in _PAIR_COLUMNS]
                     + [f"s.{n}" for n, _ in _SCORE_COLUMNS]))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.drop_index(op.f("ix_scores_verdict"), table_name="scores")
    op.drop_index(op.f("ix_pairs_conversation_id"), table_name="pairs")
    for name, _ in reversed(_SCORE_COLUMNS):
        op.drop_column("scores", name)
    for name, _ in reversed(_PAIR_COLUMNS):
        op.drop_column("pairs", name)
    op.execute(_view([]))

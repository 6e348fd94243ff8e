"""Human review: reviewers, their sessions, the items offered to them, and their labels.

``reviewers`` holds a SHA-256 of each token, never the token. ``admin_sessions`` are the
dashboard's and the review page's browser sessions, shared by every worker and replica
(a session id is stored as an HMAC-SHA256 keyed by the admin token, so a reader of the
table cannot sign in as anyone). ``review_items`` are what the queue offered a reviewer
(the pair and which side was shown first stay here, with its tag, rank and overlap
flag; the item id is all the browser sees; ``answered_at`` once labelled or skipped,
``labelled`` unless skipped); ``reviews`` the labels, one per pair and reviewer, from the
shadow's side (``verdict`` NULL for a skip).
``review_floors`` keep, per tag, the rank below which every judged pair has been
offered (so the queue need not walk past them again). ``admin_login_failures`` are the
failed sign-ins of the last minutes, so the limit on
guessing holds across workers and replicas. ``ix_pairs_review_rank`` lets the review
queue walk a tag's pairs in rank order (``shadowproxy/decision/review_frame.py``).

The analyst view gains ``human_verdict`` (the first reviewer's label) and
``human_labels`` (labels, skips excluded) at its end; a second view, ``human_reviews``,
has one row per label or skip (what ``export --reviews`` writes).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VIEW_0002_SELECT = """
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
    s.replay_judge_cost_usd, s.replay_judge_calls, s.replay_position_inconsistent"""

VIEW_0002 = (f"CREATE VIEW comparisons AS\nSELECT{_VIEW_0002_SELECT}\n"
             "FROM pairs AS p\nLEFT JOIN scores AS s ON s.pair_id = p.id")

# The first reviewer's label and the number of labels (skips are not labels).
VIEW_0003 = (
    f"CREATE VIEW comparisons AS\nSELECT{_VIEW_0002_SELECT},\n"
    "    h.human_verdict, h.human_labels\n"
    "FROM pairs AS p\nLEFT JOIN scores AS s ON s.pair_id = p.id\n"
    "LEFT JOIN LATERAL (\n"
    "    SELECT (array_agg(r.verdict ORDER BY r.created_at, r.reviewer))[1] AS human_verdict,\n"
    "           count(*)::integer AS human_labels\n"
    "    FROM reviews AS r WHERE r.pair_id = p.id AND r.verdict IS NOT NULL\n"
    ") AS h ON true"
)

# One row per label or skip, with the pair's tag and time and the judge's verdict beside
# the person's: what `export --reviews` writes (the analyst's view of the labels).
HUMAN_REVIEWS = (
    "CREATE VIEW human_reviews AS\n"
    "SELECT r.pair_id, p.received_at, p.tag, r.reviewer, r.choice,\n"
    "       r.verdict AS human_verdict, s.verdict AS judge_verdict, s.verdict_method,\n"
    "       r.shadow_first, r.note, r.created_at AS labelled_at\n"
    "FROM reviews AS r JOIN pairs AS p ON p.id = r.pair_id\n"
    "LEFT JOIN scores AS s ON s.pair_id = r.pair_id"
)

# A label is one of four choices; its verdict (from the shadow's side) is NULL exactly
# when it is a skip.
_CHOICE_CHECK = (
    "choice IN ('1', '2', 'tie', 'skip') AND (verdict IS NULL) = (choice = 'skip') "
    "AND (verdict IS NULL OR verdict IN ('worse', 'equivalent', 'better'))"
)
_RANK_INDEX = ("CREATE INDEX ix_pairs_review_rank ON pairs "
               "(tag, (('x' || left(md5(id::text), 15))::bit(60)::bigint)) INCLUDE (id)")


def upgrade() -> None:
    op.create_table(
        "reviewers",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_reviewers_token_sha256")),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("id_sha256", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=True),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reviewer"], ["reviewers.name"],
                                name=op.f("fk_admin_sessions_reviewer_reviewers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_sha256", name=op.f("pk_admin_sessions")),
    )
    op.create_index(op.f("ix_admin_sessions_expires_at"), "admin_sessions", ["expires_at"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("pair_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("shadow_first", sa.Boolean(), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        # The pair's tag, rank and overlap flag, copied when it is first offered, so the
        # queue reads what was offered without going back to pairs.
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("rank", sa.BigInteger(), nullable=False),
        sa.Column("overlap", sa.Boolean(), nullable=False),
        # Answered with a label (not a skip): with overlap false, the pair needs no more.
        sa.Column("labelled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"],
                                name=op.f("fk_review_items_pair_id_pairs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_items")),
        sa.UniqueConstraint("pair_id", "reviewer", name=op.f("uq_review_items_pair_id_reviewer")),
    )
    op.create_table(
        "reviews",
        sa.Column("pair_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("choice", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=True),
        sa.Column("shadow_first", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(["pair_id"], ["pairs.id"],
                                name=op.f("fk_reviews_pair_id_pairs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pair_id", "reviewer", name=op.f("pk_reviews")),
        sa.CheckConstraint(_CHOICE_CHECK, name=op.f("ck_reviews_choice")),
    )
    # A reviewer's labels in the last minute (the rate limit) and per reviewer.
    op.create_index(op.f("ix_reviews_reviewer_created_at"), "reviews",
                    ["reviewer", "created_at"])
    # A reviewer's open items (the queue offers those first).
    op.create_index(op.f("ix_review_items_reviewer"), "review_items", ["reviewer"],
                    postgresql_where=sa.text("answered_at IS NULL"))
    # Items whose pair may need another look (open, skipped, or an overlap pair).
    op.create_index("ix_review_items_unsettled", "review_items", ["tag", "rank"],
                    postgresql_where=sa.text("NOT labelled OR overlap"))
    # The queue walks a tag's pairs in rank order (decision/review_frame.py: RANK).
    op.execute(_RANK_INDEX)
    # Pairs the judge decided lately: those that joined the frame below a tag's floor.
    op.create_index("ix_scores_review_judged_at", "scores", ["judged_at"],
                    postgresql_where=sa.text("verdict_method = 'judge'"))
    op.create_table(
        "review_floors",
        sa.Column("stratum", sa.Text(), nullable=False),
        sa.Column("floor_rank", sa.BigInteger(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stratum", name=op.f("pk_review_floors")),
    )
    # Is a pair in the frame? An index-only probe while the queue walks.
    op.create_index("ix_scores_review_frame", "scores", ["pair_id"],
                    postgresql_where=sa.text("verdict_method = 'judge'"))
    op.create_table(
        "admin_login_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_login_failures")),
    )
    op.create_index(op.f("ix_admin_login_failures_failed_at"), "admin_login_failures",
                    ["failed_at"])
    op.create_index(op.f("ix_admin_login_failures_client_failed_at"),
                    "admin_login_failures", ["client", "failed_at"])
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.execute(VIEW_0003)
    op.execute(HUMAN_REVIEWS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS human_reviews")
    op.execute("DROP VIEW IF EXISTS comparisons")
    op.drop_table("admin_login_failures")
    op.drop_table("review_floors")
    op.drop_index("ix_scores_review_judged_at", table_name="scores")
    op.execute("DROP INDEX IF EXISTS ix_pairs_review_rank")
    op.drop_index("ix_scores_review_frame", table_name="scores")
    op.drop_table("reviews")
    op.drop_table("review_items")
    op.drop_index(op.f("ix_admin_sessions_expires_at"), table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_table("reviewers")
    op.execute(VIEW_0002)

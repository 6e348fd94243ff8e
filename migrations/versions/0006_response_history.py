"""Responses API history shared by every mirror process and replica.

A request that continues a stored response (``previous_response_id``) carries only its
new turn; the mirror that saw the earlier turns may be another worker or replica. Each
answered turn is kept here (redacted, bounded, expiring) so any mirror can rebuild the
chain.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "response_history",
        sa.Column("response_id", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.Text(), nullable=True),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_response_history")),
    )
    op.create_index(op.f("ix_response_history_expires_at"), "response_history",
                    ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_response_history_expires_at"), table_name="response_history")
    op.drop_table("response_history")

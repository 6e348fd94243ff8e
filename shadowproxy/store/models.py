"""The comparison schema as typed SQLAlchemy models.

The migrations in ``migrations/versions`` are written by hand and must match these
models exactly (a test compares them with Alembic's autogenerate diff). The side columns
(``primary_*``, ``shadow_*``, ``replay_*``) are not spelled out here: they are generated
from :class:`shadowproxy.records.Side`, the one declaration of a side's fields. The
analyst view ``comparisons`` is created by a migration, not here: it is SQL for people,
not a mapped class.

``pairs`` is range-partitioned by day on ``received_at`` (migration 0007), so its key is
``(id, received_at)``; ``scores``, ``reviews`` and ``review_items`` carry their pair's
``received_at`` and are partitioned the same way. Their foreign keys to ``pairs`` live on
each day's partitions (:mod:`shadowproxy.store.partitions`), not on these parents: a key
on the parent would make dropping a day scan every other day's rows to check it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shadowproxy.day_partitions import parse_partition_name
from shadowproxy.decision.sampling import JUDGE_FRAME_SQL, JUDGE_RANK_SQL
from shadowproxy.store.columns import HEAD_COLUMNS, PAIR_COLUMNS, SQL_TYPES

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Pair(Base):
    """One mirrored exchange: both answers (and the optional replay) side by side.

    Side columns are all nullable: a side that never answered has none of them.
    """

    __tablename__ = "pairs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The partition key, so part of the primary key (PostgreSQL requires it).
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    api: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)
    stream: Mapped[bool] = mapped_column(Boolean)
    request: Mapped[Any | None] = mapped_column(JSONB)
    request_sha256: Mapped[str] = mapped_column(Text)
    shadow_outcome: Mapped[str] = mapped_column(Text)
    shadow_reason: Mapped[str | None] = mapped_column(Text)
    client_disconnected: Mapped[bool] = mapped_column(Boolean)
    # An agent's pairs belong together: x-shadow-conversation, else a hash of the opening.
    # Indexed with received_at (migration 0005): the report asks "the conversation's
    # first pair" and "its first worse answer" one conversation at a time.
    conversation_id: Mapped[str | None] = mapped_column(Text)
    turn: Mapped[int | None] = mapped_column(Integer)
    # primary | shadow | fallback: whose answer the application got (cutover in steps).
    served_by: Mapped[str] = mapped_column(Text, server_default="primary")
    stored_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    # primary_*, shadow_*, replay_*: added below from records.Side, the one declaration.

    __table_args__ = (
        Index(None, "received_at"),
        Index(None, "tag", "received_at"),
        Index(None, "shadow_outcome"),
        Index(None, "conversation_id", "received_at", "id", postgresql_include=["tag"]),
        # The report's summaries find pairs stored since they were last built (a spool
        # replay writes pairs for past hours).
        Index(None, "stored_at"),
        # The review queue walks a tag's pairs in rank order (decision/review_frame.py).
        Index("ix_pairs_review_rank", "tag",
              text("(('x' || left(md5(id::text), 15))::bit(60)::bigint)"),
              postgresql_include=["id"]),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )


class Score(Base):
    """What ``shadowproxy diff`` concluded about one pair."""

    __tablename__ = "scores"

    pair_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The pair's received_at: the partition key.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    scored_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    exact_match: Mapped[bool] = mapped_column(Boolean)
    text_similarity: Mapped[float] = mapped_column(Double)
    tool_call_match: Mapped[bool] = mapped_column(Boolean)
    stop_reason_match: Mapped[bool] = mapped_column(Boolean)
    json_match: Mapped[bool | None] = mapped_column(Boolean)
    refusal: Mapped[bool] = mapped_column(Boolean)
    length_ratio: Mapped[float | None] = mapped_column(Double)
    agree: Mapped[bool] = mapped_column(Boolean)
    replay_agree: Mapped[bool | None] = mapped_column(Boolean)
    replay_text_similarity: Mapped[float | None] = mapped_column(Double)
    replay_tool_call_match: Mapped[bool | None] = mapped_column(Boolean)
    # The verdict, from the shadow's side: equivalent | better | worse | unjudged.
    verdict: Mapped[str | None] = mapped_column(Text, index=True)
    # exact | structural | judge; NULL while unjudged.
    verdict_method: Mapped[str | None] = mapped_column(Text)
    judge_model: Mapped[str | None] = mapped_column(Text)
    # The judge's reason, or why the pair is unjudged.
    judge_reason: Mapped[str | None] = mapped_column(Text)
    judge_cost_usd: Mapped[float | None] = mapped_column(Double)
    judge_calls: Mapped[int | None] = mapped_column(Integer)
    position_inconsistent: Mapped[bool | None] = mapped_column(Boolean)
    # JSON paths ($.items[2].price) where JSON answers or tool arguments differ.
    json_diff_paths: Mapped[list[str] | None] = mapped_column(JSONB)
    judged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The noise floor judged the same way: the primary's replay against the primary.
    replay_verdict: Mapped[str | None] = mapped_column(Text)
    replay_verdict_method: Mapped[str | None] = mapped_column(Text)
    replay_judge_reason: Mapped[str | None] = mapped_column(Text)
    replay_judge_cost_usd: Mapped[float | None] = mapped_column(Double)
    replay_judge_calls: Mapped[int | None] = mapped_column(Integer)
    replay_position_inconsistent: Mapped[bool | None] = mapped_column(Boolean)
    # The pair's tag (pairs rows never change), so judging by sample reads one table.
    tag: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The judge's frame (pairs the tiers could not settle) by tag, in sample order
        # (the rank is shadowproxy.decision.sampling.judge_rank, computed from the id).
        Index("ix_scores_judge_frame", "tag", text(JUDGE_RANK_SQL),
              postgresql_where=text(JUDGE_FRAME_SQL)),
        # The review frame (decision/review_frame.py): a pair's membership, probed from
        # the index.
        Index("ix_scores_review_frame", "pair_id",
              postgresql_where=text("verdict_method = 'judge'")),
        Index("ix_scores_review_judged_at", "judged_at",
              postgresql_where=text("verdict_method = 'judge'")),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )


class JudgeSample(Base):
    """Per tag, the rank below which a pair needing the judge is in its sample.

    Only ever raised: a pair's chance of being judged does not depend on when it
    arrived, so the judged pairs of any time window are a uniform sample of it.
    """

    __tablename__ = "judge_samples"

    tagged: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    tag: Mapped[str] = mapped_column(Text, primary_key=True)  # "" when untagged
    threshold: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ReportRollup(Base):
    """The report's numbers for one tag over one 10-minute slot or one day, so a report
    reads a few hundred rows instead of every pair (shadowproxy.decision.summaries)."""

    __tablename__ = "report_rollups"

    grain: Mapped[str] = mapped_column(Text, primary_key=True)  # "slot" | "day"
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    tagged: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    tag: Mapped[str] = mapped_column(Text, primary_key=True)  # "" when untagged
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    layout: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # name -> number, summed when rows are merged: counts, sums, histogram buckets.
    facts: Mapped[Any] = mapped_column(JSONB)
    # "primary:gpt-4o", "shadow:…", "judge:…": the models seen.
    models: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # unjudged cause -> one judge_reason, merged by taking the smallest.
    examples: Mapped[Any] = mapped_column(JSONB)


class ReportStale(Base):
    """A 10-minute slot whose summaries ``diff`` made stale by writing verdicts."""

    __tablename__ = "report_stale"

    slot: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)


class ReportState(Base):
    """Small named timestamps of the summaries (``stored_watermark``: pairs stored
    after it may belong to a slot already summarised)."""

    __tablename__ = "report_state"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Reviewer(Base):
    """A person who labels pairs; the token is kept only as its SHA-256."""

    __tablename__ = "reviewers"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class AdminSession(Base):
    """A signed-in browser on the admin listener (dashboard or review page), shared by
    every worker and replica. ``reviewer`` NULL: an admin session."""

    __tablename__ = "admin_sessions"

    id_sha256: Mapped[str] = mapped_column(Text, primary_key=True)
    reviewer: Mapped[str | None] = mapped_column(
        Text, ForeignKey("reviewers.name", ondelete="CASCADE")
    )
    csrf_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ReviewItem(Base):
    """What the review queue offered one reviewer: the pair and the order it was shown in
    live here; the browser sees only the opaque ``id``."""

    __tablename__ = "review_items"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    # The pair's received_at: the partition key.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    pair_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reviewer: Mapped[str] = mapped_column(Text)
    shadow_first: Mapped[bool] = mapped_column(Boolean)
    offered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # When its reviewer labelled or skipped it; NULL while open.
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The pair's tag, rank and overlap flag when first offered (decision/review_frame.py).
    tag: Mapped[str | None] = mapped_column(Text)
    rank: Mapped[int] = mapped_column(BigInteger)
    overlap: Mapped[bool] = mapped_column(Boolean)
    # Answered with a label (not a skip).
    labelled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (UniqueConstraint("pair_id", "received_at", "reviewer"),
                      Index(None, "reviewer", postgresql_where=text("answered_at IS NULL")),
                      Index("ix_review_items_unsettled", "tag", "rank",
                            postgresql_where=text("NOT labelled OR overlap")),
                      {"postgresql_partition_by": "RANGE (received_at)"})


class ReviewFloor(Base):
    """Per tag (``stratum``: ``tag:NAME`` or ``untagged``), the rank below which every
    pair the judge had decided by ``checked_at`` has been offered to someone."""

    __tablename__ = "review_floors"

    stratum: Mapped[str] = mapped_column(Text, primary_key=True)
    floor_rank: Mapped[int] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Review(Base):
    """One person's label of one pair, from the shadow's side: ``verdict`` is worse,
    equivalent or better (NULL when ``choice`` is skip)."""

    __tablename__ = "reviews"

    pair_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # The pair's received_at: the partition key.
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    reviewer: Mapped[str] = mapped_column(Text, primary_key=True)
    choice: Mapped[str] = mapped_column(Text)  # "1" | "2" | "tie" | "skip"
    verdict: Mapped[str | None] = mapped_column(Text)
    shadow_first: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index(None, "reviewer", "created_at"),
        CheckConstraint(
            "choice IN ('1', '2', 'tie', 'skip') AND (verdict IS NULL) = (choice = 'skip') "
            "AND (verdict IS NULL OR verdict IN ('worse', 'equivalent', 'better'))",
            name="choice"),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )


class AdminLoginFailure(Base):
    """A failed sign-in (a wrong token, as a bearer header or on the login page), kept
    for the limit's window: shared, so another replica is no fresh start for a guesser."""

    __tablename__ = "admin_login_failures"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    client: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (Index(None, "client", "failed_at"),)


class StoredResponse(Base):
    """What the mirror saw of one OpenAI Responses API answer, so a later turn naming it
    in ``previous_response_id`` can be rebuilt by any worker or replica: that request's
    input items and the primary's output items, and the response it continued.

    Redacted like everything stored; bounded and expiring (``RESPONSES_REMEMBERED``,
    ``RESPONSES_MEMORY_MB``, ``RESPONSES_KEEP_H``)."""

    __tablename__ = "response_history"

    response_id: Mapped[str] = mapped_column(Text, primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(Text)
    items: Mapped[Any] = mapped_column(JSONB)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CutoverPlan(Base):
    """One tag's cutover: its steps (percent of conversations on the shadow model), where
    it stands, and whether it is paused. Every worker and replica routes by this row."""

    __tablename__ = "cutover_plans"

    tag: Mapped[str] = mapped_column(Text, primary_key=True)
    steps: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    step: Mapped[int] = mapped_column(Integer)  # index into steps
    percent: Mapped[int] = mapped_column(Integer)  # steps[step], or 0 once rolled back
    paused: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Bumped by every change: an advance applies only to the plan it judged.
    revision: Mapped[int] = mapped_column(BigInteger, server_default="1")
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    step_started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CutoverEvent(Base):
    """Every change to a plan: who moved which tag from what percent to what, and why."""

    __tablename__ = "cutover_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tag: Mapped[str] = mapped_column(Text)
    # start | advance | complete | rollback | guard | pause | resume
    action: Mapped[str] = mapped_column(Text)
    from_percent: Mapped[int] = mapped_column(Integer)
    to_percent: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index(None, "tag", "at"),)


_TYPES: dict[str, Any] = {
    "uuid": Uuid, "timestamptz": lambda: DateTime(timezone=True), "text": Text,
    "boolean": Boolean, "integer": Integer, "double": Double, "jsonb": JSONB,
}
# Every side column is nullable: a side that never answered has none of them.
for _name in PAIR_COLUMNS[len(HEAD_COLUMNS):]:
    setattr(Pair, _name, mapped_column(_name, _TYPES[SQL_TYPES[_name]](), nullable=True))

SCORE_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in Score.__table__.columns if c.name not in {"pair_id", "received_at"}
)

# A head field declared in records.py without its typed column above would be silently
# dropped by the writer; fail at import time instead.
_unmapped = set(PAIR_COLUMNS) - {c.name for c in Pair.__table__.columns}
if _unmapped:
    raise RuntimeError(f"PairRecord fields without a pairs column: {sorted(_unmapped)}")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's filter for comparing the models with a database: day partitions and the
    ``legacy_*`` tables an unfinished move leaves (migration 0007) are not models."""
    if type_ != "table" or name is None:
        return True
    return parse_partition_name(name) is None and not name.startswith("legacy_")

"""live sessions: who watched which camera, when, and how it ended

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 01:34:29.344574
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.store.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("site", sa.String(length=63), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("codec", sa.String(length=100), nullable=False),
        sa.Column("started_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("end_detail", sa.Text(), nullable=False),
        sa.Column("frames_sent", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_live_sessions")),
    )
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_live_sessions_camera", ["node_id", "device_id", "started_at"], unique=False)
        batch_op.create_index("ix_live_sessions_open", ["ended_at"], unique=False)
        batch_op.create_index("ix_live_sessions_started", ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_live_sessions_username"), ["username"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("live_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_live_sessions_username"))
        batch_op.drop_index("ix_live_sessions_started")
        batch_op.drop_index("ix_live_sessions_open")
        batch_op.drop_index("ix_live_sessions_camera")

    op.drop_table("live_sessions")

"""kiosk screenshots: what each kiosk's screen showed, as its node saw it through the browser

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.store.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kiosk_screenshots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("taken_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_screenshots")),
    )
    with op.batch_alter_table("kiosk_screenshots", schema=None) as batch_op:
        batch_op.create_index("ix_kiosk_screenshots_device_taken", ["node_id", "device_id", "taken_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kiosk_screenshots", schema=None) as batch_op:
        batch_op.drop_index("ix_kiosk_screenshots_device_taken")
    op.drop_table("kiosk_screenshots")

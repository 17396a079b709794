"""node key enrolment: an admin-enrolled sealing key per node, and the key the node last announced

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.store.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced_box_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("box_key_enrolled_at", central.store.base.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("box_key_enrolled_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("box_key_revoked_at", central.store.base.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("box_key_revoked_at")
        batch_op.drop_column("box_key_enrolled_by")
        batch_op.drop_column("box_key_enrolled_at")
        batch_op.drop_column("announced_box_key")

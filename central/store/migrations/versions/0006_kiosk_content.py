"""kiosk content: the asset library, playlists, schedules, groups, per-kiosk settings and issued manifests

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:32:19
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import central.store.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "kiosk_assets",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mime", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("info", _json(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_kiosk_assets")),
    )
    op.create_table(
        "kiosk_groups",
        sa.Column("group_name", sa.String(length=63), nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "node_id", name=op.f("pk_kiosk_groups")),
    )
    with op.batch_alter_table("kiosk_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosk_groups_node_id"), ["node_id"], unique=False)

    op.create_table(
        "kiosk_manifests",
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("issued_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("sent_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("node_id", "version", name=op.f("pk_kiosk_manifests")),
    )
    op.create_table(
        "kiosk_playlists",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("updated_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_playlists")),
    )
    op.create_table(
        "kiosk_schedules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("playlist_id", sa.String(length=63), nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=63), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("weekdays", _json(), nullable=False),
        sa.Column("windows", _json(), nullable=False),
        sa.Column("created_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_schedules")),
    )
    with op.batch_alter_table("kiosk_schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosk_schedules_playlist_id"), ["playlist_id"], unique=False)
        batch_op.create_index("ix_kiosk_schedules_target", ["target_kind", "target"], unique=False)

    op.create_table(
        "kiosk_settings",
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("default_playlist_id", sa.String(length=63), nullable=True),
        sa.Column("updated_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_kiosk_settings")),
    )


def downgrade() -> None:
    op.drop_table("kiosk_settings")
    with op.batch_alter_table("kiosk_schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_kiosk_schedules_target")
        batch_op.drop_index(batch_op.f("ix_kiosk_schedules_playlist_id"))

    op.drop_table("kiosk_schedules")
    op.drop_table("kiosk_playlists")
    op.drop_table("kiosk_manifests")
    with op.batch_alter_table("kiosk_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kiosk_groups_node_id"))

    op.drop_table("kiosk_groups")
    op.drop_table("kiosk_assets")

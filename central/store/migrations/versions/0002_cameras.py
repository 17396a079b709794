"""cameras: cameras, their latest pictures, the discovery inbox; the node's sealing key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:10:18.279870
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import central.store.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "camera_snapshots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("taken_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camera_snapshots")),
    )
    with op.batch_alter_table("camera_snapshots", schema=None) as batch_op:
        batch_op.create_index("ix_camera_snapshots_camera", ["node_id", "device_id", "taken_at"], unique=False)

    op.create_table(
        "cameras",
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("site", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.String(length=300), nullable=False),
        sa.Column("latitude", sa.Double(), nullable=True),
        sa.Column("longitude", sa.Double(), nullable=True),
        sa.Column("endpoint", sa.String(length=200), nullable=True),
        sa.Column("adopted_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("adopted_by", sa.String(length=64), nullable=True),
        sa.Column("info", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("info_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("info_boot_id", sa.String(length=64), nullable=True),
        sa.Column("info_seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "attrs", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("status_since", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("state_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("snapshot_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", "device_id", name=op.f("pk_cameras")),
    )
    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.create_index("ix_cameras_site_status", ["site", "status"], unique=False)

    op.create_table(
        "discovered_devices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=63), nullable=False),
        sa.Column("site", sa.String(length=63), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column(
            "xaddrs", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "scopes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "types", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hardware", sa.String(length=200), nullable=False),
        sa.Column("first_seen", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", central.store.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_by", sa.String(length=64), nullable=True),
        sa.Column("state_at", central.store.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column("device_id", sa.String(length=63), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discovered_devices")),
        sa.UniqueConstraint("node_id", "endpoint", name=op.f("uq_discovered_devices_node_id_endpoint")),
    )
    with op.batch_alter_table("discovered_devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_discovered_devices_node_id"), ["node_id"], unique=False)

    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("box_public_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("box_public_key")

    with op.batch_alter_table("discovered_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_discovered_devices_node_id"))

    op.drop_table("discovered_devices")
    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.drop_index("ix_cameras_site_status")

    op.drop_table("cameras")
    with op.batch_alter_table("camera_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_camera_snapshots_camera")

    op.drop_table("camera_snapshots")

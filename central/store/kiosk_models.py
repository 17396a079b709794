"""Tables for kiosk content: the asset library, playlists, schedules, groups, per-kiosk settings and the signed
manifests central issued to each kiosk (a kiosk's id at central is its node id)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.store.base import Base, JsonDict
from central.store.fleet_models import BigId


class KioskAsset(Base):
    """An uploaded file, content-addressed: the blob lives at ``<data_dir>/kiosk/blobs/<sha256>``."""

    __tablename__ = "kiosk_assets"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | video | bundle
    mime: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_at: Mapped[datetime]
    uploaded_by: Mapped[str] = mapped_column(String(64))
    info: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="image size, bundle file count, …")


class KioskPlaylist(Base):
    """A named loop of items (``{asset | url, duration_s, title}``), validated as a manifest playlist."""

    __tablename__ = "kiosk_playlists"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JsonDict, default=list)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class KioskSchedule(Base):
    """When a playlist plays, on one kiosk (``target`` = node id), a group (``target`` = group) or all kiosks."""

    __tablename__ = "kiosk_schedules"
    __table_args__ = (Index("ix_kiosk_schedules_target", "target_kind", "target"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    playlist_id: Mapped[str] = mapped_column(String(63), index=True)
    target_kind: Mapped[str] = mapped_column(String(8))  # kiosk | group | all
    target: Mapped[str | None] = mapped_column(String(63))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    weekdays: Mapped[list[int]] = mapped_column(JsonDict, default=list)
    windows: Mapped[list[dict[str, Any]]] = mapped_column(JsonDict, default=list)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))


class KioskGroupMember(Base):
    """One kiosk's membership of a group (groups exist only at central, to build per-kiosk manifests)."""

    __tablename__ = "kiosk_groups"

    group_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)


class KioskSetting(Base):
    """Per-kiosk settings: the playlist shown when no schedule applies (None: a blank screen)."""

    __tablename__ = "kiosk_settings"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    default_playlist_id: Mapped[str | None] = mapped_column(String(63))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class KioskManifest(Base):
    """A signed manifest issued to one kiosk. Versions only grow per node; the bytes are served as they were signed.

    ``content_sha256`` hashes the canonical manifest without ``version`` and ``issued_at``: equal hashes mean equal
    content, so publishing again does not issue a new version. ``sent_at`` is set once the command reached the broker.
    """

    __tablename__ = "kiosk_manifests"

    node_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), doc="of the signed bytes (the command carries it)")
    content_sha256: Mapped[str] = mapped_column(String(64))
    signed: Mapped[str] = mapped_column(Text, doc="the signed manifest (compact JSON, ASCII)")
    sent_at: Mapped[datetime | None]
    request_id: Mapped[str | None] = mapped_column(String(64), doc="the kiosk.content.update command")

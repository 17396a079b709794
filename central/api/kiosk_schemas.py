"""Request and response schemas of the kiosk content API (``/api/v1/kiosk``).

Playlist items and schedule windows use the manifest's own models (:mod:`varta.kiosk_manifest`), and the router
builds the full manifest playlist / schedule from every request, so central never stores what a node would refuse.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from varta.contract import ID_PATTERN
from varta.kiosk_manifest import DisplayText, PlaylistItem, TimeWindow

NodeIdField = Annotated[str, Field(pattern=ID_PATTERN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Refusal(BaseModel):
    """``detail`` of a 409/422 from this API: a reason code to act on and a sentence for people."""

    reason: str
    message: str
    kind: str | None = None


class AssetView(_View):
    """An asset of the library."""

    sha256: str
    kind: Literal["image", "video", "bundle"]
    mime: str
    name: str
    size: int
    uploaded_at: datetime
    uploaded_by: str
    info: dict[str, Any] = Field(default_factory=dict, description="image width/height, bundle file count, …")
    url: str = Field(description="where nodes (and anyone) download it")
    already_stored: bool = Field(default=False, description="the same bytes were uploaded before: nothing new stored")


class PlaylistRequest(_Request):
    """A playlist: a name and the items played in a loop (an asset of the library by sha256, or a web page)."""

    name: DisplayText
    items: list[PlaylistItem] = Field(min_length=1, max_length=200)


class PlaylistView(_View):
    """A stored playlist."""

    id: str
    name: str
    items: list[PlaylistItem]
    updated_at: datetime
    updated_by: str


class ScheduleRequest(_Request):
    """When a playlist plays, and where: one kiosk (``node_id``), a group (``group``) or all kiosks."""

    playlist_id: str = Field(pattern=ID_PATTERN)
    target: Literal["kiosk", "group", "all"]
    node_id: str | None = Field(default=None, pattern=ID_PATTERN, description="with target 'kiosk'")
    group: str | None = Field(default=None, pattern=ID_PATTERN, description="with target 'group'")
    priority: int = Field(default=0, description="higher wins")
    start_date: date | None = None
    end_date: date | None = None
    weekdays: list[int] = Field(default_factory=lambda: list(range(7)), description="0 = Monday … 6 = Sunday")
    windows: list[TimeWindow] = Field(default_factory=list, description="local time [start, end); empty = all day")

    @model_validator(mode="after")
    def _target_named_once(self) -> Self:
        wanted = {"kiosk": "node_id", "group": "group", "all": None}[self.target]
        for field_name in ("node_id", "group"):
            if (getattr(self, field_name) is not None) != (field_name == wanted):
                raise ValueError(
                    f"target '{self.target}' takes "
                    + (f"'{wanted}'" if wanted else "neither 'node_id' nor 'group'")
                    + (f" and not '{field_name}'" if field_name != wanted else "")
                )
        return self


class ScheduleView(_View):
    """A stored schedule."""

    id: int
    playlist_id: str
    target: Literal["kiosk", "group", "all"]
    node_id: str | None = None
    group: str | None = None
    priority: int
    start_date: date | None = None
    end_date: date | None = None
    weekdays: list[int]
    windows: list[TimeWindow]
    created_at: datetime
    created_by: str


class GroupRequest(_Request):
    """The kiosks (node ids) of a group; an empty list removes the group."""

    node_ids: list[NodeIdField] = Field(max_length=1000)

    @field_validator("node_ids")
    @classmethod
    def _unique(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            raise ValueError("a node id is listed twice")
        return sorted(ids)


class GroupView(BaseModel):
    """A group of kiosks."""

    group: str
    node_ids: list[str]


class DefaultPlaylistRequest(_Request):
    """The playlist a kiosk shows when no schedule applies (null: a blank screen)."""

    playlist_id: str | None = Field(pattern=ID_PATTERN)


class KioskSettingView(BaseModel):
    """A kiosk's settings."""

    node_id: str
    default_playlist_id: str | None = None


class PublishResultView(BaseModel):
    """What publishing did for one kiosk."""

    node_id: str
    status: Literal["published", "unchanged", "unreachable", "failed"]
    version: int | None = Field(default=None, description="the version sent, or the one the kiosk already has")
    detail: str = ""
    request_id: str | None = Field(default=None, description="the kiosk.content.update command")


class PublishReport(BaseModel):
    """One result per kiosk, and the counts."""

    results: list[PublishResultView]
    published: int
    unchanged: int
    unreachable: int
    failed: int


class EventBrief(BaseModel):
    """The newest event of some kind from a kiosk."""

    ts: datetime
    message: str
    data: dict[str, Any]


class KioskView(BaseModel):
    """A kiosk: its node, its device's state, its groups and the content it was sent and confirmed."""

    node_id: str
    name: str
    site: str
    online: bool
    device_id: str | None = None
    status: str = Field(default="unknown", description="the kiosk device's status (unknown until it reports)")
    reason: str | None = None
    detail: str = ""
    status_since: datetime | None = None
    groups: list[str] = Field(default_factory=list)
    default_playlist_id: str | None = None
    published_version: int | None = None
    published_at: datetime | None = None
    sent_at: datetime | None = Field(default=None, description="when the newest manifest's command reached the broker")
    confirmed_version: int | None = Field(default=None, description="from the node's kiosk.content_installed event")
    confirmed_at: datetime | None = None
    last_takeover: EventBrief | None = Field(default=None, description="newest kiosk.takeover_shown (the proof)")
    last_refusal: EventBrief | None = Field(default=None, description="newest kiosk.content_refused")


class PreviewItem(BaseModel):
    """A playlist item with its asset's kind and name."""

    asset: str | None = None
    url: str | None = None
    duration_s: int | None = None
    title: str | None = None
    kind: str | None = None
    name: str | None = None


class PreviewPlaylist(BaseModel):
    """The playlist a preview found."""

    id: str
    name: str
    items: list[PreviewItem]


class PreviewView(BaseModel):
    """What a kiosk would show at ``at`` with the manifest that would be published now."""

    node_id: str
    at: datetime
    timezone: str
    local_time: datetime
    source: Literal["schedule", "default", "blank"]
    schedule_id: int | None = Field(default=None, description="the schedule in force, if any")
    playlist: PreviewPlaylist | None = None
    next_change: datetime | None = Field(default=None, description="when the playlist changes next (UTC)")

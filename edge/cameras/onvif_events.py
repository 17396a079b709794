"""ONVIF PullPoint events: subscribe, pull, renew before the subscription lapses, decode with onvif-parsers."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import onvif_parsers
import structlog
from onvif_parsers.errors import UnknownTopicError
from onvif_parsers.registry import get_parser

from edge.cameras.onvif_errors import OnvifError, classify
from varta.contract import CameraReason

if TYPE_CHECKING:
    from types import TracebackType

log = structlog.get_logger(__name__)
T = TypeVar("T")

_BACKOFF_S = (1.0, 5.0, 10.0, 60.0)
_TRAILING = re.compile(r"(?:/+\.?)+$")
_KINDS: tuple[tuple[str, str], ...] = (
    ("TamperDetector", "camera.tamper"),
    ("GlobalSceneChange", "camera.scene_change"),
    ("MotionDetector/Motion", "camera.motion"),
    ("MotionRegionDetector/Motion", "camera.motion"),
    ("VideoSource/MotionAlarm", "camera.motion"),
    ("ImageTooBlurry", "camera.image_too_blurry"),
    ("ImageTooDark", "camera.image_too_dark"),
    ("ImageTooBright", "camera.image_too_bright"),
)
_TRUE = frozenset({"true", "1", "active", "on"})
_FALSE = frozenset({"false", "0", "inactive", "off"})


@dataclass(frozen=True)
class CameraEvent:
    """One decoded camera event: ``kind`` like ``camera.tamper``; ``active`` is None when the state is unknown."""

    kind: str
    active: bool | None
    topic: str
    data: dict[str, str] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    utc_time: dt.datetime | None = None
    name: str = ""


def normalise_topic(raw: str) -> str:
    """Topic text as onvif-parsers knows it: whitespace and trailing ``/.`` stripped, ONVIF prefix as ``tns1``."""
    topic = _TRAILING.sub("", "".join(raw.split()))
    prefix, sep, rest = topic.partition(":")
    if sep and prefix != "tns1" and get_parser(f"tns1:{rest}") is not None:
        topic = f"tns1:{rest}"
    return topic


def event_kind(topic: str) -> str:
    """``camera.motion``, ``camera.tamper``, ``camera.scene_change``, … or ``camera.event`` for other topics."""
    for needle, kind in _KINDS:
        if needle in topic:
            return kind
    return "camera.event"


def _items(container: Any) -> dict[str, str]:
    items = getattr(container, "SimpleItem", None) or []
    return {str(item.Name)[:64]: str(item.Value)[:256] for item in items[:32] if getattr(item, "Name", None)}


async def decode_notification(message: Any, uid: str) -> CameraEvent:
    """Decode one ``wsnt:NotificationMessage`` (zeep object); raises on a shape that cannot be read."""
    raw_topic = message.Topic._value_1
    topic = normalise_topic(str(raw_topic or ""))
    message.Topic._value_1 = topic
    payload = message.Message._value_1
    data, source = _items(getattr(payload, "Data", None)), _items(getattr(payload, "Source", None))
    active: bool | None = None
    name = ""
    try:
        entities = await onvif_parsers.parse(topic, uid, message)
    except UnknownTopicError:
        entities = []
    for entity in entities:
        name = entity.name
        if isinstance(entity.value, bool):
            active = entity.value
            break
    if active is None and data:
        first = next(iter(data.values())).lower()
        active = True if first in _TRUE else False if first in _FALSE else None
    utc = getattr(payload, "UtcTime", None)
    return CameraEvent(
        kind=event_kind(topic),
        active=active,
        topic=topic,
        data=data,
        source=source,
        utc_time=utc if isinstance(utc, dt.datetime) else None,
        name=name,
    )


class EventSource(Protocol):
    """What :class:`PullPointEvents` needs from a camera (``OnvifCamera`` provides it)."""

    @property
    def uid(self) -> str:
        """An id for logs and event entities."""
        ...

    async def call(self, action: str, func: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """Run one ONVIF call bounded by a timeout; failures as :class:`OnvifError`."""
        ...

    async def events_services(self, subscription_address: str | None) -> Any:
        """The events service (None) or the (subscription manager, pull point) pair for an address."""
        ...


class PullPointEvents:
    """PullPoint subscription as an async iterator of :class:`CameraEvent` (use ``async with``).

    Renews at 2/3 of the lifetime the camera granted; recreates the subscription when the camera lost it (reboot,
    lapse); retries failures with back-off (1, 5, 10, then 60 s) and never raises camera problems to the caller:
    they are counted in ``counters`` and the latest is ``last_error``.
    """

    def __init__(
        self,
        camera: EventSource,
        *,
        lifetime_s: float = 60.0,
        pull_timeout_s: float = 5.0,
        message_limit: int = 32,
    ) -> None:
        self._camera = camera
        self._lifetime_s = lifetime_s
        self._pull_timeout_s = pull_timeout_s
        self._limit = message_limit
        self._buffer: deque[CameraEvent] = deque()
        self._pullpoint: Any = None
        self._manager: Any = None
        self._renew_at = 0.0
        self._failures = 0
        self._closed = False
        self.counters: Counter[str] = Counter()
        self.last_error: OnvifError | None = None
        self.granted_lifetime_s: float | None = None

    async def __aenter__(self) -> PullPointEvents:
        try:
            await self._subscribe()
        except Exception as exc:
            self._failed(classify(exc, "CreatePullPointSubscription"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> PullPointEvents:
        return self

    async def __anext__(self) -> CameraEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._step()
        return self._buffer.popleft()

    @property
    def subscribed(self) -> bool:
        """True while a subscription is held."""
        return self._pullpoint is not None

    async def close(self) -> None:
        """Unsubscribe (best effort) and end the iteration."""
        if self._closed:
            return
        self._closed = True
        manager, self._manager, self._pullpoint = self._manager, None, None
        if manager is not None:
            try:
                await self._camera.call("Unsubscribe", manager.Unsubscribe, 3.0)
            except OnvifError as err:
                log.debug("onvif.unsubscribe_failed", camera=self._camera.uid, reason=err.reason.value)

    async def _subscribe(self) -> None:
        events = await self._camera.events_services(None)
        reply = await self._camera.call(
            "CreatePullPointSubscription",
            lambda: events.CreatePullPointSubscription({"InitialTerminationTime": _duration(self._lifetime_s)}),
        )
        address = reply.SubscriptionReference.Address._value_1
        if not address:
            raise OnvifError(CameraReason.ONVIF_ERROR, "CreatePullPointSubscription: no subscription address")
        self._manager, self._pullpoint = await self._camera.events_services(str(address))
        self._schedule_renewal(reply.CurrentTime, reply.TerminationTime)
        self.counters["subscribed"] += 1
        log.info("onvif.subscribed", camera=self._camera.uid, lifetime_s=self.granted_lifetime_s)

    async def _renew(self) -> None:
        reply = await self._camera.call(
            "Renew", lambda: self._manager.Renew({"TerminationTime": _duration(self._lifetime_s)})
        )
        self._schedule_renewal(getattr(reply, "CurrentTime", None), getattr(reply, "TerminationTime", None))
        self.counters["renewed"] += 1

    def _schedule_renewal(self, current: Any, termination: Any) -> None:
        lifetime = self._lifetime_s
        if isinstance(current, dt.datetime) and isinstance(termination, dt.datetime):
            granted = (termination - current).total_seconds()
            if granted > 0:
                lifetime = granted
        self.granted_lifetime_s = lifetime
        self._renew_at = time.monotonic() + lifetime * 2 / 3

    async def _step(self) -> None:
        try:
            if self._pullpoint is None:
                await self._subscribe()
            if time.monotonic() >= self._renew_at:
                await self._renew()
            wait = max(0.1, min(self._pull_timeout_s, self._renew_at - time.monotonic()))
            pullpoint = self._pullpoint
            reply = await self._camera.call(
                "PullMessages",
                lambda: pullpoint.PullMessages({"Timeout": dt.timedelta(seconds=wait), "MessageLimit": self._limit}),
                wait + 5.0,
            )
            self._failures = 0
            for message in getattr(reply, "NotificationMessage", None) or []:
                try:
                    self._buffer.append(await decode_notification(message, self._camera.uid))
                    self.counters["events"] += 1
                except Exception as exc:
                    self.counters["undecodable"] += 1
                    log.warning("onvif.event_undecodable", camera=self._camera.uid, error=type(exc).__name__)
        except Exception as exc:
            if self._closed:
                return
            self._failed(classify(exc, "events"))
            delay = 0.0 if self._failures == 1 else _BACKOFF_S[min(self._failures - 2, len(_BACKOFF_S) - 1)]
            if delay:
                await asyncio.sleep(delay)

    def _failed(self, err: OnvifError) -> None:
        self._failures += 1
        self.last_error = err
        self.counters[f"error_{err.reason.value}"] += 1
        if self._pullpoint is not None:
            self.counters["lost"] += 1
        self._pullpoint = self._manager = None  # recreate on the next step
        log.warning("onvif.events_failed", camera=self._camera.uid, reason=err.reason.value, detail=err.detail)


def _duration(seconds: float) -> str:
    return f"PT{max(1, int(seconds))}S"

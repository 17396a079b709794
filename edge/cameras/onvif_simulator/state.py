"""The simulated camera's state: clock, PTZ position and presets, PullPoint subscriptions, counters."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import quoteattr

from .soap import iso

EventKind = Literal["motion", "tamper", "scene_change"]

#: topic, source items, data item name: as real cameras publish them (and as onvif-parsers decodes them).
_EVENT_SHAPES: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    "motion": (
        "tns1:RuleEngine/CellMotionDetector/Motion",
        [
            ("VideoSourceConfigurationToken", "VideoSourceToken"),
            ("VideoAnalyticsConfigurationToken", "VideoAnalyticsToken"),
            ("Rule", "MyMotionDetectorRule"),
        ],
        "IsMotion",
    ),
    "tamper": (
        "tns1:RuleEngine/TamperDetector/Tamper",
        [
            ("VideoSourceConfigurationToken", "VideoSourceToken"),
            ("VideoAnalyticsConfigurationToken", "VideoAnalyticsToken"),
            ("Rule", "MyTamperDetectorRule"),
        ],
        "IsTamper",
    ),
    "scene_change": ("tns1:VideoSource/GlobalSceneChange/ImagingService", [("Source", "VideoSourceToken")], "State"),
}
TOPICS = tuple(shape[0] for shape in _EVENT_SHAPES.values())


def notification_xml(kind: str, active: bool, at: dt.datetime, *, quirky: bool = False) -> str:
    """One ``wsnt:NotificationMessage`` for an event of *kind*."""
    topic, sources, data_name = _EVENT_SHAPES[kind]
    if quirky:
        topic = f"\n    {topic}//.  "
    source = "".join(f"<tt:SimpleItem Name={quoteattr(n)} Value={quoteattr(v)}/>" for n, v in sources)
    return (
        "<wsnt:NotificationMessage>"
        '<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">'
        f"{topic}</wsnt:Topic>"
        f'<wsnt:Message><tt:Message UtcTime="{iso(at)}" PropertyOperation="Changed">'
        f"<tt:Source>{source}</tt:Source>"
        f'<tt:Data><tt:SimpleItem Name="{data_name}" Value="{"true" if active else "false"}"/></tt:Data>'
        "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
    )


@dataclass
class Subscription:
    """One PullPoint subscription: its termination time (camera clock) and undelivered messages."""

    ident: str
    terminates: dt.datetime
    queue: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Ptz:
    """Pan/tilt/zoom in ONVIF's generic spaces ([-1, 1], zoom [0, 1]); continuous moves integrate velocity."""

    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    since: float = field(default_factory=time.monotonic)
    until: float | None = None
    presets: dict[str, tuple[str, float, float, float]] = field(default_factory=dict)  # token → name, p, t, z

    def settle(self) -> None:
        """Advance the position to now (stopping at the move's timeout)."""
        now = time.monotonic()
        end = now if self.until is None else min(now, self.until)
        span = max(0.0, end - self.since)
        vp, vt, vz = self.velocity
        self.pan = max(-1.0, min(1.0, self.pan + vp * span))
        self.tilt = max(-1.0, min(1.0, self.tilt + vt * span))
        self.zoom = max(0.0, min(1.0, self.zoom + vz * span))
        self.since = now
        if self.until is not None and now >= self.until:
            self.velocity, self.until = (0.0, 0.0, 0.0), None

    @property
    def moving(self) -> bool:
        """True while a continuous move is under way."""
        self.settle()
        return any(v != 0.0 for v in self.velocity)

    def move(self, velocity: tuple[float, float, float], timeout_s: float | None) -> None:
        """Start a continuous move."""
        self.settle()
        self.velocity = velocity
        self.until = None if timeout_s is None else time.monotonic() + timeout_s

    def stop(self) -> None:
        """Stop moving."""
        self.settle()
        self.velocity, self.until = (0.0, 0.0, 0.0), None


@dataclass
class CameraState:
    """Everything that changes while the simulator runs."""

    clock_offset_s: float = 0.0
    ptz: Ptz = field(default_factory=Ptz)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    last_time_set: dt.datetime | None = None

    def now(self) -> dt.datetime:
        """The camera's clock."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset_s)

    def new_subscription(self, terminates: dt.datetime) -> Subscription:
        """Create a PullPoint subscription."""
        self.expire()
        sub = Subscription(ident=uuid.uuid4().hex, terminates=terminates)
        self.subscriptions[sub.ident] = sub
        self.counters["subscriptions_created"] += 1
        return sub

    def expire(self) -> None:
        """Drop subscriptions whose termination time has passed (as a camera does)."""
        now = self.now()
        for ident in [i for i, s in self.subscriptions.items() if s.terminates <= now]:
            del self.subscriptions[ident]
            self.counters["subscriptions_expired"] += 1

    def live(self, ident: str) -> Subscription | None:
        """The subscription *ident* if it has not lapsed."""
        self.expire()
        return self.subscriptions.get(ident)

    def publish(self, kind: EventKind, active: bool, *, quirky: bool = False) -> int:
        """Queue an event for every live subscription; returns how many got it."""
        self.expire()
        xml = notification_xml(kind, active, self.now(), quirky=quirky)
        for sub in self.subscriptions.values():
            sub.queue.append(xml)
            sub.wakeup.set()
        self.counters[f"events_{kind}"] += 1
        return len(self.subscriptions)

    def forget_subscriptions(self) -> None:
        """Lose every subscription (a reboot or a firmware hiccup)."""
        for sub in self.subscriptions.values():
            sub.wakeup.set()
        self.subscriptions.clear()

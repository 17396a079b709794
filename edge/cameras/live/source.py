"""One RTSP pull per (camera, stream), shared by all its live viewers: :class:`LiveSource` and :class:`SourcePool`.

A reader thread opens the stream with PyAV (TCP, small probe so it starts fast, time-limited) and demuxes it: no
packet is decoded. Each H.264 access unit is made Annex-B, keyframes get the SPS/PPS they lack (cameras that send
them only in the SDP), and the packet goes to every viewer's :class:`Subscriber`: a bounded queue that starts at a
keyframe, and that drops until the next keyframe when its viewer falls behind (latency never grows; drops are
counted). When the stream ends or breaks, every subscriber ends with the reason. A source whose last viewer left
is stopped ``linger_s`` later; a viewer arriving meanwhile reuses it.

The stream address carries the camera's credentials: it lives only in the reader thread and PyAV; every text this
module reports passes the camera's scrubber (PyAV names the URL in its errors). PyAV is imported on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

import structlog

from edge.cameras.live.h264 import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    H264Error,
    ParameterSets,
    ensure_parameter_sets,
    in_band_parameter_sets,
    nal_types,
    parameter_sets,
    parse_sps,
    sps_profile,
    to_annexb,
)
from varta.aio import wait_event, wait_for

if TYPE_CHECKING:
    import av.container
    import av.video.stream

log = structlog.get_logger(__name__)

READ_TIMEOUT_S: Final = 5.0
"""A stream that delivers nothing this long is lost."""
REPLAY_MAX_AGE_S: Final = 0.35
"""A new viewer starts with the packets since the last keyframe when that keyframe is at most this old: a pull's
first viewer gets the keyframe the camera sent at PLAY (read before the viewer subscribed), and a late viewer just
after a keyframe need not wait a whole keyframe interval. Older than this, the viewer waits for the next keyframe
rather than start that far behind."""
#: A stream that ends as soon as it is opened is opened again, this long after, at most this many times in all.
REOPEN_DELAY_S: Final = 0.3
OPEN_ATTEMPTS: Final = 2
PROBE_OPTIONS: Final = {"rtsp_transport": "tcp", "probesize": "32", "analyzeduration": "0"}
"""Probe as little as possible, but keep what the probe read: with ``fflags=nobuffer`` FFmpeg drops the packets it
read while probing, which is the keyframe a camera (or GStreamer) sends a new client at PLAY, and every new viewer
then waited a whole keyframe interval (1.15 s against 0.18 s measured with a 1 s GOP)."""
_USERINFO_RE: Final = re.compile(r"(\w+://)[^/@\s]*@")

SourceKey = tuple[str, str]
"""(device id, stream): what one pull is shared by."""


def strip_userinfo(text: str) -> str:
    """*text* without any ``user:password@`` in URLs."""
    return _USERINFO_RE.sub(r"\1", text)


@dataclass(frozen=True)
class StreamAddress:
    """Where a camera's stream is: ``url`` WITH credentials (never log it) and the scrubber for texts about it."""

    url: str = field(repr=False)
    scrub: Callable[[str], str] = strip_userinfo


@dataclass(frozen=True)
class VideoPacket:
    """One Annex-B H.264 access unit as the camera sent it (keyframes with SPS/PPS)."""

    data: bytes
    pts: int | None
    time_base: Fraction
    keyframe: bool


@dataclass(frozen=True)
class StreamFormat:
    """What the stream is: picture size and H.264 ``profile-level-id`` (from the SPS), and the parameter sets."""

    width: int | None = None
    height: int | None = None
    profile_level_id: str | None = None
    parameter_sets: ParameterSets = field(default_factory=ParameterSets, repr=False)


@dataclass
class SourceStats:
    """Counters of one pull."""

    packets: int = 0
    keyframes: int = 0
    bytes: int = 0
    drops: int = 0
    """Packets not delivered to some viewer because it lagged."""
    bad_packets: int = 0
    """Packets that were not H.264 access units (skipped)."""


class SourceUnavailable(Exception):
    """The stream could not be opened (the message is free of credentials)."""


class SourceEnded(Exception):
    """The stream ended or broke, or the viewer left (the message says which, free of credentials)."""


class Subscriber:
    """One viewer's bounded queue of packets: starts at a keyframe, drops until the next keyframe when full."""

    def __init__(self, source: LiveSource, maxlen: int) -> None:
        self.source = source
        self.maxlen = maxlen
        self.delivered = 0
        self.drops = 0
        self.ended: str | None = None
        self._queue: deque[VideoPacket] = deque()
        self._gated = True
        self._lagging = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def waiting_for_keyframe(self) -> bool:
        """True while this viewer has nothing to show yet, or skips to the next keyframe."""
        return self.ended is None and self._gated

    def push(self, packet: VideoPacket) -> None:
        """Queue *packet* (called on the event loop by the source)."""
        if self.ended is not None:
            return
        if self._gated:
            if not packet.keyframe:
                if self._lagging:
                    self._drop(1)
                return
            if self._lagging:  # jump to the new keyframe: what is still queued is stale
                self._drop(len(self._queue))
                self._queue.clear()
            self._gated = self._lagging = False
        if len(self._queue) >= self.maxlen:
            self._drop(1)
            self._gated = self._lagging = True
            return
        self._queue.append(packet)
        self._wake()

    def _drop(self, count: int) -> None:
        self.drops += count
        self.source.stats.drops += count

    def end(self, detail: str) -> None:
        """No more packets after those queued; :meth:`get` then raises :class:`SourceEnded`."""
        if self.ended is None:
            self.ended = detail
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> VideoPacket:
        """The next packet; :class:`SourceEnded` once the source ended (or this subscriber was closed)."""
        while not self._queue:
            if self.ended is not None:
                raise SourceEnded(self.ended)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.delivered += 1
        return self._queue.popleft()

    def close(self) -> None:
        """Leave the source (it lingers, then stops, when this was its last viewer)."""
        self.end("viewer left")
        self.source.unsubscribe(self)


class LiveSource:
    """One RTSP pull (see the module docstring). Create, :meth:`open`, :meth:`subscribe`; it closes itself."""

    def __init__(
        self,
        key: SourceKey,
        address: StreamAddress,
        *,
        open_timeout_s: float,
        linger_s: float,
        queue_packets: int,
        read_timeout_s: float = READ_TIMEOUT_S,
        on_end: Callable[[LiveSource], None] | None = None,
    ) -> None:
        self.key = key
        self.scrub = address.scrub
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.linger_s = linger_s
        self.queue_packets = queue_packets
        self.stats = SourceStats()
        self.format: StreamFormat | None = None
        self.end_detail = ""
        self.ended = asyncio.Event()
        """Set when the pull is over (stream lost, or closed)."""
        self.closing = False
        self._on_end = on_end
        self._subscribers: list[Subscriber] = []
        self._gop: list[VideoPacket] = []
        """Packets since the last keyframe (for :data:`REPLAY_MAX_AGE_S`), at most ``queue_packets``."""
        self._gop_at = 0.0
        self._loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[StreamFormat] = self._loop.create_future()
        self._format_known = asyncio.Event()
        self._done = asyncio.Event()
        self._stop = threading.Event()
        self._linger: asyncio.Task[None] | None = None
        self._thread = threading.Thread(
            target=self._run, args=(address.url,), name=f"live-{key[0]}-{key[1]}", daemon=True
        )

    @property
    def usable(self) -> bool:
        """Open, running and not closing: a new viewer may join."""
        return self.format is not None and not self.closing and not self.ended.is_set()

    @property
    def viewers(self) -> int:
        return len(self._subscribers)

    # ---------------------------------------------------------------------------------------------- loop side

    async def open(self) -> StreamFormat:
        """Connect (within ``open_timeout_s``); :class:`SourceUnavailable` with a credential-free reason if not."""
        self._thread.start()
        try:
            self.format = await wait_for(asyncio.shield(self._opened), self.open_timeout_s + 1)
        except TimeoutError:
            self._stop.set()
            raise SourceUnavailable(f"no stream within {self.open_timeout_s:g} s") from None
        except asyncio.CancelledError:
            self._stop.set()
            raise
        return self.format

    async def wait_format(self, timeout: float) -> StreamFormat:
        """The stream's format once its SPS is known (in-band SPS: at the first keyframe), or as known after
        *timeout* seconds."""
        await wait_event(self._format_known, timeout)
        assert self.format is not None
        return self.format

    def subscribe(self) -> Subscriber:
        """A new viewer's queue (it starts at the next keyframe)."""
        if not self.usable:
            raise SourceEnded(self.end_detail or "the stream is not running")
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        subscriber = Subscriber(self, self.queue_packets)
        if self._gop and time.monotonic() - self._gop_at <= REPLAY_MAX_AGE_S:
            for packet in self._gop:
                subscriber.push(packet)
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a viewer; the last one leaving starts the linger."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers and not self.closing and not self.ended.is_set() and self._linger is None:
            self._linger = self._loop.create_task(self._linger_then_close(), name=f"live-linger-{self.key[0]}")

    async def _linger_then_close(self) -> None:
        await asyncio.sleep(self.linger_s)
        self._linger = None
        if not self._subscribers:
            log.info("live.source_idle", device_id=self.key[0], stream=self.key[1], linger_s=self.linger_s)
            await self.close()

    async def close(self) -> None:
        """Stop the pull and end every subscriber; returns once the reader thread is done (bounded wait)."""
        self.closing = True
        if self._linger is not None and self._linger is not asyncio.current_task():
            self._linger.cancel()
        self._stop.set()
        for subscriber in list(self._subscribers):
            subscriber.end("the stream was stopped")
        if self._thread.ident is not None:
            await wait_event(self._done, self.read_timeout_s + self.open_timeout_s + 2)
        self._finish("the stream was stopped")

    def _opened_ok(self, fmt: StreamFormat) -> None:
        self.format = fmt
        if fmt.profile_level_id is not None:
            self._format_known.set()
        if not self._opened.done():
            self._opened.set_result(fmt)

    def _open_failed(self, detail: str) -> None:
        if not self._opened.done():
            self._opened.set_exception(SourceUnavailable(detail))
            self._opened.exception()  # retrieved: no "never retrieved" warning when open() gave up first
        self._done.set()
        self._finish(detail)

    def _format_update(self, fmt: StreamFormat) -> None:
        self.format = fmt
        self._format_known.set()

    def _dispatch(self, packet: VideoPacket) -> None:
        stats = self.stats
        stats.packets += 1
        stats.bytes += len(packet.data)
        stats.keyframes += packet.keyframe
        if packet.keyframe:
            self._gop = [packet]
            self._gop_at = time.monotonic()
        elif self._gop:
            if len(self._gop) < self.queue_packets - 1:
                self._gop.append(packet)
            else:  # too long to replay whole (a cut-off group would corrupt the picture): next keyframe then
                self._gop = []
        for subscriber in self._subscribers:
            subscriber.push(packet)

    def _reader_done(self, detail: str) -> None:
        self._done.set()
        self._finish("the stream was stopped" if self.closing else detail)

    def _finish(self, detail: str) -> None:
        if self.ended.is_set():
            return
        self.end_detail = detail
        self.ended.set()
        for subscriber in list(self._subscribers):
            subscriber.end(detail)
        self._subscribers.clear()
        if self._linger is not None and self._linger is not asyncio.current_task():
            self._linger.cancel()
        log.info(
            "live.source_ended",
            device_id=self.key[0],
            stream=self.key[1],
            detail=detail,
            packets=self.stats.packets,
            drops=self.stats.drops,
        )
        if self._on_end is not None:
            self._on_end(self)

    # ---------------------------------------------------------------------------------------------- reader thread

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self, url: str) -> None:
        began = time.monotonic()
        try:
            container = _open_container(url, self.open_timeout_s, self.read_timeout_s)
        except Exception as exc:
            if time.monotonic() - began >= self.open_timeout_s * 0.9:  # PyAV gave up: says "invalid data" or so
                detail = f"no answer within {self.open_timeout_s:g} s"
            else:
                detail = self.scrub(_describe(exc))
            self._call(self._open_failed, detail)
            return
        detail = "the stream ended"
        try:
            stream = _video_stream(container)
            if stream is None:
                self._call(self._open_failed, "the stream has no H.264 video (live view passes H.264 through)")
                return
            self._read(container, stream)
        except Exception as exc:
            detail = self.scrub(_describe(exc))
        finally:
            with contextlib.suppress(Exception):
                container.close()
            self._call(self._reader_done, detail)

    def _read(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
        ctx = stream.codec_context
        try:
            sets = parameter_sets(bytes(ctx.extradata or b""))
        except H264Error:
            sets = ParameterSets()
        fmt = _format(sets, ctx.width, ctx.height)
        self._call(self._opened_ok, fmt)
        for packet in container.demux(stream):
            if self._stop.is_set():
                return
            if not packet.size:
                continue
            try:
                data = to_annexb(bytes(packet), sets.length_size)
            except H264Error:
                self.stats.bad_packets += 1
                continue
            types = nal_types(data)
            if NAL_SPS in types and NAL_PPS in types:
                in_band = in_band_parameter_sets(data)
                if in_band.sps != sets.sps or in_band.pps != sets.pps:
                    sets = ParameterSets(in_band.sps, in_band.pps, sets.length_size)
                    new = _format(sets, ctx.width, ctx.height)
                    if (new.width, new.height, new.profile_level_id) != (fmt.width, fmt.height, fmt.profile_level_id):
                        self._call(self._format_update, new)
                    fmt = new
            keyframe = NAL_IDR in types
            if keyframe:
                data = ensure_parameter_sets(data, sets)
            pts = packet.pts if packet.pts is not None else packet.dts
            time_base = packet.time_base or stream.time_base or Fraction(1, 90_000)
            self._call(self._dispatch, VideoPacket(data, pts, Fraction(time_base), keyframe))


def _open_container(url: str, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
    import av

    options = {**PROBE_OPTIONS, "timeout": str(int(read_timeout_s * 1_000_000))}
    return av.open(url, options=options, timeout=(open_timeout_s, read_timeout_s))


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    for stream in container.streams.video:
        if stream.codec_context.name == "h264":
            return stream
    return None


def _format(sets: ParameterSets, width: int | None, height: int | None) -> StreamFormat:
    """The format from the SPS (size from the demuxer when it knows it)."""
    profile_level_id = None
    if sets.sps:
        with contextlib.suppress(H264Error):
            profile_level_id = sps_profile(sets.sps[0]).profile_level_id
        if not (width and height):
            with contextlib.suppress(H264Error):
                info = parse_sps(sets.sps[0])
                width, height = info.width, info.height
    return StreamFormat(width or None, height or None, profile_level_id, sets)


def _describe(exc: BaseException) -> str:
    """A short text for *exc* (PyAV errors without the URL they name)."""
    strerror = getattr(exc, "strerror", None)
    text = strerror if isinstance(strerror, str) and strerror else str(exc) or type(exc).__name__
    if "Immediate exit requested" in text or isinstance(exc, TimeoutError):
        return "no answer in time"
    return text[:300]


# ---------------------------------------------------------------------------------------------------- pool


class SourcePool:
    """The node's running pulls, one per (camera, stream); concurrent first viewers share one open."""

    def __init__(
        self,
        *,
        open_timeout_s: float,
        linger_s: float,
        queue_packets: int,
        read_timeout_s: float = READ_TIMEOUT_S,
        on_end: Callable[[LiveSource], None] | None = None,
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self.linger_s = linger_s
        self.queue_packets = queue_packets
        self.read_timeout_s = read_timeout_s
        self.sources: dict[SourceKey, LiveSource] = {}
        self.opens = 0
        """Pulls opened (successfully) since start."""
        self.restarts = 0
        """Pulls opened again for a (camera, stream) that had one before."""
        self.open_failures = 0
        self._on_end = on_end
        self._locks: dict[SourceKey, asyncio.Lock] = {}
        self._opened_keys: set[SourceKey] = set()

    async def acquire(self, key: SourceKey, address: StreamAddress) -> tuple[LiveSource, Subscriber, bool]:
        """A subscriber of the running pull for *key* (opened if needed): (source, subscriber, shared)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            source = self.sources.get(key)
            if source is not None and source.usable:
                return source, source.subscribe(), True
            source = await self._open(key, address)
            self.sources[key] = source
            self.restarts += key in self._opened_keys
            self._opened_keys.add(key)
            self.opens += 1
            fmt = source.format
            log.info(
                "live.source_opened",
                device_id=key[0],
                stream=key[1],
                width=fmt.width if fmt else None,
                height=fmt.height if fmt else None,
                profile_level_id=fmt.profile_level_id if fmt else None,
                restarts=self.restarts,
            )
            return source, source.subscribe(), False

    async def _open(self, key: SourceKey, address: StreamAddress) -> LiveSource:
        """Open a pull for *key*; a stream that ends as soon as it opened is opened once more, a moment later.

        Cameras (and GStreamer's RTSP server while it tears down a shared media another client just left) sometimes
        end a stream right after PLAY; a viewer should not be refused for that.
        """
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            source = LiveSource(
                key,
                address,
                open_timeout_s=self.open_timeout_s,
                linger_s=self.linger_s,
                queue_packets=self.queue_packets,
                read_timeout_s=self.read_timeout_s,
                on_end=self._ended,
            )
            try:
                await source.open()
            except SourceUnavailable:
                self.open_failures += 1
                raise
            if source.usable:
                return source
            self.open_failures += 1
            log.info("live.source_ended_at_open", device_id=key[0], stream=key[1], attempt=attempt)
            if attempt < OPEN_ATTEMPTS:
                await asyncio.sleep(REOPEN_DELAY_S)
        raise SourceUnavailable(source.end_detail or "the stream ended as soon as it was opened")

    def _ended(self, source: LiveSource) -> None:
        if self.sources.get(source.key) is source:
            del self.sources[source.key]
        if self._on_end is not None:
            self._on_end(source)

    async def close(self, device_id: str | None = None) -> None:
        """Stop the pulls of one camera now (every camera's when None)."""
        doomed = [s for k, s in self.sources.items() if device_id is None or k[0] == device_id]
        await asyncio.gather(*(s.close() for s in doomed), return_exceptions=True)

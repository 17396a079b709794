"""The video track one viewer's RTCPeerConnection sends: the camera's H.264 access units, never decoded.

aiortc's RTP sender packetises an ``av.Packet`` as it is (``H264Encoder.pack``: Annex-B split into NAL units, then
STAP-A/FU-A) and takes the RTP timestamp from ``pts`` × ``time_base``; this track hands out such packets with a
90 kHz ``pts`` that starts at 0 for its viewer. One track per viewer (one track with several senders would split the
frames between them). It ends (:class:`~aiortc.mediastreams.MediaStreamError`) when the source ends.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any, Final

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.cameras.live.source import SourceEnded, Subscriber, VideoPacket

CLOCK_RATE: Final = 90_000
VIDEO_TIME_BASE: Final = Fraction(1, CLOCK_RATE)
_STEP: Final = CLOCK_RATE // 25
"""Ticks added when a camera's timestamps jump backwards (one frame at 25 fps)."""
MAX_BACKWARDS: Final = 2 * CLOCK_RATE


class PassthroughTrack(MediaStreamTrack):
    """A video track fed by one :class:`~edge.cameras.live.source.Subscriber` (see the module docstring)."""

    kind = "video"

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__()
        self.subscriber = subscriber
        self.frames_sent = 0
        self._origin: int | None = None
        self._clock_origin = time.monotonic()
        self._last = -1

    async def recv(self) -> av.Packet[Any]:
        """The next access unit as an ``av.Packet`` (pts in 90 kHz); MediaStreamError once the source ended."""
        if self.readyState != "live":
            raise MediaStreamError
        try:
            packet = await self.subscriber.get()
        except SourceEnded:
            self.stop()
            raise MediaStreamError from None
        out = av.Packet(packet.data)
        out.pts = self._timestamp(packet)
        out.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return out

    def _timestamp(self, packet: VideoPacket) -> int:
        """*packet*'s time on this viewer's 90 kHz clock, starting at 0.

        A camera whose clock jumps back by more than :data:`MAX_BACKWARDS` (a restart, a wrap) continues one frame
        after the last packet; small steps back (B-frames in decode order) are kept.
        """
        if packet.pts is None:
            ticks = round((time.monotonic() - self._clock_origin) * CLOCK_RATE)
        else:
            absolute = round(packet.pts * packet.time_base * CLOCK_RATE)
            if self._origin is None or absolute - self._origin < self._last - MAX_BACKWARDS:
                self._origin = absolute - (self._last + _STEP if self._last >= 0 else 0)
            ticks = absolute - self._origin
        self._last = ticks
        return ticks

    def stop(self) -> None:
        """End the track and leave the source."""
        if self.readyState == "live":
            self.subscriber.close()
        super().stop()

"""Live-view test helpers: a receiving aiortc peer that plays the browser, ended-session records, a loop-lag probe."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.edge.support import eventually
from varta.contract import LiveEnded, LiveEndReason

# H.264 payload types (format, RTX) browsers offer besides Constrained Baseline (aiortc's offers only 42001f/42e01f).
CHROME_EXTRA_H264 = {"4d001f": (127, 125), "64001f": (112, 113)}
# Debian's Chromium 156: Main, and High 4:4:4 Predictive (no plain High) in the range aiortc does not keep (35-63).
CHROMIUM_156_EXTRA_H264 = {"4d001f": (116, 117), "f4001f": (41, 42)}
_FMTP_PLID = re.compile(r"^(a=fmtp:\d+ .*profile-level-id=)([0-9a-fA-F]{6})", re.MULTILINE)


def chrome_like(offer: str, extra_h264: dict[str, tuple[int, int]] = CHROME_EXTRA_H264, *, mdns: bool = False) -> str:
    """aiortc's offer with more H.264 payload types in its video section, as Chrome offers them; with *mdns* its
    host candidates hide their addresses behind mDNS names, as browsers do (nobody resolves these)."""
    lines = offer.replace("\r\n", "\n").rstrip("\n").split("\n")
    if mdns:
        lines = [_mdns_candidate(line) if line.startswith("a=candidate:") else line for line in lines]
    start = next(i for i, line in enumerate(lines) if line.startswith("m=video "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("m=")), len(lines))
    extra: list[str] = []
    for plid, (pt, rtx) in extra_h264.items():
        lines[start] += f" {pt} {rtx}"
        extra += [
            f"a=rtpmap:{pt} H264/90000",
            f"a=rtcp-fb:{pt} nack",
            f"a=rtcp-fb:{pt} nack pli",
            f"a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={plid}",
            f"a=rtpmap:{rtx} rtx/90000",
            f"a=fmtp:{rtx} apt={pt}",
        ]
    lines[end:end] = extra
    return "\r\n".join(lines) + "\r\n"


def _mdns_candidate(line: str) -> str:
    words = line.split()
    if len(words) >= 8 and words[7] == "host":
        words[4] = f"{uuid.uuid4()}.local"
    return " ".join(words)


def answer_profile(answer: str, pt: int | None = None) -> tuple[int, str]:
    """(payload type, profile-level-id) of the answer's (first, or *pt*'s) H.264 fmtp line."""
    for line in answer.replace("\r\n", "\n").split("\n"):
        match = re.match(r"^a=fmtp:(\d+) .*profile-level-id=([0-9a-fA-F]{6})", line)
        if match and (pt is None or int(match.group(1)) == pt):
            return int(match.group(1)), match.group(2).lower()
    raise AssertionError("no H.264 fmtp line in the answer")


class Viewer:
    """A receiving RTCPeerConnection (recvonly video) that decodes what it gets, as a browser would."""

    def __init__(
        self, *, browser: bool = True, extra_h264: dict[str, tuple[int, int]] = CHROME_EXTRA_H264, mdns: bool = False
    ) -> None:
        self.browser = browser
        self.extra_h264 = extra_h264
        self.mdns = mdns
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.frames: list[tuple[float, int, int]] = []
        """(arrival time, width, height) of every decoded frame."""
        self.track_ended = asyncio.Event()
        self.answered_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._pump(track)))

    async def _pump(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames.append((time.monotonic(), getattr(frame, "width", 0), getattr(frame, "height", 0)))
        except MediaStreamError:
            self.track_ended.set()

    async def offer(self) -> str:
        """The offer to send (Chrome-like H.264 list unless ``browser=False``: then aiortc's own)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        return chrome_like(sdp, self.extra_h264, mdns=self.mdns) if self.browser else sdp

    async def accept(self, answer: str) -> None:
        """Apply the node's answer; its profile is shown to aiortc as 42e01f (aiortc knows no other, and its
        FFmpeg decoder decodes any profile, as browsers do)."""
        self.answered_at = time.monotonic()
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=_FMTP_PLID.sub(r"\g<1>42e01f", answer), type="answer")
        )
        # aiortc keeps only payload types 96-127 from an answer too: give its receiver the answer's H.264 number.
        [h264] = re.findall(r"^a=rtpmap:(\d+) H264/90000", answer, flags=re.MULTILINE)
        transceiver = next(t for t in self.pc.getTransceivers() if t.kind == "video")
        for codec in transceiver._codecs:
            if codec.mimeType.lower() == "video/h264":
                codec.payloadType = int(h264)

    async def wait_frames(self, count: int, timeout: float = 15.0) -> list[tuple[float, int, int]]:
        await eventually(lambda: len(self.frames) >= count, timeout, f"{count} decoded frames")
        return self.frames

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Endings:
    """The ``on_ended`` callback: records every (device id, LiveEnded)."""

    items: list[tuple[str, LiveEnded]] = field(default_factory=list)

    async def __call__(self, device_id: str, ended: LiveEnded) -> None:
        self.items.append((device_id, ended))

    def of(self, session_id: str) -> list[LiveEnded]:
        return [e for _, e in self.items if e.session_id == session_id]

    async def wait(self, session_id: str, timeout: float = 15.0) -> LiveEnded:
        await eventually(lambda: bool(self.of(session_id)), timeout, f"the end of {session_id}")
        return self.of(session_id)[0]

    def reasons(self) -> dict[str, LiveEndReason]:
        return {e.session_id: e.reason for _, e in self.items}


@dataclass
class LagProbe:
    """Measures how late a 5 ms timer fires on the event loop (the loop was blocked that long)."""

    max_lag_s: float = 0.0
    samples: int = 0


@asynccontextmanager
async def loop_lag() -> AsyncIterator[LagProbe]:
    probe = LagProbe()
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            probe.max_lag_s = max(probe.max_lag_s, loop.time() - before - 0.005)
            probe.samples += 1

    task = asyncio.create_task(tick())
    try:
        yield probe
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

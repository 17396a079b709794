"""The viewer's track hands aiortc ``av.Packet``s on a 90 kHz clock that starts at 0 (RTP timestamps), unchanged."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError

from edge.cameras.live.h264 import join_annexb
from edge.cameras.live.source import SourceStats, Subscriber, VideoPacket
from edge.cameras.live.track import PassthroughTrack

IDR = join_annexb([bytes.fromhex("6764001eac"), bytes.fromhex("68ee3c80"), bytes.fromhex("6588804000") * 400])


class FakeSource:
    def __init__(self) -> None:
        self.stats = SourceStats()
        self.left: list[Subscriber] = []

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.left.append(subscriber)


def track_with(packets: list[VideoPacket]) -> tuple[PassthroughTrack, Any]:
    source = FakeSource()
    subscriber = Subscriber(source, maxlen=100)
    for packet in packets:
        subscriber.push(packet)
    return PassthroughTrack(subscriber), source


def packet(pts: int | None, time_base: Fraction = Fraction(1, 90_000), keyframe: bool = False) -> VideoPacket:
    return VideoPacket(IDR, pts, time_base, keyframe)


async def timestamps(packets: list[VideoPacket]) -> list[int]:
    track, _ = track_with(packets)
    return [(await track.recv()).pts or 0 for _ in packets]


async def test_timestamps_start_at_zero_on_a_90khz_clock() -> None:
    assert await timestamps([packet(900_000, keyframe=True), packet(903_600), packet(907_200)]) == [0, 3600, 7200]
    ms = Fraction(1, 1000)
    assert await timestamps([packet(5000, ms, True), packet(5040, ms), packet(5080, ms)]) == [0, 3600, 7200]


async def test_a_camera_clock_that_jumps_back_continues_and_b_frames_keep_their_order() -> None:
    jump = [packet(900_000, keyframe=True), packet(903_600), packet(90_000, keyframe=True), packet(93_600)]
    assert await timestamps(jump) == [0, 3600, 7200, 10_800]
    b_frames = [packet(900_000, keyframe=True), packet(910_800), packet(903_600), packet(907_200)]
    assert await timestamps(b_frames) == [0, 10_800, 3600, 7200]


async def test_packets_go_to_aiortc_unchanged_and_the_track_ends_with_the_source() -> None:
    track, source = track_with([packet(0, keyframe=True)])
    sent = await track.recv()
    assert bytes(sent) == IDR and sent.time_base == Fraction(1, 90_000)
    payloads, timestamp = H264Encoder().pack(sent)  # what aiortc's RTP sender does with it
    assert timestamp == 0 and len(payloads) >= 2  # fragmented (FU-A), not re-encoded
    track.subscriber.end("the stream ended")
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended" and source.left == [track.subscriber] and track.frames_sent == 1

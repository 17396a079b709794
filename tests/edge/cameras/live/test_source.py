"""The shared RTSP pull: viewers start at a keyframe (with SPS/PPS), a lagging viewer skips instead of lagging."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edge.cameras.live.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_types
from edge.cameras.live.source import SourceEnded, SourcePool, StreamAddress, Subscriber, VideoPacket
from tests.edge.support import eventually
from tests.support.rtsp_server import RtspServer
from varta.aio import wait_for

KEY = ("cam-gate", "main")


@asynccontextmanager
async def pool(queue_packets: int = 60, linger_s: float = 0.0) -> AsyncIterator[SourcePool]:
    p = SourcePool(open_timeout_s=5, linger_s=linger_s, queue_packets=queue_packets)
    try:
        yield p
    finally:
        await p.close()


async def read(subscriber: Subscriber, count: int) -> list[VideoPacket]:
    return [await wait_for(subscriber.get(), 5) for _ in range(count)]


async def test_every_viewer_starts_at_a_keyframe_that_carries_sps_and_pps() -> None:
    with RtspServer(fps=25, key_int=10, config_interval=0, repeat_headers=False) as server:
        async with pool() as p:
            source, first, shared = await p.acquire(KEY, StreamAddress(server.url()))
            assert not shared and source.format is not None
            assert (source.format.width, source.format.height) == (640, 360)
            assert source.format.profile_level_id == "42c01e"
            packets = await read(first, 12)
            _, second, shared = await p.acquire(KEY, StreamAddress(server.url()))  # joins mid-GOP
            assert shared
            for sub in (first, second):
                head = (packets if sub is first else await read(second, 1))[0]
                assert head.keyframe and {NAL_SPS, NAL_PPS, NAL_IDR} <= set(nal_types(head.data))
            assert all(NAL_SPS in nal_types(p.data) for p in packets if p.keyframe)  # every keyframe, re-inserted
            # The pull's very first packet was read while the stream was probed: the demuxer gives it no time.
            timestamps = [p.pts for p in packets[1:]]
            assert None not in timestamps
            assert timestamps == sorted(timestamps) and timestamps[1] - timestamps[0] == 90_000 // 25


async def test_a_lagging_viewer_drops_until_the_next_keyframe_and_the_others_miss_nothing() -> None:
    with RtspServer(fps=25, key_int=10) as server:
        async with pool(queue_packets=5) as p:
            source, slow, _ = await p.acquire(KEY, StreamAddress(server.url()))
            fast = source.subscribe()
            received: list[VideoPacket] = []

            async def drain() -> None:
                while True:
                    received.append(await fast.get())

            reader = asyncio.create_task(drain())
            try:
                await eventually(lambda: slow.drops >= 10, 10, "the slow viewer to drop")  # it never read
                dropped_at = source.stats.keyframes
                await eventually(lambda: source.stats.keyframes > dropped_at, 5, "the next keyframe")
                queued = len(slow._queue)
                assert queued <= 5  # bounded: latency never grows
                again = await read(slow, 1)
                assert again[0].keyframe  # it resumes at a keyframe, with the stale packets thrown away
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            assert fast.drops == 0 and source.stats.drops == slow.drops
            assert received[0].keyframe
            timed = [q for q in received if q.pts is not None]  # (the pull's first packet has no time)
            assert len(timed) >= len(received) - 1
            gaps = [b.pts - a.pts for a, b in itertools.pairwise(timed)]
            assert set(gaps) == {90_000 // 25}  # the reading viewer got every packet


async def test_a_source_ends_its_subscribers_when_the_stream_stops_and_is_not_reused() -> None:
    server = RtspServer(fps=25, key_int=10).start()
    try:
        async with pool(linger_s=30) as p:
            source, sub, _ = await p.acquire(KEY, StreamAddress(server.url()))
            await read(sub, 3)
            server.stop()
            await wait_for(source.ended.wait(), 10)
            assert source.end_detail == "the stream ended" and not source.usable
            try:
                while True:
                    await wait_for(sub.get(), 5)
            except SourceEnded as exc:
                assert str(exc) == "the stream ended"
            assert p.sources == {}
    finally:
        server.stop()


async def test_a_viewer_joining_just_after_a_keyframe_starts_with_it_instead_of_waiting_a_second() -> None:
    with RtspServer(fps=25, key_int=25) as server:
        async with pool() as p:
            source, first, _ = await p.acquire(KEY, StreamAddress(server.url()))
            while not (await wait_for(first.get(), 5)).keyframe:  # the viewer starts at one ...
                pass
            while True:  # ... then we wait for the next and join right behind it
                packet = await wait_for(first.get(), 5)
                if packet.keyframe:
                    break
            second = source.subscribe()
            (head,) = await read(second, 1)
            assert head.keyframe and head.pts == packet.pts  # the keyframe just sent, replayed
            later = await read(second, 3)
            assert [q.pts for q in later] == sorted(q.pts for q in later) and later[0].pts > head.pts

"""The in-process bus: streams get payloads, watchers get told what kind of thing changed."""

from __future__ import annotations

from central.bus import Bus


async def test_a_stream_receives_what_is_published_and_a_watcher_the_kind() -> None:
    bus = Bus()
    kinds: list[str] = []
    bus.watch(kinds.append)
    async with bus.subscribe() as events:
        bus.publish("device", {"device_id": "cam-1"})
        event = await anext(aiter(events))
    assert (event.kind, event.data) == ("device", {"device_id": "cam-1"})
    assert kinds == ["device"]


async def test_watchers_hear_a_touch_without_any_stream_and_a_failing_watcher_harms_nobody() -> None:
    bus = Bus()
    heard: list[str] = []

    def broken(kind: str) -> None:
        raise RuntimeError("a watcher's bug")

    bus.watch(broken)
    bus.watch(heard.append)
    assert bus.subscribers == 0
    bus.touch("node")
    bus.publish("event", {})
    assert heard == ["node", "event"]


async def test_a_stream_that_falls_behind_ends_instead_of_slowing_the_publisher() -> None:
    bus = Bus(queue_size=2)
    async with bus.subscribe() as events:
        for i in range(5):
            bus.publish("event", {"i": i})  # never blocks, never raises
        received = [e.data["i"] async for e in events]
    assert received == [], "the stream ends at once: its client reconnects and reloads the current state"
    assert bus.subscribers == 0

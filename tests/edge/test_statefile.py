"""The small state files that keep an open outage across reboots."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.power.ups import PowerStateFile
from edge.statefile import MAX_STATE_BYTES, StateFile

LOST_AT = datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


async def test_a_saved_document_is_read_back_and_cleared(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "data" / "power.json", PowerStateFile)
    assert await store.load() is None
    await store.save(PowerStateFile(device_id="ups", lost_at=LOST_AT))
    assert await store.load() == PowerStateFile(device_id="ups", lost_at=LOST_AT)
    await store.save(PowerStateFile(device_id="ups", lost_at=LOST_AT, low_battery_at=LOST_AT))
    loaded = await store.load()
    assert loaded is not None and loaded.low_battery_at == LOST_AT
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["power.json"]  # no temporary file left
    await store.clear()
    await store.clear()  # nothing there: no error
    assert await store.load() is None and not store.path.exists()


async def test_a_corrupt_or_oversized_file_is_moved_aside_and_reads_as_none(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "power.json", PowerStateFile)
    for content in (
        b"\x00garbage",
        b'{"version": 2, "device_id": "ups", "lost_at": "2026-01-01T00:00:00Z"}',
        b" " * (MAX_STATE_BYTES + 1),
    ):
        store.path.write_bytes(content)
        assert await store.load() is None
        assert not store.path.exists()
    assert len(set(store.corrupt_files)) == 3
    assert [p.read_bytes()[:9] for p in store.corrupt_files] == [b"\x00garbage", b'{"version', b" " * 9]

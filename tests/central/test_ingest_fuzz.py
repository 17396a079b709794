"""Property: no payload, however malformed, oversized or versioned, stops the ingest; every one is counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from central.bus import Bus
from central.config import IngestSettings
from central.ingest.service import IngestService
from central.store.db import Database
from central.store.fleet_models import HealthSample
from central.store.migrate import upgrade
from tests.support import messages
from varta.contract import MAX_PAYLOAD_BYTES, RETAINED_CHANNELS, Channel, RejectReason, encode, topic
from varta.mqtt import InboundMessage, MqttClient, MqttSettings

CHANNELS = [Channel.HEALTH, Channel.EVENT, Channel.STATUS, Channel.BIRTH, Channel.COMMAND_RESULT]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def mutated_valid(data: st.DataObject) -> bytes:
    """A valid health payload with one field replaced by an arbitrary JSON value, or the version changed."""
    payload = json.loads(encode(messages.health("fz", "b1", 1)))
    key = data.draw(st.sampled_from(sorted(payload)))
    payload[key] = data.draw(json_values)
    return json.dumps(payload).encode()


garbage = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=2, max_value=10**6).map(lambda v: json.dumps({"v": v, "node_id": "fz"}).encode()),
    st.just(b"{" * 10_000),
    st.just(b"x" * (MAX_PAYLOAD_BYTES + 1)),
)


def test_garbage_never_stops_ingest_and_is_counted_by_reason(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fuzz.db"
    upgrade(url)
    loop = asyncio.new_event_loop()
    db = Database(url)
    ingest = IngestService(MqttClient(MqttSettings()), db, Bus(), IngestSettings())
    seq = iter(range(1, 10**9))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), channel=st.sampled_from(CHANNELS))
    def check(data: st.DataObject, channel: Channel) -> None:
        payload = data.draw(st.one_of(garbage, st.builds(lambda: mutated_valid(data))))
        c = ingest.counters
        before = (sum(c.rejected.values()), c.stored, c.duplicates, c.retained_cleared)
        valid = encode(messages.health("fz", "b1", next(seq)))
        batch = [
            InboundMessage(topic("s1", "fz", channel), payload, 1, False, 1),
            InboundMessage(topic("s1", "fz", Channel.HEALTH), valid, 1, False, 2),
        ]
        loop.run_until_complete(ingest.process(batch))
        rejected, stored, duplicates, cleared = (
            sum(c.rejected.values()) - before[0],
            c.stored - before[1],
            c.duplicates - before[2],
            c.retained_cleared - before[3],
        )
        # The valid message behind the garbage is stored; the garbage is accounted for exactly once:
        # rejected with a known reason, or (if a mutation happened to stay valid) stored or dropped as a repeat,
        # or — an empty payload on a retained channel — counted as a retained message being cleared.
        assert stored >= 1
        assert rejected + (stored - 1) + duplicates + cleared == 1
        assert cleared == 0 or (payload == b"" and channel in RETAINED_CHANNELS)
        assert set(c.rejected) <= {r.value for r in RejectReason}
        assert c.db_errors == 0

    try:
        check()
        assert loop.run_until_complete(_count(db)) == ingest.counters.stored
    finally:
        loop.run_until_complete(db.dispose())
        loop.close()


async def _count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(HealthSample))).scalar_one())

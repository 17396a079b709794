"""Feed parsing: alerts.in.ua JSON and CAP 1.2 XML become alert periods; garbage raises only FeedError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.alerts.alerts_in_ua import parse_active
from central.alerts.cap import CapState, alert_key, parse_cap, parse_xml
from central.alerts.feed import FeedError
from central.alerts.http import retry_after
from tests.support.alert_feed import api_alert, atom_feed, cap_alert

T0 = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
KYIV = "14"
BUCHA = "UA32080050000012345"


def doc(*alerts: dict[str, object]) -> bytes:
    return json.dumps({"alerts": list(alerts), "meta": {"last_updated_at": "2025-03-01T12:00:00.000Z"}}).encode()


# --------------------------------------------------------------------------------------------------- alerts.in.ua


def test_an_active_alert_becomes_a_normalised_period() -> None:
    document = parse_active(
        doc(api_alert(71710, BUCHA, title="Бучанська громада", location_type="hromada", oblast_uid=14, started_at=T0))
    )
    assert document.complete
    [alert] = document.alerts
    assert alert.source_id == "71710"
    assert alert.region_uid == BUCHA
    assert alert.region_name == "Бучанська громада"
    assert alert.region_type == "hromada"
    assert alert.oblast_uid == "14"
    assert alert.alert_type == "air_raid"
    assert alert.started_at == T0
    assert alert.end_at(T0 + timedelta(hours=1)) is None


def test_a_finished_alert_ends_at_its_finished_at() -> None:
    end = T0 + timedelta(minutes=40)
    [alert] = parse_active(doc(api_alert(5, KYIV, location_type="oblast", started_at=T0, finished_at=end))).alerts
    assert alert.end_at(end + timedelta(hours=2)) == end


def test_numbers_and_strings_are_both_accepted_as_ids_and_extra_fields_are_ignored() -> None:
    entry = api_alert(7, KYIV, location_type="oblast", started_at=T0, brand_new_field={"x": 1})
    entry["location_uid"] = 14
    [alert] = parse_active(doc(entry)).alerts
    assert (alert.source_id, alert.region_uid, alert.oblast_uid) == ("7", "14", "14")


def test_one_bad_entry_is_counted_and_skipped_and_its_id_kept_open() -> None:
    bad = api_alert(9, KYIV, started_at=T0)
    bad["started_at"] = "yesterday-ish"
    nameless = {"location_uid": "3"}
    document = parse_active(doc(api_alert(8, KYIV, started_at=T0), bad, nameless, "not an object"))
    assert [a.source_id for a in document.alerts] == ["8"]
    assert document.skipped["bad_alert"] == 3
    assert document.unreadable_ids == {"9"}


def test_a_repeated_id_is_counted_once_and_skipped() -> None:
    document = parse_active(doc(api_alert(8, KYIV, started_at=T0), api_alert(8, "15", started_at=T0)))
    assert [a.region_uid for a in document.alerts] == [KYIV]
    assert document.skipped["duplicate_id"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "not_json"),
        (b"{not json", "bad_json"),
        (b"", "bad_json"),
        (b'{"alerts": {"id": 1}}', "bad_shape"),
        (b'{"meta": {}}', "bad_shape"),
        (b"[]", "bad_shape"),
        (b"null", "bad_shape"),
    ],
)
def test_a_document_that_is_not_an_alert_list_raises_a_typed_error(body: bytes, reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_active(body)
    assert caught.value.reason == reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)


def mutated_entry(data: st.DataObject) -> dict[str, object]:
    entry = api_alert(1, KYIV, started_at=T0)
    key = data.draw(st.sampled_from(sorted(entry)))
    entry[key] = data.draw(json_values)
    return entry


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_garbage_json_never_raises_anything_but_feed_error(data: st.DataObject) -> None:
    body = data.draw(
        st.one_of(
            st.binary(max_size=200),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.lists(st.builds(mutated_entry, st.data()), max_size=4).map(
                lambda entries: json.dumps({"alerts": entries}).encode()
            ),
        )
    )
    try:
        document = parse_active(body)
    except FeedError as exc:
        assert exc.reason in {"not_json", "bad_json", "bad_shape"}
    else:
        for alert in document.alerts:
            assert alert.started_at.tzinfo is not None
            assert 0 < len(alert.region_uid) <= 64


# --------------------------------------------------------------------------------------------------- CAP


def test_a_single_cap_alert_gives_one_period_per_geocode() -> None:
    body = cap_alert(
        "A-1",
        sent=T0,
        onset=T0 + timedelta(minutes=1),
        areas=[("Київська область", [("UA-OBLAST", KYIV)]), ("Бучанська громада", [("KATOTTG", BUCHA)])],
    )
    document = parse_cap(body.encode())
    alerts = {a.region_uid: a for a in document.alerts}
    assert set(alerts) == {KYIV, BUCHA}
    key = alert_key("dsns@example.gov.ua", "A-1")
    assert alerts[KYIV].source_id == f"{key}#{KYIV}"
    assert alerts[KYIV].region_name == "Київська область"
    assert alerts[KYIV].alert_type == "air_raid"
    assert alerts[KYIV].started_at == T0 + timedelta(minutes=1)


def test_the_start_is_onset_else_effective_else_sent() -> None:
    effective = parse_cap(cap_alert("E", sent=T0, effective=T0 + timedelta(minutes=2)).encode())
    sent_only = parse_cap(cap_alert("S", sent=T0).encode())
    assert effective.alerts[0].started_at == T0 + timedelta(minutes=2)
    assert sent_only.alerts[0].started_at == T0


def test_an_atom_feed_of_embedded_cap_alerts_is_read_entry_by_entry() -> None:
    body = atom_feed(
        [
            cap_alert("A-1", sent=T0, areas=[("Київ", [("UA", KYIV)])]),
            cap_alert("A-2", sent=T0, areas=[("Буча", [("UA", BUCHA)])], event="Загроза артобстрілу"),
        ]
    )
    document = parse_cap(body.encode())
    types = {a.region_uid: a.alert_type for a in document.alerts}
    assert types == {KYIV: "air_raid", BUCHA: "artillery_shelling"}


def test_expires_in_the_past_ends_the_period_at_that_time() -> None:
    expires = T0 + timedelta(minutes=30)
    [alert] = parse_cap(cap_alert("X", sent=T0, expires=expires).encode()).alerts
    assert alert.end_at(T0 + timedelta(minutes=10)) is None
    assert alert.end_at(T0 + timedelta(hours=1)) == expires


def test_a_cancel_ends_the_referenced_alert_at_its_sent_time() -> None:
    state = CapState()
    original = cap_alert("A-1", sent=T0)
    parse_cap(original.encode(), state)
    cancel_at = T0 + timedelta(minutes=25)
    cancel = cap_alert(
        "A-1-cancel",
        sent=cancel_at,
        msg_type="Cancel",
        references=[("dsns@example.gov.ua", "A-1", T0)],
        areas=[],
    )
    document = parse_cap(atom_feed([original, cancel]).encode(), state)
    assert document.alerts == []  # the cancelled alert is not listed as active even though it is still in the feed
    assert document.ended_keys == {alert_key("dsns@example.gov.ua", "A-1"): cancel_at}


def test_an_update_carries_on_the_original_alerts_periods() -> None:
    state = CapState()
    parse_cap(cap_alert("A-1", sent=T0, areas=[("Київ", [("UA", KYIV)])]).encode(), state)
    update = cap_alert(
        "A-2",
        sent=T0 + timedelta(minutes=5),
        msg_type="Update",
        references=[("dsns@example.gov.ua", "A-1", T0)],
        areas=[("Київ", [("UA", KYIV)]), ("Буча", [("UA", BUCHA)])],
    )
    document = parse_cap(update.encode(), state)
    key = alert_key("dsns@example.gov.ua", "A-1")
    assert sorted(a.source_id for a in document.alerts) == sorted([f"{key}#{KYIV}", f"{key}#{BUCHA}"])


def test_exercises_tests_and_acks_are_ignored_and_counted() -> None:
    body = atom_feed(
        [
            cap_alert("T", status="Exercise"),
            cap_alert("U", status="Test"),
            cap_alert("V", msg_type="Ack"),
            cap_alert("W"),
        ]
    )
    document = parse_cap(body.encode())
    assert len(document.alerts) == 1
    assert document.ignored == {"status_exercise": 1, "status_test": 1, "msgtype_ack": 1}


def test_an_area_without_a_geocode_cannot_be_matched_and_is_counted() -> None:
    document = parse_cap(cap_alert("N", areas=[("somewhere", [])]).encode())
    assert document.alerts == []
    assert document.skipped["area_without_geocode"] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><alert/>', "doctype"),
        (b'<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/evil.dtd"><alert/>', "doctype"),
        (b"<alert><unclosed></alert>", "bad_xml"),
        (b"", "bad_xml"),
        (b'{"alerts": []}', "bad_xml"),
        (b"<rss><channel/></rss>", "bad_shape"),
        (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "bad_shape"),
    ],
)
def test_unsafe_or_unreadable_xml_raises_a_typed_error(body: bytes, reason: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_cap(body)
    assert caught.value.reason == reason


def test_a_document_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(FeedError) as caught:
        parse_xml(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000)
    assert caught.value.reason == "too_large"


xml_fragments = st.sampled_from(
    [
        "<alert>",
        "</alert>",
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">',
        "<identifier>x</identifier>",
        "<sender>s</sender>",
        "<sent>2025-03-01T12:00:00+02:00</sent>",
        "<sent>not a time</sent>",
        "<status>Actual</status>",
        "<msgType>Alert</msgType>",
        "<msgType>Cancel</msgType>",
        "<references>s,x,2025-03-01T12:00:00+02:00 broken</references>",
        "<info>",
        "</info>",
        "<area><areaDesc>a</areaDesc>",
        "<geocode><valueName>n</valueName><value>14</value></geocode>",
        "</area>",
        "<expires>9999-12-31T23:59:59-14:00</expires>",
        "<onset>0001-01-01T00:00:00+14:00</onset>",
        "<!ENTITY x 'y'>",
        "&amp;",
        "&undefined;",
        '<?xml version="1.0" encoding="bogus"?>',
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(xml_fragments, max_size=25).map(lambda parts: "".join(parts).encode()),
        st.lists(st.sampled_from([cap_alert("A", sent=T0), cap_alert("B", sent=T0, msg_type="Cancel")]), max_size=3)
        .flatmap(lambda alerts: st.sampled_from([atom_feed(alerts), "".join(alerts[:1]) or "<alert/>"]))
        .flatmap(lambda text: st.integers(0, max(0, len(text))).map(lambda cut: text[:cut].encode())),
    )
)
def test_garbage_xml_never_raises_anything_but_feed_error(body: bytes) -> None:
    try:
        document = parse_cap(body)
    except FeedError as exc:
        assert exc.reason in {"bad_xml", "bad_shape", "doctype", "too_large"}
    else:
        for alert in document.alerts:
            assert alert.started_at.tzinfo is not None


# --------------------------------------------------------------------------------------------------- HTTP details


def test_retry_after_is_read_as_seconds_or_a_date_and_capped() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after("30") == 30.0
    assert retry_after("Sat, 01 Mar 2025 12:01:00 GMT", now) == 60.0
    assert retry_after("999999") == 3600.0
    assert retry_after("soon") is None
    assert retry_after(None) is None

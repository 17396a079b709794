"""The NUT protocol client against a real upsd (dummy-ups) and against a fake server that sends garbage."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.power.nut import (
    MAX_LINE_BYTES,
    MAX_VARS,
    NutClient,
    NutError,
    NutErrorReason,
    parse_reading,
    parse_status,
    quote_arg,
)
from tests.support.nut import PASSWORD, USER, FakeNutServer, NutServer, ThenClose, list_reply
from tests.support.ports import free_port
from tests.support.processes import end_process
from varta.contract import UpsReading


async def test_reads_every_variable_of_a_real_ups_and_parses_the_reading(nut: NutServer) -> None:
    await nut.step("OB DISCHRG", charge=81.5, runtime=1234, voltage=0)
    client = NutClient(port=nut.port, username=USER, password=PASSWORD)
    try:
        values = await client.list_vars(nut.ups)
    finally:
        await client.close()
    assert values["driver.name"] == "dummy-ups"
    assert values["device.mfr"] == "Dummy Manufacturer"  # a value with a space, unquoted correctly
    reading, problems = parse_reading(values)
    assert reading == UpsReading(status="OB DISCHRG", battery_charge=81.5, battery_runtime_s=1234, input_voltage=0)
    assert problems == []


async def test_credentials_are_quoted_the_way_upsd_reads_them(nut: NutServer) -> None:
    async def login(password: str) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", nut.port)
        replies = []
        for line in (f"USERNAME {quote_arg(USER)}", f"PASSWORD {quote_arg(password)}", f"LOGIN {nut.ups}"):
            writer.write(line.encode() + b"\n")
            replies.append((await reader.readline()).decode().strip())
        writer.close()
        return replies

    assert await login(PASSWORD) == ["OK", "OK", "OK"]  # LOGIN checks the password: it was read back intact
    assert await login(PASSWORD + "x") == ["OK", "OK", "ERR ACCESS-DENIED"]


async def test_an_err_reply_is_typed_and_keeps_the_connection(nut: NutServer) -> None:
    client = NutClient(port=nut.port)
    try:
        with pytest.raises(NutError) as caught:
            await client.list_vars("no-such-ups")
        assert (caught.value.reason, caught.value.code) == (NutErrorReason.UNKNOWN_UPS, "UNKNOWN-UPS")
        assert (await client.list_vars(nut.ups))["ups.status"] == "OL"
        assert client.connects == 1
    finally:
        await client.close()


async def test_a_stopped_driver_is_reported_as_stale(nut: NutServer) -> None:
    client = NutClient(port=nut.port)
    end_process(nut.driver)
    nut.driver = None
    reasons: list[NutErrorReason] = []
    try:
        for _ in range(100):  # upsd notices the driver's socket closing within a moment
            try:
                await client.list_vars(nut.ups)
            except NutError as exc:
                reasons.append(exc.reason)
                break
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    assert reasons == [NutErrorReason.STALE]


async def test_a_stopped_upsd_refuses_then_the_client_reconnects_when_it_is_back(nut: NutServer) -> None:
    client = NutClient(port=nut.port, timeout_s=2)
    try:
        await client.list_vars(nut.ups)
        await asyncio.to_thread(nut.stop_upsd)
        failures = []
        for _ in range(2):
            with pytest.raises(NutError) as caught:
                await client.list_vars(nut.ups)
            failures.append(caught.value.reason)
        assert failures[0] in (NutErrorReason.CLOSED, NutErrorReason.CONNECT_FAILED)
        assert failures[1] is NutErrorReason.CONNECT_FAILED
        await asyncio.to_thread(nut.start_upsd)
        assert (await client.list_vars(nut.ups))["ups.status"] == "OL"
        assert client.connects == 2
    finally:
        await client.close()


async def test_nothing_listening_is_connect_failed() -> None:
    client = NutClient(port=free_port(), timeout_s=2)
    with pytest.raises(NutError) as caught:
        await client.list_vars("ups")
    assert caught.value.reason is NutErrorReason.CONNECT_FAILED


# ----------------------------------------------------------------------------------------- a misbehaving peer

GOOD = {"ups.status": "OL", "battery.charge": "90"}


async def _fail_with(reply: bytes | None, *, timeout_s: float = 2.0) -> NutError:
    async def answer(line: str) -> bytes | None:
        return reply

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, timeout_s=timeout_s)
        try:
            with pytest.raises(NutError) as caught:
                await client.list_vars("ups")
        finally:
            await client.close()
    return caught.value


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HELLO WORLD\n", NutErrorReason.MALFORMED),
        (b"ERR DATA-STALE\n", NutErrorReason.STALE),
        (b"ERR DRIVER-NOT-CONNECTED\n", NutErrorReason.STALE),
        (b"ERR ACCESS-DENIED\n", NutErrorReason.ACCESS_DENIED),
        (b"ERR SOMETHING-NEW with words\n", NutErrorReason.ERR_REPLY),
        (b"ERR\n", NutErrorReason.MALFORMED),
        (b"BEGIN LIST VAR ups\nVAR ups ups.status OL\nEND LIST VAR ups\n", NutErrorReason.MALFORMED),  # no quotes
        (b'BEGIN LIST VAR ups\nVAR other ups.status "OL"\nEND LIST VAR ups\n', NutErrorReason.MALFORMED),
        (b'BEGIN LIST VAR ups\nVAR ups ups.status "OL\x01"\nEND LIST VAR ups\n', NutErrorReason.MALFORMED),
        (b'BEGIN LIST VAR ups\nVAR ups ups.status "\xff\xfe"\nEND LIST VAR ups\n', NutErrorReason.MALFORMED),
        (b"BEGIN LIST VAR other\nEND LIST VAR other\n", NutErrorReason.MALFORMED),
        (ThenClose(b'BEGIN LIST VAR ups\nVAR ups ups.status "OL"\n'), NutErrorReason.CLOSED),  # hangs up mid-list
        (ThenClose(b"BEGIN LIST VAR ups\nVAR ups ups.status"), NutErrorReason.CLOSED),  # ... mid-line
        (None, NutErrorReason.CLOSED),  # closes without a word
        (b"BEGIN LIST VAR ups\n" + b"X" * (MAX_LINE_BYTES + 10) + b"\n", NutErrorReason.TOO_LONG),
        (list_reply("ups", {f"v.n{i}": "1" for i in range(MAX_VARS + 1)}), NutErrorReason.TOO_LONG),
    ],
)
async def test_garbage_from_the_server_is_a_typed_error(reply: bytes | None, reason: NutErrorReason) -> None:
    error = await _fail_with(reply)
    assert error.reason is reason, error


async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(line: str) -> bytes | None:
        await asyncio.sleep(3600)
        return None

    async with FakeNutServer(silent) as server:
        client = NutClient(port=server.port, timeout_s=0.3)
        with pytest.raises(NutError) as caught:
            await client.list_vars("ups")
    assert caught.value.reason is NutErrorReason.TIMEOUT
    assert not client.connected  # a late answer must not be read as the next reply


async def test_a_server_dripping_an_endless_list_times_out() -> None:
    async def drip(line: str) -> bytes | None:
        return b"BEGIN LIST VAR ups\n"

    async def endless(line: str) -> bytes | None:
        await asyncio.sleep(3600)
        return None

    replies = iter([drip, endless])

    async def answer(line: str) -> bytes | None:
        return await next(replies)(line)

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, timeout_s=0.3)
        with pytest.raises(NutError) as caught:
            await client.list_vars("ups")
    assert caught.value.reason is NutErrorReason.TIMEOUT


async def test_after_garbage_the_client_reconnects_and_reads_again() -> None:
    answers = iter([b"GARBAGE\n", list_reply("ups", GOOD)])

    async def answer(line: str) -> bytes | None:
        return None if line == "LOGOUT" else next(answers)

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, timeout_s=2)
        try:
            with pytest.raises(NutError):
                await client.list_vars("ups")
            assert await client.list_vars("ups") == GOOD
        finally:
            await client.close()
    assert server.connections == 2


async def test_login_sends_quoted_credentials_and_an_err_is_access_denied() -> None:
    async def answer(line: str) -> bytes | None:
        if line.startswith("USERNAME"):
            return b"OK\n"
        if line.startswith("PASSWORD"):
            return b"ERR INVALID-PASSWORD\n"
        return list_reply("ups", GOOD)

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, username="mon", password='a "b" \\c')
        with pytest.raises(NutError) as caught:
            await client.list_vars("ups")
    assert caught.value.reason is NutErrorReason.ACCESS_DENIED
    assert server.requests[:2] == ['USERNAME "mon"', 'PASSWORD "a \\"b\\" \\\\c"']


async def test_a_password_with_a_line_break_is_never_sent() -> None:
    async def answer(line: str) -> bytes | None:
        return b"OK\n"

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, username="mon", password="pw\nLIST UPS")
        with pytest.raises(NutError) as caught:
            await client.list_vars("ups")
    assert caught.value.reason is NutErrorReason.ACCESS_DENIED
    assert all("LIST UPS" not in r for r in server.requests)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=3000))
async def test_any_bytes_from_the_server_give_a_reading_or_a_nut_error(garbage: bytes) -> None:
    async def answer(line: str) -> bytes | None:
        return ThenClose(garbage)

    async with FakeNutServer(answer) as server:
        client = NutClient(port=server.port, timeout_s=1)
        try:
            values = await client.list_vars("ups")
            parse_reading(values)
        except NutError:
            pass
        finally:
            await client.close()


# ------------------------------------------------------------------------------------------------- parsing


def test_status_flags_need_exactly_one_of_online_and_on_battery() -> None:
    assert parse_status("OB DISCHRG LB") == {"OB", "DISCHRG", "LB"}
    assert parse_status("OL CHRG") == {"OL", "CHRG"}
    for bad in ("", "OL OB", "CHRG", "ol", "OL  CHRG", "OL\tCHRG", "OL;rm", "O" * 13, "OL " * 30):
        with pytest.raises(NutError) as caught:
            parse_status(bad)
        assert caught.value.reason is NutErrorReason.BAD_STATUS, bad
    with pytest.raises(NutError) as waiting:
        parse_status("WAIT")
    assert waiting.value.reason is NutErrorReason.STALE


def test_a_reading_without_status_is_useless() -> None:
    with pytest.raises(NutError) as caught:
        parse_reading({"battery.charge": "50"})
    assert caught.value.reason is NutErrorReason.NO_STATUS


def test_a_bad_figure_is_left_out_and_reported_but_the_status_stands() -> None:
    reading, problems = parse_reading(
        {"ups.status": "OB", "battery.charge": "lots", "battery.runtime": "-5", "input.voltage": "231.5"}
    )
    assert reading == UpsReading(status="OB", input_voltage=231.5)
    assert [p.reason for p in problems] == [NutErrorReason.BAD_VALUE, NutErrorReason.BAD_VALUE]
    for text in ("nan", "inf", "1e3", "0x10", "", "101"):
        _, problems = parse_reading({"ups.status": "OL", "battery.charge": text})
        assert [p.reason for p in problems] == [NutErrorReason.BAD_VALUE], text


@given(
    values=st.dictionaries(
        st.sampled_from(["ups.status", "battery.charge", "battery.runtime", "input.voltage", "x"]), st.text(max_size=20)
    )
)
def test_parsing_any_values_gives_a_valid_reading_or_a_nut_error(values: dict[str, str]) -> None:
    try:
        reading, problems = parse_reading(values)
    except NutError as exc:
        assert exc.reason in (NutErrorReason.NO_STATUS, NutErrorReason.BAD_STATUS, NutErrorReason.STALE)
        return
    assert reading.status == values["ups.status"]
    assert all(p.reason is NutErrorReason.BAD_VALUE for p in problems)

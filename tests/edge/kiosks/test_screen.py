"""Screen power adapters against fake ``wlr-randr``, ``ddcutil`` and ``cec-client`` executables on the PATH."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from edge.kiosks.screen import (
    CecScreen,
    DdcutilScreen,
    ScreenError,
    ScreenErrorReason,
    ScreenPower,
    ScreenSettings,
    SimulatedScreen,
    WlrOutput,
    WlrRandrScreen,
    parse_cec_power,
    parse_ddc_power,
    parse_wlr_randr,
    screen_from_settings,
)
from tests.edge.kiosks.fakebin import HANG, FakeBin, all_gone, fails_with, fakes

__all__ = ["fakes"]  # the fixture

WAYLAND = {"XDG_RUNTIME_DIR": "/run/user/1000", "WAYLAND_DISPLAY": "wayland-0"}

# wlr-randr 0.2–0.4 (Raspberry Pi OS bookworm) as it lists a Pi 4's two HDMI outputs, one switched off.
WLR_RANDR = """
OUTPUTS = {"HDMI-A-1": "Iiyama North America PL2492H 1168202201234", "HDMI-A-2": "Samsung Electric Company S24F350"}
if not os.environ.get("XDG_RUNTIME_DIR"):
    fail("failed to connect to display")
args = sys.argv[1:]
if args:
    name, switch = args[1], args[2]
    if args[0] != "--output" or name not in OUTPUTS or switch not in ("--on", "--off"):
        fail(f"Unknown output {name}")
    put(name, "yes" if switch == "--on" else "no")
    sys.exit(0)
for name, description in OUTPUTS.items():
    print(f'{name} "{description} ({name})"')
    print(f"  Make: {description.rsplit(' ', 1)[0]}")
    print(f"  Model: {description.rsplit(' ', 1)[1]}")
    print("  Physical size: 530x300 mm")
    print(f"  Enabled: {get(name, 'yes' if name == 'HDMI-A-1' else 'no')}")
    print("  Modes:")
    print("    1920x1080 px, 60.000000 Hz (preferred, current)")
    print("    1280x720 px, 60.000000 Hz")
    print("  Position: 0,0")
    print("  Transform: normal")
    print("  Scale: 1.000000")
    print("  Adaptive Sync: disabled")
"""

# ddcutil 1.4 (bookworm): ``getvcp D6 --brief`` answers ``VCP D6 SNC x01``; display 1 is the only one.
DDCUTIL = """
args = sys.argv[1:]
display = "1"
if args[:1] == ["--display"]:
    display, args = args[1], args[2:]
if display != "1":
    fail(f"Display not found")
if args[:2] == ["getvcp", "D6"]:
    print(f"VCP D6 SNC x{get('d6', '01')}")
elif args[:2] == ["setvcp", "D6"]:
    put("d6", args[2])
else:
    fail("Unrecognized command")
"""

# cec-client (libCEC 6, cec-utils) in single-command mode (-s), errors-only logging (-d 1), command on stdin.
CEC_CLIENT = """
print("opening a connection to the CEC adapter...")
command = STDIN.strip()
if command == "on 0":
    put("tv", "on")
elif command == "standby 0":
    put("tv", "standby")
elif command == "pow 0":
    print(f"power status: {get('tv', 'on')}")
else:
    fail(f"unknown command {command!r}")
"""


def wlr(fakes: FakeBin, output: str | None = None) -> WlrRandrScreen:
    fakes.install("wlr-randr", WLR_RANDR)
    return WlrRandrScreen(output, WAYLAND, timeout_s=10)


# -------------------------------------------------------------------------------------------------- wlr-randr


async def test_wlr_randr_switches_the_named_output_and_reads_it_back(fakes: FakeBin) -> None:
    screen = wlr(fakes, "HDMI-A-2")
    assert await screen.get_power() is False
    await screen.set_power(True)
    assert await screen.get_power() is True
    await screen.set_power(False)
    assert await screen.get_power() is False
    switches = [c.args for c in fakes.calls("wlr-randr") if c.args]
    assert switches == [["--output", "HDMI-A-2", "--on"], ["--output", "HDMI-A-2", "--off"]]
    assert fakes.state_of("HDMI-A-1") is None  # the other output was never touched


async def test_wlr_randr_without_an_output_name_uses_the_first_output_listed(fakes: FakeBin) -> None:
    screen = wlr(fakes)
    assert await screen.get_power() is True
    await screen.set_power(False)
    assert await screen.get_power() is False
    assert fakes.state_of("HDMI-A-1") == "no" and fakes.state_of("HDMI-A-2") is None


async def test_wlr_randr_gets_the_compositors_wayland_environment(fakes: FakeBin) -> None:
    await wlr(fakes, "HDMI-A-1").set_power(True)
    assert {c.env["XDG_RUNTIME_DIR"] for c in fakes.calls("wlr-randr")} == {"/run/user/1000"}
    assert {c.env["WAYLAND_DISPLAY"] for c in fakes.calls("wlr-randr")} == {"wayland-0"}
    assert {c.env["PATH"] for c in fakes.calls("wlr-randr")} == {str(fakes.bin)}  # the rest is inherited


async def test_wlr_randr_without_a_wayland_runtime_dir_is_unsupported(
    fakes: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.install("wlr-randr", WLR_RANDR)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ScreenError) as caught:
        await WlrRandrScreen("HDMI-A-1").set_power(True)
    assert caught.value.reason is ScreenErrorReason.UNSUPPORTED and "XDG_RUNTIME_DIR" in caught.value.detail
    assert fakes.calls("wlr-randr") == []
    # an absolute WAYLAND_DISPLAY needs no runtime dir: the tool is run
    with pytest.raises(ScreenError) as caught:
        await WlrRandrScreen("HDMI-A-1", {"WAYLAND_DISPLAY": "/run/cage/wayland-0"}).get_power()
    assert caught.value.reason is ScreenErrorReason.FAILED and "failed to connect to display" in caught.value.detail


async def test_wlr_randr_with_an_output_it_does_not_list_fails_naming_the_outputs(fakes: FakeBin) -> None:
    with pytest.raises(ScreenError) as caught:
        await wlr(fakes, "DSI-1").get_power()
    assert caught.value.reason is ScreenErrorReason.FAILED
    assert "DSI-1" in caught.value.detail and "HDMI-A-1, HDMI-A-2" in caught.value.detail
    with pytest.raises(ScreenError) as caught:
        await wlr(fakes, "DSI-1").set_power(True)
    assert caught.value.reason is ScreenErrorReason.FAILED and "Unknown output DSI-1" in caught.value.detail


async def test_wlr_randr_listing_no_output_at_all_fails(fakes: FakeBin) -> None:
    fakes.install("wlr-randr", "")
    with pytest.raises(ScreenError) as caught:
        await WlrRandrScreen(None, WAYLAND).set_power(True)
    assert caught.value.reason is ScreenErrorReason.FAILED and "no output" in caught.value.detail


def test_wlr_randr_listing_is_parsed_block_by_block() -> None:
    text = (
        'HDMI-A-1 "Dell Inc. DELL P2419H 7XJ1T53 (HDMI-A-1)"\n'
        "  Make: Dell Inc.\n"
        "  Enabled: no\n"
        "  Modes:\n"
        "    1920x1080 px, 60.000000 Hz (preferred)\n"
        "  Position: 0,0\n"
        "\n"
        'DSI-1 "Unknown Unknown  (DSI-1)"\n'
        "  Enabled: yes\n"
        "HEADLESS-1\n"
        "  Modes:\n"
    )
    assert parse_wlr_randr(text) == [
        WlrOutput("HDMI-A-1", "Dell Inc. DELL P2419H 7XJ1T53 (HDMI-A-1)", False),
        WlrOutput("DSI-1", "Unknown Unknown  (DSI-1)", True),
        WlrOutput("HEADLESS-1", "", None),
    ]
    assert parse_wlr_randr("") == []


# -------------------------------------------------------------------------------------------------- ddcutil


async def test_ddcutil_switches_vcp_d6_and_reads_it_back(fakes: FakeBin) -> None:
    fakes.install("ddcutil", DDCUTIL)
    screen = DdcutilScreen(timeout_s=10)
    assert await screen.get_power() is True
    await screen.set_power(False)
    assert fakes.state_of("d6") == "05"  # hard power off by default
    assert await screen.get_power() is False
    await screen.set_power(True)
    assert await screen.get_power() is True
    assert [c.args for c in fakes.calls("ddcutil")] == [
        ["getvcp", "D6", "--brief"],
        ["setvcp", "D6", "05"],
        ["getvcp", "D6", "--brief"],
        ["setvcp", "D6", "01"],
        ["getvcp", "D6", "--brief"],
    ]


async def test_ddcutil_can_use_dpm_off_and_a_display_number(fakes: FakeBin) -> None:
    fakes.install("ddcutil", DDCUTIL)
    await DdcutilScreen(1, off_value=4).set_power(False)
    assert fakes.calls("ddcutil")[0].args == ["--display", "1", "setvcp", "D6", "04"]
    assert await DdcutilScreen(1).get_power() is False  # 04 is off too


async def test_ddcutil_failing_carries_its_stderr(fakes: FakeBin) -> None:
    fakes.install("ddcutil", DDCUTIL)
    with pytest.raises(ScreenError) as caught:
        await DdcutilScreen(2).set_power(True)
    assert caught.value.reason is ScreenErrorReason.FAILED
    assert caught.value.detail == "ddcutil exited with status 1: Display not found"


async def test_a_monitor_without_vcp_d6_is_unsupported(fakes: FakeBin) -> None:
    fakes.install("ddcutil", fails_with("VCP code 0xd6 (Power mode): Unsupported feature code (Null response)"))
    with pytest.raises(ScreenError) as caught:
        await DdcutilScreen().get_power()
    assert caught.value.reason is ScreenErrorReason.UNSUPPORTED


def test_ddcutil_brief_answers_are_parsed() -> None:
    assert parse_ddc_power("VCP D6 SNC x01\n") is True
    assert [parse_ddc_power(f"VCP D6 SNC x0{v}") for v in (2, 3, 4, 5)] == [False] * 4
    assert parse_ddc_power("VCP D6 SNC x0a") is None
    with pytest.raises(ScreenError) as caught:
        parse_ddc_power("VCP D6 ERR")
    assert caught.value.reason is ScreenErrorReason.UNSUPPORTED
    with pytest.raises(ScreenError) as caught:
        parse_ddc_power("something else")
    assert caught.value.reason is ScreenErrorReason.FAILED


# -------------------------------------------------------------------------------------------------- cec-client


async def test_cec_switches_the_tv_through_cec_client_stdin(fakes: FakeBin) -> None:
    fakes.install("cec-client", CEC_CLIENT)
    screen = CecScreen(timeout_s=10)
    await screen.set_power(False)
    assert await screen.get_power() is False
    await screen.set_power(True)
    assert await screen.get_power() is True
    calls = fakes.calls("cec-client")
    assert [c.stdin for c in calls] == ["standby 0\n", "pow 0\n", "on 0\n", "pow 0\n"]
    assert {tuple(c.args) for c in calls} == {("-s", "-d", "1")}


async def test_cec_device_is_passed_as_the_adapter_port(fakes: FakeBin) -> None:
    fakes.install("cec-client", CEC_CLIENT)
    await CecScreen("/dev/cec0").set_power(True)
    assert fakes.calls("cec-client")[0].args == ["-s", "-d", "1", "/dev/cec0"]


async def test_cec_failing_to_open_the_adapter_is_failed(fakes: FakeBin) -> None:
    fakes.install("cec-client", fails_with("ERROR:   [             102]\tcould not open a connection (try 1)"))
    with pytest.raises(ScreenError) as caught:
        await CecScreen().set_power(True)
    assert caught.value.reason is ScreenErrorReason.FAILED and "could not open a connection" in caught.value.detail


def test_cec_power_status_answers_are_parsed() -> None:
    answer = "opening a connection to the CEC adapter...\npower status: {}\n"
    assert parse_cec_power(answer.format("on")) is True
    assert parse_cec_power(answer.format("standby")) is False
    assert parse_cec_power(answer.format("in transition from standby to on")) is True
    assert parse_cec_power(answer.format("in transition from on to standby")) is False
    assert parse_cec_power(answer.format("unknown")) is None
    with pytest.raises(ScreenError) as caught:
        parse_cec_power("opening a connection to the CEC adapter...\n")
    assert caught.value.reason is ScreenErrorReason.FAILED


# -------------------------------------------------------------------------------------------------- every adapter

ADAPTERS: dict[str, Callable[[], ScreenPower]] = {
    "wlr-randr": lambda: WlrRandrScreen("HDMI-A-1", WAYLAND, timeout_s=1.5),
    "ddcutil": lambda: DdcutilScreen(timeout_s=1.5),
    "cec-client": lambda: CecScreen(timeout_s=1.5),
}


@pytest.mark.parametrize("tool", list(ADAPTERS))
@pytest.mark.parametrize("on", [True, False, None], ids=["on", "off", "get"])
async def test_a_missing_tool_is_tool_missing(fakes: FakeBin, tool: str, on: bool | None) -> None:
    screen: ScreenPower = ADAPTERS[tool]()
    with pytest.raises(ScreenError) as caught:
        await (screen.get_power() if on is None else screen.set_power(on))
    assert caught.value.reason is ScreenErrorReason.TOOL_MISSING and tool in caught.value.detail


@pytest.mark.parametrize("tool", list(ADAPTERS))
async def test_a_tool_exiting_non_zero_is_failed_with_its_stderr(fakes: FakeBin, tool: str) -> None:
    fakes.install(tool, fails_with("i2c bus busy", 2))
    with pytest.raises(ScreenError) as caught:
        await ADAPTERS[tool]().set_power(True)
    assert caught.value.reason is ScreenErrorReason.FAILED
    assert caught.value.detail == f"{tool} exited with status 2: i2c bus busy"


@pytest.mark.parametrize("tool", list(ADAPTERS))
async def test_a_hanging_tool_times_out_and_is_killed(fakes: FakeBin, tool: str) -> None:
    fakes.install(tool, HANG)
    started = time.monotonic()
    with pytest.raises(ScreenError) as caught:
        await ADAPTERS[tool]().get_power()
    assert caught.value.reason is ScreenErrorReason.TIMEOUT
    assert time.monotonic() - started < 5
    pids = fakes.hung_pids()
    assert len(pids) == 2, "the fake never started"
    assert await all_gone(pids), "the hung tool (or its child) is still running"


# -------------------------------------------------------------------------------------------------- simulated, settings


async def test_the_simulated_screen_records_its_changes() -> None:
    screen = SimulatedScreen(on=None)
    assert await screen.get_power() is None
    await screen.set_power(True)
    await screen.set_power(True)
    await screen.set_power(False)
    assert await screen.get_power() is False
    assert [on for _, on in screen.history] == [True, False] and screen.calls == 3
    screen.fail_with = ScreenError(ScreenErrorReason.FAILED, "unplugged")
    with pytest.raises(ScreenError):
        await screen.set_power(True)
    assert screen.on is False and len(screen.history) == 2


def test_settings_pick_the_adapter() -> None:
    assert isinstance(screen_from_settings(ScreenSettings()), SimulatedScreen)
    wlr_screen = screen_from_settings(ScreenSettings(adapter="wlr-randr", output="HDMI-A-1", env=WAYLAND))
    assert isinstance(wlr_screen, WlrRandrScreen)
    assert (wlr_screen.output, wlr_screen.env, wlr_screen.timeout_s) == ("HDMI-A-1", WAYLAND, 10)
    ddc = screen_from_settings(ScreenSettings(adapter="ddcutil", display=2, ddc_off_value=4, timeout_s=3))
    assert isinstance(ddc, DdcutilScreen) and (ddc.display, ddc.off_value, ddc.timeout_s) == (2, 4, 3)
    cec = screen_from_settings(ScreenSettings(adapter="cec", cec_device="RPI"))
    assert isinstance(cec, CecScreen) and cec.device == "RPI"


def test_settings_reject_unknown_fields_and_values() -> None:
    with pytest.raises(ValidationError):
        ScreenSettings.model_validate({"adapter": "xrandr"})
    with pytest.raises(ValidationError):
        ScreenSettings.model_validate({"adapter": "ddcutil", "ddc_off_value": 3})
    with pytest.raises(ValidationError):
        ScreenSettings.model_validate({"adapter": "cec", "cec_port": "RPI"})

"""The ``sirens:`` section of the edge configuration: which sirens this node watches, and through which inputs.

Varta only MONITORS sirens (three dry contacts per siren: supply present, contactor engaged, fault); nothing here
describes an output. Each siren is read through one adapter (``inputs.kind``): GPIO pins (gpiozero), a Modbus TCP
I/O module (pymodbus) or simulated inputs set from code (demo, tests). Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from varta.contract import Identifier

InputName = Literal["supply", "contactor", "fault"]
INPUT_NAMES: Final[tuple[InputName, ...]] = ("supply", "contactor", "fault")
MAX_BITS_PER_READ: Final = 2000  # Modbus: most coils / discrete inputs one request may read
MAX_REGISTERS_PER_READ: Final = 125  # Modbus: most registers one request may read
POLL_INTERVAL_S: Final = 0.05  # GPIO and simulated inputs: a level read costs microseconds
MODBUS_POLL_INTERVAL_S: Final = 0.1  # one request per poll: 10 a second per siren is gentle on an I/O module

Pin = Annotated[
    int | str,
    Field(description="BCM number (17) or a gpiozero pin name ('GPIO17', 'BOARD11')"),
]


class GpioInputs(BaseModel):
    """Dry contacts wired to the node's GPIO pins (read with gpiozero ``DigitalInputDevice``; never driven)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gpio"] = "gpio"
    supply_pin: Pin | None = Field(default=None, description="supply present (phase-loss relay); None: not wired")
    contactor_pin: Pin | None = Field(default=None, description="contactor auxiliary contact (sounding); required")
    fault_pin: Pin | None = Field(default=None, description="the siren controller's fault output; None: not wired")
    pull_up: bool | None = Field(
        default=True,
        description=(
            "True: internal pull-up, a contact closing to GND reads as closed; False: pull-down, a contact to 3V3 "
            "reads as closed; None: external resistors (then set active_high)"
        ),
    )
    active_high: bool | None = Field(
        default=None, description="with pull_up None only: True when a high level means the contact is closed"
    )
    invert: set[InputName] = Field(
        default_factory=set, description="inputs whose contact is normally closed (open contact = True)"
    )

    @model_validator(mode="after")
    def _check(self) -> GpioInputs:
        if self.contactor_pin is None:
            raise ValueError("contactor_pin must be wired: a siren is monitored through its contactor at least")
        if (self.pull_up is None) != (self.active_high is not None):
            raise ValueError("set active_high exactly when pull_up is None (gpiozero derives it from the pull)")
        wired = [p for p in (self.supply_pin, self.contactor_pin, self.fault_pin) if p is not None]
        if len(set(wired)) != len(wired):
            raise ValueError("each input needs its own pin")
        return self

    def pins(self) -> dict[InputName, int | str]:
        """The wired inputs and their pins."""
        pins: dict[InputName, int | str | None] = {
            "supply": self.supply_pin,
            "contactor": self.contactor_pin,
            "fault": self.fault_pin,
        }
        return {name: pin for name, pin in pins.items() if pin is not None}

    def wired(self) -> set[InputName]:
        """The inputs that are wired."""
        return set(self.pins())


class ModbusInputs(BaseModel):
    """Contacts wired to a Modbus TCP I/O module; one read request per poll covers every input. Only read."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["modbus"] = "modbus"
    host: str = Field(min_length=1, max_length=253, description="the I/O module's address")
    port: int = Field(default=502, ge=1, le=65535, description="Modbus TCP port")
    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (device) id")
    table: Literal["discrete_inputs", "coils", "input_registers", "holding_registers"] = Field(
        default="discrete_inputs",
        description=(
            "where the module shows its inputs: discrete inputs (function 2, the usual), coils (1, read only), "
            "input or holding registers (4 / 3: a register that is not 0 is True)"
        ),
    )
    supply: int | None = Field(default=None, ge=0, le=65535, description="address of the supply input; None: not wired")
    contactor: int | None = Field(default=None, ge=0, le=65535, description="address of the contactor input; required")
    fault: int | None = Field(default=None, ge=0, le=65535, description="address of the fault input; None: not wired")
    invert: set[InputName] = Field(
        default_factory=set, description="inputs whose contact is normally closed (a 0 reads as True)"
    )
    timeout_s: float = Field(default=1.0, gt=0, le=30, description="longest wait to connect, and for one reply")
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60, description="first wait before reconnecting")
    reconnect_max_s: float = Field(default=30.0, gt=0, le=600, description="the wait doubles up to this")

    @model_validator(mode="after")
    def _check(self) -> ModbusInputs:
        if self.contactor is None:
            raise ValueError("contactor must be wired: a siren is monitored through its contactor at least")
        wired = list(self.addresses().values())
        if len(set(wired)) != len(wired):
            raise ValueError("each input needs its own address")
        limit = MAX_BITS_PER_READ if self.table in ("discrete_inputs", "coils") else MAX_REGISTERS_PER_READ
        if max(wired) - min(wired) + 1 > limit:
            raise ValueError(f"the inputs must lie within {limit} addresses of each other (one read covers them)")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        return self

    def addresses(self) -> dict[InputName, int]:
        """The wired inputs and their addresses."""
        addresses: dict[InputName, int | None] = {
            "supply": self.supply,
            "contactor": self.contactor,
            "fault": self.fault,
        }
        return {name: a for name, a in addresses.items() if a is not None}

    def wired(self) -> set[InputName]:
        """The inputs that are wired."""
        return set(self.addresses())


class SimulatedInputs(BaseModel):
    """Inputs set from code (``SimulatedReader.set``): the demo and tests. The values here are the initial ones."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["simulated"] = "simulated"
    supply: bool | None = Field(default=True, description="initial supply input; None: not wired")
    contactor: bool = Field(default=False, description="initial contactor input (always wired)")
    fault: bool | None = Field(default=False, description="initial fault input; None: not wired")

    def wired(self) -> set[InputName]:
        """The inputs that are wired."""
        wired: set[InputName] = {"contactor"}
        if self.supply is not None:
            wired.add("supply")
        if self.fault is not None:
            wired.add("fault")
        return wired


SirenInputsSettings = Annotated[GpioInputs | ModbusInputs | SimulatedInputs, Field(discriminator="kind")]


class SirenSettings(BaseModel):
    """One monitored siren."""

    model_config = ConfigDict(extra="forbid")

    device_id: Identifier = Field(description="the siren's device id (its state topic, its events)")
    name: str = Field(default="", max_length=200, description="shown on the dashboard")
    inputs: SirenInputsSettings = Field(description="how its contacts are read: gpio, modbus or simulated")
    debounce_s: float = Field(
        default=0.3, ge=0, le=10, description="an input's new value counts once it has been stable this long"
    )
    poll_interval_s: float | None = Field(
        default=None,
        ge=0.01,
        le=10,
        description="seconds between reads of the inputs; default 0.05 (GPIO, simulated) or 0.1 (Modbus)",
    )
    unknown_after_s: float = Field(
        default=5.0, gt=0, le=3600, description="reads failing this long make the state 'unknown'"
    )
    resend_interval_s: float = Field(
        default=300.0, ge=1, le=86_400, description="the retained state is sent again this often, changed or not"
    )

    @property
    def interval_s(self) -> float:
        """Seconds between reads: ``poll_interval_s``, or the default for the adapter."""
        if self.poll_interval_s is not None:
            return self.poll_interval_s
        return MODBUS_POLL_INTERVAL_S if isinstance(self.inputs, ModbusInputs) else POLL_INTERVAL_S


class SirensSettings(BaseModel):
    """Siren monitoring (monitoring only: Varta never triggers a siren); needs the 'alerts' extra for GPIO/Modbus."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="watch the sirens listed in 'sirens'")
    sirens: list[SirenSettings] = Field(default_factory=list, max_length=64, description="the sirens this node watches")

    @model_validator(mode="after")
    def _check(self) -> SirensSettings:
        ids = [s.device_id for s in self.sirens]
        if len(set(ids)) != len(ids):
            raise ValueError("siren device ids must be unique")
        pins = [p for s in self.sirens if isinstance(s.inputs, GpioInputs) for p in s.inputs.pins().values()]
        if len(set(pins)) != len(pins):
            raise ValueError("a GPIO pin can belong to one siren input only")
        return self

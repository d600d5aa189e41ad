"""Vendor personalities inside the simulated booth: each step, what the master wrote to the
device goes to the physics, and what the physics made of the booth goes back to the device.

The physics works on generic register banks (laid out from the generic maps, in engineering
units, by role). A bridge couples one personality to its device's generic bank by role, not by
register, so that the vendor map is still tested only against the personality. The wiring of
the booth's I/O (which output drives what, which way round) is the booth's hardware, as
docs/real-hardware.md and the WAGO map describe it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._banks import FUNCTION_TABLE, AddressError, RegisterBank
from ._base import ILLEGAL_ADDRESS, Personality, Refusal
from .autonics_tk4 import AutonicsTK4
from .endress_oxy5500 import EndressOXY5500
from .omron_e5cc import OmronE5CC
from .wago_750_352 import Wago750352
from .watlow_pm import MODE_AUTO, MODE_OFF, WatlowPM

if TYPE_CHECKING:  # the physics' cell; the physics imports this module's model table
    from .._atmosphere import AnalyzerCell

#: Model (a shipped map's name) -> (personality factory, device kind, generic map of the kind).
MODELS: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "omron-e5cc": (OmronE5CC, "temp_controller", "tc-generic.toml"),
    "watlow-pm": (WatlowPM, "temp_controller", "tc-generic.toml"),
    "autonics-tk4": (AutonicsTK4, "temp_controller", "tc-generic.toml"),
    "wago-750-352": (Wago750352, "remote_io", "io-generic.toml"),
    "endress-oxy5500": (EndressOXY5500, "o2_analyzer", "o2-modbus-generic.toml"),
}
#: The booth's I/O wiring on the WAGO line-up: DO1.. in order; the N2 maintain valve, the
#: exhaust fan's contactor, the vacuum pump's contactor and the suction valve are wired so that
#: a de-energised output keeps them on (N2 flowing, exhaust running, suction held).
WAGO_OUTPUTS = (
    "heater_contactor", "n2_purge", "n2_maintain", "exhaust_fan", "vacuum_pump",
    "vacuum_valve", "light_red", "light_amber", "light_green", "buzzer",
)  # fmt: skip
WAGO_INVERTED = frozenset({"n2_maintain", "exhaust_fan", "vacuum_pump", "vacuum_valve"})
WAGO_INPUTS = (
    "door_closed", "estop_ok", "exhaust_ok", "n2_supply_ok", "high_limit_ok", "hook_engaged",
    "flux_lid_closed",
)  # fmt: skip
#: 4-20 mA transmitters on the 750-466 channels: role -> full scale.
WAGO_ANALOG = (("vacuum_kpa", 100.0), ("n2_flow_lpm", 200.0), ("flux_level_pct", 100.0))


class BankPersonality:
    """A generic bank served next to personalities (one RTU line, one gateway)."""

    def __init__(self, device: str, bank: RegisterBank) -> None:
        self.device = device
        self.bank = bank
        self.requests: Counter[int] = Counter()

    def read(self, fc: int, address: int, count: int) -> list[int]:
        table = FUNCTION_TABLE[fc]
        if fc in (1, 2, 3, 4):
            self.bank.reads[table] += 1
        try:
            return self.bank.read(table, address, count)
        except AddressError as exc:
            raise Refusal(ILLEGAL_ADDRESS, str(exc)) from exc

    def write(self, fc: int, address: int, values: list[int]) -> None:
        try:
            self.bank.write(FUNCTION_TABLE[fc], address, values)
        except AddressError as exc:
            raise Refusal(ILLEGAL_ADDRESS, str(exc)) from exc


class Bridge:
    """One personality and its device's generic bank."""

    def __init__(
        self, model: str, device: str, bank: RegisterBank, analyzer: AnalyzerCell | None = None
    ) -> None:
        factory, self.kind, _ = MODELS[model]
        self.model = model
        self.device: Personality = factory(device)
        self.bank = bank
        #: An O2 analyzer measures the cell itself (its float carries what the generic bank's
        #: whole ppm cannot); each report of the cell is one measurement.
        self.analyzer = analyzer
        self._report_seq = -1

    def _put(self, name: str, value: float | bool) -> None:
        """A master's write into the generic bank, only when it changes something."""
        if self.bank.get(name) != value:
            self.bank.write_point(name, value)

    def before_step(self) -> None:
        """What the master wrote to the device, as the physics sees it."""
        d = self.device
        if isinstance(d, Wago750352):
            d.tripped  # noqa: B018 - the coupler's watchdog acts on its own clock
            for i, name in enumerate(WAGO_OUTPUTS):
                self._put(name, d.do[i] != (name in WAGO_INVERTED))
        elif isinstance(d, OmronE5CC):
            self._put("sv_c", round(d.sp_c, 1))
            self._put("run", not d.stopped)
        elif isinstance(d, WatlowPM):
            self._put("sv_c", round(d.sp_c, 1))
            self._put("run", d.mode == MODE_AUTO)
        elif isinstance(d, AutonicsTK4):
            self._put("sv_c", round(d.sv_c, 1))
            self._put("run", not d.stopped)

    def after_step(self) -> None:
        """What the physics made of the booth, as the device measures it."""
        d, bank = self.device, self.bank
        if isinstance(d, Wago750352):
            for i, name in enumerate(WAGO_INPUTS):
                d.di[i] = bool(bank.get(name)) if name in bank else False
            for i, (name, full) in enumerate(WAGO_ANALOG):
                value = float(bank.get(name)) if name in bank else 0.0
                d.ai_ma[i] = 4.0 + 16.0 * min(max(value / full, 0.0), 1.0)
            return
        if isinstance(d, EndressOXY5500):
            cell = self.analyzer
            if cell is not None and cell.report_seq != self._report_seq:
                self._report_seq = cell.report_seq
                d.measure(cell.reported_ppm)
            return
        tc_open = bool(bank.get("tc_open"))
        pv_c = float(bank.get("pv_c"))
        output = float(bank.get("output_pct"))
        if isinstance(d, OmronE5CC):
            d.input_error = tc_open
            d.pv_c, d.mv_pct = (d.pv_c if tc_open else pv_c), output
        elif isinstance(d, WatlowPM):
            d.input_error = 65 if tc_open else 61
            d.pv_c = d.pv_c if tc_open else pv_c
            d.power_pct = output if d.mode != MODE_OFF else 0.0
        elif isinstance(d, AutonicsTK4):
            d.sensor_open = tc_open
            d.pv_c, d.mv_pct = (d.pv_c if tc_open else pv_c), output

    @property
    def tripped(self) -> bool:
        return isinstance(self.device, Wago750352) and self.device.tripped

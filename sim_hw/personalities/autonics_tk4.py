"""Autonics TK4 (TK series) PID temperature controller, Modbus RTU, as its manual says.

Source: Autonics TK Series Communication Manual, section 2 "Modbus mapping table". Addresses are
the manual's 3xxxx (input registers, FC04) and 4xxxx (holding registers, FC03/FC06/FC16)
references; the protocol address is the reference minus 30001 / 40001 (the manual gives both,
e.g. 31001 (03E8)). Facts marked (unconfirmed) could not be checked on the manual's own page.

- 31001 PV (-1999..9999, decimal point per 31002), 31002 decimal point (0..3), 31003 unit
  (0 C, 1 F, 2 %, 3 off), 31004 SV, 31005 heating MV (0..1000 = 0.0..100.0 %), 31007 indicator
  bits (bit 3 OUT1).
- An input error shows in the PV register as a code instead of a value: 31000 sensor open,
  30000 over range (HHHH), -30000 under range (LLLL) (unconfirmed codes).
- 40001 SV (holding, same scaling as the PV). 40051 RUN/STOP, 0 run, 1 stop (unconfirmed).
"""

from __future__ import annotations

from collections import Counter

from ._base import ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Refusal

PV, DP, UNIT, SV_MONITOR, MV_HEAT, MV_COOL, INDICATORS = range(1000, 1007)
SV = 0
RUN_STOP = 50
OPEN_CODE, HHHH_CODE, LLLL_CODE = 31000, 30000, -30000
SV_MIN_C, SV_MAX_C = -50.0, 1200.0
BIT_OUT1 = 3


class AutonicsTK4:
    """State in engineering terms (C), registers as the manual says."""

    def __init__(self, device: str = "tk4", decimal_point: int = 1) -> None:
        self.device = device
        self.requests: Counter[int] = Counter()
        self.dp = decimal_point
        self.pv_c = 25.0
        self.sv_c = 0.0
        self.mv_pct = 0.0
        self.stopped = False
        self.sensor_open = False
        self.writes: list[tuple[int, int, list[int]]] = []

    def _scaled(self, c: float) -> int:
        return round(c * float(10**self.dp))

    def _input(self, address: int) -> int:
        if address == PV:
            return OPEN_CODE if self.sensor_open else self._scaled(self.pv_c)
        if address == DP:
            return self.dp
        if address == UNIT:
            return 0
        if address == SV_MONITOR:
            return self._scaled(self.sv_c)
        if address == MV_HEAT:
            return 0 if self.stopped else round(self.mv_pct * 10)
        if address == MV_COOL:
            return 0
        if address == INDICATORS:
            return (1 << BIT_OUT1) if (self.mv_pct > 0 and not self.stopped) else 0
        raise Refusal(ILLEGAL_ADDRESS, f"input register {address}")

    def _holding(self, address: int) -> int:
        if address == SV:
            return self._scaled(self.sv_c)
        if address == RUN_STOP:
            return int(self.stopped)
        raise Refusal(ILLEGAL_ADDRESS, f"holding register {address}")

    def read(self, fc: int, address: int, count: int) -> list[int]:
        get = {4: self._input, 3: self._holding}.get(fc)
        if get is None:
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        return [get(a) & 0xFFFF for a in range(address, address + count)]

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self.writes.append((fc, address, list(values)))
        if fc not in (6, 16):
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        for i, raw in enumerate(values):
            value = raw - 0x1_0000 if raw & 0x8000 else raw
            a = address + i
            if a == SV:
                c = value / 10**self.dp
                if not SV_MIN_C <= c <= SV_MAX_C:
                    raise Refusal(ILLEGAL_VALUE, f"SV {c}")
                self.sv_c = c
            elif a == RUN_STOP:
                if value not in (0, 1):
                    raise Refusal(ILLEGAL_VALUE, f"RUN/STOP {value}")
                self.stopped = value == 1
            else:
                raise Refusal(ILLEGAL_ADDRESS, f"holding register {a}")

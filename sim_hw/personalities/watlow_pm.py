"""Watlow EZ-ZONE PM PID controller, Modbus RTU, as its user guide says (data map 2).

Source: Watlow EZ-ZONE PM PID Controller User's Guide, "Communication protocols / Modbus" and
the Operations and Setup page tables (Modbus column, map 2), and the EZ-ZONE communications
chapter (word order, temperature units). Facts marked (unconfirmed) could not be checked on the
guide's own page and are what the booth's map assumes as well.

- Registers are 16-bit; a float parameter spans two registers, listed by its low-order one,
  low word first by default ("low/high"; the word order is a setup option).
- Temperatures go over Modbus in degrees F unless register 2490 (communications units of
  analog input 1) is set to 15 (C); 30 is F (firmware 2.0 and newer).
- 360: analog input 1 value (float). 362: its input error (enumerated: 61 none, 65 open,
  127 shorted, 140 measurement error, 139 bad calibration data, 9 ambient error, 14 RTD error,
  32 fail; (unconfirmed)).
- 1880: loop control mode (10 auto, 54 manual, 62 off). 2160: closed-loop set point (float).
- 2384: heat power, percent (float) (unconfirmed address).
- Reads FC03 (FC04 answered the same); writes FC06 (one register) or FC16.
"""

from __future__ import annotations

import struct
from collections import Counter

from ._base import ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Refusal

AI_VALUE = 360
AI_ERROR = 362
CONTROL_MODE = 1880
CLOSED_LOOP_SP = 2160
HEAT_POWER = 2384
COMM_UNITS = 2490
MODE_AUTO, MODE_MANUAL, MODE_OFF = 10, 54, 62
UNITS_C, UNITS_F = 15, 30
ERROR_NONE, ERROR_OPEN = 61, 65
SP_MIN_F, SP_MAX_F = -328.0, 2500.0


def _c_to_f(c: float) -> float:
    return c * 9.0 / 5.0 + 32.0


def _f_to_c(f: float) -> float:
    return (f - 32.0) * 5.0 / 9.0


class WatlowPM:
    """State in engineering terms (C), registers as the guide says (F unless told C)."""

    def __init__(self, device: str = "pm") -> None:
        self.device = device
        self.requests: Counter[int] = Counter()
        self.pv_c = 25.0
        self.sp_c = 25.0
        self.power_pct = 0.0
        self.mode = MODE_AUTO
        self.units = UNITS_F
        self.input_error = ERROR_NONE
        self.writes: list[tuple[int, int, list[int]]] = []

    def _temp(self, c: float) -> float:
        return c if self.units == UNITS_C else _c_to_f(c)

    def _floats(self) -> dict[int, float]:
        return {
            AI_VALUE: self._temp(self.pv_c),
            CLOSED_LOOP_SP: self._temp(self.sp_c),
            HEAT_POWER: self.power_pct if self.mode != MODE_OFF else 0.0,
        }

    def _ints(self) -> dict[int, int]:
        return {AI_ERROR: self.input_error, CONTROL_MODE: self.mode, COMM_UNITS: self.units}

    def read(self, fc: int, address: int, count: int) -> list[int]:
        if fc not in (3, 4):
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        words: dict[int, int] = dict(self._ints())
        for a, value in self._floats().items():
            bits = struct.unpack(">I", struct.pack(">f", value))[0]
            words[a], words[a + 1] = bits & 0xFFFF, bits >> 16  # low word first
        out = []
        for a in range(address, address + count):
            if a not in words:
                raise Refusal(ILLEGAL_ADDRESS, f"register {a}")
            out.append(words[a])
        return out

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self.writes.append((fc, address, list(values)))
        if fc not in (6, 16):
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        if address == CLOSED_LOOP_SP and fc == 16 and len(values) == 2:
            f = struct.unpack(">f", struct.pack(">I", (values[1] << 16) | values[0]))[0]
            sp_f = f if self.units == UNITS_F else _c_to_f(f)
            if not SP_MIN_F <= sp_f <= SP_MAX_F:
                raise Refusal(ILLEGAL_VALUE, f"set point {f}")
            self.sp_c = _f_to_c(sp_f)
        elif address == CONTROL_MODE and len(values) == 1:
            if values[0] not in (MODE_AUTO, MODE_MANUAL, MODE_OFF):
                raise Refusal(ILLEGAL_VALUE, f"control mode {values[0]}")
            self.mode = values[0]
        elif address == COMM_UNITS and len(values) == 1:
            if values[0] not in (UNITS_C, UNITS_F):
                raise Refusal(ILLEGAL_VALUE, f"units {values[0]}")
            self.units = values[0]
        else:
            raise Refusal(ILLEGAL_ADDRESS, f"register {address} ({len(values)} words)")

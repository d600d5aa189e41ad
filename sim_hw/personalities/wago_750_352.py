"""WAGO 750-352 Modbus TCP fieldbus coupler with a fixed module line-up, as its manual says.

Source: WAGO-I/O-SYSTEM 750, 750-352 manual, sections "Modbus register mapping" and "Watchdog
(fieldbus failure)" with the internal variables 0x1000..0x100B. Facts marked (unconfirmed) could
not be checked against this coupler's own page (the same registers are documented for the
750-341/-842/BACnet couplers) and are what the booth's map assumes as well.

Line-up (slot order): 750-430 (8 DI), 750-530 (8 DO), 750-530 (8 DO), 750-466 (2 AI 4-20 mA),
750-466 (2 AI 4-20 mA), 750-600 (end module).

- Bits: FC1/FC2 read the inputs at 0x0000.. and the outputs back at 0x0200..; FC5/FC15 write
  the outputs at 0x0000...
- Registers: FC3/FC4 at 0x0000.. read the input image, analog channels first (one word each),
  then the digital inputs packed 16 to a word; FC3 at 0x0200.. reads the output image back.
- 750-466: 4..20 mA as 0x0000..0x7FF8 (the three low bits 0); out of range or wire break reads
  0x7FFF (unconfirmed).
- Watchdog: 0x1000 time in 100 ms (0 = off); 0x1003 trigger (a write of a changed non-zero value
  feeds it); 0x1006 status (0 off, 1 running, 2 expired); 0x1007 restart (write 1); 0x1008 stop
  (0xAA55 or 0x55AA). It starts with the first trigger after the time is set. On expiry every
  output goes to 0, and output writes are answered with exception 04 until a restart
  (unconfirmed: the manual says the outputs are set to zero; the exception is what this coupler
  family is reported to answer).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from ._base import DEVICE_FAILURE, ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Refusal

MODULES = ("750-430", "750-530", "750-530", "750-466", "750-466", "750-600")
DI_COUNT = 8
DO_COUNT = 16
AI_COUNT = 4
OUTPUT_READBACK = 0x0200
WD_TIME = 0x1000
WD_TRIGGER = 0x1003
WD_STATUS = 0x1006
WD_RESTART = 0x1007
WD_STOP = 0x1008
WD_STOP_CODES = (0xAA55, 0x55AA)
WD_TIME_UNIT_S = 0.1
WD_OFF, WD_RUNNING, WD_EXPIRED = 0, 1, 2
AI_FULL = 0x7FF8
AI_FAULT = 0x7FFF
AI_MA_MIN, AI_MA_MAX = 4.0, 20.0


class Wago750352:
    """Inputs and analog currents set by the physics or a test; outputs as the master wrote."""

    def __init__(self, device: str = "io", clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self.requests: Counter[int] = Counter()
        self._clock = clock
        self.di = [False] * DI_COUNT
        self.do = [False] * DO_COUNT
        self.ai_ma = [4.0] * AI_COUNT
        self.wd_time = 0
        self.wd_state = WD_OFF
        self._wd_trigger = 0
        self._wd_deadline = 0.0
        self.writes: list[tuple[int, int, list[int]]] = []

    # ------------------------------------------------------------ watchdog

    def _watch(self) -> None:
        if self.wd_state == WD_RUNNING and self._clock() >= self._wd_deadline:
            self.wd_state = WD_EXPIRED
            self.do = [False] * DO_COUNT

    @property
    def tripped(self) -> bool:
        self._watch()
        return self.wd_state == WD_EXPIRED

    def _feed(self) -> None:
        if self.wd_time > 0 and self.wd_state != WD_EXPIRED:
            self.wd_state = WD_RUNNING
            self._wd_deadline = self._clock() + self.wd_time * WD_TIME_UNIT_S

    # ------------------------------------------------------------ requests

    def read(self, fc: int, address: int, count: int) -> list[int]:
        self._watch()
        if fc in (1, 2):
            return [self._bit(a) for a in range(address, address + count)]
        if fc in (3, 4):
            return [self._register(fc, a) for a in range(address, address + count)]
        raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")

    def _bit(self, address: int) -> int:
        if 0 <= address < DI_COUNT:
            return int(self.di[address])
        if OUTPUT_READBACK <= address < OUTPUT_READBACK + DO_COUNT:
            return int(self.do[address - OUTPUT_READBACK])
        raise Refusal(ILLEGAL_ADDRESS, f"bit {address:#06x}")

    def _register(self, fc: int, address: int) -> int:
        if 0 <= address < AI_COUNT:
            return self._analog(self.ai_ma[address])
        if address == AI_COUNT:
            return sum(1 << i for i, on in enumerate(self.di) if on)
        if address == OUTPUT_READBACK:
            return sum(1 << i for i, on in enumerate(self.do) if on)
        if fc == 3 and address == WD_TIME:
            return self.wd_time
        if fc == 3 and address == WD_TRIGGER:
            return self._wd_trigger
        if fc == 3 and address == WD_STATUS:
            return self.wd_state
        if fc == 3 and address in (WD_RESTART, WD_STOP):
            return 0
        raise Refusal(ILLEGAL_ADDRESS, f"register {address:#06x}")

    @staticmethod
    def _analog(ma: float) -> int:
        if not AI_MA_MIN - 0.05 <= ma <= AI_MA_MAX + 0.05:
            return AI_FAULT
        frac = min(max((ma - AI_MA_MIN) / (AI_MA_MAX - AI_MA_MIN), 0.0), 1.0)
        return round(frac * AI_FULL) & ~0x7

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self._watch()
        self.writes.append((fc, address, list(values)))
        if fc in (5, 15):
            if not (address >= 0 and address + len(values) <= DO_COUNT):
                raise Refusal(ILLEGAL_ADDRESS, f"coil {address:#06x}")
            if self.wd_state == WD_EXPIRED:
                raise Refusal(DEVICE_FAILURE, "watchdog expired: outputs held at 0")
            for i, v in enumerate(values):
                self.do[address + i] = bool(v)
            return
        if fc in (6, 16):
            for i, v in enumerate(values):
                self._write_register(address + i, v)
            return
        raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")

    def _write_register(self, address: int, value: int) -> None:
        if address == WD_TIME:
            self.wd_time = value
            if value == 0:
                self.wd_state = WD_OFF
        elif address == WD_TRIGGER:
            if value not in (0, self._wd_trigger):
                self._feed()
            self._wd_trigger = value
        elif address == WD_RESTART:
            if value != 1:
                raise Refusal(ILLEGAL_VALUE, "restart takes 1")
            if self.wd_state == WD_EXPIRED:
                self.wd_state = WD_OFF
                self._feed()
        elif address == WD_STOP:
            if value in WD_STOP_CODES:
                self.wd_state = WD_OFF
        elif address == 0:
            if self.wd_state == WD_EXPIRED:
                raise Refusal(DEVICE_FAILURE, "watchdog expired: outputs held at 0")
            self.do = [bool((value >> i) & 1) for i in range(DO_COUNT)]
        else:
            raise Refusal(ILLEGAL_ADDRESS, f"register {address:#06x}")

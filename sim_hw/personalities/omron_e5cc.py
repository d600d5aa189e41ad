"""Omron E5CC digital temperature controller, Modbus-RTU, as its communications manual says.

Source: E5@C Digital Temperature Controllers Communications Manual (H175), section 4 (Modbus
communications procedure) and section 5 (variable area list). Facts marked (unconfirmed) could
not be checked against the manual's own page and are what the booth's map assumes as well.

- Functions (4-2): 03 read, 06 write single / operation command, 10 write multiple, 08 echoback;
  anything else is answered with exception 01.
- Error codes (4-1-3): 01 function, 02 variable address, 03 variable data (out of range),
  04 operation error (writing while communications writing is OFF, or in setup area 1).
- Two address modes (5-1): double-word variables at 0x0000.. (each 2 registers, high word
  first), and single-word aliases at 0x2000.. (the lower 16 bits).
- Operation command (4-4-3): FC06 to address 0x0000 (or 0xFFFF), the command code in the high
  byte and the related information in the low byte: 00 = communications writing (00 off,
  01 on), 01 = RUN/STOP (00 run, 01 stop); other codes are accepted and ignored here.
- Input type 6 (K, -20.0..500.0 C) is assumed: every temperature in 0.1 C.
"""

from __future__ import annotations

from collections import Counter

from ._base import DEVICE_FAILURE, ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Refusal

#: Double-word variable addresses (H175 5-1) and their single-word aliases.
PV = 0x0000
STATUS = 0x0002
INTERNAL_SP = 0x0004
HEATER_CURRENT = 0x0006
MV_HEATING = 0x0008
MV_COOLING = 0x000A
SP = 0x0106
ALIAS = {0x2000: PV, 0x2001: STATUS, 0x2002: INTERNAL_SP, 0x2003: HEATER_CURRENT,
         0x2004: MV_HEATING, 0x2005: MV_COOLING, 0x2103: SP}  # fmt: skip
OPERATION_COMMAND = (0x0000, 0xFFFF)
CMD_COMM_WRITING = 0x00
CMD_RUN_STOP = 0x01
#: Status bits (H175 5-2 status figure; bit positions (unconfirmed) past bit 15).
BIT_AD_ERROR = 2
BIT_DISPLAY_RANGE = 5
BIT_INPUT_ERROR = 6
BIT_HEATING_OUTPUT = 8
BIT_STOP = 20
BIT_COMM_WRITING = 21
#: Input type 6: -20.0..500.0 C; the SP limits default to the input range.
SP_MIN_C, SP_MAX_C = -20.0, 500.0
TENTHS = 10


class OmronE5CC:
    """State in engineering terms (set by the physics or a test), registers as the manual says."""

    def __init__(self, device: str = "e5cc") -> None:
        self.device = device
        self.requests: Counter[int] = Counter()
        self.pv_c = 25.0
        self.sp_c = 0.0
        self.mv_pct = 0.0
        self.stopped = False
        self.comm_writing = False
        self.input_error = False
        #: Raw writes received, as (function code, address, values): tests check the wire.
        self.writes: list[tuple[int, int, list[int]]] = []

    # ------------------------------------------------------------ registers

    def _variable(self, address: int) -> int:
        """A double-word variable's value (signed, as a 32-bit two's complement)."""
        if address == PV:
            # On an input error the PV is meaningless (the display shows S.Err); the value sent
            # is the range's upper limit + 10 % (unconfirmed); the status says why.
            pv = SP_MAX_C * 1.1 if self.input_error else self.pv_c
            return round(pv * TENTHS)
        if address == STATUS:
            return self._status()
        if address in (INTERNAL_SP, SP):
            return round(self.sp_c * TENTHS)
        if address == MV_HEATING:
            return round((0.0 if self.stopped else self.mv_pct) * TENTHS)
        if address in (HEATER_CURRENT, MV_COOLING):
            return 0
        raise Refusal(ILLEGAL_ADDRESS, f"no variable at {address:#06x}")

    def _status(self) -> int:
        s = 0
        if self.input_error:
            s |= 1 << BIT_INPUT_ERROR
        if not self.stopped and self.mv_pct > 0 and not self.input_error:
            s |= 1 << BIT_HEATING_OUTPUT
        if self.stopped:
            s |= 1 << BIT_STOP
        if self.comm_writing:
            s |= 1 << BIT_COMM_WRITING
        return s

    def read(self, fc: int, address: int, count: int) -> list[int]:
        if fc != 3:
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        if address >= 0x2000:
            return [
                self._variable(self._alias(a)) & 0xFFFF for a in range(address, address + count)
            ]
        if address % 2 or count % 2:
            raise Refusal(ILLEGAL_ADDRESS, "double-word variables start on even addresses")
        words: list[int] = []
        for a in range(address, address + count, 2):
            value = self._variable(a) & 0xFFFF_FFFF
            words += [value >> 16, value & 0xFFFF]
        return words

    @staticmethod
    def _alias(address: int) -> int:
        if address not in ALIAS:
            raise Refusal(ILLEGAL_ADDRESS, f"no variable at {address:#06x}")
        return ALIAS[address]

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self.writes.append((fc, address, list(values)))
        if fc == 6 and address in OPERATION_COMMAND:
            self._operation_command(values[0])
            return
        if fc == 6:
            self._set(self._alias(address), _signed16(values[0]))
            return
        if fc == 16:
            if address >= 0x2000:
                for i, v in enumerate(values):
                    self._set(self._alias(address + i), _signed16(v))
                return
            if address % 2 or len(values) % 2:
                raise Refusal(ILLEGAL_ADDRESS, "double-word variables start on even addresses")
            for i in range(0, len(values), 2):
                self._set(address + i, _signed32((values[i] << 16) | values[i + 1]))
            return
        raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")

    def _set(self, address: int, value: int) -> None:
        if address != SP:
            raise Refusal(ILLEGAL_ADDRESS, f"{address:#06x} is not writable here")
        if not self.comm_writing:
            raise Refusal(DEVICE_FAILURE, "communications writing is OFF (operation error)")
        sp_c = value / TENTHS
        if not SP_MIN_C <= sp_c <= SP_MAX_C:
            raise Refusal(ILLEGAL_VALUE, f"SP {sp_c} outside {SP_MIN_C}..{SP_MAX_C}")
        self.sp_c = sp_c

    def _operation_command(self, word: int) -> None:
        code, info = word >> 8, word & 0xFF
        if code == CMD_COMM_WRITING:
            if info not in (0, 1):
                raise Refusal(ILLEGAL_VALUE, f"communications writing {info}")
            self.comm_writing = info == 1
        elif code == CMD_RUN_STOP:
            if info not in (0, 1):
                raise Refusal(ILLEGAL_VALUE, f"RUN/STOP {info}")
            if not self.comm_writing:
                raise Refusal(DEVICE_FAILURE, "communications writing is OFF (operation error)")
            self.stopped = info == 1


def _signed16(v: int) -> int:
    return v - 0x1_0000 if v & 0x8000 else v


def _signed32(v: int) -> int:
    return v - 0x1_0000_0000 if v & 0x8000_0000 else v

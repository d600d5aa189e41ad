"""Endress+Hauser (SpectraSensors) OXY5500 trace oxygen analyzer, Modbus RTU, as its manual says.

Source: OXY5500 Optical Oxygen Analyzer Operating Instructions BA02195C, chapter 5: "Function
codes", "Data formats", "Error response", Table 5-1 (holding registers), Tables 5-2 and 5-3
(measurement control). Facts marked (unconfirmed) could not be checked on the manual's page.

- Functions: 03 and 04 read (interchangeable, the same registers), 16 writes; anything else is
  answered with exception 01. Exceptions: 01 function, 02 register not available or write
  protected, 03 value out of range, 06 busy (every FC16 while a service program is connected on
  USB).
- Register numbers are protocol addresses. A Float (IEEE 754) or Int32 spans two registers, its
  low word first (the manual's example: 20.56 = 0x41A47AE1 is 0x7AE1, then 0x41A4). A value is
  read from its first register: "do not add or subtract 1" (a read that starts or ends inside a
  value is refused here with 02 (unconfirmed: what the analyzer does with it)).
- 2089 oxygen unit (Int32; the code meaning ppm (unconfirmed), here 3), 3499 interval rate
  (seconds, 1..359999), 4095 device ID (1..32), 4909 the oxygen measurement (Float, in the unit
  of 2089, read only), 5707 measurement control (Int32: bit 0 interval on, bit 1 measuring (read
  only), bit 2 start a measurement), 1031 firmware version (8 registers of characters).
- With the interval off the analyzer stops measuring: 4909 keeps its last value.
- A sensor fault: the manual sends the analog outputs to their error level; what 4909 holds then
  is not in the pages found. Here it holds NaN (unconfirmed), which no reading can pass for.
"""

from __future__ import annotations

import math
import struct
from collections import Counter

from ._base import ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Refusal

FIRMWARE_VERSION = 1031
OXYGEN_UNIT = 2089
INTERVAL_RATE = 3499
DEVICE_ID = 4095
OXYGEN = 4909
MEASUREMENT_CONTROL = 5707
#: Table 5-3.
BIT_INTERVAL_ON = 0
BIT_MEASURING = 1
BIT_START = 2
UNIT_PPM = 3  # (unconfirmed code)
INTERVAL_MIN_S, INTERVAL_MAX_S = 1, 359_999
DEVICE_ID_MIN, DEVICE_ID_MAX = 1, 32
SLAVE_BUSY = 0x06
FIRMWARE_TEXT = "SSI v1.0.0.0001"
#: Read-only registers (Table 5-1 "Write Access: No").
READ_ONLY = frozenset({FIRMWARE_VERSION, OXYGEN})


def _pair(raw: int) -> tuple[int, int]:
    """A 32-bit value as the analyzer sends it: low word, then high word."""
    return raw & 0xFFFF, (raw >> 16) & 0xFFFF


def _float_raw(value: float) -> int:
    return int(struct.unpack(">I", struct.pack(">f", value))[0])


class EndressOXY5500:
    """State in engineering terms (set by the physics or a test), registers as the manual says."""

    def __init__(self, device: str = "oxy5500") -> None:
        self.device = device
        self.requests: Counter[int] = Counter()
        #: The last measurement (what 4909 holds), in ppm.
        self.o2_ppm = 0.0
        self.unit = UNIT_PPM
        self.interval_s = 1
        self.device_id = 1
        self.interval_on = True
        self.measuring = False
        #: The sensor's fault (no valid measurement): 4909 holds NaN (unconfirmed).
        self.sensor_error = False
        #: A service program connected on USB: every FC16 is refused with 06.
        self.usb_active = False
        self.writes: list[tuple[int, int, list[int]]] = []

    # -- what the physics does

    def measure(self, o2_ppm: float) -> None:
        """A new measurement: taken while the interval is on, or once after a start (bit 2)."""
        if self.interval_on or self.measuring:
            self.o2_ppm = o2_ppm
        self.measuring = False

    # -- the registers

    def _values(self) -> dict[int, list[int]]:
        control = (int(self.interval_on) << BIT_INTERVAL_ON) | (
            int(self.measuring) << BIT_MEASURING
        )
        oxygen = math.nan if self.sensor_error else self.o2_ppm
        text = FIRMWARE_TEXT.encode("latin-1").ljust(16, b"\0")
        return {
            FIRMWARE_VERSION: [int.from_bytes(text[i : i + 2], "big") for i in range(0, 16, 2)],
            OXYGEN_UNIT: list(_pair(self.unit)),
            INTERVAL_RATE: list(_pair(self.interval_s)),
            DEVICE_ID: list(_pair(self.device_id)),
            OXYGEN: list(_pair(_float_raw(oxygen))),
            MEASUREMENT_CONTROL: list(_pair(control)),
        }

    def read(self, fc: int, address: int, count: int) -> list[int]:
        if fc not in (3, 4):
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x}")
        values = self._values()
        out: list[int] = []
        a = address
        while a < address + count:
            if a not in values:
                raise Refusal(ILLEGAL_ADDRESS, f"register {a} is not the start of a value")
            words = values[a]
            if a + len(words) > address + count:
                raise Refusal(ILLEGAL_ADDRESS, f"register {a}: a read that ends inside a value")
            out.extend(words)
            a += len(words)
        return out

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self.writes.append((fc, address, list(values)))
        if fc != 16:
            raise Refusal(ILLEGAL_FUNCTION, f"function {fc:#04x} (writes are FC16)")
        if self.usb_active:
            raise Refusal(SLAVE_BUSY, "a service program is connected on USB")
        if address in READ_ONLY or address not in self._values() or len(values) != 2:
            raise Refusal(ILLEGAL_ADDRESS, f"register {address} ({len(values)} words)")
        raw = values[0] | (values[1] << 16)
        if address == MEASUREMENT_CONTROL:
            self.interval_on = bool(raw >> BIT_INTERVAL_ON & 1)
            if raw >> BIT_START & 1:
                self.measuring = True  # cleared when the physics delivers the measurement
        elif address == INTERVAL_RATE:
            if not INTERVAL_MIN_S <= raw <= INTERVAL_MAX_S:
                raise Refusal(ILLEGAL_VALUE, f"interval {raw} s")
            self.interval_s = raw
        elif address == DEVICE_ID:
            if not DEVICE_ID_MIN <= raw <= DEVICE_ID_MAX:
                raise Refusal(ILLEGAL_VALUE, f"device ID {raw}")
            self.device_id = raw
        elif address == OXYGEN_UNIT:
            self.unit = raw

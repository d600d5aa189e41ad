"""Line protocols of real O2 analyzers. Pure: one received line in, a Measurement or a reason out.

Each protocol is chosen by config (``transport.protocol``); the generic ``$O2,...*XX`` line stays
in ``drivers._o2proto``. Facts come from the manuals named below; nothing else is assumed.

``ox400``: Yokogawa OX400 low-concentration zirconia analyzer (manual IM 11M10B01-01E, 6.3
"Communication"): RS-232, 38400 baud 8N1. The host sends ``TS`` and the analyzer then sends a
data-logging packet about every 200 ms: ``AAAA.AAA,BBB,CCCC,DDDD<CR>`` = concentration (up to
three decimals), unit (``%`` or ``ppm``), error and alarm words in hexadecimal; ``<CR>`` alone
stops the packets. No checksum. (The meaning of each error bit is in the manual's Table 6.3, not
reproduced here: any non-zero error word makes the value BAD.)

``teledyne3000``: Teledyne 3000 series trace analyzers (3000TA/3000ZA manuals, 3.3.2.3 "RS-232
port" and Teledyne's RS-232 FAQ): 2400 baud 8N1, one status line every 2 s in sample mode:
``ST, <value> <PPM|%>, <RA|RF>-<LO|MED|HI|CAL> <span>, [AL-n DISABLED|ON, ...]`` ended by
CR (LF). Nothing is sent during self-test, zero or span. Commands ``az<CR>`` (autozero), ``as<CR>``
(autospan), ``st<CR>`` (toggle the status output). No checksum, no acknowledgement.
"""

from __future__ import annotations

import math
import re

from ._o2proto import LineError, Measurement

PROTOCOLS = ("generic", "ox400", "teledyne3000")
PPM_PER_PERCENT = 10_000.0
MAX_LINE_BYTES = 128

# -- Yokogawa OX400 (IM 11M10B01-01E 6.3)
OX400_START = b"TS\r"
OX400_STOP = b"\r"
_OX400 = re.compile(
    rb"^\s*(\d{1,4}\.\d{1,3}),\s*(%|ppm),\s*([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\s*$"
)

# -- Teledyne 3000 series (3.3.2.3; RS-232 FAQ)
TELEDYNE_AUTOZERO = b"az\r"
TELEDYNE_AUTOSPAN = b"as\r"
_TELEDYNE_VALUE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(PPM|%)$", re.IGNORECASE)
_TELEDYNE_RANGE = re.compile(r"^(RA|RF)-(LO|MED|HI|CAL)\b", re.IGNORECASE)


def _ppm(value: float, unit: str, line: bytes) -> float:
    ppm = value * PPM_PER_PERCENT if unit == "%" else value
    if not math.isfinite(ppm) or ppm < 0 or ppm > 1_000_000:
        raise LineError(f"O2 value out of range: {line[:40]!r}")
    return ppm


def parse_ox400(line: bytes) -> Measurement:
    """One data-logging packet. A non-zero error word: ERR (the value is no measurement)."""
    line = line.rstrip(b"\r\n")
    if len(line) > MAX_LINE_BYTES:
        raise LineError(f"line of {len(line)} bytes, longer than {MAX_LINE_BYTES}")
    m = _OX400.match(line)
    if m is None:
        raise LineError(f"not an OX400 packet (AAAA.AAA,unit,CCCC,DDDD): {line[:40]!r}")
    value, unit, error, _alarm = (g.decode("ascii") for g in m.groups())
    ppm = _ppm(float(value), unit, line)
    # The alarm word reports the analyzer's own set-points, which the supervisor does not use.
    return Measurement(ppm, "OK" if int(error, 16) == 0 else "ERR")


def parse_teledyne3000(line: bytes) -> Measurement:
    """One status line; a range of CAL means a calibration gas is on the cell (not the booth)."""
    line = line.rstrip(b"\r\n")
    if len(line) > MAX_LINE_BYTES:
        raise LineError(f"line of {len(line)} bytes, longer than {MAX_LINE_BYTES}")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as exc:
        raise LineError(f"non-ASCII line: {line[:40]!r}") from exc
    fields = [f.strip() for f in text.split(",")]
    if len(fields) < 3 or fields[0] != "ST":
        raise LineError(f"not a Teledyne status line (ST, value, range, ...): {line[:40]!r}")
    value = _TELEDYNE_VALUE.match(fields[1])
    rng = _TELEDYNE_RANGE.match(fields[2])
    if value is None or rng is None:
        raise LineError(f"Teledyne status line with bad value or range: {line[:40]!r}")
    ppm = _ppm(float(value.group(1)), "%" if value.group(2) == "%" else "ppm", line)
    status = "CAL" if rng.group(2).upper() == "CAL" else "OK"
    return Measurement(ppm, status)

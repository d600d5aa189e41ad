"""The O2 analyzer's ASCII line protocol. Pure: bytes in, values or a reason out.

Every line is ``$<body>*<XX>\\r\\n`` where XX is the XOR of the bytes of ``<body>`` (between ``$``
and ``*``) in two hex digits. The analyzer sends ``$O2,<ppm>,<OK|ERR|CAL>*XX`` every period and
answers a command ``$<CMD>*XX`` with ``$ACK,<CMD>*XX`` (or ``$NAK,<CMD>[,<reason>]*XX``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A line longer than this is garbage whatever it holds (a status line is about 20 bytes).
MAX_LINE_BYTES = 128
STATUSES = ("OK", "ERR", "CAL")


class LineError(ValueError):
    """A line that fails framing, checksum or content; the message says which."""


@dataclass(frozen=True, slots=True)
class Measurement:
    ppm: float
    #: OK, ERR (cell or heater fault: the value is not to be trusted) or CAL (calibrating).
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclass(frozen=True, slots=True)
class Reply:
    """The analyzer's answer to a command."""

    command: str
    accepted: bool
    reason: str = ""


def checksum(body: bytes) -> int:
    value = 0
    for byte in body:
        value ^= byte
    return value


def frame(body: str) -> bytes:
    """A line to send: ``$body*XX\\r\\n``."""
    data = body.encode("ascii")
    return b"$" + data + b"*" + f"{checksum(data):02X}".encode("ascii") + b"\r\n"


def parse_line(line: bytes) -> Measurement | Reply:
    """One received line, without or with its line end."""
    line = line.rstrip(b"\r\n")
    if len(line) > MAX_LINE_BYTES:
        raise LineError(f"line of {len(line)} bytes, longer than {MAX_LINE_BYTES}")
    star = line.rfind(b"*")
    if not line.startswith(b"$") or star < 0 or len(line) != star + 3:
        raise LineError(f"bad framing: {line[:40]!r}")
    body = line[1:star]
    try:
        sent = int(line[star + 1 :].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LineError(f"bad checksum digits: {line[star + 1 :]!r}") from exc
    computed = checksum(body)
    if sent != computed:
        raise LineError(f"checksum {sent:02X}, computed {computed:02X}: {line[:40]!r}")
    try:
        fields = body.decode("ascii").split(",")
    except UnicodeDecodeError as exc:
        raise LineError(f"non-ASCII line: {line[:40]!r}") from exc
    kind = fields[0]
    if kind == "O2":
        if len(fields) != 3:
            raise LineError(f"O2 line with {len(fields)} fields, expected 3")
        try:
            ppm = float(fields[1])
        except ValueError as exc:
            raise LineError(f"O2 value {fields[1]!r} is not a number") from exc
        if not math.isfinite(ppm) or ppm < 0:
            raise LineError(f"O2 value {fields[1]!r} out of range")
        if fields[2] not in STATUSES:
            raise LineError(f"O2 status {fields[2]!r} is not one of {', '.join(STATUSES)}")
        return Measurement(ppm, fields[2])
    if kind in ("ACK", "NAK") and len(fields) >= 2 and fields[1]:
        return Reply(fields[1], kind == "ACK", ",".join(fields[2:]))
    raise LineError(f"unknown line type {kind!r}")

"""HSMS message frames (SEMI E37 §8): length, 10-byte header, SECS-II text.

Pure: no sockets. The header is session id (the device id for data messages, 0xFFFF for control
messages), two bytes (W-bit and stream, function; for control messages: status or reason), the
presentation type (0: SECS-II), the session type and the system bytes that tie a reply to its
request.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from booth_ctl.links.gem._secs2 import Item, SecsFormatError, decode, encode

HEADER_LEN = 10
#: The largest message accepted from a host (a recipe body fits with plenty of room); longer is
#: taken for a broken stream and the connection is closed.
MAX_MESSAGE_LEN = 16 * 1024 * 1024
CONTROL_SESSION = 0xFFFF
_HEADER = struct.Struct(">HBBBBI")


class SType(enum.IntEnum):
    DATA = 0
    SELECT_REQ = 1
    SELECT_RSP = 2
    DESELECT_REQ = 3
    DESELECT_RSP = 4
    LINKTEST_REQ = 5
    LINKTEST_RSP = 6
    REJECT_REQ = 7
    SEPARATE_REQ = 9


class SelectStatus(enum.IntEnum):
    OK = 0
    ALREADY_ACTIVE = 1
    NOT_READY = 2
    EXHAUSTED = 3


class DeselectStatus(enum.IntEnum):
    OK = 0
    NOT_ESTABLISHED = 1
    BUSY = 2


class RejectReason(enum.IntEnum):
    STYPE_NOT_SUPPORTED = 1
    PTYPE_NOT_SUPPORTED = 2
    TRANSACTION_NOT_OPEN = 3
    NOT_SELECTED = 4


class FrameError(ValueError):
    """Bytes that are not an HSMS message."""


@dataclass(frozen=True)
class Frame:
    """One HSMS message. For data messages ``byte2``/``byte3`` are W-bit+stream and function."""

    session: int
    byte2: int
    byte3: int
    ptype: int
    stype: int
    system: int
    text: bytes = b""

    @property
    def stream(self) -> int:
        return self.byte2 & 0x7F

    @property
    def function(self) -> int:
        return self.byte3

    @property
    def wbit(self) -> bool:
        return bool(self.byte2 & 0x80)

    @property
    def header(self) -> bytes:
        return _HEADER.pack(
            self.session, self.byte2, self.byte3, self.ptype, self.stype, self.system
        )

    def item(self) -> Item | None:
        """The SECS-II text (None for a header-only message); SecsFormatError if broken."""
        return decode(self.text) if self.text else None

    def to_bytes(self) -> bytes:
        body = self.header + self.text
        return len(body).to_bytes(4, "big") + body

    def __str__(self) -> str:
        if self.stype == SType.DATA:
            return (
                f"S{self.stream}F{self.function}{' W' if self.wbit else ''} "
                f"dev={self.session} sys={self.system:#x}"
            )
        try:
            name = SType(self.stype).name.lower()
        except ValueError:
            name = f"stype {self.stype}"
        return f"{name} sys={self.system:#x} b3={self.byte3}"


def data(
    stream: int, function: int, item: Item | None, *, device: int, system: int, wbit: bool
) -> Frame:
    if not 0 <= stream <= 127 or not 0 <= function <= 255:
        raise ValueError(f"S{stream}F{function} is out of range")
    text = encode(item) if item is not None else b""
    return Frame(device, (0x80 if wbit else 0) | stream, function, 0, SType.DATA, system, text)


def control(stype: SType, system: int, byte3: int = 0, byte2: int = 0) -> Frame:
    return Frame(CONTROL_SESSION, byte2, byte3, 0, stype, system)


def parse(body: bytes) -> Frame:
    """A message from its bytes after the length field."""
    if len(body) < HEADER_LEN:
        raise FrameError(f"message of {len(body)} bytes is shorter than the 10-byte header")
    session, b2, b3, ptype, stype, system = _HEADER.unpack_from(body)
    return Frame(session, b2, b3, ptype, stype, system, bytes(body[HEADER_LEN:]))


__all__ = [
    "CONTROL_SESSION", "HEADER_LEN", "MAX_MESSAGE_LEN", "DeselectStatus", "Frame", "FrameError",
    "RejectReason", "SType", "SecsFormatError", "SelectStatus", "control", "data", "parse",
]

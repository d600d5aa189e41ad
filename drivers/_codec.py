"""Raw Modbus values <-> engineering values, as the register map says. Pure: no I/O, no clock.

A point spans one register (uint16, int16, a bool with its raw codes) or two (uint32, int32,
float32, in the map's word and byte order); its raw value is the registers assembled into one
unsigned integer, and ``engineering = raw * scale * 10**-dp + offset`` (``dp`` from a decimal
point register, 0 otherwise). Coils and discrete inputs are bools (maybe inverted). A status
word's named bits or codes are decoded from the word's raw value.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._regmap import Bit, Point, RegisterMap, Table

UINT16_MAX = 0xFFFF
INT16_MIN = -0x8000
INT16_MAX = 0x7FFF
UINT32_MAX = 0xFFFF_FFFF
INT32_MIN = -0x8000_0000
INT32_MAX = 0x7FFF_FFFF
FLOAT32_MAX = 3.4028234663852886e38

#: Largest number of registers / bits one Modbus read may ask for (Modbus application protocol
#: v1.1b3, function codes 01-04).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

_INT_BOUNDS = {
    "int16": (INT16_MIN, INT16_MAX),
    "uint16": (0, UINT16_MAX),
    "int32": (INT32_MIN, INT32_MAX),
    "uint32": (0, UINT32_MAX),
    "bool": (0, 1),
}


class OutOfRange(ValueError):
    """A value that the point cannot represent; the message names the point and the bound."""

    def __init__(self, point: str, message: str) -> None:
        self.point = point
        super().__init__(f"point {point!r}: {message}")


class BadValue(ValueError):
    """A raw value that carries no engineering value (an unknown code of a register bool)."""


def raw_bounds(point: Point) -> tuple[int, int]:
    """The integer range of the point's data type (float32: its finite range, rounded)."""
    if point.type == "float32":
        return -int(FLOAT32_MAX), int(FLOAT32_MAX)
    if point.type == "bool" and not point.is_bit:
        return 0, UINT16_MAX
    return _INT_BOUNDS[point.type]


def _factor(point: Point, dp: int) -> float:
    return point.scale * (10.0**-dp)


def engineering_bounds(point: Point, dp: int = 0) -> tuple[float, float]:
    """The lowest and highest engineering value the point can hold (scale may be negative)."""
    lo, hi = raw_bounds(point)
    a = lo * _factor(point, dp) + point.offset
    b = hi * _factor(point, dp) + point.offset
    return (a, b) if a <= b else (b, a)


def resolution(point: Point, dp: int = 0) -> float:
    """One raw count in engineering units."""
    return abs(_factor(point, dp))


def words_to_raw(point: Point, words: Sequence[int]) -> int:
    """The point's registers, as read, to one unsigned raw value (word and byte order applied)."""
    ws = [int(w) & UINT16_MAX for w in words]
    if point.byte_order == "little":
        ws = [((w & 0xFF) << 8) | (w >> 8) for w in ws]
    if len(ws) == 1:
        return ws[0]
    hi, lo = (ws[0], ws[1]) if point.word_order == "high_low" else (ws[1], ws[0])
    return (hi << 16) | lo


def raw_to_words(point: Point, raw: int) -> list[int]:
    """One unsigned raw value to the registers to write, in the device's word and byte order."""
    if point.width == 1:
        ws = [raw & UINT16_MAX]
    else:
        hi, lo = (raw >> 16) & UINT16_MAX, raw & UINT16_MAX
        ws = [hi, lo] if point.word_order == "high_low" else [lo, hi]
    if point.byte_order == "little":
        ws = [((w & 0xFF) << 8) | (w >> 8) for w in ws]
    return ws


def signed(point: Point, raw: int) -> int:
    """The raw value as the data type's integer (two's complement for int16/int32)."""
    if point.type == "int16":
        raw &= UINT16_MAX
        return raw - 0x1_0000 if raw > INT16_MAX else raw
    if point.type == "int32":
        raw &= UINT32_MAX
        return raw - 0x1_0000_0000 if raw > INT32_MAX else raw
    return int(raw)


def decode(point: Point, raw: int | bool, dp: int = 0) -> float | bool:
    """A raw value (bit, register, or register pair as one unsigned int) to engineering units.

    Raises BadValue for a register bool whose raw value is neither of its codes.
    """
    if point.is_bit:
        return bool(raw) != point.invert
    if point.type == "bool":
        if int(raw) == point.true_value:
            return True
        if point.false_value is None or int(raw) == point.false_value:
            return False
        raise BadValue(
            f"raw {int(raw):#06x} is neither {point.true_value:#06x} nor {point.false_value:#06x}"
        )
    if point.type == "float32":
        number = struct.unpack(">f", struct.pack(">I", int(raw) & UINT32_MAX))[0]
        return float(number) * _factor(point, dp) + point.offset
    return signed(point, int(raw)) * _factor(point, dp) + point.offset


def encode(name: str, point: Point, value: float | bool, dp: int = 0) -> int:
    """An engineering value to the raw value (unsigned; a pair as one int) or bit that holds it.

    Refuses, naming the point and the bound, a value outside what the register can hold: a
    silently clamped or wrapped setpoint is worse than a refused one.
    """
    if point.type == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise OutOfRange(name, f"value {value!r} is not a bool (0 or 1)")
        on = bool(value)
        if point.is_bit:
            return int(on != point.invert)
        if on:
            assert point.true_value is not None  # the model requires it
            return point.true_value
        if point.false_value is None:
            raise OutOfRange(name, "the map gives no raw code for false (false_value)")
        return point.false_value
    number = float(value)
    if not math.isfinite(number):
        raise OutOfRange(name, f"value {value!r} is not a finite number")
    scaled = (number - point.offset) / _factor(point, dp)
    if point.type == "float32":
        if abs(scaled) > FLOAT32_MAX:
            raise OutOfRange(name, f"value {value!r} is beyond float32")
        return int(struct.unpack(">I", struct.pack(">f", scaled))[0])
    raw = round(scaled)
    lo, hi = raw_bounds(point)
    if raw < lo or raw > hi:
        e_lo, e_hi = engineering_bounds(point, dp)
        bound = f"minimum {e_lo:g}" if (number < e_lo) else f"maximum {e_hi:g}"
        raise OutOfRange(
            name,
            f"value {value!r} is out of range ({point.type}, scale {_factor(point, dp):g}, "
            f"offset {point.offset:g}): {bound}{' ' + point.unit if point.unit else ''}",
        )
    return raw & (UINT32_MAX if point.width == 2 else UINT16_MAX)


def decode_bit(bit: Bit, word_raw: int) -> bool:
    """A named bit, or code, of a status word."""
    if bit.bit is not None:
        on = bool((int(word_raw) >> bit.bit) & 1)
    else:
        code = int(word_raw) & bit.mask
        on = code == bit.equals if bit.equals is not None else code in (bit.any_of or ())
    return on != bit.invert


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` consecutive addresses of one table from ``address``."""

    table: Table
    address: int
    count: int
    #: Point names in the block, with their offset from ``address``.
    points: tuple[tuple[str, int], ...]


def plan_reads(regmap: RegisterMap) -> tuple[Block, ...]:
    """As few read requests as cover every polled point (see ``plan_blocks``)."""
    return plan_blocks((name, p) for name, p in regmap.points.items() if p.poll)


def plan_blocks(points: Iterable[tuple[str, Point]]) -> tuple[Block, ...]:
    """As few read requests as cover these points: runs of consecutive addresses per table.

    Only consecutive addresses are merged: a gap would read registers the map does not name,
    which a real device may refuse with exception 02 (illegal data address) and fail the block.
    """
    by_table: dict[Table, list[tuple[int, int, str]]] = {}
    for name, p in points:
        by_table.setdefault(p.table, []).append((p.wire_read_address, p.width, name))
    blocks: list[Block] = []
    for table in ("discrete", "coil", "input", "holding"):
        entries = sorted(by_table.get(table, []))
        limit = MAX_BITS_PER_READ if table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
        run: list[tuple[int, int, str]] = []
        for address, width, name in entries:
            end = run[-1][0] + run[-1][1] if run else -1
            if run and (address != end or end + width - run[0][0] > limit):
                blocks.append(_block(table, run))
                run = []
            run.append((address, width, name))
        if run:
            blocks.append(_block(table, run))
    return tuple(blocks)


def _block(table: Table, run: list[tuple[int, int, str]]) -> Block:
    start = run[0][0]
    return Block(
        table=table,
        address=start,
        count=run[-1][0] + run[-1][1] - start,
        points=tuple((name, address - start) for address, _w, name in run),
    )

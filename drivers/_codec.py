"""Raw Modbus values <-> engineering values, as the register map says. Pure: no I/O, no clock.

A register holds 16 bits; the map says whether they are read unsigned (``uint16``) or as two's
complement (``int16``), and the linear scaling ``engineering = raw * scale + offset``. Coils and
discrete inputs are bools. A status word's named bits are decoded from the word's raw value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import Bit, Point, RegisterMap, Table

UINT16_MAX = 0xFFFF
INT16_MIN = -0x8000
INT16_MAX = 0x7FFF

#: Largest number of registers / bits one Modbus read may ask for (Modbus application protocol
#: v1.1b3, function codes 01-04).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class OutOfRange(ValueError):
    """A value that the point cannot represent; the message names the point and the bound."""

    def __init__(self, point: str, message: str) -> None:
        self.point = point
        super().__init__(f"point {point!r}: {message}")


def raw_bounds(point: Point) -> tuple[int, int]:
    """The raw register range of the point's data type."""
    if point.type == "int16":
        return INT16_MIN, INT16_MAX
    if point.type == "bool":
        return 0, 1
    return 0, UINT16_MAX


def engineering_bounds(point: Point) -> tuple[float, float]:
    """The lowest and highest engineering value the point can hold (scale may be negative)."""
    lo, hi = raw_bounds(point)
    a = lo * point.scale + point.offset
    b = hi * point.scale + point.offset
    return (a, b) if a <= b else (b, a)


def resolution(point: Point) -> float:
    """One raw count in engineering units."""
    return abs(point.scale)


def decode(point: Point, raw: int | bool) -> float | bool:
    """A raw register (0..65535) or bit to the point's engineering value."""
    if point.type == "bool":
        return bool(raw)
    word = int(raw) & UINT16_MAX
    if point.type == "int16" and word > INT16_MAX:
        word -= UINT16_MAX + 1
    return word * point.scale + point.offset


def encode(name: str, point: Point, value: float | bool) -> int:
    """An engineering value to the raw register (0..65535) or bit (0/1) that represents it.

    Refuses, naming the point and the bound, a value outside what the register can hold: a
    silently clamped or wrapped setpoint is worse than a refused one.
    """
    if point.type == "bool":
        if isinstance(value, bool):
            return int(value)
        if value in (0, 1):
            return int(value)
        raise OutOfRange(name, f"value {value!r} is not a bool (0 or 1)")
    number = float(value)
    if not math.isfinite(number):
        raise OutOfRange(name, f"value {value!r} is not a finite number")
    raw = round((number - point.offset) / point.scale)
    lo, hi = raw_bounds(point)
    if raw < lo or raw > hi:
        e_lo, e_hi = engineering_bounds(point)
        bound = f"minimum {e_lo:g}" if (number < e_lo) else f"maximum {e_hi:g}"
        raise OutOfRange(
            name,
            f"value {value!r} is out of range ({point.type}, scale {point.scale:g}, "
            f"offset {point.offset:g}): {bound}{' ' + point.unit if point.unit else ''}",
        )
    return raw & UINT16_MAX


def decode_bit(bit: Bit, word_raw: int) -> bool:
    """A named bit of a status word."""
    return bool((int(word_raw) >> bit.bit) & 1)


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` consecutive addresses of one table from ``address``."""

    table: Table
    address: int
    count: int
    #: Point names in the block, with their offset from ``address``.
    points: tuple[tuple[str, int], ...]


def plan_reads(regmap: RegisterMap) -> tuple[Block, ...]:
    """As few read requests as cover every point: runs of consecutive addresses per table.

    Only consecutive addresses are merged: a gap would read registers the map does not name,
    which a real device may refuse with exception 02 (illegal data address) and fail the block.
    """
    by_table: dict[Table, list[tuple[int, str]]] = {}
    for name, p in regmap.points.items():
        if p.poll:
            by_table.setdefault(p.table, []).append((p.address, name))
    blocks: list[Block] = []
    for table in ("discrete", "coil", "input", "holding"):
        entries = sorted(by_table.get(table, []))
        limit = MAX_BITS_PER_READ if table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
        run: list[tuple[int, str]] = []
        for address, name in entries:
            if run and (address != run[-1][0] + 1 or len(run) >= limit):
                blocks.append(_block(table, run))
                run = []
            run.append((address, name))
        if run:
            blocks.append(_block(table, run))
    return tuple(blocks)


def _block(table: Table, run: list[tuple[int, str]]) -> Block:
    start = run[0][0]
    return Block(
        table=table,
        address=start,
        count=run[-1][0] - start + 1,
        points=tuple((name, address - start) for address, name in run),
    )

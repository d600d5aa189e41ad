"""In-memory register banks: one per Modbus device, laid out from the device's register map.

A bank is what a real device's memory would be: four tables of raw 16-bit words and bits. The
physics reads and writes it by point name, in engineering units; the Modbus servers read and write
it raw, by table and address, exactly as a master asks. Only the addresses the map names exist: a
read or write of any other address is refused (Modbus exception 02), as strict real devices do.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from drivers import Point, RegisterMap

UINT16_MAX = 0xFFFF
INT16_MIN = -0x8000
INT16_MAX = 0x7FFF

#: A device's reaction to a master's write of one point: ``(old_raw, written_raw) -> kept_raw``,
#: what the device actually keeps (a module holding its outputs keeps the old or safe value).
WriteHook = Callable[[int, int], int]

#: Modbus function code -> the table it addresses.
FUNCTION_TABLE: dict[int, str] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22})


class AddressError(LookupError):
    """An address the device does not have, or a write to a point that is not writable."""


def to_raw(point: Point, value: float | bool) -> int:
    """Engineering value to the raw word (or 0/1). Out-of-range values saturate, as an
    instrument's reading saturates at the ends of its range."""
    if point.type == "bool":
        return 1 if value else 0
    number = float(value)
    if math.isnan(number):
        number = 0.0
    raw = (
        round((number - point.offset) / point.scale)
        if math.isfinite(number)
        else (INT16_MAX if number > 0 else INT16_MIN)
    )
    lo, hi = (INT16_MIN, INT16_MAX) if point.type == "int16" else (0, UINT16_MAX)
    return min(max(raw, lo), hi) & UINT16_MAX


def from_raw(point: Point, raw: int) -> float | bool:
    if point.type == "bool":
        return bool(raw)
    word = int(raw) & UINT16_MAX
    if point.type == "int16" and word > INT16_MAX:
        word -= UINT16_MAX + 1
    return word * point.scale + point.offset


class RegisterBank:
    """One device's registers, by point name (engineering units) or raw (for the servers)."""

    def __init__(self, name: str, regmap: RegisterMap) -> None:
        self.name = name
        self.map = regmap
        self._raw: dict[tuple[str, int], int] = {
            (p.table, p.address): 0 for p in regmap.points.values()
        }
        self._by_address: dict[tuple[str, int], str] = {
            (p.table, p.address): n for n, p in regmap.points.items()
        }
        # The physics touches every point every few milliseconds: resolve names once.
        self._points: dict[str, tuple[tuple[str, int], Point]] = {
            n: ((p.table, p.address), p) for n, p in regmap.points.items()
        }
        for n, b in regmap.bits.items():
            if b.bit is None:
                # The generic banks lay out generic maps; a vendor's codes are its personality's.
                raise ValueError(f"{regmap.name}: bit {n!r} is a code, not a bit position")
        self._bits: dict[str, tuple[tuple[str, int], int]] = {
            n: ((regmap.points[b.word].table, regmap.points[b.word].address), 1 << (b.bit or 0))
            for n, b in regmap.bits.items()
        }
        #: Bumped on every master write of an address, even with the same value: a watchdog
        #: refresh is a write, not a change.
        self._write_seq: dict[str, int] = dict.fromkeys(regmap.points, 0)
        self._write_hooks: dict[str, WriteHook] = {}
        #: Read requests a master has made, by table (what a test counts a poll rate by); the
        #: server counts them (a write's echo reads the bank too, but is no read request).
        self.reads: Counter[str] = Counter()

    def __contains__(self, name: object) -> bool:
        return name in self.map.points or name in self.map.bits

    # -- by point name, engineering units (the physics, tests)

    def get(self, name: str) -> float | bool:
        """A point's value, or a named bit of a status word."""
        slot = self._points.get(name)
        if slot is not None:
            return from_raw(slot[1], self._raw[slot[0]])
        bit = self._bits.get(name)
        if bit is None:
            raise self._unknown(name)
        return bool(self._raw[bit[0]] & bit[1])

    def set(self, name: str, value: float | bool) -> None:
        """Set a point (or a named bit) as the device itself would; not counted as a write."""
        slot = self._points.get(name)
        if slot is not None:
            self._raw[slot[0]] = to_raw(slot[1], value)
            return
        bit = self._bits.get(name)
        if bit is None:
            raise self._unknown(name)
        key, mask = bit
        self._raw[key] = (self._raw[key] | mask) if value else (self._raw[key] & ~mask)

    def write_point(self, name: str, value: float | bool) -> None:
        """Write a point as a master would over Modbus (counted as a write; AddressError if the
        point is not writable). A harness coupling a controller to the physics writes this way,
        so that heartbeats and watchdog refreshes count."""
        p = self._point(name)
        self.write(p.table, p.address, [to_raw(p, value)])

    def hook_write(self, name: str, hook: WriteHook) -> None:
        """Have ``hook`` decide, at the very write, what the device keeps of a master's write of
        ``name`` (so that a readback right after shows what the device really does)."""
        self._point(name)
        self._write_hooks[name] = hook

    def get_raw(self, name: str) -> int:
        self._point(name)
        return self._raw[self._points[name][0]]

    def write_seq(self, name: str) -> int:
        """How many times a master has written this point."""
        return self._write_seq[name]

    def _point(self, name: str) -> Point:
        slot = self._points.get(name)
        if slot is None:
            raise self._unknown(name)
        return slot[1]

    def _unknown(self, name: str) -> KeyError:
        return KeyError(f"{self.name}: no point {name!r} in map {self.map.name!r}")

    # -- raw, by table and address (the Modbus servers)

    def read(self, table: str, address: int, count: int) -> list[int]:
        """Raw words (or 0/1 bits) from ``address``; AddressError if any address is not mapped."""
        out: list[int] = []
        for a in range(address, address + count):
            key = (table, a)
            if key not in self._raw:
                raise AddressError(f"{self.name}: no {table} at address {a}")
            out.append(self._raw[key])
        return out

    def write(self, table: str, address: int, values: Sequence[int]) -> None:
        """A master's write: every address must be a writable point, else nothing is written."""
        names = []
        for a in range(address, address + len(values)):
            name = self._by_address.get((table, a))
            if name is None or not self.map.points[name].writable:
                raise AddressError(f"{self.name}: {table} address {a} is not writable")
            names.append(name)
        old = {name: self._raw[self._points[name][0]] for name in names}
        for name, v in zip(names, values, strict=True):
            p = self.map.points[name]
            self._raw[(p.table, p.address)] = (
                int(bool(v)) if p.type == "bool" else int(v)
            ) & UINT16_MAX
            self._write_seq[name] += 1
        # The device reacts once the whole request is in (a heartbeat and a run written in one
        # request count together), before any reply: a readback shows what it kept.
        for name in names:
            hook = self._write_hooks.get(name)
            if hook is not None:
                key, p = self._points[name]
                kept = hook(old[name], self._raw[key])
                self._raw[key] = (int(bool(kept)) if p.type == "bool" else int(kept)) & UINT16_MAX

    def snapshot(self) -> dict[str, float | bool]:
        """Every point and named bit, engineering units."""
        out: dict[str, float | bool] = {n: self.get(n) for n in self.map.points}
        out.update({n: self.get(n) for n in self.map.bits})
        return out

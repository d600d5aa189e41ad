"""Plausibility: a raw value that no healthy instrument sends is BAD, never a value.

A vacuum of 3276.8 kPa is an over-range code, not "part held"; a PV of -3276.8 C is an open
thermocouple; a z of -3276.8 mm is not "top". Every analog point (one with a ``unit``) has a
plausible range, from its map or else from the defaults below (by device kind and point name,
then by unit), and sentinel raw values (from its map, else the extremes of a signed type, which
instruments use for under / over range). A value outside either is BAD.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from ._codec import UINT16_MAX, UINT32_MAX, signed
from ._regmap import Point

#: Ranges by kind and point: a little beyond what the booth's instruments can physically show,
#: so that only nonsense is refused (the interlocks judge the values themselves).
KIND_RANGES: MappingProxyType[tuple[str, str], tuple[float, float]] = MappingProxyType(
    {
        # Solder pots run below 400 C; type-K reaches 1300 C, but a reading beyond 800 C at a
        # solder pot is a broken input (and a BAD PV switches the heater off, as a trip would).
        ("temp_controller", "pv_c"): (-50.0, 800.0),
        ("temp_controller", "sv_c"): (-50.0, 800.0),
        # Controllers report the manipulated variable from -5 % to 105 % (Omron H175 s.5).
        ("temp_controller", "output_pct"): (-5.0, 105.0),
        # kPa below atmosphere: a vacuum cannot exceed one atmosphere (101.3 kPa).
        ("remote_io", "vacuum_kpa"): (-5.0, 105.0),
        ("remote_io", "flux_level_pct"): (-5.0, 105.0),
        ("remote_io", "n2_flow_lpm"): (-1.0, 1000.0),
        # z is the lowering from the top, positive down: a negative z beyond encoder noise is not
        # "above the top", it is a broken reading.
        ("holder_drive", "z_mm"): (-1.0, 1000.0),
    }
)
#: By unit, for any other analog point.
UNIT_RANGES: MappingProxyType[str, tuple[float, float]] = MappingProxyType(
    {
        "C": (-50.0, 1300.0),
        "%": (-5.0, 105.0),
        "kPa": (-5.0, 105.0),
        "mm": (-1.0, 1000.0),
        "mm/s": (0.0, 1000.0),
        "L/min": (-1.0, 1000.0),
        "ppm": (0.0, 1_000_000.0),
    }
)
_SIGNED_SENTINELS = {"int16": (0x8000, 0x7FFF), "int32": (0x8000_0000, 0x7FFF_FFFF)}


def plausible_range(kind: str, name: str, point: Point) -> tuple[float, float] | None:
    """The point's plausible engineering range, or None (a status word, a code, a counter)."""
    if point.range is not None:
        return point.range
    if not point.unit or point.is_bit or point.type == "bool":
        return None
    return KIND_RANGES.get((kind, name), UNIT_RANGES.get(point.unit))


def sentinels(point: Point) -> frozenset[int]:
    """Raw values (unsigned) that mean "no value"."""
    mask = UINT32_MAX if point.width == 2 else UINT16_MAX
    if point.sentinels is not None:
        return frozenset(s & mask for s in point.sentinels)
    if point.unit:
        return frozenset(_SIGNED_SENTINELS.get(point.type, ()))
    return frozenset()


def implausible(kind: str, name: str, point: Point, raw: int, value: float | bool) -> str | None:
    """Why the reading is BAD, or None when it may be used."""
    if point.is_bit or isinstance(value, bool):
        return None
    if raw in sentinels(point):
        return f"sentinel raw {signed(point, raw)} ({raw:#x})"
    if not math.isfinite(value):
        return f"not a number ({value!r})"
    bounds = plausible_range(kind, name, point)
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return f"{value:g} {point.unit} outside the plausible {bounds[0]:g}..{bounds[1]:g}"
    return None

"""The point codec and the read planner: properties over every data type and scaling."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers import Bit, Point, RegisterMap
from drivers._codec import (
    MAX_REGISTERS_PER_READ,
    OutOfRange,
    decode,
    decode_bit,
    encode,
    engineering_bounds,
    plan_reads,
    raw_bounds,
    resolution,
)
from tests._util import CONFIG_DIR

scales = st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0, -0.1, -1.0])
offsets = st.sampled_from([0.0, -40.0, 100.0, 273.15, -0.5])


@st.composite
def register_points(draw: st.DrawFn) -> Point:
    return Point(
        table=draw(st.sampled_from(["input", "holding"])),
        address=draw(st.integers(0, 100)),
        type=draw(st.sampled_from(["uint16", "int16"])),
        scale=draw(scales),
        offset=draw(offsets),
        writable=False,
    )


@given(register_points(), st.data())
def test_round_trip_within_resolution(point: Point, data: st.DataObject) -> None:
    lo, hi = engineering_bounds(point)
    value = data.draw(st.floats(lo, hi, allow_nan=False))
    try:
        raw = encode("p", point, value)
    except OutOfRange:
        # Only a value within half a count of the edge may round out of range.
        assert min(abs(value - lo), abs(value - hi)) <= resolution(point) / 2 + 1e-9
        return
    assert 0 <= raw <= 0xFFFF
    back = decode(point, raw)
    assert isinstance(back, float)
    assert abs(back - value) <= resolution(point) / 2 + 1e-9 * max(1.0, abs(value))


@given(register_points(), st.integers(0, 0xFFFF))
def test_raw_round_trip_is_exact(point: Point, raw: int) -> None:
    assert encode("p", point, decode(point, raw)) == raw


@given(st.integers(-0x8000, 0x7FFF))
def test_int16_sign(value: int) -> None:
    p = Point(table="input", address=0, type="int16")
    raw = value & 0xFFFF
    assert decode(p, raw) == value
    assert encode("p", p, float(value)) == raw
    assert (decode(p, raw) < 0) == (raw >= 0x8000)


@given(st.integers(0, 0xFFFF))
def test_uint16_never_negative(raw: int) -> None:
    p = Point(table="input", address=0, type="uint16", scale=0.1)
    assert decode(p, raw) == pytest.approx(raw * 0.1)


@given(register_points(), st.floats(min_value=-1e9, max_value=1e9))
def test_out_of_range_refused_naming_point_and_bound(point: Point, value: float) -> None:
    lo, hi = engineering_bounds(point)
    margin = resolution(point)
    assume(value < lo - margin or value > hi + margin)
    with pytest.raises(OutOfRange) as info:
        encode("sv_c", point, value)
    message = str(info.value)
    assert "'sv_c'" in message
    bound = f"minimum {lo:g}" if value < lo else f"maximum {hi:g}"
    assert bound in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_refused(value: float) -> None:
    with pytest.raises(OutOfRange, match="not a finite number"):
        encode("sv_c", Point(table="holding", address=0, writable=True), value)


def test_bools() -> None:
    coil = Point(table="coil", address=0, type="bool", writable=True)
    assert encode("c", coil, True) == 1
    assert encode("c", coil, 0) == 0
    assert decode(coil, 1) is True
    with pytest.raises(OutOfRange, match="not a bool"):
        encode("c", coil, 2)


@given(st.integers(0, 0xFFFF), st.integers(0, 15))
def test_bits_of_a_word(word: int, bit: int) -> None:
    assert decode_bit(Bit(word="status", bit=bit), word) == bool(word & (1 << bit))


def test_bounds_of_types() -> None:
    assert raw_bounds(Point(table="input", address=0, type="int16")) == (-0x8000, 0x7FFF)
    assert engineering_bounds(Point(table="input", address=0, scale=-1.0)) == (-65535.0, 0.0)


def test_plan_merges_consecutive_addresses_per_table() -> None:
    io = RegisterMap.model_validate(
        {
            "name": "io",
            "points": {
                **{f"di{i}": {"table": "discrete", "address": i, "type": "bool"} for i in range(8)},
                "a": {"table": "holding", "address": 0},
                "b": {"table": "holding", "address": 1},
                "gap": {"table": "holding", "address": 5},
                "c": {"table": "input", "address": 3},
            },
        }
    )
    blocks = plan_reads(io)
    assert [(b.table, b.address, b.count) for b in blocks] == [
        ("discrete", 0, 8),
        ("input", 3, 1),
        ("holding", 0, 2),
        ("holding", 5, 1),
    ]
    assert blocks[2].points == (("a", 0), ("b", 1))


def test_plan_of_the_shipped_maps_is_one_request_per_table() -> None:
    from drivers import load_register_map

    # The I/O module's coils and watchdog registers and the drive's targets are written (and
    # read back), not polled.
    for name, requests in (("tc-generic", 2), ("io-generic", 2), ("holder-generic", 1)):
        regmap = load_register_map(CONFIG_DIR / "maps" / f"{name}.toml")
        assert len(plan_reads(regmap)) == requests


def _map(**points: dict[str, object]) -> RegisterMap:
    """A register map of these points (name: its fields)."""
    return RegisterMap.model_validate({"name": "m", "points": points})


def test_points_that_are_not_polled_are_left_out_of_the_plan() -> None:
    regmap = _map(
        pv={"table": "input", "address": 0},
        target={"table": "holding", "address": 0, "writable": True, "poll": False},
    )
    assert [b.table for b in plan_reads(regmap)] == ["input"]
    with pytest.raises(ValidationError, match="must be writable"):
        _map(pv={"table": "input", "address": 0, "poll": False})


def test_readback_can_be_left_out_of_writable_points_only() -> None:
    regmap = _map(beat={"table": "holding", "address": 0, "writable": True, "readback": False})
    assert not regmap.points["beat"].readback
    with pytest.raises(ValidationError, match="readback applies to a writable point only"):
        _map(pv={"table": "input", "address": 0, "readback": False})


def test_plan_splits_at_the_request_size_limit() -> None:
    big = RegisterMap.model_validate(
        {
            "name": "big",
            "points": {f"r{i}": {"table": "input", "address": i} for i in range(300)},
        }
    )
    counts = [b.count for b in plan_reads(big)]
    assert counts == [MAX_REGISTERS_PER_READ, MAX_REGISTERS_PER_READ, 50]

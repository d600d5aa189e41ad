"""The map language: data types, word/byte order, address base, codes, sentinels, plausibility."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers import Bit, Point, RegisterMap
from drivers._codec import (
    BadValue,
    OutOfRange,
    decode,
    decode_bit,
    encode,
    plan_reads,
    raw_to_words,
    words_to_raw,
)
from drivers._plausible import implausible

orders = st.sampled_from(["high_low", "low_high"])
bytes_ = st.sampled_from(["big", "little"])


@given(st.sampled_from(["int32", "uint32"]), orders, bytes_, st.integers(-(2**31), 2**31 - 1))
def test_32_bit_round_trip_through_words(kind: str, wo: str, bo: str, n: int) -> None:
    p = Point.model_validate(
        {
            "table": "holding",
            "address": 0,
            "type": kind,
            "word_order": wo,
            "byte_order": bo,
            "writable": True,
        }
    )
    if kind == "uint32":
        n = abs(n)
    raw = encode("x", p, n)
    words = raw_to_words(p, raw)
    assert len(words) == 2 and all(0 <= w <= 0xFFFF for w in words)
    assert decode(p, words_to_raw(p, words)) == n


def test_word_and_byte_order_as_the_manuals_show_them() -> None:
    # 0x12345678: high word first (Modbus convention), or low word first (many Watlow/Autonics
    # set-ups), and bytes swapped within each word.
    def point(wo: str, bo: str) -> Point:
        return Point.model_validate(
            {"table": "input", "address": 0, "type": "uint32", "word_order": wo, "byte_order": bo}
        )

    assert raw_to_words(point("high_low", "big"), 0x12345678) == [0x1234, 0x5678]
    assert raw_to_words(point("low_high", "big"), 0x12345678) == [0x5678, 0x1234]
    assert raw_to_words(point("high_low", "little"), 0x12345678) == [0x3412, 0x7856]
    f = Point(table="input", address=0, type="float32", word_order="low_high")
    # 1.5f = 0x3FC00000
    assert decode(f, words_to_raw(f, [0x0000, 0x3FC0])) == 1.5
    assert decode(Point(table="input", address=0, type="int32"), 0xFFFFFC18) == -1000


def test_decimal_point_and_scale() -> None:
    p = Point(table="holding", address=0, type="int16", writable=True, unit="C")
    assert decode(p, 2505, dp=1) == pytest.approx(250.5)
    assert encode("sv_c", p, 250.5, dp=1) == 2505
    assert encode("sv_c", p, 250.0, dp=0) == 250
    with pytest.raises(OutOfRange, match="sv_c"):
        encode("sv_c", p, 4000.0, dp=1)


def test_register_bool_with_command_codes() -> None:
    run = Point(
        table="holding",
        address=0,
        type="bool",
        writable=True,
        true_value=0x0100,
        false_value=0x0101,
        poll=False,
        command=True,
    )
    assert encode("running", run, True) == 0x0100
    assert encode("running", run, False) == 0x0101
    assert decode(run, 0x0101) is False
    with pytest.raises(BadValue):
        decode(run, 0x0200)
    with pytest.raises(ValidationError, match="true_value"):
        Point(table="holding", address=0, type="bool")


def test_inverted_coil_and_code_bits() -> None:
    valve = Point(table="coil", address=0, type="bool", writable=True, invert=True)
    assert encode("vacuum_valve", valve, True) == 0
    assert decode(valve, 0) is True
    assert decode_bit(Bit(word="s", bit=17), 1 << 17) is True
    assert decode_bit(Bit(word="s", bit=3, invert=True), 0) is True
    assert decode_bit(Bit(word="s", equals=2), 2) is True
    assert decode_bit(Bit(word="s", equals=2), 3) is False
    assert decode_bit(Bit(word="s", any_of=[1, 2, 3], mask=0xFF), 0x0102) is True
    with pytest.raises(ValidationError, match="exactly one"):
        Bit(word="s", bit=1, equals=2)


def test_address_base_and_read_address() -> None:
    m = RegisterMap.model_validate(
        {
            "name": "m",
            "address_base": {"holding": 40001, "input": 30001},
            "word_order": "low_high",
            "points": {
                "pv": {"table": "input", "address": 30001, "type": "int32"},
                "out": {"table": "input", "address": 30003},
                "sv": {"table": "holding", "address": 40010, "writable": True},
                "do": {
                    "table": "coil",
                    "address": 0,
                    "read_address": 0x200,
                    "type": "bool",
                    "writable": True,
                },
            },
        }
    )
    assert m.points["pv"].wire_address == 0 and m.points["pv"].word_order == "low_high"
    assert m.points["sv"].wire_address == 9
    blocks = {b.table: b for b in plan_reads(m)}
    assert (blocks["input"].address, blocks["input"].count) == (0, 3)
    assert blocks["input"].points == (("pv", 0), ("out", 2))
    assert blocks["coil"].address == 0x200
    with pytest.raises(ValidationError, match="below the map's address_base"):
        RegisterMap.model_validate(
            {"name": "m", "address_base": 1, "points": {"a": {"table": "input", "address": 0}}}
        )
    with pytest.raises(ValidationError, match="share"):
        RegisterMap.model_validate(
            {
                "name": "m",
                "points": {
                    "a": {"table": "input", "address": 0, "type": "int32"},
                    "b": {"table": "input", "address": 1},
                },
            }
        )


def test_sentinels_and_implausible_values_are_bad() -> None:
    pv = Point(table="input", address=0, type="int16", scale=0.1, unit="C")
    assert implausible("temp_controller", "pv_c", pv, 2500, 250.0) is None
    # -3276.8 C: the int16 extreme, an open thermocouple by default
    assert implausible("temp_controller", "pv_c", pv, 0x8000, -3276.8) is not None
    assert implausible("temp_controller", "pv_c", pv, 0x7FFF, 3276.7) is not None
    vac = Point(table="input", address=0, scale=0.1, unit="kPa")
    assert implausible("remote_io", "vacuum_kpa", vac, 32768, 3276.8) is not None
    assert implausible("remote_io", "vacuum_kpa", vac, 600, 60.0) is None
    z = Point(table="input", address=0, type="int16", scale=0.1, unit="mm")
    assert implausible("holder_drive", "z_mm", z, (-50) & 0xFFFF, -5.0) is not None
    vendor = Point(table="input", address=0, type="int16", unit="C", sentinels=[31000])
    assert implausible("temp_controller", "pv_c", vendor, 31000, 31000.0) is not None
    ranged = Point(table="input", address=0, unit="C", range=(0.0, 400.0))
    assert implausible("temp_controller", "pv_c", ranged, 401, 401.0) is not None
    f = Point(table="input", address=0, type="float32", unit="C")
    assert implausible("temp_controller", "pv_c", f, 0x7FC00000, math.nan) is not None
    status = Point(table="input", address=0)
    assert implausible("temp_controller", "status", status, 0xFFFF, 65535.0) is None


def test_map_rules_name_what_is_wrong() -> None:
    base = {"name": "m", "points": {"s": {"table": "input", "address": 0}}}
    with pytest.raises(ValidationError, match="beyond"):
        RegisterMap.model_validate({**base, "bits": {"b": {"word": "s", "bit": 20}}})
    with pytest.raises(ValidationError, match="setup"):
        RegisterMap.model_validate({**base, "setup": [{"point": "s", "value": 1}]})
    with pytest.raises(ValidationError, match="write_function 'multiple'"):
        Point(table="holding", address=0, type="int32", writable=True, write_function="single")
    with pytest.raises(ValidationError, match="decimal_point"):
        RegisterMap.model_validate(
            {"name": "m", "points": {"pv": {"table": "input", "address": 0, "decimal_point": "dp"}}}
        )


def test_a_write_block_must_be_consecutive_writable_points() -> None:
    points = {
        "a": {"table": "holding", "address": 0, "type": "int32", "writable": True},
        "b": {"table": "holding", "address": 3, "writable": True},
    }
    with pytest.raises(ValidationError, match=r"blocks\.dd: 'b' does not follow"):
        RegisterMap.model_validate(
            {"name": "m", "points": points, "blocks": {"dd": {"points": ["a", "b"]}}}
        )
    points["b"]["address"] = 2
    RegisterMap.model_validate(
        {"name": "m", "points": points, "blocks": {"dd": {"points": ["a", "b"]}}}
    )

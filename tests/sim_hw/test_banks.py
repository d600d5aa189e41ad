"""Register banks: by name in engineering units, raw by table and address, as the map says."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import load_register_map
from sim_hw import AddressError, RegisterBank
from tests._util import CONFIG_DIR

TC_MAP = load_register_map(CONFIG_DIR / "maps" / "tc-generic.toml")
HOLDER_MAP = load_register_map(CONFIG_DIR / "maps" / "holder-generic.toml")


def test_points_and_bits_by_name() -> None:
    bank = RegisterBank("heater1", TC_MAP)
    bank.set("pv_c", -12.3)
    assert bank.get_raw("pv_c") == 0x10000 - 123  # int16, 0.1 C
    assert bank.get("pv_c") == pytest.approx(-12.3)
    bank.set("tc_open", True)
    bank.set("running", True)
    assert bank.get_raw("status") == 0b1001
    bank.set("tc_open", False)
    assert bank.get("status") == 0b1000 and bank.get("running") is True
    with pytest.raises(KeyError, match="no point 'nope'"):
        bank.get("nope")


def test_measurements_saturate_at_the_ends_of_the_range() -> None:
    bank = RegisterBank("heater1", TC_MAP)
    bank.set("pv_c", math.inf)
    assert bank.get("pv_c") == pytest.approx(3276.7)
    bank.set("pv_c", -1e9)
    assert bank.get("pv_c") == pytest.approx(-3276.8)
    bank.set("output_pct", -5)  # uint16
    assert bank.get("output_pct") == 0


def test_raw_access_is_limited_to_mapped_addresses() -> None:
    bank = RegisterBank("holder", HOLDER_MAP)
    assert bank.read("input", 0, 3) == [0, 0, 0]
    with pytest.raises(AddressError):
        bank.read("input", 0, 4)
    with pytest.raises(AddressError):
        bank.read("coil", 0, 1)
    with pytest.raises(AddressError):  # holding 6 is not mapped, and nothing is half-written
        bank.write("holding", 4, [1, 2, 3])
    assert bank.get("heartbeat") == 0 and bank.get("comm_timeout_s") == 0


def test_master_writes_are_counted_even_with_the_same_value() -> None:
    bank = RegisterBank("holder", HOLDER_MAP)
    bank.write("holding", 1, [250, 100])
    bank.write_point("z_target_mm", 25.0)
    assert bank.write_seq("z_target_mm") == 2 and bank.write_seq("z_speed_mm_s") == 1
    bank.set("z_target_mm", 1.0)  # the device itself: not a master write
    assert bank.write_seq("z_target_mm") == 2
    with pytest.raises(AddressError):
        bank.write_point("z_mm", 1.0)


def test_a_write_hook_decides_what_the_device_keeps_at_the_write() -> None:
    bank = RegisterBank("holder", HOLDER_MAP)
    seen: list[tuple[int, int, float]] = []

    def capped(old: int, written: int) -> int:
        # Called once the whole request is in: the other register of it is already there.
        seen.append((old, written, float(bank.get("z_speed_mm_s"))))
        return min(written, 500)

    bank.hook_write("z_target_mm", capped)
    bank.write("holding", 1, [900, 100])
    assert bank.get("z_target_mm") == pytest.approx(50.0)  # kept, not written
    assert seen == [(0, 900, pytest.approx(10.0))]
    assert bank.write_seq("z_target_mm") == 1  # still a master's write
    with pytest.raises(AddressError):  # refused requests (holding 6 is unmapped) reach no hook
        bank.write("holding", 1, [1, 2, 3, 4, 5, 6])
    assert len(seen) == 1
    with pytest.raises(KeyError):
        bank.hook_write("nope", capped)


@given(st.floats(min_value=-3276.8, max_value=3276.7, allow_nan=False))
def test_int16_tenths_round_trip_within_resolution(value: float) -> None:
    bank = RegisterBank("heater1", TC_MAP)
    bank.set("sv_c", value)
    assert bank.get("sv_c") == pytest.approx(value, abs=0.05 + 1e-9)

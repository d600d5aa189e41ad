"""Every fault of the contract shows its effect in the physics, and clears."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sim_hw import FAULT_NAMES, BoothPhysics, FaultError

from .conftest import physics_for, run_until


def _running_heater(p: BoothPhysics, sv_c: float = 300.0) -> None:
    p.banks["io"].write_point("heater_contactor", True)
    p.banks["heater1"].write_point("sv_c", sv_c)
    p.banks["heater1"].write_point("run", 1)


def _holding_a_part(p: BoothPhysics) -> None:
    p.banks["io"].write_point("vacuum_pump", True)
    p.banks["io"].write_point("vacuum_valve", True)
    run_until(p, lambda: p.part.present, max_s=2, what="part picked")


def _check_door_open(p: BoothPhysics) -> None:
    start_ppm = p.o2_ppm
    p.step(10)
    assert p.banks["io"].get("door_closed") is False
    assert p.o2_ppm > start_ppm + 20_000


def _check_estop(p: BoothPhysics) -> None:
    _running_heater(p)
    p.step(1)
    assert p.banks["io"].get("estop_ok") is False
    assert p.controllers["heater1"].output_pct > 0
    assert not p.state()["heater_on"]  # the e-stop circuit opens the contactor by wire


def _check_exhaust_fail(p: BoothPhysics) -> None:
    p.banks["io"].write_point("exhaust_fan", True)
    p.step(0.1)
    assert p.banks["io"].get("exhaust_ok") is False


def _check_n2_supply_loss(p: BoothPhysics) -> None:
    p.banks["io"].write_point("n2_purge", True)
    p.step(1)
    io = p.banks["io"]
    assert io.get("n2_supply_ok") is False
    assert io.get("n2_flow_lpm") == 0
    assert not p.state()["n2_purge_on"]


def _check_o2_leak(p: BoothPhysics) -> None:
    p.banks["io"].write_point("n2_purge", True)
    assert p.o2_ppm == 5000  # at once
    p.step(5)
    assert p.o2_ppm == 5000  # and it stays, whatever the purge does
    assert p.analyzer.reported_ppm == pytest.approx(5000, rel=0.01)


def _check_o2_analyzer_silent(p: BoothPhysics) -> None:
    # The physics goes on (the cell still measures); the serial line is silent (test_servers).
    seq = p.analyzer.report_seq
    p.step(1)
    assert p.analyzer.report_seq > seq
    assert "o2_analyzer_silent" in p.faults


def _check_tc_open(p: BoothPhysics) -> None:
    _running_heater(p)
    p.step(1)
    tc = p.banks["heater1"]
    assert tc.get("tc_open") is True
    assert tc.get("pv_c") == pytest.approx(3276.7)  # over range
    assert tc.get("output_pct") == 0  # the controller's own burn-out protection
    assert not p.state()["heater_on"]


def _check_heater_stuck_on(p: BoothPhysics) -> None:
    p.banks["io"].write_point("heater_contactor", True)
    start_c = p.vessels["solder1"].temp_c
    p.step(30)
    assert p.banks["heater1"].get("output_pct") == 0
    assert p.vessels["solder1"].temp_c > start_c + 5


def _check_heater_dead(p: BoothPhysics) -> None:
    _running_heater(p)
    start_c = p.vessels["solder1"].temp_c
    p.step(30)
    assert p.banks["heater1"].get("output_pct") == 100
    assert not p.state()["heater_on"]
    assert p.vessels["solder1"].temp_c < start_c


def _check_high_limit_trip(p: BoothPhysics) -> None:
    _running_heater(p)
    p.step(1)
    assert p.banks["io"].get("high_limit_ok") is False
    assert p.state()["high_limit_tripped"] and not p.state()["heater_on"]


def _check_vacuum_leak(p: BoothPhysics) -> None:
    io, s = p.banks["io"], p.settings
    hold_kpa = p.config.holder.vacuum_hold_kpa
    # A leak in the line: the vacuum decays over a fraction of a second, not at once ...
    p.step(0.25)
    assert io.get("vacuum_kpa") > hold_kpa and p.part.present
    # ... to what the pump still holds against it: below the hold, above the part's release.
    p.step(3.0)
    assert io.get("vacuum_kpa") == pytest.approx(s.vacuum_leak_kpa, abs=0.5)
    assert s.part_release_kpa < s.vacuum_leak_kpa < hold_kpa
    assert not p.part.present  # no longer held on the load nest: put back, not dropped
    assert p.state()["parts_put_back"] == 1 and p.state()["parts_dropped"] == 0


def _check_hoist_stall(p: BoothPhysics) -> None:
    h = p.banks["holder"]
    h.write_point("z_target_mm", 50)
    p.step(1)
    assert h.get("stall") is True
    assert h.get("z_mm") == 0
    assert not h.get("moving") and not h.get("in_position")


def _check_flux_low(p: BoothPhysics) -> None:
    p.step(0.1)
    assert p.banks["io"].get("flux_level_pct") == pytest.approx(p.settings.flux_low_pct)


def _check_device_offline(p: BoothPhysics) -> None:
    # The physics goes on; the endpoint falls silent (test_servers).
    start_t = p.t_s
    p.step(1)
    assert p.t_s > start_t and p.faults.offline("io")
    assert p.state()["fault_values"]["device_offline"] == ["io"]


Step = Callable[[BoothPhysics], None]
#: name -> (value, set-up before the injection, check after it)
CASES: dict[str, tuple[Any, Step | None, Step]] = {
    "door_open": (None, None, _check_door_open),
    "estop": (None, None, _check_estop),
    "exhaust_fail": (None, None, _check_exhaust_fail),
    "n2_supply_loss": (None, None, _check_n2_supply_loss),
    "o2_leak": ("5000", None, _check_o2_leak),
    "o2_analyzer_silent": (None, None, _check_o2_analyzer_silent),
    "tc_open": (None, None, _check_tc_open),
    "heater_stuck_on": (None, None, _check_heater_stuck_on),
    "heater_dead": (None, None, _check_heater_dead),
    "high_limit_trip": (None, None, _check_high_limit_trip),
    "vacuum_leak": (None, _holding_a_part, _check_vacuum_leak),
    "hoist_stall": (None, None, _check_hoist_stall),
    "flux_low": (None, None, _check_flux_low),
    "device_offline": ("io", None, _check_device_offline),
}


def test_every_contract_fault_has_a_case() -> None:
    assert set(CASES) == set(FAULT_NAMES)
    assert len(FAULT_NAMES) == 14


@pytest.mark.parametrize("name", FAULT_NAMES)
def test_fault_shows_its_effect_and_clears(name: str) -> None:
    p = physics_for()
    value, setup, check = CASES[name]
    if setup is not None:
        setup(p)
    p.inject(name, value)
    assert name in p.state()["faults"]
    check(p)
    p.clear(name)
    p.step(0.1)
    assert p.state()["faults"] == []


def test_clear_without_a_name_clears_every_fault(physics: BoothPhysics) -> None:
    physics.inject("door_open")
    physics.inject("device_offline", "holder")
    physics.inject("device_offline", "o2")
    assert physics.state()["fault_values"] == {"device_offline": ["holder", "o2"]}
    physics.clear()
    assert physics.state()["faults"] == [] and not physics.faults.offline("o2")


def test_a_stall_stays_until_fault_reset(physics: BoothPhysics) -> None:
    h = physics.banks["holder"]
    physics.inject("hoist_stall")
    physics.step(0.1)
    physics.clear("hoist_stall")
    h.write_point("z_target_mm", 20)
    physics.step(0.5)
    assert h.get("stall") and h.get("z_mm") == 0
    h.write_point("fault_reset", 1)
    physics.step(0.05)
    assert not h.get("stall") and h.get("fault_reset") == 0
    run_until(physics, lambda: h.get("z_mm") == 20, max_s=2, what="z moves again")


def test_a_per_vessel_fault_names_its_vessel(physics: BoothPhysics) -> None:
    physics.inject("tc_open", "solder1")
    assert physics.faults.on_vessel("tc_open", "solder1")
    with pytest.raises(FaultError, match="not a vessel"):
        physics.inject("heater_dead", "solder9")


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("no_such_fault", None, "unknown fault"),
        ("o2_leak", None, "numeric"),
        ("o2_leak", "2e6", "outside"),
        ("device_offline", None, "needs --value DEVICE"),
        ("device_offline", "nope", "one of: heater1, holder, io, o2"),
        ("door_open", "1", "takes no value"),
        ("vacuum_leak", "lots", "numeric"),
        ("vacuum_leak", "-1", "outside"),
        ("vacuum_leak", "150", "outside"),
    ],
)
def test_bad_faults_are_refused_by_name(name: str, value: Any, match: str) -> None:
    p = physics_for()
    with pytest.raises(FaultError, match=match):
        p.inject(name, value)
    assert p.state()["faults"] == []

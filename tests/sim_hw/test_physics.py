"""The booth's physics on a virtual clock: heat, atmosphere, holder, part, watchdog."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from sim_hw import AddressError, BoothPhysics

from .conftest import physics_for, run_until


def heat(p: BoothPhysics, setpoint_c: float = 250.0) -> None:
    """As a supervisor would: contactor closed, controller running at the setpoint."""
    p.banks["io"].write_point("heater_contactor", True)
    tc = p.banks["heater1"]
    tc.write_point("sv_c", setpoint_c)
    tc.write_point("run", 1)


def temp(p: BoothPhysics) -> float:
    return p.vessels["solder1"].temp_c


def test_heat_up_slows_through_the_melting_plateau(cold: BoothPhysics) -> None:
    vessel = cold.vessels["solder1"]
    solidus_c = vessel.p.solidus_c
    heat(cold)
    # Solid, well below the melting point: the time for a 20 K rise.
    run_until(cold, lambda: temp(cold) >= solidus_c - 40, max_s=600, what="130 C")
    rise_s = run_until(cold, lambda: temp(cold) >= solidus_c - 20, max_s=600, what="163 C")
    # The plateau: from the start of melting to all liquid, the temperature barely moves.
    run_until(cold, lambda: vessel.liquid_fraction > 0, max_s=600, what="melting starts")
    temp_at_start_c = temp(cold)
    plateau_s = run_until(cold, lambda: vessel.liquid_fraction >= 1.0, max_s=1200, what="molten")
    assert temp(cold) - temp_at_start_c < 1.0
    assert plateau_s > 5 * rise_s, (plateau_s, rise_s)
    # Liquid again: the temperature climbs to the setpoint and the controller holds it.
    run_until(cold, lambda: temp(cold) >= 245, max_s=600, what="near the setpoint")
    cold.step(1800)
    assert temp(cold) == pytest.approx(250.0, abs=1.0)
    assert 0 < cold.controllers["heater1"].output_pct < 100


def test_the_warm_booth_is_ready_within_seconds(physics: BoothPhysics) -> None:
    """What a supervisor's reset does: N2 maintain on, heater on; the booth is ready at once."""
    physics.banks["io"].write_point("n2_maintain", True)
    heat(physics)
    run_until(
        physics,
        lambda: (
            abs(temp(physics) - 250.0) < 5.0
            and physics.analyzer.reported_ppm < 1000
            and physics.analyzer.status == "OK"
        ),
        max_s=10,
        what="solder in band, O2 under 1000 ppm",
    )


def test_without_heat_the_solder_cools_toward_ambient(physics: BoothPhysics) -> None:
    start_c = temp(physics)
    physics.step(600)
    assert temp(physics) < start_c - 20
    assert not physics.state()["heater_on"]


def test_purge_drives_o2_down_exponentially(cold: BoothPhysics) -> None:
    cold.banks["io"].write_point("n2_purge", True)
    cold.banks["io"].write_point("n2_maintain", False)
    s = cold.settings
    flow_lpm = s.n2_purge_lpm + s.leak_lpm
    target_ppm = (s.n2_purge_lpm * s.n2_o2_ppm + s.leak_lpm * s.air_o2_ppm) / flow_lpm
    tau_s = cold.config.booth.volume_l / flow_lpm * 60
    c0 = cold.o2_ppm
    samples = []
    for _ in range(4):
        cold.step(tau_s)
        samples.append(cold.o2_ppm)
    # Each time constant divides the distance to the target by e.
    distances = [c0 - target_ppm] + [c - target_ppm for c in samples]
    for before, after in itertools.pairwise(distances):
        assert before / after == pytest.approx(math.e, rel=0.01)
    run_until(cold, lambda: cold.o2_ppm < 100, max_s=600, what="O2 under 100 ppm")


def test_door_open_drives_o2_up_and_closing_lets_the_purge_win(physics: BoothPhysics) -> None:
    physics.step(1)
    start_ppm = physics.o2_ppm
    assert start_ppm < 1000
    physics.inject("door_open")
    physics.step(5)
    assert physics.o2_ppm > start_ppm + 10_000
    run_until(physics, lambda: physics.o2_ppm > 150_000, max_s=120, what="near air")
    physics.clear("door_open")
    physics.banks["io"].write_point("n2_purge", True)
    run_until(physics, lambda: physics.o2_ppm < 1000, max_s=600, what="purged again")


def test_stuck_on_heater_rises_with_the_controller_output_off(physics: BoothPhysics) -> None:
    physics.banks["io"].write_point("heater_contactor", True)  # controller stopped: output 0
    start_c = temp(physics)
    physics.step(60)
    assert temp(physics) < start_c
    physics.inject("heater_stuck_on")
    cooled_c = temp(physics)
    physics.step(60)
    assert physics.banks["heater1"].get("output_pct") == 0
    assert temp(physics) > cooled_c + 10
    assert physics.state()["heater_on"]


def test_high_limit_opens_the_contactor_latched_until_reset() -> None:
    p = physics_for(edit=lambda d: d["sim"].update(high_limit_c=270.0))
    p.banks["io"].write_point("heater_contactor", True)
    p.inject("heater_stuck_on")
    run_until(p, lambda: p.high_limit_tripped, max_s=600, what="high-limit trip")
    io = p.banks["io"]
    assert io.get("high_limit_ok") is False
    assert io.get("heater_contactor") is True  # the coil is as written; the relay cuts it
    p.step(1)
    assert not p.state()["heater_on"]
    # Cooled well below the limit, still latched: only the reset button clears it.
    run_until(p, lambda: temp(p) < 255, max_s=1200, what="cooled")
    assert p.high_limit_tripped
    p.clear("high_limit_trip")
    p.step(0.1)
    assert io.get("high_limit_ok") is True
    assert p.state()["heater_on"]  # still stuck on: heats again


def test_controller_forces_output_off_on_comm_loss(physics: BoothPhysics) -> None:
    tc = physics.banks["heater1"]
    heat(physics, 300)
    tc.write_point("heartbeat", 1)
    physics.step(1.0)
    assert tc.get("running") and tc.get("output_pct") > 0
    timeout_s = float(tc.get("comm_timeout_s"))
    assert timeout_s == 2.0
    physics.step(timeout_s + 0.1)
    assert tc.get("comm_lost") and not tc.get("running")
    assert tc.get("output_pct") == 0 and tc.get("run") == 0
    # run=1 with a stale heartbeat is not enough: refused at the write, it reads back 0 ...
    tc.write_point("run", 1)
    assert tc.get("run") == 0
    physics.step(0.1)
    assert tc.get("comm_lost") and tc.get("run") == 0
    # ... a fresh heartbeat and run=1 is (at once, even before the controller's next cycle).
    tc.write_point("heartbeat", 2)
    tc.write_point("run", 1)
    assert tc.get("run") == 1
    physics.step(0.1)
    assert not tc.get("comm_lost") and tc.get("running") and tc.get("output_pct") > 0


def test_run_and_a_fresh_heartbeat_in_one_request_resume_the_controller(
    physics: BoothPhysics,
) -> None:
    tc = physics.banks["heater1"]
    heat(physics, 300)
    tc.write_point("heartbeat", 1)
    physics.step(float(tc.get("comm_timeout_s")) + 0.5)
    assert tc.get("comm_lost")
    run, heartbeat = (tc.map.points[n].address for n in ("run", "heartbeat"))
    assert heartbeat == run + 1
    tc.write("holding", run, [1, 1])  # FC 16: run = 1, heartbeat unchanged: still stale
    assert tc.get("run") == 0
    tc.write("holding", run, [1, 7])  # run = 1 with a new heartbeat
    assert tc.get("run") == 1
    physics.step(0.1)
    assert not tc.get("comm_lost") and tc.get("running")


def test_the_drive_withdraws_by_itself_when_the_heartbeat_lapses(physics: BoothPhysics) -> None:
    h = physics.banks["holder"]
    timeout_s = float(h.get("comm_timeout_s"))
    assert timeout_s == 1.0  # from the booth config
    # Nobody has talked to the drive yet: nothing to lose, it stays where it is told.
    h.write_point("z_target_mm", 100.0)
    physics.step(timeout_s + 1.0)
    assert h.get("z_mm") == pytest.approx(100.0) and not h.get("comm_lost")
    h.write_point("heartbeat", 1)  # armed
    physics.step(timeout_s - 0.1)
    assert h.get("z_mm") == pytest.approx(100.0) and not h.get("comm_lost")
    physics.step(0.2)
    assert h.get("comm_lost")
    assert h.get("z_target_mm") == 0.0  # its own target: the top
    speed = physics.config.holder.z_fast_speed_mm_s
    run_until(physics, lambda: h.get("limit_top"), max_s=100.0 / speed + 0.5, what="at the top")
    assert physics.state()["holder_comm_lost"]
    # A master with a stale heartbeat cannot send it down again: refused at the write ...
    h.write_point("z_target_mm", 100.0)
    assert h.get("z_target_mm") == 0.0
    physics.step(0.5)
    assert h.get("z_mm") == 0.0
    # ... a fresh heartbeat clears comm_lost, and the master's targets count from its next write.
    h.write_point("heartbeat", 2)
    h.write_point("z_target_mm", 30.0)
    assert h.get("z_target_mm") == pytest.approx(30.0)
    physics.step(0.05)
    assert not h.get("comm_lost")
    run_until(physics, lambda: h.get("in_position"), max_s=2.0, what="lowered again")
    assert h.get("z_mm") == pytest.approx(30.0)


def test_holder_moves_station_only_at_the_top(physics: BoothPhysics) -> None:
    h = physics.banks["holder"]
    h.write_point("z_target_mm", 50.0)
    physics.step(0.1)
    assert h.get("moving") and not h.get("in_position")
    run_until(physics, lambda: h.get("in_position"), max_s=5, what="z at 50")
    assert h.get("z_mm") == pytest.approx(50.0)
    h.write_point("station_target", 2)
    physics.step(3)
    assert h.get("station") == 0 and not h.get("in_position")
    h.write_point("z_target_mm", 0.0)
    run_until(physics, lambda: h.get("in_position"), max_s=5, what="station 2 at the top")
    assert h.get("station") == 2 and h.get("limit_top")
    # A move to another station takes the configured travel time.
    h.write_point("station_target", 1)
    took_s = run_until(physics, lambda: h.get("station") == 1, max_s=5, what="station 1")
    assert took_s == pytest.approx(physics.settings.station_travel_s, abs=0.11)
    h.write_point("z_target_mm", 500.0)  # beyond the travel: the drive stops at its limit
    run_until(physics, lambda: h.get("limit_bottom"), max_s=5, what="bottom limit")
    assert h.get("z_mm") == pytest.approx(physics.config.holder.z_max_mm)


def go(p: BoothPhysics, station: int, z_mm: float, max_s: float = 10) -> None:
    h = p.banks["holder"]
    if h.get("station") != station:
        h.write_point("z_target_mm", 0.0)
        run_until(p, lambda: h.get("limit_top"), max_s=max_s, what="raised")
        h.write_point("station_target", station)
    h.write_point("z_target_mm", z_mm)
    p.step(0.01)  # the drive's status reflects the new targets from its next cycle on
    run_until(p, lambda: h.get("in_position"), max_s=max_s, what=f"station {station} z {z_mm}")


def test_a_suction_unit_goes_through_flux_and_solder(physics: BoothPhysics) -> None:
    io = physics.banks["io"]
    io.write_point("vacuum_pump", True)
    io.write_point("vacuum_valve", True)
    run_until(physics, lambda: physics.part.present, max_s=2, what="part picked")
    assert io.get("vacuum_kpa") >= physics.config.holder.vacuum_hold_kpa
    level_pct = io.get("flux_level_pct")

    go(physics, 1, 65.0)
    assert physics.state()["part_in_flux"] and not physics.state()["part_in_bath"]
    assert io.get("flux_level_pct") == pytest.approx(level_pct - physics.settings.flux_per_dip_pct)
    assert physics.state()["flux_dips"] == 1
    go(physics, 1, 0.0)
    assert not physics.state()["part_in_flux"]

    physics.inject("o2_leak", 750)
    go(physics, 2, 83.0)
    st = physics.state()
    assert st["part_in_bath"] and st["part_vessel"] == "solder1"
    [entry] = st["bath_entries"]
    assert entry["vessel"] == "solder1"
    assert entry["o2_ppm"] == pytest.approx(750)
    assert entry["solder_temp_c"] == pytest.approx(temp(physics), abs=0.5)
    physics.step(1.0)
    go(physics, 2, 0.0)
    entry = physics.state()["bath_entries"][0]
    assert entry["dwell_s"] > 1.0 and entry["max_depth_mm"] == pytest.approx(3.0, abs=0.01)

    go(physics, 0, 0.0)
    io.write_point("vacuum_valve", False)
    run_until(physics, lambda: not physics.part.present, max_s=2, what="part released")
    st = physics.state()
    assert (st["parts_loaded"], st["parts_unloaded"], st["parts_dropped"]) == (1, 1, 0)


def _held_in_the_bath(p: BoothPhysics) -> None:
    io = p.banks["io"]
    io.write_point("vacuum_pump", True)
    io.write_point("vacuum_valve", True)
    run_until(p, lambda: p.part.present, max_s=2, what="part picked")
    go(p, 2, 83.0)
    assert p.state()["part_in_bath"]
    assert io.get("vacuum_kpa") == pytest.approx(p.settings.vacuum_max_kpa, abs=0.5)


def test_a_vacuum_leak_leaves_a_supervisor_time_to_withdraw_the_part(
    physics: BoothPhysics,
) -> None:
    """The default leak: the vacuum decays (tau 0.5 s) to what the pump holds against it, below
    the supervisor's hold level (hold lost) but above the level at which the part falls."""
    p, io, h = physics, physics.banks["io"], physics.banks["holder"]
    hold_kpa, release_kpa = p.config.holder.vacuum_hold_kpa, p.settings.part_release_kpa
    assert release_kpa < p.settings.vacuum_leak_kpa < hold_kpa
    _held_in_the_bath(p)
    p.inject("vacuum_leak")
    lost_s = run_until(
        p, lambda: io.get("vacuum_kpa") < hold_kpa, max_s=3, what="hold lost", dt_s=0.005
    )
    assert 0.5 < lost_s < 0.8  # 0.5 s * ln(55/15): over a fraction of a second, not at once
    p.step(0.1)  # a supervisor that reacts within 100 ms ...
    h.write_point("z_target_mm", 0.0)
    h.write_point("z_speed_mm_s", p.config.holder.z_fast_speed_mm_s)
    run_until(p, lambda: not p.part.in_vessel, max_s=1, what="out of the bath", dt_s=0.005)
    assert p.part.present  # ... gets the part out before it could fall
    p.step(10.0)  # and the pump keeps it on the head for as long as it runs
    assert p.part.present and io.get("vacuum_kpa") > release_kpa
    go(p, 0, 0.0)
    run_until(p, lambda: not p.part.present, max_s=1, what="taken off at the load nest")
    st = p.state()
    assert (st["parts_unloaded"], st["parts_dropped"], st["parts_dropped_in_bath"]) == (1, 0, 0)
    assert len(st["bath_entries"]) == 1


def test_a_total_vacuum_loss_drops_the_part_into_the_bath(physics: BoothPhysics) -> None:
    """A line open to air (value 0): the part falls once the vacuum is below its release level,
    after the hold was lost, wherever the head is: over the pot, into the solder."""
    p, io = physics, physics.banks["io"]
    _held_in_the_bath(p)
    p.inject("vacuum_leak", "0")
    assert p.state()["fault_values"] == {"vacuum_leak": 0.0}
    lost_s = run_until(
        p, lambda: io.get("vacuum_kpa") < p.config.holder.vacuum_hold_kpa, max_s=3,
        what="hold lost", dt_s=0.005,
    )  # fmt: skip
    fell_s = run_until(p, lambda: not p.part.present, max_s=3, what="part falls", dt_s=0.005)
    assert lost_s == pytest.approx(0.5 * math.log(80 / 40), abs=0.02)
    assert lost_s + fell_s == pytest.approx(0.5 * math.log(80 / 20), abs=0.02)
    assert io.get("vacuum_kpa") < p.settings.part_release_kpa
    st = p.state()
    assert st["parts_dropped"] == 1 and st["parts_dropped_in_bath"] == 1
    assert st["drops"][0]["into"] == "vessel:solder1"
    assert not st["part_held"] and not st["part_in_bath"]


def test_a_leak_at_the_load_nest_keeps_the_head_from_picking(physics: BoothPhysics) -> None:
    io = physics.banks["io"]
    physics.inject("vacuum_leak")
    io.write_point("vacuum_pump", True)
    io.write_point("vacuum_valve", True)
    physics.step(3.0)
    assert io.get("vacuum_kpa") == pytest.approx(physics.settings.vacuum_leak_kpa, abs=0.5)
    assert not physics.part.present and physics.part.loaded == 0
    physics.clear("vacuum_leak")
    run_until(physics, lambda: physics.part.present, max_s=2, what="picked once it is fixed")


def test_a_chain_hanger_hangs_a_part_after_the_dwell_and_takes_it_off_when_back() -> None:
    p = physics_for(edit=lambda d: d["holder"].update(kind="chain"))
    io = p.banks["io"]
    dwell_s = p.settings.chain_dwell_s
    took_s = run_until(p, lambda: io.get("hook_engaged"), max_s=5, what="part hung")
    assert took_s == pytest.approx(dwell_s, abs=0.06)
    p.step(5 * dwell_s)
    assert io.get("hook_engaged") and p.part.loaded == 1  # not taken off before it went anywhere
    go(p, 2, 83.0)
    assert p.state()["part_in_bath"]
    p.inject("vacuum_leak")  # a chain does not care
    go(p, 0, 0.0)
    assert io.get("hook_engaged")
    run_until(p, lambda: not io.get("hook_engaged"), max_s=5, what="part taken off")
    assert (p.part.loaded, p.part.unloaded, len(p.part.drops)) == (1, 1, 0)


def test_watchdog_forces_safe_outputs_until_cleared(physics: BoothPhysics) -> None:
    io = physics.banks["io"]
    for coil in ("heater_contactor", "n2_purge", "vacuum_pump", "vacuum_valve", "light_green"):
        io.write_point(coil, True)
    io.write_point("n2_maintain", False)
    io.write_point("exhaust_fan", False)
    physics.step(2.0)
    assert not io.get("watchdog_tripped")  # not armed before the first refresh
    io.write_point("watchdog_refresh", 1)
    for _ in range(4):
        physics.step(0.2)
        io.write_point("watchdog_refresh", 1)  # the same value: a write is a refresh
    assert not io.get("watchdog_tripped")
    physics.step(0.6)
    assert io.get("watchdog_tripped")
    expected: dict[str, Any] = {
        "heater_contactor": False,
        "n2_purge": False,
        "n2_maintain": True,
        "exhaust_fan": True,
        "vacuum_pump": True,  # held: a part on the head is never dropped
        "vacuum_valve": True,
        "light_red": True,
        "light_green": False,
    }
    assert {c: io.get(c) for c in expected} == expected
    # Refused at the write itself, before any step: a readback shows what the module does.
    io.write_point("heater_contactor", True)
    assert io.get("heater_contactor") is False
    io.write("coil", 0, [1, 1, 0, 0, 0, 0])  # FC 15 over six coils: every one held
    assert {c: io.get(c) for c in expected} == expected
    physics.step(0.05)
    assert {c: io.get(c) for c in expected} == expected
    io.write_point("watchdog_clear", 1)  # acts at once, so the next write counts
    assert not io.get("watchdog_tripped") and io.get("watchdog_clear") == 0
    io.write_point("heater_contactor", True)
    assert io.get("heater_contactor") is True
    physics.step(0.05)
    assert io.get("heater_contactor") is True and not io.get("watchdog_tripped")


def test_masters_cannot_write_measured_points(physics: BoothPhysics) -> None:
    with pytest.raises(AddressError):
        physics.banks["heater1"].write_point("pv_c", 20.0)
    with pytest.raises(AddressError):
        physics.banks["io"].write("holding", 40, [1])


def test_state_carries_the_contract_keys(physics: BoothPhysics) -> None:
    st = physics.state()
    for key in (
        "solder_temp_c",
        "heater_on",
        "o2_ppm",
        "n2_purge_on",
        "door_closed",
        "estop_ok",
        "holder_z_mm",
        "part_held",
        "part_in_flux",
        "part_in_bath",
        "io_watchdog_tripped",
        "faults",
        "bath_entries",
    ):
        assert key in st, key
    assert st["solder_temp_c"] == pytest.approx(physics.settings.start_temp_c, abs=0.5)
    assert st["o2_ppm"] == pytest.approx(physics.settings.start_o2_ppm)
    assert st["door_closed"] and st["estop_ok"] and st["faults"] == []


def test_signals_and_apply_speak_the_process_image_names(physics: BoothPhysics) -> None:
    physics.apply({"io.n2_purge": True, "heater1.sv_c": 260.0, "heater1.run": 1})
    physics.step(0.5)
    sig = physics.signals()
    assert sig["io.n2_purge"] is True and sig["heater1.sv_c"] == 260.0
    assert sig["heater1.running"] is True and sig["io.door_closed"] is True
    assert sig["holder.limit_top"] is True
    assert sig["o2.ppm"] == pytest.approx(physics.analyzer.reported_ppm)
    assert sig["o2.status_ok"] is True
    physics.inject("device_offline", "io")
    physics.inject("o2_analyzer_silent")
    sig = physics.signals()
    assert not any(k.startswith(("io.", "o2.")) for k in sig)
    assert "heater1.pv_c" in sig
    physics.apply({"io.n2_purge": False})  # lost: the module does not answer
    assert physics.banks["io"].get("n2_purge") is True

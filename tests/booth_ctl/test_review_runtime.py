"""Review findings of the runtime rules (docs/safety.md, "Review findings: runtime"), on the
virtual clock: each test fails on the code before the fix.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from booth_ctl.config._booth import LimitsConfig
from booth_ctl.control._events import CommandRefused
from booth_ctl.control._heater_verify import NO_RISE, PV_FROZEN, HeaterVerifier
from booth_ctl.control._image import Names, Snapshot
from booth_ctl.control._interlocks import O2_STABLE_SAMPLES, O2Monitor
from booth_ctl.control._sequencer import Mode, Plant, Sequencer, Step
from drivers import Reading
from tests.booth_ctl._plant import Loop, demo_recipe, idle_loop, new_loop, sim_config

# ---------------------------------------------------------------- 7: undelivered outputs alarm


def test_a_device_whose_outputs_are_not_delivered_raises_an_alarm() -> None:
    loop = idle_loop()
    for _ in range(3):
        snap = dataclasses.replace(loop.plant.snapshot(), undelivered=frozenset({"heater1"}))
        loop.ctl.scan(snap)
        loop.plant.step(loop.period_s)
    alarms = {a["id"]: a for a in loop.ctl.status()["alarms"]}
    assert alarms["write_failed.heater1"]["severity"] == "alarm", alarms


def _scan_unbeaten(loop: Loop, devices: frozenset[str], n: int = 3) -> None:
    for _ in range(n):
        snap = dataclasses.replace(loop.plant.snapshot(), unbeaten=devices)
        loop.plant.outputs.update(loop.ctl.scan(snap).outputs)
        loop.plant.step(loop.period_s)


def test_a_device_whose_heartbeats_are_not_landing_keeps_the_booth_from_ready_start_and_reset(
) -> None:
    """A drive whose heartbeats are withheld (or failing) goes safe by itself within its own
    timeout: a job started then is aborted by the drive's own withdrawal (the fault matrix's
    ``device_offline:holder`` cell after another holder cell). Neither ready, a start nor a reset
    until a heartbeat has landed again; nothing trips meanwhile."""
    loop = idle_loop()
    assert loop.ctl.ready
    _scan_unbeaten(loop, frozenset({"holder"}))
    assert not loop.ctl.ready
    assert loop.ctl.status()["interlocks"]["heartbeats_ok"] is False
    with pytest.raises(CommandRefused) as refused:
        loop.ctl.start_job("LOT-HB", "demo", demo_recipe(loop.plant.loaded), 1)
    assert refused.value.code == "interlock" and "heartbeats_ok" in str(refused.value)
    assert loop.ctl.state == "idle" and not loop.ctl.tripped
    loop.ctl.stop()
    loop.run_until(lambda: loop.ctl.state == "stopped", 10.0, "stopped")
    _scan_unbeaten(loop, frozenset({"holder"}))
    with pytest.raises(CommandRefused, match="heartbeats_ok"):
        loop.ctl.reset()
    # A heartbeat landed: the same commands are taken again.
    loop.run_for(0.05)
    loop.ctl.reset()
    loop.run_until(lambda: loop.ctl.ready, 60.0, "ready")
    loop.ctl.start_job("LOT-HB", "demo", demo_recipe(loop.plant.loaded), 1)


# ---------------------------------------------------------------- 9: heater verification


def _heater_snap(t: float, pv_c: float, output_pct: float) -> Snapshot:
    return Snapshot(
        t,
        {
            "h.pv_c": Reading(round(pv_c, 1), t),
            "h.output_pct": Reading(output_pct, t),
            "h.tc_open": Reading(False, t),
            "h.comm_lost": Reading(False, t),
        },
    )


def _first_trip(ver: HeaterVerifier, samples: Any) -> tuple[float, frozenset[str]] | None:
    for t, pv, out, target in samples:
        verdict = ver.check(_heater_snap(t, pv, out), True, target)
        if verdict.trip:
            return t, verdict.trip
    return None


def test_at_setpoint_the_rise_check_uses_the_general_window_not_the_plateau_one() -> None:
    # The vessel's window is long (it must outlast the melt plateau); at the setpoint the bath is
    # molten and a dead heater pinned at 100 % must trip within the general window.
    limits = LimitsConfig(heating_check_window_s=60.0, runaway_max_error_c_s=3600.0)
    ver = HeaterVerifier("h", limits, window_s=900.0, stale_s=1.0)
    dt = 0.5
    # At 250 C for a while, then the element dies: the PV sags slowly, the output pins at 100 %.
    steady = [(i * dt, 250.0, 30.0, 250.0) for i in range(200)]
    t0 = 200 * dt
    dead = [(t0 + i * dt, 250.0 - 0.01 * i * dt, 100.0, 250.0) for i in range(1, 2400)]
    trip = _first_trip(ver, steady + dead)
    assert trip is not None and NO_RISE in trip[1], trip
    assert trip[0] - t0 <= 60.0 + 1.0, trip


def test_a_frozen_pv_at_setpoint_while_the_output_swings_trips() -> None:
    limits = LimitsConfig(heating_check_window_s=60.0)
    ver = HeaterVerifier("h", limits, window_s=60.0, stale_s=1.0)
    dt = 0.5
    # The reading sticks at 250.0 C; the controller's output swings 20 -> 60 -> 20 % (it sees
    # the same value and integrates), a bath that does not answer it.
    samples = [(i * dt, 250.0, 20.0 + 40.0 * ((i // 40) % 2), 250.0) for i in range(int(300 / dt))]
    trip = _first_trip(ver, samples)
    assert trip is not None and PV_FROZEN in trip[1], trip
    assert trip[0] <= 20.0 + 60.0 + 1.0, trip


def test_a_flat_pv_at_a_steady_output_is_equilibrium_not_frozen() -> None:
    ver = HeaterVerifier("h", LimitsConfig(), window_s=60.0, stale_s=1.0)
    samples = [(i * 0.5, 250.0, 35.0, 250.0) for i in range(2000)]
    assert _first_trip(ver, samples) is None


# ---------------------------------------------------------------- 10: O2 stable = samples


def _o2_snap(t: float, ppm: float, ts: float) -> Snapshot:
    return Snapshot(
        t,
        {
            "o2.ppm": Reading(ppm, ts),
            "o2.status_ok": Reading(True, ts),
            "io.door_closed": Reading(True, t),
            "io.n2_flow_lpm": Reading(20.0, t),
        },
    )


def test_one_o2_reading_held_fresh_is_not_stable() -> None:
    # The reading's own stale bound (5 s) outlasts the stable time (1 s): one sample stays
    # fresh all through it, and used to count as "stable".
    loaded = sim_config(o2_stable_s=1.0, o2_frozen_s=60.0)
    cfg = loaded.config
    names = dataclasses.replace(Names.of(cfg), o2_stale_s=5.0)
    mon = O2Monitor(cfg, names)
    mon.purged_l = mon.purge_needed_l
    states = [mon.update(_o2_snap(t / 10, 300.0, 0.0), 1000.0, 1.0) for t in range(40)]
    assert not any(s.ok for s in states), states[-1]


def test_o2_stable_counts_distinct_samples_by_their_timestamps() -> None:
    loaded = sim_config(o2_stable_s=1.0)
    names = Names.of(loaded.config)
    mon = O2Monitor(loaded.config, names)
    mon.purged_l = mon.purge_needed_l
    ok_at = None
    for i in range(60):
        t = i * 0.05
        ts = (i // 8) * 0.4  # a new analyzer sample every 0.4 s, scanned every 0.05 s
        ppm = 300.0 + (i // 8)
        if mon.update(_o2_snap(t, ppm, ts), 1000.0, 1.0).ok and ok_at is None:
            ok_at = t
    assert ok_at is not None
    # 1 s of time AND the samples at 0.0, 0.4, 0.8 (the third one is in at 0.8 s): 1.0 s.
    assert ok_at >= 1.0 and O2_STABLE_SAMPLES >= 3


# ---------------------------------------------------------------- 11: fast entry


def _seq_at_approach(z_age_s: float) -> tuple[Sequencer, Plant]:
    loaded = sim_config()
    cfg = loaded.config
    seq = Sequencer(cfg, "LOT", demo_recipe(loaded), 1)
    seq.unit_open, seq.unit, seq.flux_done = True, 1, True
    vessel = seq.dip.vessel
    surface = cfg.vessels[vessel].surface_z_mm
    seq.step = Step.DIP_APPROACH
    seq.z_target = surface - cfg.holder.approach_gap_mm
    perms = {k: True for k in seq.required()} | {"flux_done": True, "part_held": True}
    perms |= {f"solder_temp_ok.{vessel}": True, "solder_temp_ok": True}
    plant = Plant(
        0.0,
        seq.z_target,
        cfg.vessels[vessel].station,
        False,
        perms,
        300.0,
        {vessel: 250.0},
        z_age_s,
    )
    return seq, plant


def test_an_entry_faster_than_the_position_reading_is_refused_before_entry_and_recorded() -> None:
    seq, plant = _seq_at_approach(z_age_s=0.5)  # 0.5 s x 20 mm/s = 10 mm > the 5 mm gap
    res = seq.run(plant, Mode.RUN)
    assert seq.step is Step.REJECT_UP, seq.step
    assert [e.type for e in res.events] == ["unit_rejected"]
    assert "entry refused" in str(res.events[0].data["reason"])


def test_a_fresh_position_reading_enters_as_before() -> None:
    seq, plant = _seq_at_approach(z_age_s=0.02)
    seq.run(plant, Mode.RUN)
    assert seq.step is Step.DIP_ENTER


def test_a_condition_lost_while_an_old_reading_shows_the_part_above_counts_as_dipped() -> None:
    # Entering at 20 mm/s, the reading 0.2 s old shows the part 2 mm above the surface: it may
    # be 2 mm in. Losing a condition then rejects the unit (it used to abandon and re-dip).
    seq, plant = _seq_at_approach(z_age_s=0.0)
    seq.run(plant, Mode.RUN)
    assert seq.step is Step.DIP_ENTER
    surface = plant.z_mm + 5.0 if plant.z_mm is not None else 0.0
    perms = dict(plant.permissives) | {"door_closed": False}
    old = dataclasses.replace(plant, now=0.3, z_mm=surface - 2.0, permissives=perms, z_age_s=0.2)
    res = seq.run(old, Mode.RUN)
    assert [e.type for e in res.events] == ["unit_rejected"], res.events
    assert seq.step is Step.REJECT_UP


# ---------------------------------------------------------------- 14: exhaust lost while heating


def test_exhaust_lost_while_heating_alarms_then_takes_the_heater_to_idle_setpoint() -> None:
    loop: Loop = idle_loop()
    loaded = loop.plant.loaded
    idle_c = loaded.config.vessels["solder1"].idle_setpoint_c
    delay_s = loaded.config.limits.exhaust_loss_idle_s
    recipe = demo_recipe(loaded, dip_setpoint_c=idle_c + 15.0)
    loop.ctl.start_job("LOT-1", "demo", recipe, 1)
    loop.run_for(4.0)
    assert loop.last.outputs["heater1.sv_c"] == idle_c + 15.0
    loop.plant.exhaust_fail = True
    loop.run_for(4.0)
    ids = {a["id"] for a in loop.ctl.status()["alarms"]}
    assert "exhaust_fail" in ids, ids
    assert loop.last.outputs["heater1.sv_c"] == idle_c + 15.0  # not yet: a chatter is no cut
    loop.run_for(delay_s)
    assert loop.last.outputs["heater1.sv_c"] == idle_c
    assert "exhaust_heater_idle" in {a["id"] for a in loop.ctl.status()["alarms"]}
    loop.plant.exhaust_fail = False
    loop.run_for(1.0)
    assert loop.ctl.tripped is False
    assert loop.plant.heater_on or loop.last.outputs["heater1.run"] == 1


# ---------------------------------------------------------------- 13: adoption between stations


def test_a_holder_found_travelling_between_stations_gets_the_top_and_no_station() -> None:
    loop = new_loop()
    loop.plant.station_goal_t = 5.0  # travelling at the top, still reporting the station it left
    loop.tick()
    out = loop.last.outputs
    assert out["holder.z_target_mm"] == loop.plant.loaded.config.holder.z_travel_mm
    assert "holder.station_target" not in out

"""The controller against the simulator's own physics (pure, virtual clock, no sockets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from booth_ctl.control._sequencer import Step
from tests._util import render_config
from tests.booth_ctl._plant import demo_recipe, events_of, until_step
from tests.booth_ctl._simloop import SimLoop

TOP = 0.0


def _idle(
    config: str = "booth-sim.toml", period_s: float = 0.01, path: Path | None = None
) -> SimLoop:
    s = SimLoop(config, period_s, path)
    s.reset_to_idle()
    return s


def test_reset_and_a_demo_unit_within_the_contract_times_with_entries_matching() -> None:
    s = _idle()
    t0 = s.t
    s.ctl.start_job("LOT-S", "demo", demo_recipe(s.loaded), 1)
    s.run_until(lambda: s.ctl.state == "complete", 30.0, "one demo unit within 30 s")
    assert s.t - t0 < 30.0
    truth = s.truth()
    dips = events_of(s, "dip")
    assert len(dips) == len(truth["bath_entries"]) == 1
    entry = truth["bath_entries"][0]
    assert dips[0]["o2_ppm"] == pytest.approx(entry["o2_ppm"], abs=10.0)
    assert dips[0]["solder_temp_c"] == pytest.approx(entry["solder_temp_c"], abs=1.0)
    assert entry["o2_ppm"] <= 1000.0 and 240.0 <= entry["solder_temp_c"] <= 260.0
    assert truth["parts_dropped"] == 0 and not truth["part_in_bath"]


@pytest.mark.parametrize("holder", ["suction", "chain"])
def test_every_unit_is_a_new_part_taken_and_given_back(holder: str, tmp_path: Path) -> None:
    """The physics counts parts: three units are three parts loaded and three unloaded."""
    path = render_config(tmp_path, overrides=lambda d: d["holder"].__setitem__("kind", holder))
    s = _idle(path=path)
    recipe = demo_recipe(s.loaded, holder=holder)
    s.ctl.start_job("LOT-P", "demo", recipe, 3)
    s.run_until(lambda: s.ctl.state == "complete", 90.0, "three demo units")
    truth = s.truth()
    assert len(truth["bath_entries"]) == 3
    assert truth["parts_loaded"] == 3
    assert truth["parts_unloaded"] == 3
    assert truth["parts_put_back"] == 0 and truth["parts_dropped"] == 0


def _cause_visible(snap: Any) -> bool:
    sig = snap.signals
    o2 = sig["o2.ppm"]
    return (
        sig["io.door_closed"].value is not True
        or sig["io.vacuum_kpa"].value < 40.0
        or not o2.good
        or o2.value > 1000.0
    )


@pytest.mark.parametrize(
    ("fault", "value", "reason", "bound_s"),
    [
        ("door_open", None, "door_closed", 0.1),
        # The analyzer's own lag (t90 300 ms, a report every 200 ms) comes first.
        ("o2_leak", 5000.0, "o2_ok", 0.5),
        # Silence is seen once the last report is older than the analyzer's stale bound.
        ("o2_analyzer_silent", None, "o2_ok", 1.3),
        # A leaking suction line: the vacuum decays (tau 0.5 s) past the hold level in ~0.65 s.
        ("vacuum_leak", None, "part_held", 1.0),
    ],
)
def test_fault_during_the_dip_withdraws_in_the_scan_that_sees_it(
    fault: str, value: float | None, reason: str, bound_s: float
) -> None:
    s = _idle()
    s.ctl.start_job("LOT-S", "demo", demo_recipe(s.loaded), 2)
    until_step(s, Step.DIP_DWELL, 30.0)
    assert s.truth()["part_in_bath"]
    s.phys.inject(fault, value)
    t0 = s.t
    while True:
        seen = _cause_visible(s.snapshot())
        s.tick()
        if seen:
            # The very scan whose snapshot shows the cause sends the holder up, fast.
            assert s.last.outputs["holder.z_target_mm"] == TOP
            assert s.last.outputs["holder.z_speed_mm_s"] == s.loaded.config.holder.z_fast_speed_mm_s
            break
        assert s.last.outputs["holder.z_target_mm"] != TOP, "withdrawn without a visible cause"
        assert s.t - t0 < bound_s, f"{fault} not seen within {bound_s} s"
    rejected = events_of(s, "unit_rejected")
    assert len(rejected) == 1 and reason in rejected[0]["reason"]
    s.run_until(lambda: not s.truth()["part_in_bath"], 2.0, "out of the bath")
    truth = s.truth()
    assert len(truth["bath_entries"]) == 1
    assert truth["parts_dropped_in_bath"] == 0 and truth["parts_dropped"] == 0
    assert s.last.outputs["io.vacuum_pump"] is True and s.last.outputs["io.vacuum_valve"] is True


@pytest.mark.parametrize(
    ("fault", "value"),
    [
        ("tc_open", None),
        ("high_limit_trip", None),
        ("estop", None),
        ("device_offline", "heater1"),
    ],
)
def test_heater_trips_open_both_paths_within_a_second(fault: str, value: str | None) -> None:
    s = _idle()
    s.ctl.start_job("LOT-S", "demo", demo_recipe(s.loaded), 2)
    until_step(s, Step.DIP_DWELL, 30.0)
    s.phys.inject(fault, value)
    t0 = s.t
    s.run_until(lambda: s.ctl.tripped, 1.0, f"trip on {fault}")
    out = s.last.outputs
    assert out["heater1.run"] == 0 and out["io.heater_contactor"] is False
    assert out["holder.z_target_mm"] == TOP
    assert s.t - t0 <= 1.0
    s.run_until(lambda: s.ctl.state == "aborted", 5.0, "aborted")
    truth = s.truth()
    assert not truth["heater_contactor_closed"] and not truth["part_in_bath"]
    assert events_of(s, "job_aborted")


def test_stuck_on_heater_is_caught_and_cut_by_the_contactor() -> None:
    s = _idle()
    s.phys.inject("heater_stuck_on")
    s.run_until(lambda: s.ctl.tripped, 120.0, "stuck-on trip")
    alarms = {a["code"] for a in s.ctl.status()["alarms"]}
    assert alarms & {"heater_stuck_on", "over_temp"}
    s.run_for(1.0)
    assert not s.truth()["heater_contactor_closed"]


def test_cold_start_heats_through_the_melt_plateau_and_purges_without_a_trip() -> None:
    s = SimLoop("booth-sim-cold.toml", period_s=0.05)
    s.reset_to_idle(settle_s=1.0, within_s=1800.0)
    assert not s.ctl.tripped
    assert [a for a in s.ctl.status()["alarms"] if a["severity"] == "critical"] == []
    truth = s.truth()
    assert truth["o2_ppm"] <= 1000.0 and truth["solder_temp_c"] >= 240.0


def test_stalled_hoist_in_the_bath_is_retried_until_it_withdraws_then_cleared() -> None:
    s = _idle()
    s.ctl.start_job("LOT-S", "demo", demo_recipe(s.loaded), 1)
    until_step(s, Step.DIP_DWELL, 30.0)
    s.phys.inject("hoist_stall")
    s.run_until(lambda: s.ctl.state == "aborting", 1.0, "aborting on the stall")
    assert s.last.outputs["heater1.run"] == 0 and s.last.outputs["io.heater_contactor"] is False
    s.run_for(3.0)
    assert s.truth()["part_in_bath"]  # stalled: it cannot come up by itself
    s.phys.clear("hoist_stall")
    s.run_until(lambda: not s.truth()["part_in_bath"], 5.0, "withdrawal after a drive reset")
    s.run_until(lambda: s.ctl.state == "aborted", 5.0, "aborted")
    s.ctl.ack_alarm(None)
    s.ctl.clear()
    s.run_until(lambda: s.ctl.state == "stopped", 1.0, "stopped")
    assert s.truth()["holder_z_mm"] <= 0.5 and s.truth()["parts_dropped"] == 0


def test_a_part_whose_hold_is_lost_on_the_way_to_the_solder_is_rejected_not_dipped() -> None:
    """The vacuum bleeds under the hold level during the transfer (the part still hangs on):
    it cannot be trusted any more, so its unit is rejected and it is never dipped."""
    s = _idle()
    s.ctl.start_job("LOT-H", "demo", demo_recipe(s.loaded), 1)
    until_step(s, Step.DIP_MOVE, 30.0)
    s.phys.inject("vacuum_leak", 30.0)  # above the 20 kPa the part falls at, under the 40 hold
    s.run_until(lambda: events_of(s, "unit_rejected"), 3.0, "the unit rejected")
    assert events_of(s, "unit_rejected")[0]["reason"] == "lost: part_held"
    s.run_until(lambda: s.ctl.state == "complete", 30.0, "the job complete")
    truth = s.truth()
    assert truth["bath_entries"] == [] and truth["parts_dropped"] == 0

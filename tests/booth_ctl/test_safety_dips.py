"""Review S1: a dip shallower than the holder's position tolerance is still a dip.

The recipe refuses such a depth (``test_recipe.py``); these tests bypass that rule on purpose
(``Recipe.model_validate`` checks the shape only) to show that the sequencer does not rely on it:
a part in its dwell counts as immersed, so a lost permissive rejects it, and every dip is recorded
exactly once. All on the virtual-clock plant.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from booth_ctl.config._recipe import Recipe
from booth_ctl.control._sequencer import Mode, Plant, Sequencer, Step
from tests.booth_ctl._plant import CONFIG, events_of, idle_loop, sim_config, until_step

TOP = 0.0


def _shallow_recipe(flux_depth_mm: float = 5.0, dip_depth_mm: float = 3.0) -> Recipe:
    data: dict[str, Any] = tomllib.loads(
        (CONFIG / "recipes" / "demo.toml").read_text(encoding="utf-8")
    )
    data["flux"]["depth_mm"] = flux_depth_mm
    data["flux"]["speed_mm_s"] = 20.0  # 0.2 mm a scan: "reached" comes before the surface
    data["dips"][0]["depth_mm"] = dip_depth_mm
    # The shape only: the booth rule on depth vs. z_tolerance_mm is deliberately not applied.
    return Recipe.model_validate(data)


def test_shallow_solder_dip_is_immersed_and_a_door_open_in_the_dwell_rejects() -> None:
    loop = idle_loop()
    tol = loop.plant.loaded.config.holder.z_tolerance_mm
    loop.ctl.start_job("LOT-S1", "shallow", _shallow_recipe(dip_depth_mm=tol * 0.6), 1)
    until_step(loop, Step.DIP_DWELL)
    seq = loop.ctl._seq
    assert seq is not None and seq.immersed
    assert len(events_of(loop, "dip")) == 1
    loop.run_until(lambda: loop.plant.in_bath, 2.0, "the part in the solder")
    loop.plant.door_closed = False
    loop.tick()
    assert loop.last.outputs["holder.z_target_mm"] == TOP
    rejected = events_of(loop, "unit_rejected")
    assert len(rejected) == 1 and "door_closed" in rejected[0]["reason"]
    loop.run_for(5.0)
    assert events_of(loop, "unit_completed") == []
    assert len(events_of(loop, "dip")) == 1


def test_shallow_flux_dip_door_open_in_the_dwell_rejects() -> None:
    loop = idle_loop()
    tol = loop.plant.loaded.config.holder.z_tolerance_mm
    loop.ctl.start_job("LOT-S1", "shallow", _shallow_recipe(flux_depth_mm=tol * 0.6), 1)
    until_step(loop, Step.FLUX_DWELL)
    assert len(events_of(loop, "flux_dip")) == 1
    loop.plant.door_closed = False
    loop.tick()
    assert loop.last.outputs["holder.z_target_mm"] == TOP
    rejected = events_of(loop, "unit_rejected")
    assert len(rejected) == 1 and "door_closed" in rejected[0]["reason"]


@pytest.mark.parametrize("depth_factor", [0.2, 0.6, 1.0, 2.0, 10.0])
def test_each_dip_is_recorded_once_whatever_its_depth(depth_factor: float) -> None:
    loop = idle_loop()
    tol = loop.plant.loaded.config.holder.z_tolerance_mm
    depth = tol * depth_factor
    recipe = _shallow_recipe(flux_depth_mm=depth, dip_depth_mm=depth)
    loop.ctl.start_job("LOT-S1", "shallow", recipe, 2)
    loop.run_until(lambda: loop.ctl.state == "complete", 120.0, "complete")
    assert len(events_of(loop, "unit_completed")) == 2
    assert len(events_of(loop, "dip")) == 2 and len(events_of(loop, "flux_dip")) == 2
    assert loop.ctl.counters() == {"vessel_dips": {"solder1": 2}, "flux_dips": 2}


# ---------------------------------------------------------------------------- sequencer alone


def _seq_at_dip_enter() -> tuple[Sequencer, float, float]:
    """A sequencer forced into DIP_ENTER, with the surface and the tolerance."""
    cfg = sim_config().config
    seq = Sequencer(cfg, "LOT", _shallow_recipe(dip_depth_mm=0.3), 1)
    seq.unit, seq.unit_open, seq.flux_done = 1, True, True
    seq.step = Step.DIP_ENTER
    surface = cfg.vessels["solder1"].surface_z_mm
    seq.z_target = surface + 0.3
    return seq, surface, cfg.holder.z_tolerance_mm


def _plant(now: float, z: float, **lost: bool) -> Plant:
    perm = {
        name: True
        for name in (
            "door_closed",
            "estop_clear",
            "exhaust_ok",
            "n2_supply_ok",
            "io_ok",
            "holder_ok",
            "part_held",
            "flux_done",
            "heaters_ok",
            "o2_ok",
            "solder_temp_ok.solder1",
        )
    }
    perm.update(lost)
    return Plant(now, z, 2, True, perm, 100.0, {"solder1": 250.0})


def test_entry_reached_short_of_the_surface_counts_as_immersed() -> None:
    seq, surface, tol = _seq_at_dip_enter()
    z = surface - tol * 0.4  # within the tolerance of the target, not yet at the surface
    res = seq.run(_plant(1.0, z), Mode.RUN)
    assert seq.step is Step.DIP_DWELL and seq.immersed
    assert [e.type for e in res.events] == ["dip"]
    res = seq.run(_plant(1.01, z, door_closed=False), Mode.RUN)
    assert seq.step is Step.REJECT_UP and seq.units_rejected == 1
    assert [e.type for e in res.events] == ["unit_rejected"]


def test_dwell_counts_as_immersed_even_if_the_flag_was_lost() -> None:
    seq, surface, _ = _seq_at_dip_enter()
    seq.run(_plant(1.0, surface + 0.3), Mode.RUN)
    assert seq.step is Step.DIP_DWELL
    seq.immersed = False  # defence in depth: the step alone says the part is in
    res = seq.run(_plant(1.01, surface + 0.3, part_held=False), Mode.RUN)
    assert seq.step is Step.REJECT_UP
    assert [e.type for e in res.events] == ["unit_rejected"]
    seq2, surface, _ = _seq_at_dip_enter()
    seq2.run(_plant(1.0, surface + 0.3), Mode.RUN)
    seq2.immersed = False
    res = seq2.run(_plant(1.01, surface + 0.3), Mode.WITHDRAW)
    assert seq2.step is Step.REJECT_UP and seq2.units_rejected == 1


def test_part_still_above_the_tolerance_band_is_not_yet_a_dip() -> None:
    seq, surface, tol = _seq_at_dip_enter()
    seq.z_target = surface + 5.0
    res = seq.run(_plant(1.0, surface - tol * 1.5), Mode.RUN)
    assert seq.step is Step.DIP_ENTER and not seq.immersed and res.events == []
    # A lost permissive this far above the surface is a retry, not a reject.
    res = seq.run(_plant(1.01, surface - tol * 1.5, door_closed=False), Mode.RUN)
    assert seq.step is Step.DIP_WAIT and seq.units_rejected == 0

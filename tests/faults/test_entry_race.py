"""Races between devices polled apart, found by the fault matrix and kept as regressions."""

from __future__ import annotations

import time

import pytest

from ._rig import Rig

pytestmark = [pytest.mark.hil, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

#: How long the holder's z reading lags the truth in the test: a few polls at 50 Hz, so that the
#: door's reading surely comes first.
Z_LAG_S = 0.3


async def test_a_door_opening_as_the_part_touches_the_solder_rejects_the_unit(rig: Rig) -> None:
    """The door opens in the physics step in which the part touches the solder.

    The door reading and the holder's z reading come from devices polled independently; the
    door's may arrive first. The sequencer then still is in ``DIP_ENTER`` without having seen the
    part cross the surface. Taking that for "approaching" would abandon the dip and repeat it
    later, although the part was in the bath when the door opened (section 4: withdrawn at once,
    the unit rejected). A part in an entry step at or near the surface counts as dipped.

    The test makes the race certain: the holder's z register shows the last position above the
    surface for a few polls after the entry, as a late poll of the drive would.
    """
    await rig.to_idle()
    phys = rig.sim.physics
    bank = phys.banks[phys.holder_device]
    surface = rig.cfg.vessels["solder1"].surface_z_mm
    step = phys.step
    lag_until: list[float] = []

    def step_then_fault(dt_s: float) -> None:
        step(dt_s)
        if not lag_until and phys.part.in_vessel is not None:
            lag_until.append(time.monotonic() + Z_LAG_S)
            phys.inject("door_open")
        if lag_until and time.monotonic() < lag_until[0] and phys.holder.z_mm >= surface:
            bank.set("z_mm", surface - 0.2)

    phys.step = step_then_fault  # type: ignore[method-assign]
    try:
        since = await rig.start_job(2)
        await rig.wait(lambda: lag_until, 30.0, "the part's entry into the solder")
        await rig.wait(lambda: not rig.truth()["part_in_bath"], 5.0, "the part out")
        await rig.wait(lambda: rig.state == "suspended", 5.0, "job suspended on the door")
        assert len(rig.truth()["bath_entries"]) >= 1
        assert rig.sink.of("unit_rejected", since), (
            "the part was in the solder when the door opened and its unit was not rejected "
            "(the dip was abandoned, to be repeated)"
        )
    finally:
        phys.step = step  # type: ignore[method-assign]
        rig.sim.clear()

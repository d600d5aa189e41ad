"""Races between devices polled apart, found by the fault matrix and kept as regressions."""

from __future__ import annotations

import time

import pytest

from ._matrix import run_case
from ._rig import O2_LIMIT_PPM, Rig

pytestmark = [pytest.mark.hil, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

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


#: Where in its own timeout the drive is when it answers again: late enough that it loses the
#: heartbeat shortly after, unless one lands at once.
DRIVE_AGE_AT_RETURN = 0.7


async def test_a_drive_back_from_silence_is_not_ready_until_a_heartbeat_has_landed(
    rig: Rig,
) -> None:
    """The drive answers again after a silence in which the writer's re-assert failed.

    Its heartbeats are withheld until those outputs land, and its own comm-loss timeout runs on
    meanwhile. A booth that called itself ready in that gap took a job whose first move the
    drive then refused, withdrawing by itself (``holder_comm_lost``: the job aborted before any
    fault). Ready, a start and a reset wait until a heartbeat has landed on the drive; a job
    started the moment the booth says ready runs to the end.
    """
    await rig.to_idle()
    holder = rig.cfg.device_of_kind("holder_drive")
    drive = rig.sim.physics.holder
    timeout_s = rig.cfg.devices[holder].comm_timeout_s
    assert timeout_s is not None
    rig.sim.inject("device_offline", holder)
    # The writer's periodic re-assert, due now: it fails on the silent drive.
    rig.sup.writer.resend(holder)
    await rig.wait(lambda: holder in rig.sup.writer.undelivered(), 5.0, "outputs undelivered")
    await rig.wait(
        lambda: drive.heartbeat_age_s >= DRIVE_AGE_AT_RETURN * timeout_s,
        5.0,
        "the drive's timeout mostly run",
    )
    assert not drive.comm_lost
    # As the fault matrix does between cells: the fault cleared, then ack, clear and reset as
    # needed (the drive may still lose the heartbeat in the gap and trip the booth) until ready.
    await rig.to_idle()
    # Ready only with the drive's timeout fed: it has all of it to run before the next beat.
    assert drive.heartbeat_age_s < timeout_s / 2, drive.heartbeat_age_s
    since = await rig.start_job(1)
    await rig.wait(lambda: rig.state == "complete", 30.0, "the job complete")
    assert rig.sink.of("unit_completed", since)
    assert not rig.sink.of("unit_rejected", since)


async def test_a_booth_whose_drive_withdrew_by_itself_runs_a_job_after_reset(rig: Rig) -> None:
    """The drive goes silent in the flux dip and withdraws by itself; once it answers again
    the aborted booth is cleared and reset like after any trip, and the next job runs."""
    out = await run_case(rig, "device_offline:holder", "flux", slow_s=60.0)
    assert out.safe, out.violations
    assert rig.sim.physics.holder.comm_lost, "the drive withdrew by itself"
    await rig.to_idle()  # the fault cleared; the trip on the drive's report acked, cleared, reset
    since = await rig.start_job(1)
    await rig.wait(lambda: rig.state == "complete", 30.0, "the job complete")
    assert rig.sink.of("unit_completed", since)
    entries = rig.truth()["bath_entries"]
    assert entries and entries[-1]["o2_ppm"] <= O2_LIMIT_PPM

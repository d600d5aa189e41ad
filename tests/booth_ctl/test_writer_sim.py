"""The output writer against the simulator's Modbus devices: a refused write blocks no other.

A device refusing one point (it keeps another value: the driver's readback sees it) used to
abort the whole batch of that device, so a later safe write (a heater's ``run`` = 0, the
holder's withdrawal) was never sent while its heartbeats went on. Now each point is written on
its own, safe-direction ones first; the device counts undelivered and its heartbeats stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.control._controller import Controller
from booth_ctl.runtime._heartbeats import Heartbeats, heartbeat_period_s
from booth_ctl.runtime._writer import REASSERT_PERIOD_S, OutputWriter
from drivers import DeviceSet, Reading
from sim_hw import SimBooth
from tests._util import render_config, wait_for

pytestmark = pytest.mark.hil


def _keep_old(old: int, written: int) -> int:
    return old  # the device refuses the value: a readback shows what it kept


@asynccontextmanager
async def _rig(
    tmp_path: Path,
) -> AsyncIterator[tuple[SimBooth, DeviceSet, OutputWriter, LoadedConfig]]:
    path = render_config(tmp_path)
    loaded = load_config(path)
    ctl = Controller(loaded)
    async with SimBooth(path) as sim, DeviceSet(loaded.config.devices, loaded.maps) as devices:
        names = [n for n, d in loaded.config.devices.items() if d.map is not None]
        writer = OutputWriter(names, ctl.safe_values())
        tasks = [asyncio.create_task(writer.run(n, devices.devices[n])) for n in names]
        try:
            yield sim, devices, writer, loaded
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_refused_setpoint_does_not_keep_the_heater_running(tmp_path: Path) -> None:
    async with _rig(tmp_path) as (sim, _devices, writer, _loaded):
        bank = sim.bank("heater1")
        bank.set("run", 1)
        bank.hook_write("sv_c", _keep_old)
        # Controller order: the setpoint first, then run off.
        writer.dispatch({"heater1.sv_c": 290.0, "heater1.run": 0})
        await wait_for(lambda: bank.get("run") == 0, timeout_s=3.0, what="heater1.run = 0 written")
        await wait_for(
            lambda: "heater1" in writer.undelivered(), timeout_s=3.0, what="heater1 undelivered"
        )
        assert writer.slots["heater1"].failed == {"sv_c"}


async def test_a_refused_station_does_not_keep_the_holder_down(tmp_path: Path) -> None:
    async with _rig(tmp_path) as (sim, _devices, writer, loaded):
        bank = sim.bank("holder")
        bank.set("z_target_mm", 30.0)
        bank.hook_write("station_target", _keep_old)
        top = loaded.config.holder.z_travel_mm
        writer.dispatch({"holder.station_target": 2, "holder.z_target_mm": top})
        await wait_for(
            lambda: bank.get("z_target_mm") == pytest.approx(top),
            timeout_s=3.0,
            what="holder.z_target_mm = top written",
        )
        assert writer.undelivered() == {"holder"}


async def test_a_device_with_undelivered_outputs_gets_no_heartbeats(tmp_path: Path) -> None:
    async with _rig(tmp_path) as (sim, devices, writer, loaded):
        cfg = loaded.config
        signals: dict[str, Reading] = {}
        beats = Heartbeats(
            cfg, writer, signals, scan_healthy=lambda: True, state=lambda: "stopped", trip=print
        )
        bank = sim.bank("heater1")
        task = asyncio.create_task(beats.run("heater1", devices.devices["heater1"]))
        try:
            period_s = heartbeat_period_s(cfg, "heater1")
            seq0 = bank.write_seq("heartbeat")
            await wait_for(
                lambda: bank.write_seq("heartbeat") > seq0, timeout_s=3 * period_s, what="a beat"
            )
            bank.hook_write("sv_c", _keep_old)
            writer.dispatch({"heater1.sv_c": 290.0})
            await wait_for(
                lambda: "heater1" in writer.undelivered(), timeout_s=3.0, what="undelivered"
            )
            seq1 = bank.write_seq("heartbeat")
            # The device's own timeout takes over: it says comm lost and stops controlling, which
            # it does only when no heartbeat has landed for its whole comm-loss timeout.
            await wait_for(
                lambda: bool(bank.get("comm_lost")), timeout_s=7 * period_s, what="comm_lost"
            )
            # At most the one beat already on its way when the write failed.
            assert bank.write_seq("heartbeat") <= seq1 + 1
            # Gone safe, it refuses targets until it sees a heartbeat: the beats resume (as the
            # poller would show it) so that it can come back once the refusal ends.
            signals["heater1.comm_lost"] = Reading(True, time.monotonic())
            seq2 = bank.write_seq("heartbeat")
            await wait_for(
                lambda: bank.write_seq("heartbeat") > seq2, timeout_s=3 * period_s, what="beats"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_reassert_writes_again_only_what_the_device_no_longer_holds(
    tmp_path: Path,
) -> None:
    """Every re-assert period the writer reads the outputs back; a coil the module lost (a
    restart, a hand switch) is written again, the ones it holds are not."""
    async with _rig(tmp_path) as (sim, _devices, writer, _loaded):
        bank = sim.bank("io")
        wanted = {"n2_purge": False, "n2_maintain": True, "exhaust_fan": True, "buzzer": False}
        writer.dispatch({f"io.{p}": v for p, v in wanted.items()})
        await wait_for(writer.all_written, timeout_s=3.0, what="the outputs written")
        seqs = {p: bank.write_seq(p) for p in wanted}
        bank.set("exhaust_fan", False)
        await wait_for(
            lambda: bank.get("exhaust_fan") is True,
            timeout_s=REASSERT_PERIOD_S + 3.0,
            what="exhaust_fan written again by the re-assert",
        )
        assert bank.write_seq("exhaust_fan") == seqs["exhaust_fan"] + 1
        # A re-assert after that one, which found nothing to write (the rewrite's own read-back
        # may or may not have been counted yet: one read more than that).
        coil_reads = bank.reads["coil"]
        await wait_for(
            lambda: bank.reads["coil"] > coil_reads + 1,
            timeout_s=2 * REASSERT_PERIOD_S + 3.0,
            what="the next re-assert's read-back",
        )
        assert {p: bank.write_seq(p) for p in wanted if p != "exhaust_fan"} == {
            p: s for p, s in seqs.items() if p != "exhaust_fan"
        }
        assert not writer.undelivered()


class _SlowReadBack:
    """A device whose read-back does not answer until released; its writes land at once."""

    name = "heater1"

    def __init__(self) -> None:
        self.written: list[tuple[str, float | bool]] = []
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def write(self, point: str, value: float | bool) -> None:
        self.written.append((point, value))

    async def unconfirmed(self, values: Mapping[str, float | bool]) -> frozenset[str]:
        self.asked.set()
        await self.release.wait()
        return frozenset()


async def test_a_changed_output_is_written_before_the_reasserts_read_back() -> None:
    """A re-assert falls due with a safe write pending: the write goes first, the read-back (up
    to a timeout on a silent device) after it."""
    writer = OutputWriter(["heater1"], {"heater1.run": 0})
    slot = writer.slots["heater1"]
    slot.desired = {"sv_c": 250.0, "run": 1}
    slot.written = dict(slot.desired)  # settled: what a re-assert reads back
    dev = _SlowReadBack()
    writer.dispatch({"heater1.sv_c": 250.0, "heater1.run": 0})
    task = asyncio.create_task(writer.run("heater1", dev))  # type: ignore[arg-type]
    try:
        await wait_for(dev.asked.is_set, timeout_s=5.0, what="the re-assert's read-back")
        assert dev.written == [("run", 0)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

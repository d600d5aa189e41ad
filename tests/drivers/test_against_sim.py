"""The drivers against the simulated booth, over its real endpoints (Modbus TCP, RTU on a pty,
the analyzer's serial line on a pty)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers import DeviceSet, ModbusDevice, O2Analyzer, Quality, WriteVerifyError
from sim_hw import SimBooth
from tests._util import render_config, wait_for

from ._fakes import load_devices

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


@pytest.fixture
async def booth(tmp_path: Path) -> AsyncIterator[tuple[SimBooth, DeviceSet]]:
    def faster(data: dict[str, Any]) -> None:
        data["sim"]["o2_cal_s"] = 0.3  # the auto-zero's CAL phase, shortened for the test

    path = render_config(tmp_path, overrides=faster)
    devices, maps = load_devices(path)
    async with SimBooth(path, control_socket=False) as sim, DeviceSet(devices, maps) as dset:
        # The banks show the physics from its first step on.
        await wait_for(lambda: sim.steps >= 2, timeout_s=5.0, what="the sim's first steps")
        yield sim, dset


async def all_good(dset: DeviceSet, name: str) -> dict[str, Any] | None:
    readings = await dset.devices[name].poll()
    if all(r.quality is Quality.GOOD for r in readings.values()):
        return readings
    return None


async def good_modbus(dset: DeviceSet, name: str, what: str) -> ModbusDevice:
    """The Modbus device `name`, once every reading of it is GOOD (`what` names that wait)."""
    device = dset.devices[name]
    assert isinstance(device, ModbusDevice)
    await wait_for(lambda: all_good(dset, name), timeout_s=10.0, what=what)
    return device


async def test_every_device_reads_good(booth: tuple[SimBooth, DeviceSet]) -> None:
    sim, dset = booth
    got: dict[str, Any] = {}
    for name in dset.devices:
        got[name] = await wait_for(
            lambda n=name: all_good(dset, n),  # type: ignore[misc]
            timeout_s=10.0,
            what=f"every reading of {name} GOOD",
        )
    truth = sim.state()
    assert got["heater1"]["pv_c"].value == pytest.approx(truth["solder_temp_c"], abs=2.0)
    assert got["o2"]["ppm"].value == pytest.approx(truth["o2_ppm"], rel=0.2, abs=20.0)
    assert got["o2"]["status_ok"].value is True
    assert got["io"]["door_closed"].value is truth["door_closed"]
    assert got["holder"]["z_mm"].value == pytest.approx(truth["holder_z_mm"], abs=0.2)
    # Set-up sent at connect: the controller's comm timeout and the module's watchdog.
    assert sim.bank("heater1").get("comm_timeout_s") == pytest.approx(2.0)
    assert sim.bank("io").get("watchdog_timeout_ms") == 500


async def test_writes_land_in_the_devices(booth: tuple[SimBooth, DeviceSet]) -> None:
    sim, dset = booth
    heater, io, holder = (dset.devices[n] for n in ("heater1", "io", "holder"))
    await heater.write("sv_c", 255.5)
    assert sim.bank("heater1").get("sv_c") == pytest.approx(255.5)
    await io.write("watchdog_refresh", 1)
    await io.write("exhaust_fan", True)
    assert sim.bank("io").get("exhaust_fan") is True
    await holder.write("z_speed_mm_s", 100.0)
    assert sim.bank("holder").get("z_speed_mm_s") == pytest.approx(100.0)


async def test_outputs_are_read_back_in_one_request_and_what_differs_is_named(
    booth: tuple[SimBooth, DeviceSet],
) -> None:
    """What the writer's periodic re-assert asks: the outputs the device no longer holds."""
    sim, dset = booth
    io = await good_modbus(dset, "io", "every reading of io GOOD")
    bank = sim.bank("io")
    wanted: dict[str, float | bool] = {
        "heater_contactor": True,
        "n2_purge": False,
        "n2_maintain": True,
        "exhaust_fan": True,
        "vacuum_pump": False,
    }
    for point, value in wanted.items():
        await io.write(point, value)
    coil_reads = bank.reads["coil"]
    assert await io.unconfirmed(wanted) == frozenset()
    assert bank.reads["coil"] == coil_reads + 1  # coils 0..4: one run, one request
    bank.set("exhaust_fan", False)  # as the module would after a restart, or a hand switch
    bank.set("vacuum_pump", True)
    assert await io.unconfirmed(wanted) == {"exhaust_fan", "vacuum_pump"}
    # Points without a plain read-back are never confirmed: a refresh the module consumes.
    assert await io.unconfirmed({"watchdog_refresh": 1, "n2_maintain": True}) == {
        "watchdog_refresh"
    }
    heater = dset.devices["heater1"]
    await heater.write("sv_c", 251.5)
    assert await heater.unconfirmed({"sv_c": 251.5}) == frozenset()
    assert await heater.unconfirmed({"sv_c": 252.0}) == {"sv_c"}


async def test_offline_device_is_no_comm_and_the_others_go_on(
    booth: tuple[SimBooth, DeviceSet],
) -> None:
    sim, dset = booth
    for name in dset.devices:
        await wait_for(lambda n=name: all_good(dset, n), timeout_s=10.0, what=f"{name} GOOD")  # type: ignore[misc]
    for name in ("heater1", "holder"):
        sim.inject("device_offline", name)

        async def down(n: str = name) -> bool:
            r = await dset.devices[n].poll()
            return all(x.quality is Quality.NO_COMM for x in r.values())

        await wait_for(down, timeout_s=5.0, what=f"{name} NO_COMM")
        assert await all_good(dset, "io")
        sim.clear("device_offline")
        await wait_for(lambda n=name: all_good(dset, n), timeout_s=10.0, what=f"{name} back")  # type: ignore[misc]


async def test_silent_analyzer_goes_stale_and_zero_is_acknowledged(
    booth: tuple[SimBooth, DeviceSet],
) -> None:
    sim, dset = booth
    o2 = dset.devices["o2"]
    assert isinstance(o2, O2Analyzer)
    await wait_for(lambda: all_good(dset, "o2"), timeout_s=10.0, what="o2 GOOD")
    await o2.write("zero", True)
    sim.inject("o2_analyzer_silent")

    async def stale() -> bool:
        return (await o2.poll())["ppm"].quality is Quality.STALE

    await wait_for(stale, timeout_s=5.0, what="o2.ppm STALE")
    sim.clear()
    await wait_for(lambda: all_good(dset, "o2"), timeout_s=10.0, what="o2 GOOD again")
    assert o2.bad_lines == 0


async def test_a_coil_write_refused_by_the_tripped_watchdog_fails_verification(
    booth: tuple[SimBooth, DeviceSet],
) -> None:
    """A tripped module ignores output writes: the driver's readback must see it at once."""
    sim, dset = booth
    io = await good_modbus(dset, "io", "io GOOD (set-up sent)")
    await io.write("watchdog_refresh", 1)  # arms the watchdog
    await io.write("vacuum_valve", True)  # a "hold" coil: kept as it was when the trip came
    await wait_for(
        lambda: sim.bank("io").get("watchdog_tripped"), timeout_s=5.0, what="watchdog trip"
    )
    with pytest.raises(WriteVerifyError, match="heater_contactor"):
        await io.write("heater_contactor", True)
    with pytest.raises(WriteVerifyError, match="vacuum_valve"):
        await io.write("vacuum_valve", False)
    readings = await io.poll()
    bank = sim.bank("io")
    assert bank.get("heater_contactor") is False and bank.get("vacuum_valve") is True
    assert readings["watchdog_tripped"].value is True
    assert sim.state()["heater_contactor_closed"] is False
    # Cleared, the module takes outputs again from the very next write.
    await io.write("watchdog_clear", 1)
    await io.write("watchdog_refresh", 2)
    await io.write("heater_contactor", True)
    assert sim.bank("io").get("heater_contactor") is True


async def test_run_written_while_comm_lost_fails_verification(
    booth: tuple[SimBooth, DeviceSet],
) -> None:
    """With its heartbeat stale the controller stays stopped: ``run`` = 1 reads back 0."""
    sim, dset = booth
    heater = await good_modbus(dset, "heater1", "heater1 GOOD")
    await heater.write("comm_timeout_s", 0.3)  # shortened for the test
    await heater.write("heartbeat", 1)
    await heater.write("run", 1)
    await wait_for(lambda: sim.bank("heater1").get("comm_lost"), timeout_s=5.0, what="comm_lost")
    with pytest.raises(WriteVerifyError, match="run"):
        await heater.write("run", 1)
    assert (await heater.poll())["run"].value == 0
    assert not sim.state()["vessels"]["solder1"]["running"]
    # A fresh heartbeat first, then run = 1: the controller resumes, verified.
    await heater.write("heartbeat", 2)
    await heater.write("run", 1)
    await wait_for(
        lambda: sim.state()["vessels"]["solder1"]["running"], timeout_s=5.0, what="running again"
    )

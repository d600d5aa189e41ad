"""An O2 analyzer on Modbus RTU (map o2-modbus-generic), sharing the heater's RS-485 line in the
simulated booth: read, zeroed, and silent without disturbing the controller on the same line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers import DeviceSet, ModbusDevice, Quality
from sim_hw import SimBooth
from tests._util import CONFIG_DIR, render_config, wait_for

from ._fakes import load_devices

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def _modbus_analyzer(data: dict[str, Any]) -> None:
    line = data["devices"]["heater1"]["transport"]
    data["devices"]["o2"] = {
        "kind": "o2_analyzer",
        "map": str(CONFIG_DIR / "maps" / "o2-modbus-generic.toml"),
        "transport": {**line, "unit": 5},
        "poll_hz": 5.0,
        "stale_s": 1.0,
        "timeout_s": 0.08,
        "retries": 1,
    }
    data["sim"]["o2_cal_s"] = 1.5


async def test_modbus_analyzer_on_the_heater_line(tmp_path: Path) -> None:
    path = render_config(tmp_path, overrides=_modbus_analyzer)
    devices, maps = load_devices(path)
    async with SimBooth(path, control_socket=False) as sim, DeviceSet(devices, maps) as dset:
        o2, heater = dset.devices["o2"], dset.devices["heater1"]
        assert isinstance(o2, ModbusDevice)

        async def ppm_good() -> Any:
            r = await o2.poll()
            ok = r["ppm"].quality is Quality.GOOD and r["status_ok"].value is True
            return r if ok else None

        r = await wait_for(ppm_good, timeout_s=10.0, what="o2.ppm GOOD over Modbus")
        assert r["ppm"].value == pytest.approx(sim.state()["o2_analyzer_ppm"], abs=20.0)
        # The zero command: the analyzer reports calibrating, its value is not a measurement.
        await o2.write("zero", True)

        async def calibrating() -> bool:
            r = await o2.poll()
            return r["calibrating"].value is True and r["status_ok"].value is False

        await wait_for(calibrating, timeout_s=5.0, what="o2 calibrating after zero")
        await wait_for(ppm_good, timeout_s=10.0, what="o2 back after zero")
        # Silent analyzer: NO_COMM on its unit, the controller on the same line stays GOOD.
        sim.inject("o2_analyzer_silent")

        async def o2_lost() -> bool:
            return (await o2.poll())["ppm"].quality is not Quality.GOOD

        await wait_for(o2_lost, timeout_s=5.0, what="o2 not GOOD when silent")
        for _ in range(5):
            assert (await o2.poll())["ppm"].quality is not Quality.GOOD

            async def heater_good() -> bool:
                return (await heater.poll())["pv_c"].quality is Quality.GOOD

            await wait_for(heater_good, timeout_s=2.0, what="heater1 GOOD beside a silent o2")

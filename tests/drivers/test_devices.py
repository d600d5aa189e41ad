"""Building the drivers of a booth config: by kind and transport, lines shared, opened lazily."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drivers import (
    ConfigError,
    Device,
    DeviceConfig,
    DeviceSet,
    ModbusDevice,
    O2Analyzer,
    Quality,
    RegisterMap,
    open_device,
)
from tests._util import free_port, render_config

from ._fakes import TC_MAP, load_devices

pytestmark = pytest.mark.timeout(30)


async def test_a_booth_with_nothing_running_enters_polls_and_leaves(tmp_path: Path) -> None:
    devices, maps = load_devices(render_config(tmp_path))
    async with DeviceSet(devices, maps) as dset:
        assert set(dset.devices) == set(devices)
        assert isinstance(dset.devices["o2"], O2Analyzer)
        assert isinstance(dset.devices["heater1"], ModbusDevice)
        for name, dev in dset.devices.items():
            assert isinstance(dev, Device)
            assert dev.name == name and dev.config == devices[name]
            start = time.monotonic()
            readings = await dev.poll()
            assert time.monotonic() - start < 1.0
            assert {r.quality for r in readings.values()} == {Quality.NO_COMM}
        assert set(await dset.devices["o2"].poll()) == {"ppm", "status_ok"}
        # Every polled point has a reading; a write-only one has none (its readback verifies);
        # the module's own safety settings, read back, are one more (layers_ok).
        polled = {n for n, p in maps["io"].points.items() if p.poll}
        assert polled and polled != set(maps["io"].points)
        assert set(await dset.devices["io"].poll()) == polled | {"layers_ok"}


def test_missing_map_or_setup_point_is_a_config_error() -> None:
    cfg = DeviceConfig.model_validate(
        {
            "kind": "temp_controller",
            "map": "tc.toml",
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": free_port()},
            "comm_timeout_s": 2.0,
        }
    )
    with pytest.raises(ConfigError, match="needs its register map"):
        open_device("heater1", cfg)
    no_timeout = RegisterMap.model_validate(
        {
            "name": "bare",
            "points": {
                k: v for k, v in TC_MAP.model_dump()["points"].items() if k != "comm_timeout_s"
            },
        }
    )
    with pytest.raises(ConfigError, match="no writable point 'comm_timeout_s'"):
        open_device("heater1", cfg, no_timeout)


def test_units_of_one_line_share_one_link(tmp_path: Path) -> None:
    def rtu(unit: int) -> DeviceConfig:
        return DeviceConfig.model_validate(
            {
                "kind": "temp_controller",
                "map": "tc.toml",
                "transport": {"type": "rtu", "port": str(tmp_path / "rs485"), "unit": unit},
            }
        )

    dset = DeviceSet({"a": rtu(1), "b": rtu(2)}, {"a": TC_MAP, "b": TC_MAP})
    a, b = dset.devices["a"], dset.devices["b"]
    assert isinstance(a, ModbusDevice) and isinstance(b, ModbusDevice)
    assert a._line is b._line

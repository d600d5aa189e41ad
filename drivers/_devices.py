"""Building the drivers of a booth config: one per device, one Modbus link per line."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Self

from ._config import DeviceConfig, RegisterMap, RtuTransport, SerialTransport, TcpTransport
from ._device import Device
from ._errors import ConfigError
from ._linerate import LineRate
from ._modbus import ModbusLine, line_key
from ._modbus_device import ModbusDevice
from ._o2 import O2Analyzer


def open_device(
    name: str,
    config: DeviceConfig,
    regmap: RegisterMap | None = None,
    *,
    lines: dict[str, ModbusLine] | None = None,
) -> Device:
    """The driver for one device, by kind and transport. Nothing is opened until it is used.

    ``lines`` shares Modbus links between devices (a DeviceSet passes its own): devices on the
    same RS-485 port, or the same TCP host and port, then use one client and one lock. Without
    it the device has a link of its own and closes it on exit.
    """
    transport = config.transport
    if config.kind == "o2_analyzer" and isinstance(transport, SerialTransport):
        return O2Analyzer(name, config)
    if not isinstance(transport, TcpTransport | RtuTransport):
        raise ConfigError(f"devices.{name}: a {config.kind} needs a Modbus transport")
    if regmap is None:
        raise ConfigError(f"devices.{name}: a {config.kind} needs its register map")
    if lines is None:
        return ModbusDevice(name, config, regmap, ModbusLine(transport), owns_line=True)
    key = line_key(transport)
    line = lines.get(key)
    if line is None:
        line = lines[key] = ModbusLine(transport)
    else:
        line.check_compatible(name, transport)
    return ModbusDevice(name, config, regmap, line, owns_line=False)


class DeviceSet:
    """Every device of a booth config, entered and left together."""

    def __init__(
        self, devices: Mapping[str, DeviceConfig], maps: Mapping[str, RegisterMap]
    ) -> None:
        self._lines: dict[str, ModbusLine] = {}
        self.devices: dict[str, Device] = {
            name: open_device(name, cfg, maps.get(name), lines=self._lines)
            for name, cfg in devices.items()
        }
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._close_lines)
            for dev in self.devices.values():
                await stack.enter_async_context(dev)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def line_rates(self) -> dict[str, LineRate]:
        """Each Modbus line's load figures (``drivers._linerate``), by the line's key."""
        return {key: line.scheduler.rate for key, line in self._lines.items()}

    async def _close_lines(self) -> None:
        for line in self._lines.values():
            await line.aclose()

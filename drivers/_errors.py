"""The one exception tree of the device layer.

Library errors (pymodbus, pyserial, OS) are mapped to these at the driver boundary with
``raise ... from exc``; callers never see a pymodbus or serial exception.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every device-layer error. ``device`` is the config name of the device."""

    def __init__(self, device: str, message: str, *, address: int | None = None) -> None:
        self.device = device
        self.address = address
        where = f" at address {address}" if address is not None else ""
        super().__init__(f"{device}{where}: {message}")


class DeviceTimeout(DeviceError):
    """No answer within the request's deadline."""


class DeviceDisconnected(DeviceError):
    """The link (socket, serial port) is down or could not be opened."""


class ModbusExceptionReply(DeviceError):
    """The device answered with a Modbus exception PDU (``isError()``)."""

    def __init__(self, device: str, code: int, *, address: int | None = None) -> None:
        self.code = code
        super().__init__(device, f"Modbus exception code {code:#04x}", address=address)


class ProtocolError(DeviceError):
    """A frame or line that cannot be decoded: CRC, length, checksum, garbage."""


class WriteVerifyError(DeviceError):
    """A write was answered, but the readback does not show the value written."""


class WriteRefusedError(DeviceError, ValueError):
    """A write that the driver refuses to send: unknown or read-only point, value out of range."""


class ConfigError(ValueError):
    """A device config or register map is invalid; the message names the file and field."""

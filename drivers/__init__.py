"""Device drivers of the booth: Modbus (TCP, RTU) and serial; every reading has time and quality."""

from ._codec import OutOfRange
from ._config import (
    Bit,
    DeviceConfig,
    Point,
    RegisterMap,
    RtuTransport,
    SerialTransport,
    TcpTransport,
    Transport,
    format_validation_error,
    load_register_map,
)
from ._device import Device
from ._devices import DeviceSet, open_device
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ModbusExceptionReply,
    ProtocolError,
    WriteRefusedError,
    WriteVerifyError,
)
from ._linerate import LineRate
from ._modbus_device import ModbusDevice
from ._o2 import O2Analyzer
from ._reading import Quality, Reading
from ._toml import TomlError, parse_toml, read_toml

__all__ = [
    "Bit",
    "ConfigError",
    "Device",
    "DeviceConfig",
    "DeviceDisconnected",
    "DeviceError",
    "DeviceSet",
    "DeviceTimeout",
    "LineRate",
    "ModbusDevice",
    "ModbusExceptionReply",
    "O2Analyzer",
    "OutOfRange",
    "Point",
    "ProtocolError",
    "Quality",
    "Reading",
    "RegisterMap",
    "RtuTransport",
    "SerialTransport",
    "TcpTransport",
    "TomlError",
    "Transport",
    "WriteRefusedError",
    "WriteVerifyError",
    "format_validation_error",
    "load_register_map",
    "open_device",
    "parse_toml",
    "read_toml",
]

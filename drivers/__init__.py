"""Device drivers of the booth: Modbus (TCP, RTU) and serial, every reading with time and quality."""

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
from ._errors import (
    ConfigError,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ModbusExceptionReply,
    ProtocolError,
    WriteVerifyError,
)
from ._reading import Quality, Reading

__all__ = [
    "Bit",
    "ConfigError",
    "DeviceConfig",
    "DeviceDisconnected",
    "DeviceError",
    "DeviceTimeout",
    "ModbusExceptionReply",
    "Point",
    "ProtocolError",
    "Quality",
    "Reading",
    "RegisterMap",
    "RtuTransport",
    "SerialTransport",
    "TcpTransport",
    "Transport",
    "WriteVerifyError",
    "format_validation_error",
    "load_register_map",
]

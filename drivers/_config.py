"""Device transports and register maps, as read from the booth TOML and the map files.

A register map is data: a different real controller is a new map file, not new code. The
simulator lays out its registers from the same files, so both sides agree by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._errors import ConfigError
from ._toml import TomlError, read_toml

Table = Literal["coil", "discrete", "input", "holding"]
DataType = Literal["bool", "uint16", "int16"]
DeviceKind = Literal["temp_controller", "remote_io", "holder_drive", "o2_analyzer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TcpTransport(_Strict):
    type: Literal["tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    unit: Annotated[int, Field(ge=0, le=247)] = 1


class RtuTransport(_Strict):
    """Modbus RTU on a serial line. Devices naming the same ``port`` share one line (and lock)."""

    type: Literal["rtu"]
    port: str
    baudrate: Annotated[int, Field(ge=1200, le=921600)] = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=1, le=247)] = 1


class SerialTransport(_Strict):
    """A plain ASCII serial line (the O2 analyzer)."""

    type: Literal["serial"]
    port: str
    baudrate: Annotated[int, Field(ge=1200, le=921600)] = 9600


Transport = Annotated[TcpTransport | RtuTransport | SerialTransport, Field(discriminator="type")]


class Point(_Strict):
    """One register or bit. Engineering value = raw * scale (+ offset)."""

    table: Table
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType = "uint16"
    scale: float = 1.0
    offset: float = 0.0
    writable: bool = False
    #: A command register (pulse): written, not read back (its value self-clears).
    command: bool = False
    unit: str = ""

    @model_validator(mode="after")
    def _check(self) -> Point:
        if self.table in ("coil", "discrete") and self.type != "bool":
            raise ValueError(f"a {self.table} point must have type 'bool', not {self.type!r}")
        if self.table in ("input", "holding") and self.type == "bool":
            raise ValueError(f"a {self.table} register cannot have type 'bool'")
        if self.writable and self.table in ("discrete", "input"):
            raise ValueError(f"a {self.table} point cannot be writable")
        if self.command and not self.writable:
            raise ValueError("a command point must be writable")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class Bit(_Strict):
    """A named bit inside a register point (a status word)."""

    #: The register point holding the bit.
    word: str
    bit: Annotated[int, Field(ge=0, le=15)]


class RegisterMap(_Strict):
    name: str
    description: str = ""
    points: dict[str, Point]
    bits: dict[str, Bit] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> RegisterMap:
        seen: dict[tuple[str, int], str] = {}
        for name, p in self.points.items():
            key = (p.table, p.address)
            if key in seen:
                raise ValueError(
                    f"points {seen[key]!r} and {name!r} share {p.table} address {p.address}"
                )
            seen[key] = name
        for name, b in self.bits.items():
            if b.word not in self.points:
                raise ValueError(f"bit {name!r} names unknown register {b.word!r}")
            if self.points[b.word].table not in ("input", "holding"):
                raise ValueError(f"bit {name!r}: {b.word!r} is not a register")
        return self


class DeviceConfig(_Strict):
    """One device of the booth: how to reach it and how to read it."""

    kind: DeviceKind
    transport: Transport
    #: Register map file, relative to the booth config file (Modbus devices only).
    map: str | None = None
    poll_hz: Annotated[float, Field(gt=0, le=200)] = 50.0
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.1
    #: Reads are retried at most this often before the value goes stale.
    retries: Annotated[int, Field(ge=0, le=2)] = 2
    #: A reading older than this is STALE.
    stale_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    #: temp_controller: its own comm-loss timeout, written to the controller at connect.
    comm_timeout_s: Annotated[float, Field(gt=0, le=60)] | None = None
    #: remote_io: its communication watchdog, written to the module at connect.
    watchdog_ms: Annotated[int, Field(ge=50, le=60000)] | None = None

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.comm_timeout_s is not None and self.kind != "temp_controller":
            raise ValueError("comm_timeout_s applies to a temp_controller only")
        if self.watchdog_ms is not None and self.kind != "remote_io":
            raise ValueError("watchdog_ms applies to a remote_io only")
        modbus = self.transport.type in ("tcp", "rtu")
        if modbus and self.map is None:
            raise ValueError(f"a Modbus device ({self.kind}) needs a 'map'")
        if not modbus and self.kind != "o2_analyzer":
            raise ValueError(f"a {self.kind} speaks Modbus: transport must be 'tcp' or 'rtu'")
        if self.kind == "o2_analyzer" and self.transport.type != "serial":
            raise ValueError("the o2_analyzer speaks ASCII over a serial line: transport 'serial'")
        return self


def load_register_map(path: Path) -> RegisterMap:
    """Read and validate a map file; a ConfigError names the file and the field."""
    try:
        data = read_toml(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read register map: {exc.strerror}") from exc
    except TomlError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return RegisterMap.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from exc


def format_validation_error(exc: ValidationError) -> str:
    """Every problem on one line each, as ``field.path: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        lines.append(f"{loc}: {err['msg']}")
    return "; ".join(lines)

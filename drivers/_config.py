"""Device transports and register maps, as read from the booth TOML and the map files.

A register map is data (``_regmap``): a different real controller is a new map file, not new
code. The generic simulator lays out its registers from the generic maps; the vendor models are
served by personalities written from their manuals, so that a wrong vendor map fails a test.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from ._errors import ConfigError
from ._regmap import Bit, DataType, Point, RegisterMap, SetupStep, Table, Watchdog, WriteBlock
from ._strict import Baudrate, TcpPort
from ._strict import StrictModel as _Strict
from ._toml import TomlError, read_toml

DeviceKind = Literal["temp_controller", "remote_io", "holder_drive", "o2_analyzer"]

#: The longest a reading may be trusted (``stale_s``). The I/O module carries the door, the
#: e-stop, the high limit and the hold on the part, and the holder drive the part's position:
#: section 4 withdraws a part "at once" when one of those goes, so they are trusted 2 s at most
#: (100 polls at the default 50 Hz: room for the retries and a reconnect, not for blindness).
#: The O2 analyzer reports about once a second (two missed reports must not make it stale) and a
#: solder pot changes slowly, so those get 5 s; the supervisor's own ``limits.o2_stale_s`` and
#: ``limits.temp_stale_s`` cap them further.
STALE_MAX_S = 5.0
STALE_MAX_S_BY_KIND: MappingProxyType[str, float] = MappingProxyType(
    {"remote_io": 2.0, "holder_drive": 2.0}
)
#: Bounds of the devices' own watchdogs (CONTRACT s.4: they make the outputs safe by themselves
#: when the supervisor goes silent, so they must be short, and never 0 = disabled). The booth
#: config requires them for these kinds (``booth_ctl.config._booth``).
WATCHDOG_MS_MIN, WATCHDOG_MS_MAX = 100, 2000
COMM_TIMEOUT_S_MIN, COMM_TIMEOUT_S_MAX = 0.5, 10.0
#: The poll rate while the booth is at rest (``rest_poll_hz``), unless the config says otherwise:
#: nothing moves and no part is exposed, so the inputs only gate the next command and feed
#: alarms whose goals are a second or more.
REST_POLL_HZ_DEFAULT = 5.0
#: Every reading must be refreshed at least this often within its ``stale_s``, at either rate:
#: a poll that lags once must not make a healthy device look stale.
POLLS_PER_STALE = 2

#: The kinds that stop (the heater controller) or withdraw (the holder drive) by themselves after
#: ``comm_timeout_s`` without the supervisor's heartbeat.
COMM_TIMEOUT_KINDS = frozenset({"temp_controller", "holder_drive"})

_CommTimeout = Annotated[float, Field(ge=COMM_TIMEOUT_S_MIN, le=COMM_TIMEOUT_S_MAX)]


class TcpTransport(_Strict):
    type: Literal["tcp"]
    host: str
    port: TcpPort
    unit: Annotated[int, Field(ge=0, le=247)] = 1


class RtuTransport(_Strict):
    """Modbus RTU on a serial line. Devices naming the same ``port`` share one line (and lock)."""

    type: Literal["rtu"]
    port: str
    baudrate: Baudrate = 19200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=1, le=247)] = 1


class SerialTransport(_Strict):
    """A plain ASCII serial line (the O2 analyzer)."""

    type: Literal["serial"]
    port: str
    baudrate: Baudrate = 9600
    #: The analyzer's line protocol (``drivers._o2ascii``): ``generic`` is the ``$O2,...*XX``
    #: line of docs/hardware.md; ``ox400`` a Yokogawa OX400; ``teledyne3000`` a Teledyne 3000.
    protocol: Literal["generic", "ox400", "teledyne3000"] = "generic"


Transport = Annotated[TcpTransport | RtuTransport | SerialTransport, Field(discriminator="type")]


__all__ = [
    "Bit",
    "DataType",
    "DeviceConfig",
    "Point",
    "RegisterMap",
    "SetupStep",
    "Table",
    "Watchdog",
    "WriteBlock",
]


class DeviceConfig(_Strict):
    """One device of the booth: how to reach it and how to read it."""

    kind: DeviceKind
    transport: Transport
    #: Register map file, relative to the booth config file (Modbus devices only).
    map: str | None = None
    poll_hz: Annotated[float, Field(gt=0, le=200)] = 50.0
    #: The poll rate while the booth is at rest (see ``rest_hz``); at most ``poll_hz``.
    rest_poll_hz: Annotated[float, Field(gt=0, le=200)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.1
    #: Reads are retried at most this often before the value goes stale.
    retries: Annotated[int, Field(ge=0, le=2)] = 2
    #: A reading older than this is STALE (at most STALE_MAX_S_BY_KIND for some kinds).
    stale_s: Annotated[float, Field(gt=0, le=STALE_MAX_S)] = 0.5
    #: temp_controller, holder_drive: its own comm-loss timeout, written to it at connect.
    comm_timeout_s: _CommTimeout | None = None
    #: remote_io: its communication watchdog, written to the module at connect.
    watchdog_ms: Annotated[int, Field(ge=WATCHDOG_MS_MIN, le=WATCHDOG_MS_MAX)] | None = None

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.comm_timeout_s is not None and self.kind not in COMM_TIMEOUT_KINDS:
            raise ValueError("comm_timeout_s applies to a temp_controller or a holder_drive only")
        if self.watchdog_ms is not None and self.kind != "remote_io":
            raise ValueError("watchdog_ms applies to a remote_io only")
        stale_max_s = STALE_MAX_S_BY_KIND.get(self.kind, STALE_MAX_S)
        if self.stale_s > stale_max_s:
            raise ValueError(
                f"stale_s: {self.stale_s:g} s exceeds {stale_max_s:g} s, the most for a "
                f"{self.kind} (its readings guard a part in the bath)"
            )
        for key, hz in (("poll_hz", self.poll_hz), ("rest_poll_hz", self.rest_hz)):
            if POLLS_PER_STALE / hz > self.stale_s + 1e-9:
                raise ValueError(
                    f"{key}: {hz:g} Hz polls too seldom for stale_s = {self.stale_s:g} s "
                    f"(at least {POLLS_PER_STALE / self.stale_s:g} Hz, {POLLS_PER_STALE} polls "
                    f"within stale_s)"
                )
        if self.rest_poll_hz is not None and self.rest_poll_hz > self.poll_hz:
            raise ValueError(
                f"rest_poll_hz: {self.rest_poll_hz:g} Hz exceeds poll_hz = {self.poll_hz:g} Hz"
            )
        modbus = self.transport.type in ("tcp", "rtu")
        if modbus and self.map is None:
            raise ValueError(f"a Modbus device ({self.kind}) needs a 'map'")
        if not modbus and self.kind != "o2_analyzer":
            raise ValueError(f"a {self.kind} speaks Modbus: transport must be 'tcp' or 'rtu'")
        # An o2_analyzer speaks ASCII on a serial line, or Modbus (RTU or TCP) by its map.
        if self.kind == "o2_analyzer" and self.transport.type == "serial" and self.map is not None:
            raise ValueError("an o2_analyzer on an ASCII serial line has no register 'map'")
        return self

    @property
    def rest_hz(self) -> float:
        """The poll rate at rest: ``rest_poll_hz``, else 5 Hz (never above ``poll_hz``, never
        too slow for ``stale_s``)."""
        if self.rest_poll_hz is not None:
            return self.rest_poll_hz
        return min(self.poll_hz, max(REST_POLL_HZ_DEFAULT, POLLS_PER_STALE / self.stale_s))


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

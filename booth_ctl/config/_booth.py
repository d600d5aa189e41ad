"""The booth configuration: one TOML file, validated at load.

Unknown keys are refused and every error names the field and the bound. The ``[sim]`` table
belongs to the simulator and is not read here beyond being a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers import (
    ConfigError,
    DeviceConfig,
    RegisterMap,
    TomlError,
    format_validation_error,
    load_register_map,
    read_toml,
)
from drivers._config import (
    COMM_TIMEOUT_S_MAX,
    COMM_TIMEOUT_S_MIN,
    WATCHDOG_MS_MAX,
    WATCHDOG_MS_MIN,
)

#: Claim 29: the solder is never transferred above this, whatever a recipe says.
O2_ABSOLUTE_MAX_PPM = 10_000.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MqttConfig(_Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    keepalive_s: Annotated[int, Field(ge=1, le=3600)] = 10
    username: str | None = None
    #: File holding the password (never the password itself in the config).
    password_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: A reply of a repeated request_id is served from the record store for this long.
    request_id_keep_s: Annotated[float, Field(gt=0)] = 86_400.0
    #: Bound of the in-memory publish queue; MQTT can never stall the scan.
    queue_max: Annotated[int, Field(ge=10, le=1_000_000)] = 10_000
    #: Commands waiting to run at most; beyond this a command is answered ``busy`` at once.
    command_queue_max: Annotated[int, Field(ge=1, le=10_000)] = 64
    #: Reconnect backoff: first wait, and the cap it doubles up to (each wait jittered).
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 0.1
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    #: A QoS 1 publish not acknowledged by the broker within this time counts as a lost link.
    publish_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0


class ScanConfig(_Strict):
    period_ms: Annotated[float, Field(ge=1, le=1000)] = 10.0


class TelemetryConfig(_Strict):
    period_s: Annotated[float, Field(ge=0.05, le=3600)] = 1.0


class MetricsConfig(_Strict):
    """The Prometheus endpoint; loopback by default (scrape it through a local agent or proxy)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]


class GemConfig(_Strict):
    """The SECS/GEM equipment interface (HSMS-SS passive entity); CONTRACT §8, docs/gem.md."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]
    #: The HSMS session id (SECS device id) hosts must address.
    device_id: Annotated[int, Field(ge=0, le=32767)] = 0
    #: HSMS timers (SEMI E37): reply, control transaction, not selected, inter-character.
    t3_s: Annotated[float, Field(ge=1, le=600)] = 45.0
    t6_s: Annotated[float, Field(ge=1, le=240)] = 5.0
    t7_s: Annotated[float, Field(ge=1, le=240)] = 10.0
    t8_s: Annotated[float, Field(ge=1, le=120)] = 5.0


#: Seconds in a day (the keep times of the records are in days).
DAY_S = 86_400


class RecordsConfig(_Strict):
    path: str
    recipes_dir: str = "recipes"
    #: Command audit entries older than this are deleted (hourly). It must cover
    #: mqtt.request_id_keep_s: a repeated request_id is answered from the audit.
    audit_keep_days: Annotated[int, Field(ge=1)] = 90
    #: Delivered events older than this are deleted (hourly), except the dip, flux_dip and
    #: refreshed events the dip counters are rebuilt from. Jobs, units, dips and the alarm
    #: history are lot records and are never deleted.
    events_keep_days: Annotated[int, Field(ge=1)] = 30


class BoothGeometry(_Strict):
    volume_l: Annotated[float, Field(gt=0, le=100_000)]
    purge_volumes: Annotated[float, Field(ge=1.0, le=50)] = 3.0


class LimitsConfig(_Strict):
    o2_stale_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    o2_frozen_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    temp_stale_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    temp_max_c: Annotated[float, Field(gt=0, le=450)] = 380.0
    runaway_hysteresis_c: Annotated[float, Field(gt=0, le=100)] = 15.0
    runaway_max_error_c_s: Annotated[float, Field(gt=0)] = 600.0
    heating_check_window_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    heating_check_gain_c: Annotated[float, Field(gt=0, le=100)] = 1.0
    stuck_on_rise_c: Annotated[float, Field(gt=0, le=100)] = 5.0
    vessel_dips_warn: Annotated[int, Field(ge=1)] = 500
    flux_dips_warn: Annotated[int, Field(ge=1)] = 200
    #: No recipe may ask for a shorter O2 stable time than this.
    o2_stable_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    #: O2 limit while no job runs (resetting, idle): the purge stops once O2 is under it.
    o2_ready_ppm: Annotated[float, Field(gt=0, le=O2_ABSOLUTE_MAX_PPM)] = 1000.0
    #: A stopping or aborting holder that has not confirmed the top by then is given up on.
    withdraw_timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0


class HolderConfig(_Strict):
    kind: Literal["suction", "chain", "both"]
    vacuum_hold_kpa: Annotated[float, Field(gt=0, le=101)] = 40.0
    load_station: Annotated[int, Field(ge=0, le=15)] = 0
    z_travel_mm: Annotated[float, Field(ge=0)] = 0.0
    z_fast_speed_mm_s: Annotated[float, Field(gt=0, le=2000)] = 200.0
    z_max_mm: Annotated[float, Field(gt=0, le=2000)] = 150.0
    #: A position reading within this of its target counts as reached.
    z_tolerance_mm: Annotated[float, Field(gt=0, le=10)] = 0.5
    #: The fast approach stops this far above a surface; the rest is at the recipe's speed.
    approach_gap_mm: Annotated[float, Field(ge=0, le=100)] = 5.0


class FluxConfig(_Strict):
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]
    depth_max_mm: Annotated[float, Field(gt=0)]
    level_low_pct: Annotated[float, Field(ge=0, le=100)] = 20.0


class VesselConfig(_Strict):
    controller: str
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]
    depth_max_mm: Annotated[float, Field(gt=0)]
    idle_setpoint_c: Annotated[float, Field(ge=0, le=450)]
    #: Resetting reaches idle once the solder is within idle_setpoint_c +/- this.
    idle_band_c: Annotated[float, Field(gt=0, le=50)] = 10.0
    #: The heater verifier's rise window for this vessel (limits.heating_check_window_s if unset);
    #: it must outlast the melt plateau of the vessel's charge.
    heating_check_window_s: Annotated[float, Field(gt=0, le=3600)] | None = None


class BoothConfig(_Strict):
    booth_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    mqtt: MqttConfig
    scan: ScanConfig = ScanConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    #: Absent: no metrics endpoint.
    metrics: MetricsConfig | None = None
    #: Absent: no SECS/GEM link.
    gem: GemConfig | None = None
    records: RecordsConfig
    booth: BoothGeometry
    limits: LimitsConfig = LimitsConfig()
    holder: HolderConfig
    flux: FluxConfig
    vessels: Annotated[dict[str, VesselConfig], Field(min_length=1)]
    devices: dict[str, DeviceConfig]
    #: The simulator's own table; the supervisor ignores its content.
    sim: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> BoothConfig:
        kinds = {name: d.kind for name, d in self.devices.items()}
        for needed in ("remote_io", "holder_drive", "o2_analyzer"):
            if needed not in kinds.values():
                raise ValueError(f"devices: no device of kind {needed!r}")
        # CONTRACT s.4: the devices make themselves safe when the supervisor goes silent. A
        # booth config cannot leave their watchdogs out (the bounds are DeviceConfig's).
        for name, d in self.devices.items():
            if d.kind == "remote_io" and d.watchdog_ms is None:
                raise ValueError(
                    f"devices.{name}.watchdog_ms: required for a remote_io (its communication "
                    f"watchdog drops the outputs to safe; {WATCHDOG_MS_MIN}-{WATCHDOG_MS_MAX} ms)"
                )
            if d.kind == "temp_controller" and d.comm_timeout_s is None:
                raise ValueError(
                    f"devices.{name}.comm_timeout_s: required for a temp_controller (it stops "
                    f"its output without the supervisor's heartbeat; "
                    f"{COMM_TIMEOUT_S_MIN:g}-{COMM_TIMEOUT_S_MAX:g} s)"
                )
            if d.kind == "holder_drive" and d.comm_timeout_s is None:
                raise ValueError(
                    f"devices.{name}.comm_timeout_s: required for a holder_drive (it withdraws "
                    f"the part by itself without the supervisor's heartbeat; "
                    f"{COMM_TIMEOUT_S_MIN:g}-{COMM_TIMEOUT_S_MAX:g} s)"
                )
        stations = {self.holder.load_station: "holder.load_station", self.flux.station: "flux"}
        for name, v in self.vessels.items():
            if kinds.get(v.controller) != "temp_controller":
                raise ValueError(
                    f"vessels.{name}.controller: {v.controller!r} is not a temp_controller device"
                )
            if v.station in stations:
                raise ValueError(
                    f"vessels.{name}.station: station {v.station} is already {stations[v.station]}"
                )
            stations[v.station] = f"vessels.{name}"
            if v.idle_setpoint_c + v.idle_band_c >= self.limits.temp_max_c:
                raise ValueError(
                    f"vessels.{name}.idle_setpoint_c: plus idle_band_c must stay under "
                    f"limits.temp_max_c ({self.limits.temp_max_c})"
                )
            if v.surface_z_mm + v.depth_max_mm > self.holder.z_max_mm:
                raise ValueError(
                    f"vessels.{name}: surface_z_mm + depth_max_mm exceeds holder.z_max_mm "
                    f"({self.holder.z_max_mm})"
                )
        if self.flux.surface_z_mm + self.flux.depth_max_mm > self.holder.z_max_mm:
            raise ValueError("flux: surface_z_mm + depth_max_mm exceeds holder.z_max_mm")
        keep_s = self.mqtt.request_id_keep_s
        if self.records.audit_keep_days * DAY_S < keep_s:
            need = -(-keep_s // DAY_S)  # whole days, rounded up
            raise ValueError(
                f"records.audit_keep_days: {self.records.audit_keep_days} days is shorter than "
                f"mqtt.request_id_keep_s ({keep_s:g} s), and a repeated request_id is answered "
                f"from the command audit: at least {need:g} days (or a shorter "
                "mqtt.request_id_keep_s)"
            )
        return self

    def device_of_kind(self, kind: str) -> str:
        """The name of the (first) device of this kind."""
        for name, d in self.devices.items():
            if d.kind == kind:
                return name
        raise KeyError(kind)


class LoadedConfig:
    """A validated config with its file's location and the register maps it names."""

    def __init__(self, path: Path, config: BoothConfig, maps: dict[str, RegisterMap]) -> None:
        self.path = path
        self.config = config
        self.maps = maps

    def resolve(self, relative: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)


def load_config(path: str | Path) -> LoadedConfig:
    """Load, validate and resolve the register maps; ConfigError lists every problem."""
    p = Path(path)
    try:
        data = read_toml(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from exc
    except TomlError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return config_from_dict(data, p)


#: Points of a device's own safety layer, by kind: written (w) or read (r) by the supervisor. A map
#: without one would switch that layer off without a word, so the booth config refuses it.
SAFETY_POINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "remote_io": (
        ("watchdog_refresh", "w"),
        ("watchdog_timeout_ms", "w"),
        ("watchdog_clear", "w"),
        ("watchdog_tripped", "r"),
    ),
    "temp_controller": (("heartbeat", "w"), ("comm_timeout_s", "w"), ("comm_lost", "r")),
    "holder_drive": (("heartbeat", "w"), ("comm_timeout_s", "w"), ("comm_lost", "r")),
}


def _safety_point_problems(name: str, kind: str, regmap: RegisterMap) -> list[str]:
    problems = []
    for point, access in SAFETY_POINTS.get(kind, ()):
        if access == "r" and (point in regmap.points or point in regmap.bits):
            continue
        if access == "w" and point in regmap.points and regmap.points[point].writable:
            continue
        what = "a writable point" if access == "w" else "a point or bit"
        problems.append(
            f"devices.{name}.map: map {regmap.name!r} has no {what} {point!r} "
            f"(the {kind}'s own safety layer needs it)"
        )
    return problems


def config_from_dict(data: dict[str, Any], path: Path) -> LoadedConfig:
    try:
        cfg = BoothConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from exc
    maps: dict[str, RegisterMap] = {}
    problems: list[str] = []
    for name, dev in cfg.devices.items():
        if dev.map is None:
            continue
        map_path = Path(dev.map) if Path(dev.map).is_absolute() else path.parent / dev.map
        try:
            maps[name] = load_register_map(map_path)
        except ConfigError as exc:
            problems.append(f"devices.{name}.map: {exc}")
            continue
        problems.extend(_safety_point_problems(name, dev.kind, maps[name]))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return LoadedConfig(path, cfg, maps)

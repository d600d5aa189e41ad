"""The booth configuration: one TOML file, validated at load.

Unknown keys are refused and every error names the field and the bound. The ``[sim]`` table
belongs to the simulator and is not read here beyond being a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from booth_ctl.config._alloys import FluxAgent, SolventClass
from booth_ctl.config._layers import has_comm_loss, layer_problems, without_comm_loss
from drivers import DeviceConfig
from drivers._booth_file import (
    RULE_SEPARATOR,
    LoadedFile,
    load_maps,
    read_booth_file,
    refuse,
    validation_lines,
)
from drivers._config import STALE_MAX_S
from drivers._safety_points import missing_points
from drivers._strict import StrictModel as _Strict
from drivers._strict import TcpPort

from ._lines import line_problems

#: Claim 29: the solder is never transferred above this, whatever a recipe says.
O2_ABSOLUTE_MAX_PPM = 10_000.0

# Bounds of the safety-relevant numbers, each with the reason it holds (CONTRACT s.4: no
# configuration can lift a rule). Cross-field bounds are in ``_rules``.

#: Gas volume of the enclosure, litres. The purge counts purge_volumes x volume_l of N2 before it
#: believes the O2 reading; a figure under half a litre cannot be a booth that holds a solder pot
#: and a flux vessel (it is a unit slip, m3 or mL), and would count the purge done at once.
VOLUME_MIN_L = 0.5
#: The longest an O2 or solder-temperature reading may be trusted: the drivers' own cap for the
#: analyzer and the controllers (two missed 1 Hz reports; a pot changes slowly). Longer, and a
#: part stays in the bath on a reading that says nothing about now.
LIMIT_STALE_MAX_S = STALE_MAX_S
#: O2 "stable" lasts at least this long: one report period of a 1 Hz analyzer. Shorter, and one
#: reading held fresh would be "stable" (0.01 s was accepted).
O2_STABLE_MIN_S = 1.0
#: An O2 reading unchanged this long is a stuck analyzer, not a stable atmosphere. A real cell's
#: noise changes its reading within seconds; five minutes of a frozen value is no measurement.
O2_FROZEN_MAX_S = 300.0
#: Below target - hysteresis (or above target + hysteresis with the output on) the heater's
#: off-target time counts toward a runaway trip. Wider than this, a bath could sit far outside
#: every useful dip band without the check counting anything.
RUNAWAY_HYSTERESIS_MAX_C = 25.0
#: The runaway budget, C x s off target beyond the hysteresis. 3600 is 60 C off for a minute, or
#: 10 C for six: larger and the check never trips within a job (1e9 was accepted: check off).
RUNAWAY_MAX_ERROR_MAX_C_S = 3600.0
#: The rise the heater must show within its window while heating. A thermocouple input resolves
#: 0.1 C: under five counts, noise alone would pass the check (1e-6 was accepted: check off).
HEATING_GAIN_MIN_C = 0.5
#: A rise this large with the heater off is a stuck-on element; beyond it the check is blind to
#: the fault until the over-temperature trip, at the flux's doorstep.
STUCK_ON_RISE_MAX_C = 25.0
#: The hold threshold of the suction head, kPa of vacuum. A pump reaches several kPa through an
#: open nozzle with no part on it (the simulator's 8 kPa); under 20 kPa an unsealed head could
#: count as holding a part (0.01 was accepted: any reading was "held").
VACUUM_HOLD_MIN_KPA = 20.0
#: The fast approach stops this far above a surface at least, and never less than
#: ``APPROACH_GAP_TOLERANCES`` x z_tolerance_mm: a fast move counts as arrived within the
#: tolerance, so a smaller gap could stop a fast-moving part in the bath.
APPROACH_GAP_MIN_MM = 2.0


class MqttConfig(_Strict):
    host: str
    port: TcpPort
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
    port: TcpPort



class HmiConfig(_Strict):
    """The operator's web page (CONTRACT section 7); loopback by default. To serve the LAN, set
    ``host`` and either give ``tls_cert``/``tls_key`` or put a TLS reverse proxy in front
    (docs/operations.md)."""

    host: str = "127.0.0.1"
    port: TcpPort
    #: PEM files (relative to the config file): serve HTTPS. Both or neither.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Mark the session cookie Secure (set it behind an HTTPS proxy; implied by tls_cert).
    secure_cookie: bool = False
    #: A session ends after this long without a request.
    session_idle_s: Annotated[float, Field(ge=60, le=7 * 86_400)] = 8 * 3600.0
    #: Minutes of readings the trend charts show.
    trend_minutes: Annotated[int, Field(ge=1, le=60)] = 10

    @model_validator(mode="after")
    def _tls_pair(self) -> HmiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("hmi.tls_cert and hmi.tls_key go together: give both or neither")
        return self


class GemConfig(_Strict):
    """The SECS/GEM equipment interface (HSMS-SS passive entity); CONTRACT §8, docs/gem.md."""

    host: str = "127.0.0.1"
    port: TcpPort
    #: The HSMS session id (SECS device id) hosts must address.
    device_id: Annotated[int, Field(ge=0, le=32767)] = 0
    #: HSMS timers (SEMI E37): reply, control transaction, not selected, inter-character.
    t3_s: Annotated[float, Field(ge=1, le=600)] = 45.0
    t6_s: Annotated[float, Field(ge=1, le=240)] = 5.0
    t7_s: Annotated[float, Field(ge=1, le=240)] = 10.0
    t8_s: Annotated[float, Field(ge=1, le=120)] = 5.0


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
    volume_l: Annotated[float, Field(ge=VOLUME_MIN_L, le=100_000)]
    purge_volumes: Annotated[float, Field(ge=1.0, le=50)] = 3.0


class LimitsConfig(_Strict):
    o2_stale_s: Annotated[float, Field(gt=0, le=LIMIT_STALE_MAX_S)] = 1.0
    o2_frozen_s: Annotated[float, Field(gt=0, le=O2_FROZEN_MAX_S)] = 30.0
    temp_stale_s: Annotated[float, Field(gt=0, le=LIMIT_STALE_MAX_S)] = 1.0
    #: The over-temperature trip: under the autoignition point of the booth's flux less the
    #: margin (``_rules``), and above every idle setpoint and band.
    temp_max_c: Annotated[float, Field(gt=0, le=450)] = 300.0
    runaway_hysteresis_c: Annotated[float, Field(gt=0, le=RUNAWAY_HYSTERESIS_MAX_C)] = 15.0
    runaway_max_error_c_s: Annotated[float, Field(gt=0, le=RUNAWAY_MAX_ERROR_MAX_C_S)] = 600.0
    heating_check_window_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    heating_check_gain_c: Annotated[float, Field(ge=HEATING_GAIN_MIN_C, le=100)] = 1.0
    stuck_on_rise_c: Annotated[float, Field(gt=0, le=STUCK_ON_RISE_MAX_C)] = 5.0
    vessel_dips_warn: Annotated[int, Field(ge=1)] = 500
    flux_dips_warn: Annotated[int, Field(ge=1)] = 200
    #: No recipe may ask for a shorter O2 stable time than this.
    o2_stable_s: Annotated[float, Field(ge=O2_STABLE_MIN_S, le=3600)] = 1.0
    #: O2 limit while no job runs (resetting, idle): the purge stops once O2 is under it.
    o2_ready_ppm: Annotated[float, Field(gt=0, le=O2_ABSOLUTE_MAX_PPM)] = 1000.0
    #: A stopping or aborting holder that has not confirmed the top by then is given up on.
    withdraw_timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0
    #: Exhaust air flow lost while heating: after this the heaters go to their idle setpoints
    #: (flux fumes and solder at process temperature without extraction). At least 1 s so a
    #: flow switch's chatter does not cut a job; at most 300 s, the longest a booth may heat
    #: at process temperature unextracted (the alarm is raised at once either way).
    exhaust_loss_idle_s: Annotated[float, Field(ge=1, le=300)] = 30.0


class HolderConfig(_Strict):
    kind: Literal["suction", "chain", "both"]
    vacuum_hold_kpa: Annotated[float, Field(ge=VACUUM_HOLD_MIN_KPA, le=101)] = 40.0
    load_station: Annotated[int, Field(ge=0, le=15)] = 0
    #: "Top": clear of every surface by a margin (``_rules``).
    z_travel_mm: Annotated[float, Field(ge=0)] = 0.0
    z_fast_speed_mm_s: Annotated[float, Field(gt=0, le=2000)] = 200.0
    z_max_mm: Annotated[float, Field(gt=0, le=2000)] = 150.0
    #: A position reading within this of its target counts as reached.
    z_tolerance_mm: Annotated[float, Field(gt=0, le=10)] = 0.5
    #: The fast approach stops this far above a surface; the rest is at the recipe's speed.
    approach_gap_mm: Annotated[float, Field(ge=APPROACH_GAP_MIN_MM, le=100)] = 5.0


class FluxConfig(_Strict):
    #: The class of flux the flux vessel holds: the booth's over-temperature trip and idle
    #: setpoints stay under its autoignition point, and every recipe must name the same flux.
    agent: FluxAgent
    #: A ``mixture`` names its solvent classes; it is judged by the lowest autoignition point.
    components: Annotated[list[SolventClass], Field(min_length=2, max_length=4)] | None = None
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]
    depth_max_mm: Annotated[float, Field(gt=0)]
    level_low_pct: Annotated[float, Field(ge=0, le=100)] = 20.0


class VesselConfig(_Strict):
    controller: str
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]
    depth_max_mm: Annotated[float, Field(gt=0)]
    #: Plus idle_band_c: under limits.temp_max_c and the flux's autoignition point less the
    #: margin (``_rules``); 450 C is the static cap of every temperature of the booth.
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
    #: Absent: no HMI.
    hmi: HmiConfig | None = None
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
        from booth_ctl.config._rules import rule_problems

        problems = rule_problems(self)
        if problems:
            raise ValueError(RULE_SEPARATOR.join(problems))
        return self

    def device_of_kind(self, kind: str) -> str:
        """The name of the (first) device of this kind."""
        for name, d in self.devices.items():
            if d.kind == kind:
                return name
        raise KeyError(kind)


class LoadedConfig(LoadedFile[BoothConfig]):
    """A validated config with its file's location and the register maps it names."""


def check_config(path: str | Path) -> tuple[LoadedConfig | None, list[str]]:
    """Every problem of a booth config and of the register maps it names, one line each.

    The one check: ``boothctl config check`` prints these lines and ``boothctl run`` (through
    ``load_config``) refuses to start with the same ones. Each line starts with the file it is
    about and names the field and the bound (or, for TOML syntax, the line and column).
    """
    p = Path(path)
    data, problems = read_booth_file(p)
    if data is None:
        return None, problems
    return check_data(data, p)


def check_data(data: dict[str, Any], path: Path) -> tuple[LoadedConfig | None, list[str]]:
    """``check_config`` of an already parsed file."""
    try:
        cfg = BoothConfig.model_validate(data)
    except ValidationError as exc:
        return None, [f"{path}: {line}" for line in validation_lines(exc)]
    maps, problems = load_maps(cfg.devices, path)
    for name, regmap in maps.items():
        kind = cfg.devices[name].kind
        missing = missing_points(name, kind, regmap, "supervisor", cfg.holder.kind)
        if not has_comm_loss(cfg.devices[name], regmap):
            # its comm-loss points are not wanted: the I/O watchdog must cover it (layer_problems)
            missing = without_comm_loss(missing)
        problems.extend(f"{path}: {line}" for line in missing)
    problems.extend(f"{path}: {line}" for line in line_problems(cfg.devices, maps))
    if not problems:
        problems.extend(f"{path}: {line}" for line in layer_problems(cfg, maps))
    if problems:
        return None, problems
    return LoadedConfig(path, cfg, maps), []


def load_config(path: str | Path) -> LoadedConfig:
    """Load, validate and resolve the register maps; ConfigError lists every problem."""
    loaded, problems = check_config(path)
    if loaded is None:
        raise refuse(problems)
    return loaded


def config_from_dict(data: dict[str, Any], path: Path) -> LoadedConfig:
    loaded, problems = check_data(data, path)
    if loaded is None:
        raise refuse(problems)
    return loaded

"""What the simulator reads from the booth TOML: geometry, devices, maps and its ``[sim]`` table.

The shared sections (``[booth]``, ``[holder]``, ``[flux]``, ``[vessels.*]``) are read leniently
(unknown keys ignored): the supervisor owns their validation, the simulator only needs a few
numbers from them. Devices and register maps use the drivers' own models, so both sides read the
very same map files. The ``[sim]`` table is the simulator's: its physics parameters, each with a
default, validated strictly so that a typo is not silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers import DeviceConfig
from drivers._booth_file import (
    LoadedFile,
    load_maps,
    read_booth_file,
    refuse,
    validation_lines,
)
from drivers._safety_points import missing_points
from drivers._strict import StrictModel as _Strict

from .personalities._bridge import MODELS as PERSONALITY_MODELS

#: Coils of the remote I/O after a watchdog trip: N2 keeps flowing, the exhaust keeps running,
#: the heater contactor opens, the suction head keeps its vacuum (a held part is never dropped),
#: the red light shows the trip. "hold" keeps the coil as it was.
DEFAULT_IO_SAFE_OUTPUTS: dict[str, bool | Literal["hold"]] = {
    "heater_contactor": False,
    "n2_purge": False,
    "n2_maintain": True,
    "exhaust_fan": True,
    "vacuum_pump": "hold",
    "vacuum_valve": "hold",
    "light_red": True,
    "light_amber": False,
    "light_green": False,
    "buzzer": False,
}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class BoothGeometry(_Lenient):
    volume_l: Annotated[float, Field(gt=0)]


class HolderGeometry(_Lenient):
    kind: Literal["suction", "chain", "both"]
    vacuum_hold_kpa: Annotated[float, Field(gt=0)] = 40.0
    load_station: Annotated[int, Field(ge=0, le=15)] = 0
    z_fast_speed_mm_s: Annotated[float, Field(gt=0)] = 200.0
    z_max_mm: Annotated[float, Field(gt=0)] = 150.0


class FluxGeometry(_Lenient):
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]


class VesselGeometry(_Lenient):
    controller: str
    station: Annotated[int, Field(ge=0, le=15)]
    surface_z_mm: Annotated[float, Field(gt=0)]
    idle_setpoint_c: float = 250.0


class VesselPhysics(_Strict):
    """One solder vessel's thermal parameters (``[sim.vessels.<name>]``, all optional).

    Defaults describe a small dip pot of eutectic tin-lead: 10 kg of solder, a 2 kW heater.
    """

    mass_kg: Annotated[float, Field(gt=0)] = 10.0
    cp_solid_j_kg_k: Annotated[float, Field(gt=0)] = 176.0
    cp_liquid_j_kg_k: Annotated[float, Field(gt=0)] = 200.0
    latent_heat_j_kg: Annotated[float, Field(ge=0)] = 37_000.0
    solidus_c: float = 183.0
    liquidus_c: float = 183.0
    heater_w: Annotated[float, Field(gt=0)] = 2000.0
    #: Losses to ambient (convection, radiation, the pot's insulation), linearised.
    loss_w_k: Annotated[float, Field(ge=0)] = 2.0
    #: First-order lag of the controller's thermocouple and of the high-limit's own sensor.
    tc_tau_s: Annotated[float, Field(gt=0)] = 1.0
    high_limit_tau_s: Annotated[float, Field(gt=0)] = 1.5

    @model_validator(mode="after")
    def _check(self) -> VesselPhysics:
        if self.liquidus_c < self.solidus_c:
            raise ValueError("liquidus_c must not be below solidus_c")
        return self


class SimSettings(_Strict):
    """The ``[sim]`` table: the simulated booth's physical truth and its parameters."""

    control_socket: str | None = None
    #: Real-time step of ``booth-sim``'s physics loop.
    step_ms: Annotated[float, Field(ge=1, le=100)] = 5.0
    start_temp_c: float = 25.0
    start_o2_ppm: Annotated[float, Field(ge=0, le=1_000_000)] = 209_000.0
    ambient_c: float = 25.0
    # -- atmosphere
    air_o2_ppm: Annotated[float, Field(ge=0, le=1_000_000)] = 209_000.0
    n2_o2_ppm: Annotated[float, Field(ge=0, le=1_000_000)] = 5.0
    n2_purge_lpm: Annotated[float, Field(ge=0)] = 100.0
    n2_maintain_lpm: Annotated[float, Field(ge=0)] = 10.0
    #: Air exchanged through seals and gaps with the door closed.
    leak_lpm: Annotated[float, Field(ge=0)] = 0.01
    #: Air exchanged through the open door.
    door_leak_lpm: Annotated[float, Field(ge=0)] = 300.0
    # -- serial lines
    #: Each RTU unit's turnaround: from a request received (after its inter-frame silence) to
    #: its reply starting on the wire (controllers' manuals: a few ms, often settable).
    rtu_turnaround_ms: Annotated[float, Field(ge=0, le=250)] = 3.0
    # -- O2 analyzer
    o2_period_ms: Annotated[int, Field(ge=50, le=60_000)] = 1000
    o2_t90_ms: Annotated[int, Field(ge=1, le=600_000)] = 5000
    #: How long an auto-zero ($ZERO) keeps the analyzer in CAL.
    o2_cal_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    #: Measurement noise of each report: this standard deviation, or this % of the value if more.
    o2_noise_ppm: Annotated[float, Field(ge=0)] = 0.3
    o2_noise_pct: Annotated[float, Field(ge=0, le=10)] = 0.1
    #: Seed of the simulator's random numbers (analyzer noise): runs repeat.
    seed: int = 1
    # -- temperature controllers (their own PID, on their own thermocouple)
    pid_kp_pct_c: Annotated[float, Field(ge=0)] = 8.0
    pid_ti_s: Annotated[float, Field(gt=0)] = 200.0
    pid_td_s: Annotated[float, Field(ge=0)] = 0.0
    #: Deviation alarm band of the controllers, while running.
    alarm_band_c: Annotated[float, Field(gt=0)] = 10.0
    #: Independent high-limit: opens the heater contactor at this temperature, latched.
    high_limit_c: float = 400.0
    #: The e-stop circuit opens the heater contactor by wire, whatever the I/O module says.
    estop_cuts_heater: bool = True
    vessels: dict[str, VesselPhysics] = Field(default_factory=dict)
    # -- holder
    station_travel_s: Annotated[float, Field(ge=0)] = 1.0
    vacuum_max_kpa: Annotated[float, Field(gt=0, le=101)] = 80.0
    #: What the pump reaches through the open suction hole with no part to seal it.
    vacuum_open_kpa: Annotated[float, Field(ge=0, le=101)] = 8.0
    vacuum_tau_s: Annotated[float, Field(gt=0)] = 0.15
    #: A leak in the suction line (cracked hose, worn seal; fault ``vacuum_leak``): the vacuum
    #: decays with this time constant toward what the pump still holds against the leak ...
    vacuum_leak_tau_s: Annotated[float, Field(gt=0)] = 0.5
    #: ... this (the fault's value overrides it; 0: a line open to air, total loss).
    vacuum_leak_kpa: Annotated[float, Field(ge=0, le=101)] = 25.0
    #: Away from the load nest a part hanging on the head falls once the vacuum is below this:
    #: its weight beats the suction. Must be below ``holder.vacuum_hold_kpa``, the supervisor's
    #: "hold lost" level, so that a lost hold is seen before the part falls.
    part_release_kpa: Annotated[float, Field(ge=0, le=101)] = 20.0
    #: Chain hanger: how long the holder waits at the load station before a part is hung on
    #: (or a finished one taken off) its hook.
    chain_dwell_s: Annotated[float, Field(ge=0)] = 1.0
    # -- flux
    flux_level_pct: Annotated[float, Field(ge=0, le=100)] = 80.0
    flux_per_dip_pct: Annotated[float, Field(ge=0, le=100)] = 0.1
    flux_low_pct: Annotated[float, Field(ge=0, le=100)] = 5.0
    flux_lid_closed: bool = False
    # -- remote I/O watchdog
    io_safe_outputs: dict[str, bool | Literal["hold"]] = Field(
        default_factory=lambda: dict(DEFAULT_IO_SAFE_OUTPUTS)
    )
    #: Devices served by a vendor personality (sim_hw.personalities), by model: device -> the
    #: model's map name (``omron-e5cc``, ``watlow-pm``, ``autonics-tk4``, ``wago-750-352``,
    #: ``endress-oxy5500``). The physics then drives the generic map of the device's kind beside
    #: the device's own map.
    personalities: dict[str, str] = Field(default_factory=dict)


class SimConfig(_Lenient):
    """The parts of the booth TOML the simulator uses."""

    booth_id: str = "booth"
    booth: BoothGeometry
    holder: HolderGeometry
    flux: FluxGeometry
    vessels: Annotated[dict[str, VesselGeometry], Field(min_length=1)]
    devices: dict[str, DeviceConfig]
    sim: SimSettings = SimSettings()


class LoadedSim(LoadedFile[SimConfig]):
    """A validated simulator config, its file and the register maps of its Modbus devices."""

    @property
    def control_socket(self) -> Path:
        sock = self.config.sim.control_socket
        if sock is None:
            return Path(f"/tmp/booth-sim-{self.config.booth_id}/sim.sock")
        return self.resolve(sock)


def load_sim_config(path: str | Path) -> LoadedSim:
    """Read the booth TOML for the simulator; ConfigError names the file and every problem."""
    p = Path(path)
    data, problems = read_booth_file(p)
    if data is None:
        raise refuse(problems)
    return sim_config_from_dict(data, p)


def sim_config_from_dict(data: dict[str, Any], path: Path) -> LoadedSim:
    try:
        cfg = SimConfig.model_validate(data)
    except ValidationError as exc:
        raise refuse([f"{path}: {line}" for line in validation_lines(exc)]) from exc
    problems: list[str] = []
    # A device served by a vendor personality keeps its generic bank (the physics' side): the
    # personality translates the vendor's registers to it, written from the manual, not the map.
    bank_devices: dict[str, DeviceConfig] = {}
    for name, dev in cfg.devices.items():
        model = cfg.sim.personalities.get(name)
        if model is None or dev.map is None:
            bank_devices[name] = dev
        elif model not in PERSONALITY_MODELS or PERSONALITY_MODELS[model][1] != dev.kind:
            problems.append(f"{path}: sim.personalities.{name}: no {dev.kind} model {model!r}")
        else:
            generic = Path(dev.map).parent / PERSONALITY_MODELS[model][2]
            bank_devices[name] = dev.model_copy(update={"map": str(generic)})
    maps, map_problems = load_maps(bank_devices, path)
    problems.extend(map_problems)
    for vname, vessel in cfg.vessels.items():
        ctl = cfg.devices.get(vessel.controller)
        if ctl is None or ctl.kind != "temp_controller":
            problems.append(
                f"{path}: vessels.{vname}.controller: {vessel.controller!r} is not a "
                "temp_controller"
            )
    if cfg.holder.kind != "chain" and cfg.sim.part_release_kpa >= cfg.holder.vacuum_hold_kpa:
        problems.append(
            f"{path}: sim.part_release_kpa: {cfg.sim.part_release_kpa:g} must be below "
            f"holder.vacuum_hold_kpa ({cfg.holder.vacuum_hold_kpa:g})"
        )
    for vname in cfg.sim.vessels:
        if vname not in cfg.vessels:
            problems.append(f"{path}: sim.vessels.{vname}: no such vessel")
    for kind in ("remote_io", "holder_drive"):
        if not any(d.kind == kind for d in cfg.devices.values()):
            problems.append(f"{path}: devices: no device of kind {kind!r}")
    for name, regmap in maps.items():
        kind = cfg.devices[name].kind
        # The points the simulated device serves: the one table the supervisor checks too.
        problems.extend(f"{path}: {line}" for line in missing_points(name, kind, regmap, "sim"))
        if kind == "remote_io":
            coils = {n for n, p in regmap.points.items() if p.table == "coil"}
            for coil in sorted(set(cfg.sim.io_safe_outputs) - coils):
                problems.append(f"{path}: sim.io_safe_outputs.{coil}: no such coil in {name}'s map")
    if problems:
        raise refuse(problems)
    return LoadedSim(path, cfg, maps)

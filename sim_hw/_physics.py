"""The simulated booth's physics: everything that happens between the registers. Pure.

``BoothPhysics.step(dt_s)`` advances the booth by ``dt_s`` of simulated time: it reads the
actuators the masters wrote into the register banks (coils, setpoints, targets), moves the
physical state on, and writes what the devices measure back into the banks. It does no I/O and
reads no clock, so a test can run hours of booth time in milliseconds, or couple it to the
supervisor's controller on a virtual clock.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._atmosphere import AnalyzerCell, Atmosphere
from ._banks import RegisterBank
from ._faults import FaultSet
from ._holder import HolderDrive
from ._remote_io import RemoteIO
from ._settings import LoadedSim, VesselPhysics, load_sim_config
from ._thermal import SolderVessel, TempController, lag

log = logging.getLogger(__name__)

#: Longest step integrated at once; a longer ``step`` is cut into these.
MAX_SUBSTEP_S = 0.05
DEFAULT_WATCHDOG_MS = 500


@dataclass
class BathEntry:
    """A part entering the solder, with the truth at that instant."""

    ts: float
    t_s: float
    vessel: str
    o2_ppm: float
    solder_temp_c: float
    #: Filled in when the part leaves the solder.
    dwell_s: float | None = None
    max_depth_mm: float = 0.0


@dataclass
class Drop:
    """A part that fell off the holder."""

    ts: float
    t_s: float
    station: int | None
    z_mm: float
    #: "vessel:<name>" (a safety event), "flux" or "floor".
    into: str


@dataclass
class PartState:
    present: bool = False
    #: The part has left the load station since it was loaded (so coming back finishes it).
    visited: bool = False
    in_flux: bool = False
    in_vessel: str | None = None
    loaded: int = 0
    unloaded: int = 0
    #: Released at the load station without having gone anywhere: back on the nest, not done.
    put_back: int = 0
    drops: list[Drop] = field(default_factory=list)


class BoothPhysics:
    """The whole booth. Banks are per Modbus device; ``o2_ppm`` etc. are the physical truth."""

    def __init__(self, loaded: LoadedSim, *, epoch_s: float = 0.0) -> None:
        cfg = loaded.config
        s = cfg.sim
        self.config = cfg
        self.settings = s
        #: Wall-clock time of sim time 0, so records carry a wall-clock ``ts`` (0: sim time only).
        self.epoch_s = epoch_s
        self.t_s = 0.0
        self.banks: dict[str, RegisterBank] = {
            name: RegisterBank(name, regmap) for name, regmap in loaded.maps.items()
        }
        self.faults = FaultSet(set(cfg.devices), set(cfg.vessels))
        self.io_device = _device_of_kind(cfg.devices, "remote_io")
        self.holder_device = _device_of_kind(cfg.devices, "holder_drive")
        self.analyzer_device: str | None = next(
            (n for n, d in cfg.devices.items() if d.kind == "o2_analyzer"), None
        )

        self.vessels: dict[str, SolderVessel] = {}
        self.vessel_of_controller: dict[str, str] = {}
        for vname, vgeom in cfg.vessels.items():
            self.vessels[vname] = SolderVessel(
                vname, s.vessels.get(vname, VesselPhysics()), s.start_temp_c, s.ambient_c
            )
            self.vessel_of_controller[vgeom.controller] = vname
        self.controllers: dict[str, TempController] = {}
        for dname, dev in cfg.devices.items():
            if dev.kind != "temp_controller":
                continue
            bound = self.vessel_of_controller.get(dname)
            self.controllers[dname] = TempController(
                dname,
                self.banks[dname],
                s,
                setpoint_c=cfg.vessels[bound].idle_setpoint_c if bound else 0.0,
                comm_timeout_s=dev.comm_timeout_s,
            )
        self.high_limit_tripped = False

        self.io = RemoteIO(
            self.banks[self.io_device],
            safe_outputs=s.io_safe_outputs,
            watchdog_ms=cfg.devices[self.io_device].watchdog_ms or DEFAULT_WATCHDOG_MS,
        )
        self.atmosphere = Atmosphere(cfg.booth.volume_l, s.start_o2_ppm)
        self.analyzer = AnalyzerCell(
            s.start_o2_ppm,
            s.o2_t90_ms,
            s.o2_period_ms,
            s.o2_cal_s,
            noise_ppm=s.o2_noise_ppm,
            noise_pct=s.o2_noise_pct,
            seed=s.seed,
        )
        self.n2_flow_lpm = 0.0

        self.holder = HolderDrive(
            self.banks[self.holder_device],
            start_station=cfg.holder.load_station,
            z_max_mm=cfg.holder.z_max_mm,
            speed_mm_s=cfg.holder.z_fast_speed_mm_s,
            station_travel_s=s.station_travel_s,
            comm_timeout_s=cfg.devices[self.holder_device].comm_timeout_s,
        )
        self.vacuum_kpa = 0.0
        self.part = PartState()
        self._load_dwell_s = 0.0
        self.bath_entries: list[BathEntry] = []
        self.flux_level_pct = s.flux_level_pct
        self.flux_dips = 0
        self.flux_lid_closed = s.flux_lid_closed
        # Every measured register holds its value before the first step: a master may read at once.
        self._substep(0.0)

    @classmethod
    def from_config(cls, path: str | Path, *, epoch_s: float = 0.0) -> BoothPhysics:
        """The physics of the booth config at ``path`` (ConfigError names every problem)."""
        return cls(load_sim_config(path), epoch_s=epoch_s)

    # -- faults

    def inject(self, name: str, value: Any = None) -> None:
        """Activate a fault (FaultError if unknown or its value is bad)."""
        stored = self.faults.inject(name, value)
        log.warning("fault injected: %s%s", name, "" if stored in (True, None) else f" = {value}")
        if name == "o2_leak":
            self.atmosphere.o2_ppm = float(stored)
        if name == "high_limit_trip":
            self._trip_high_limit("injected")

    def clear(self, name: str | None = None) -> None:
        """Clear one fault, or all. Clearing ``high_limit_trip`` is the high-limit's reset."""
        self.faults.clear(name)
        log.info("fault cleared: %s", name or "all")
        if name in (None, "high_limit_trip") and self.high_limit_tripped:
            self.high_limit_tripped = False
            log.info("high-limit reset")

    def _trip_high_limit(self, why: str) -> None:
        if not self.high_limit_tripped:
            self.high_limit_tripped = True
            log.warning("high-limit tripped (%s): heater contactor open until reset", why)

    # -- the step

    def step(self, dt_s: float) -> None:
        """Advance the booth by ``dt_s`` seconds of simulated time."""
        while dt_s > 1e-12:
            sub = min(dt_s, MAX_SUBSTEP_S)
            self._substep(sub)
            dt_s -= sub

    def _substep(self, dt: float) -> None:
        self.t_s += dt
        f = self.faults
        self.io.step(dt)
        self._step_heat(dt)
        self._step_atmosphere(dt)
        self.holder.step(dt, stall_fault="hoist_stall" in f)
        self._step_part(dt)
        self._publish_io()

    def _step_heat(self, dt: float) -> None:
        f = self.faults
        for vessel in self.vessels.values():
            if vessel.high_limit_sensor_c >= self.settings.high_limit_c:
                self._trip_high_limit(f"{vessel.name} at {vessel.high_limit_sensor_c:.1f} C")
        # The high-limit relay and (by wire) the e-stop circuit sit in series with the coil.
        contactor_closed = (
            self.io.coil("heater_contactor")
            and not self.high_limit_tripped
            and not ("estop" in f and self.settings.estop_cuts_heater)
        )
        output_of: dict[str, float] = {}
        for dname, ctl in self.controllers.items():
            bound = self.vessel_of_controller.get(dname)
            pv_c = self.vessels[bound].tc_c if bound else self.settings.ambient_c
            tc_open = bound is not None and f.on_vessel("tc_open", bound)
            output_of[bound or dname] = ctl.step(dt, pv_c, tc_open)
        for vname, vessel in self.vessels.items():
            if not contactor_closed or f.on_vessel("heater_dead", vname):
                power_w = 0.0
            elif f.on_vessel("heater_stuck_on", vname):
                power_w = vessel.p.heater_w
            else:
                power_w = vessel.p.heater_w * output_of.get(vname, 0.0) / 100.0
            vessel.step(dt, power_w)

    def _step_atmosphere(self, dt: float) -> None:
        s = self.settings
        f = self.faults
        n2_lpm = 0.0
        if "n2_supply_loss" not in f:
            n2_lpm += s.n2_purge_lpm if self.io.coil("n2_purge") else 0.0
            n2_lpm += s.n2_maintain_lpm if self.io.coil("n2_maintain") else 0.0
        self.n2_flow_lpm = n2_lpm
        air_lpm = s.leak_lpm + (s.door_leak_lpm if "door_open" in f else 0.0)
        self.atmosphere.step(dt, [(n2_lpm, s.n2_o2_ppm), (air_lpm, s.air_o2_ppm)])
        if "o2_leak" in f:
            self.atmosphere.o2_ppm = float(f.value("o2_leak"))
        self.analyzer.step(dt, self.atmosphere.o2_ppm)

    def _step_part(self, dt: float) -> None:
        cfg = self.config
        s = self.settings
        kind = cfg.holder.kind
        part = self.part
        holder = self.holder
        at_load_top = holder.over_station == cfg.holder.load_station and holder.at_top
        self._load_dwell_s = self._load_dwell_s + dt if at_load_top else 0.0

        if kind in ("suction", "both"):
            # A part seals the suction hole: the one on the head, or the one presented at the
            # load nest. With nothing to seal it the pump only reaches a shallow vacuum.
            sealed = part.present or at_load_top
            pumping = self.io.coil("vacuum_pump") and self.io.coil("vacuum_valve")
            target_kpa = 0.0
            tau_s = s.vacuum_tau_s
            if pumping:
                target_kpa = s.vacuum_max_kpa if sealed else s.vacuum_open_kpa
                if "vacuum_leak" in self.faults:
                    # What the pump still holds against the leak, reached as the leak grows.
                    leak_kpa = self.vacuum_leak_kpa
                    if target_kpa > leak_kpa:
                        target_kpa = leak_kpa
                        if self.vacuum_kpa > leak_kpa:
                            tau_s = s.vacuum_leak_tau_s
            self.vacuum_kpa = lag(self.vacuum_kpa, target_kpa, dt, tau_s)
            if at_load_top:
                # On the nest the part rests on its support: it is picked once the head holds it
                # and taken off (finished, or put back) as soon as the head no longer does.
                held = self.vacuum_kpa >= cfg.holder.vacuum_hold_kpa
                if not part.present and held:
                    self._load()
                elif part.present and not held:
                    self._unload()
            elif part.present and kind == "suction" and self.vacuum_kpa < s.part_release_kpa:
                # In the air it hangs on the head until its weight beats the suction.
                self._drop()
        # Chain: the operator hangs a part on the empty hook, or takes a finished one off,
        # once the holder has waited at the load station for the dwell.
        elif at_load_top and self._load_dwell_s >= s.chain_dwell_s:
            if not part.present:
                self._load()
                self._load_dwell_s = 0.0
            elif part.visited:
                self._unload()
                self._load_dwell_s = 0.0

        if part.present and not at_load_top:
            part.visited = True
        self._step_immersion()

    def _load(self) -> None:
        self.part.present = True
        self.part.visited = False
        self.part.loaded += 1
        log.info("part %d loaded", self.part.loaded)

    def _unload(self) -> None:
        part = self.part
        part.present = False
        if part.visited:
            part.unloaded += 1
            log.info("part unloaded (%d done)", part.unloaded)
        else:
            part.put_back += 1
            log.info("part put back on the load nest unprocessed")

    def _drop(self) -> None:
        holder = self.holder
        station = holder.over_station
        into = "floor"
        for vname, v in self.config.vessels.items():
            if station == v.station:
                into = f"vessel:{vname}"
        if station == self.config.flux.station:
            into = "flux"
        self.part.present = False
        self.part.drops.append(Drop(self.epoch_s + self.t_s, self.t_s, station, holder.z_mm, into))
        if into.startswith("vessel:"):
            log.error("part lost its hold and fell into the solder (%s)", into)
        else:
            log.warning("part lost its hold and fell (%s)", into)

    def _step_immersion(self) -> None:
        cfg = self.config
        holder = self.holder
        part = self.part
        station = holder.over_station
        z_mm = holder.z_mm
        in_flux = part.present and station == cfg.flux.station and z_mm >= cfg.flux.surface_z_mm
        if in_flux and not part.in_flux:
            self.flux_dips += 1
            self.flux_level_pct = max(0.0, self.flux_level_pct - self.settings.flux_per_dip_pct)
        part.in_flux = in_flux

        in_vessel: str | None = None
        if part.present:
            for vname, v in cfg.vessels.items():
                if station == v.station and z_mm >= v.surface_z_mm:
                    in_vessel = vname
        if in_vessel != part.in_vessel:
            if part.in_vessel is not None and self.bath_entries:
                entry = self.bath_entries[-1]
                entry.dwell_s = self.t_s - entry.t_s
            if in_vessel is not None:
                self.bath_entries.append(
                    BathEntry(
                        ts=self.epoch_s + self.t_s,
                        t_s=self.t_s,
                        vessel=in_vessel,
                        o2_ppm=self.atmosphere.o2_ppm,
                        solder_temp_c=self.vessels[in_vessel].temp_c,
                    )
                )
                log.info(
                    "part entered %s at %.0f ppm O2, %.1f C",
                    in_vessel,
                    self.atmosphere.o2_ppm,
                    self.vessels[in_vessel].temp_c,
                )
            part.in_vessel = in_vessel
        if in_vessel is not None:
            entry = self.bath_entries[-1]
            depth_mm = z_mm - cfg.vessels[in_vessel].surface_z_mm
            entry.max_depth_mm = max(entry.max_depth_mm, depth_mm)

    def _publish_io(self) -> None:
        """What the remote I/O module's inputs measure."""
        bank = self.io.bank
        f = self.faults
        values: dict[str, float | bool] = {
            "door_closed": "door_open" not in f,
            "estop_ok": "estop" not in f,
            "exhaust_ok": self.io.coil("exhaust_fan") and "exhaust_fail" not in f,
            "n2_supply_ok": "n2_supply_loss" not in f,
            "high_limit_ok": not self.high_limit_tripped,
            "hook_engaged": self.part.present and self.config.holder.kind in ("chain", "both"),
            "flux_lid_closed": self.flux_lid_closed,
            "vacuum_kpa": self.vacuum_kpa,
            "n2_flow_lpm": self.n2_flow_lpm,
            "flux_level_pct": self.reported_flux_level_pct,
        }
        for name, value in values.items():
            if name in bank:
                bank.set(name, value)

    # -- as a master sees it (a harness coupling a controller on a virtual clock)

    def signals(self) -> dict[str, float | bool]:
        """Every input a master would read, named ``"<device>.<point>"`` as in the process image.

        The analyzer gives ``"<device>.ppm"`` and ``"<device>.status_ok"`` (its last report). A
        device that is offline (or an analyzer that is silent) is left out: it would not answer.
        """
        out: dict[str, float | bool] = {}
        for device, bank in self.banks.items():
            if not self.faults.offline(device):
                out.update({f"{device}.{k}": v for k, v in bank.snapshot().items()})
        if self.analyzer_device is not None and not self.analyzer_silent:
            out[f"{self.analyzer_device}.ppm"] = self.analyzer.reported_ppm
            out[f"{self.analyzer_device}.status_ok"] = self.analyzer.status == "OK"
        return out

    def apply(self, outputs: dict[str, float | bool]) -> None:
        """Write ``{"<device>.<point>": value}`` as a master would (counted as Modbus writes, so
        heartbeats and watchdog refreshes count). Writes to an offline device are lost."""
        for name, value in outputs.items():
            device, _, point = name.partition(".")
            if not self.faults.offline(device):
                self.banks[device].write_point(point, value)

    @property
    def analyzer_silent(self) -> bool:
        return "o2_analyzer_silent" in self.faults or (
            self.analyzer_device is not None and self.faults.offline(self.analyzer_device)
        )

    # -- the truth

    @property
    def o2_ppm(self) -> float:
        return self.atmosphere.o2_ppm

    @property
    def vacuum_leak_kpa(self) -> float:
        """What the pump holds against the active leak: the fault's value, or the setting."""
        value = self.faults.value("vacuum_leak")
        if value is None or isinstance(value, bool):
            return self.settings.vacuum_leak_kpa
        return float(value)

    @property
    def reported_flux_level_pct(self) -> float:
        return self.settings.flux_low_pct if "flux_low" in self.faults else self.flux_level_pct

    @property
    def contactor_closed(self) -> bool:
        return (
            self.io.coil("heater_contactor")
            and not self.high_limit_tripped
            and not ("estop" in self.faults and self.settings.estop_cuts_heater)
        )

    def state(self) -> dict[str, Any]:
        """The physical truth as JSON-ready data (``booth-sim state``)."""
        first = next(iter(self.vessels.values()))
        part = self.part
        io = self.io
        holder = self.holder
        vessels = {}
        for dname, ctl in self.controllers.items():
            vname = self.vessel_of_controller.get(dname)
            if vname is None:
                continue
            v = self.vessels[vname]
            vessels[vname] = {
                "temp_c": round(v.temp_c, 3),
                "liquid_fraction": round(v.liquid_fraction, 4),
                "heater_on": v.heater_power_w > 0,
                "heater_power_w": round(v.heater_power_w, 1),
                "controller": dname,
                "controller_pv_c": round(v.tc_c, 3),
                "high_limit_sensor_c": round(v.high_limit_sensor_c, 3),
                "setpoint_c": float(ctl.bank.get("sv_c")),
                "output_pct": round(ctl.output_pct, 2),
                "running": ctl.running,
                "comm_lost": ctl.comm_lost,
                "tc_open": self.faults.on_vessel("tc_open", vname),
            }
        return {
            "ts": self.epoch_s + self.t_s,
            "sim_time_s": self.t_s,
            "solder_temp_c": round(first.temp_c, 3),
            "heater_on": any(v.heater_power_w > 0 for v in self.vessels.values()),
            "heater_contactor_closed": self.contactor_closed,
            "high_limit_tripped": self.high_limit_tripped,
            "vessels": vessels,
            "o2_ppm": round(self.atmosphere.o2_ppm, 2),
            "o2_analyzer_ppm": round(self.analyzer.reported_ppm, 2),
            "o2_analyzer_status": self.analyzer.status,
            "n2_purge_on": io.coil("n2_purge") and "n2_supply_loss" not in self.faults,
            "n2_maintain_on": io.coil("n2_maintain") and "n2_supply_loss" not in self.faults,
            "n2_flow_lpm": round(self.n2_flow_lpm, 2),
            "door_closed": "door_open" not in self.faults,
            "estop_ok": "estop" not in self.faults,
            "exhaust_ok": io.coil("exhaust_fan") and "exhaust_fail" not in self.faults,
            "n2_supply_ok": "n2_supply_loss" not in self.faults,
            "holder_station": holder.over_station,
            "holder_z_mm": round(holder.z_mm, 3),
            "holder_moving": bool(holder.bank.get("moving")),
            "holder_stall": holder.stall,
            "holder_comm_lost": holder.comm_lost,
            "vacuum_kpa": round(self.vacuum_kpa, 2),
            "part_held": part.present,
            "hook_engaged": part.present and self.config.holder.kind in ("chain", "both"),
            "part_in_flux": part.in_flux,
            "part_in_bath": part.in_vessel is not None,
            "part_vessel": part.in_vessel,
            "parts_loaded": part.loaded,
            "parts_unloaded": part.unloaded,
            "parts_put_back": part.put_back,
            "parts_dropped": len(part.drops),
            "parts_dropped_in_bath": sum(d.into.startswith("vessel:") for d in part.drops),
            "drops": [asdict(d) for d in part.drops],
            "flux_level_pct": round(self.flux_level_pct, 3),
            "flux_dips": self.flux_dips,
            "flux_lid_closed": self.flux_lid_closed,
            "io_watchdog_tripped": io.tripped,
            "faults": self.faults.names(),
            "fault_values": self.faults.values(),
            "bath_entries": [asdict(e) for e in self.bath_entries],
        }


def _device_of_kind(devices: dict[str, Any], kind: str) -> str:
    for name, dev in devices.items():
        if dev.kind == kind:
            return name
    raise KeyError(kind)

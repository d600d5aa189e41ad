"""The simulated booth's physics: everything that happens between the registers. Pure.

``BoothPhysics.step(dt_s)`` advances the booth by ``dt_s`` of simulated time: it reads the
actuators the masters wrote into the register banks (coils, setpoints, targets), moves the
physical state on, and writes what the devices measure back into the banks. It does no I/O and
reads no clock, so a test can run hours of booth time in milliseconds, or couple it to the
supervisor's controller on a virtual clock.

Its parts have a module each: heat (``_thermal``), gas (``_atmosphere``), the holder drive
(``_holder``), the I/O module (``_remote_io``), the part on the holder (``_part``); the truth it
reports is built in ``_truth``. This module couples them, step by step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ._atmosphere import AnalyzerCell, Atmosphere
from ._banks import RegisterBank
from ._faults import FaultSet
from ._holder import HolderDrive
from ._part import BathEntry, PartHandling, PartState
from ._remote_io import RemoteIO
from ._settings import LoadedSim, VesselPhysics, load_sim_config
from ._thermal import SolderVessel, TempController
from ._truth import truth

log = logging.getLogger(__name__)

#: Longest step integrated at once; a longer ``step`` is cut into these.
MAX_SUBSTEP_S = 0.05
DEFAULT_WATCHDOG_MS = 500


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
        self.handling = PartHandling(
            config=cfg,
            settings=s,
            holder=self.holder,
            io=self.io,
            faults=self.faults,
            atmosphere=self.atmosphere,
            vessels=self.vessels,
        )
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
        self.handling.step(dt, t_s=self.t_s, ts=self.epoch_s + self.t_s)
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
            "flux_lid_closed": self.handling.flux_lid_closed,
            "vacuum_kpa": self.vacuum_kpa,
            "n2_flow_lpm": self.n2_flow_lpm,
            "flux_level_pct": self.handling.reported_flux_level_pct,
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

    # the part's side, as the harnesses and the truth name it
    @property
    def part(self) -> PartState:
        return self.handling.part

    @property
    def vacuum_kpa(self) -> float:
        return self.handling.vacuum_kpa

    @property
    def bath_entries(self) -> list[BathEntry]:
        return self.handling.bath_entries

    @property
    def contactor_closed(self) -> bool:
        return (
            self.io.coil("heater_contactor")
            and not self.high_limit_tripped
            and not ("estop" in self.faults and self.settings.estop_cuts_heater)
        )

    def state(self) -> dict[str, Any]:
        """The physical truth as JSON-ready data (``booth-sim state``)."""
        return truth(self)


def _device_of_kind(devices: dict[str, Any], kind: str) -> str:
    for name, dev in devices.items():
        if dev.kind == kind:
            return name
    raise KeyError(kind)

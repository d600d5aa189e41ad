"""The part on the holder: picked and let go at the load station (by suction or on the chain's
hook), held or dropped on the way, dipped in the flux and in the solder. Pure: stepped by ``dt``.

It reads what the holder drive and the I/O module's coils do and the truth of the atmosphere
and the vessels (for the record of each bath entry); it changes nothing of theirs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._atmosphere import Atmosphere
from ._faults import FaultSet
from ._holder import HolderDrive
from ._remote_io import RemoteIO
from ._settings import SimConfig, SimSettings
from ._thermal import SolderVessel, lag

log = logging.getLogger(__name__)


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


@dataclass(eq=False)
class PartHandling:
    """The part, the suction head's vacuum, the flux pot's level and the record of bath entries."""

    config: SimConfig
    settings: SimSettings
    #: What it reads of the rest of the booth (it changes nothing of theirs).
    holder: HolderDrive
    io: RemoteIO
    faults: FaultSet
    atmosphere: Atmosphere
    vessels: Mapping[str, SolderVessel]

    part: PartState = field(default_factory=PartState, init=False)
    vacuum_kpa: float = field(default=0.0, init=False)
    bath_entries: list[BathEntry] = field(default_factory=list, init=False)
    flux_dips: int = field(default=0, init=False)
    _load_dwell_s: float = field(default=0.0, init=False)
    # Times of the current step: sim time, and wall-clock time for the records.
    _t_s: float = field(default=0.0, init=False)
    _ts: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.flux_level_pct = self.settings.flux_level_pct
        self.flux_lid_closed = self.settings.flux_lid_closed

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

    def step(self, dt: float, *, t_s: float, ts: float) -> None:
        """Advance by ``dt``; ``t_s`` is the sim time after it, ``ts`` that on the wall clock."""
        self._t_s, self._ts = t_s, ts
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
        self.part.drops.append(Drop(self._ts, self._t_s, station, holder.z_mm, into))
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
                entry.dwell_s = self._t_s - entry.t_s
            if in_vessel is not None:
                self.bath_entries.append(
                    BathEntry(
                        ts=self._ts,
                        t_s=self._t_s,
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

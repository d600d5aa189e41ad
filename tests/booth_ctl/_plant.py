"""A small virtual-clock booth for the controller's tests: enough physics to close the loop.

Solder heating with a melt plateau, O2 under N2 purge and through an open door, a two-axis hoist,
suction, and the bits of the I/O module. It records the truth the safety rules are judged on:
every entry of a part into the solder with the O2, temperature and permissives at that instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from booth_ctl.config._booth import LoadedConfig, config_from_dict
from booth_ctl.control._events import CommandRefused
from booth_ctl.control._image import Snapshot
from drivers import Quality, Reading

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
AIR_O2_PPM = 209_000.0
PURGE_LPM = 300.0
MAINTAIN_LPM = 20.0
#: The state commands a random operator may send at any moment, and the only codes they may be
#: refused with (in the wrong state, or with a permissive missing).
STATE_COMMANDS = ("reset", "hold", "unhold", "stop", "abort", "clear")
MAY_REFUSE = ("invalid_state", "interlock")


def sim_config(**limits: Any) -> LoadedConfig:
    """The shipped simulator config, with a smaller booth (short purges) and optional limits."""
    import tomllib

    data = tomllib.loads((CONFIG / "booth-sim.toml").read_text(encoding="utf-8"))
    data["booth"]["volume_l"] = 10.0
    data["limits"].update(limits)
    for dev in data["devices"].values():
        if "map" in dev:
            dev["map"] = str(CONFIG / dev["map"])
    return config_from_dict(data, CONFIG / "booth-sim.toml")


@dataclass
class Entry:
    t: float
    vessel: str
    o2_ppm: float
    temp_c: float
    door_closed: bool
    held: bool
    o2_limit_ok: bool


@dataclass
class Plant:
    loaded: LoadedConfig
    t: float = 0.0
    temp_c: float = 248.0
    #: Latent heat still to absorb (J) before the charge is fully molten.
    melt_left_j: float = 0.0
    melting_point_c: float = 183.0
    latent_j: float = 60_000.0
    heat_w: float = 3_000.0
    loss_w_per_c: float = 4.0
    heat_cap_j_per_c: float = 2_000.0
    ambient_c: float = 25.0
    o2_ppm: float = 400.0
    z_mm: float = 0.0
    station: int = 0
    station_goal_t: float | None = None
    part_present: bool = True
    # Inputs an operator or a fault changes:
    door_closed: bool = True
    estop_ok: bool = True
    exhaust_fail: bool = False
    n2_supply_ok: bool = True
    high_limit_ok: bool = True
    stall: bool = False
    #: The drive reports its own comm-loss timeout expired.
    drive_comm_lost: bool = False
    vacuum_leak: bool = False
    o2_leak_ppm: float | None = None
    heater_dead: bool = False
    heater_stuck_on: bool = False
    tc_open: bool = False
    #: device name -> Quality forced on all its signals (NO_COMM, STALE, BAD).
    dev_quality: dict[str, Quality] = field(default_factory=dict)
    o2_frozen: bool = False
    # What the controller wrote:
    outputs: dict[str, float | bool] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    in_bath: bool = False
    flux_level_pct: float = 80.0
    flux_lid_closed: bool = False
    _last_o2_out: float = 400.0

    # ---------------------------------------------------------------- physics

    def out(self, name: str, default: float | bool = 0.0) -> float | bool:
        return self.outputs.get(name, default)

    @property
    def heater_on(self) -> bool:
        if self.heater_stuck_on:
            return bool(self.out("io.heater_contactor", False))
        return (
            bool(self.out("io.heater_contactor", False))
            and float(self.out("heater1.run", 0)) >= 1
            and not self.heater_dead
            and self.high_limit_ok
        )

    @property
    def output_pct(self) -> float:
        if float(self.out("heater1.run", 0)) < 1:
            return 0.0
        sv = float(self.out("heater1.sv_c", 0.0))
        return max(0.0, min(100.0, (sv - self.temp_c) * 20.0))

    @property
    def vacuum_kpa(self) -> float:
        on = bool(self.out("io.vacuum_pump", False)) and bool(self.out("io.vacuum_valve", False))
        if not on or not self.part_present:
            return 0.0
        return 10.0 if self.vacuum_leak else 60.0

    def step(self, dt: float) -> None:
        self.t += dt
        cfg = self.loaded.config
        power = (100.0 if self.heater_stuck_on else self.output_pct) / 100.0 * self.heat_w
        q = (power if self.heater_on else 0.0) - self.loss_w_per_c * (self.temp_c - self.ambient_c)
        if self.melt_left_j > 0 and self.temp_c >= self.melting_point_c and q > 0:
            self.melt_left_j -= q * dt
            self.temp_c = self.melting_point_c
        else:
            self.temp_c += q * dt / self.heat_cap_j_per_c
        flow = 0.0
        if self.n2_supply_ok:
            flow = (PURGE_LPM if self.out("io.n2_purge", False) else 0.0) + (
                MAINTAIN_LPM if self.out("io.n2_maintain", False) else 0.0
            )
        self.n2_flow_lpm = flow
        vol = cfg.booth.volume_l
        target = AIR_O2_PPM if not self.door_closed else 50.0
        rate = flow / 60.0 / vol + (0.5 if not self.door_closed else 0.0)
        self.o2_ppm += (target - self.o2_ppm) * min(1.0, rate * dt)
        if self.o2_leak_ppm is not None:
            self.o2_ppm = self.o2_leak_ppm
        self._move(dt)
        self._track_bath()

    def _move(self, dt: float) -> None:
        if self.stall:
            return
        z_t = float(self.out("holder.z_target_mm", self.z_mm))
        speed = float(self.out("holder.z_speed_mm_s", 100.0))
        st_t = int(self.out("holder.station_target", self.station))
        if st_t != self.station:
            if self.z_mm <= 0.01:
                if self.station_goal_t is None:
                    self.station_goal_t = self.t + 0.3
                elif self.t >= self.station_goal_t:
                    self.station = st_t
                    self.station_goal_t = None
            return
        self.station_goal_t = None
        step = speed * dt
        if abs(z_t - self.z_mm) <= step:
            self.z_mm = z_t
        else:
            self.z_mm += math.copysign(step, z_t - self.z_mm)
        if self.station == self.loaded.config.holder.load_station and self.z_mm <= 0.01:
            self.part_present = True

    def leak_o2(self, ppm: float | None) -> None:
        """The booth's O2 steps to ``ppm`` at once and stays there (None: the leak stops)."""
        self.o2_leak_ppm = ppm
        if ppm is not None:
            self.o2_ppm = ppm

    def vessel_here(self) -> tuple[str, float] | None:
        for name, v in self.loaded.config.vessels.items():
            if v.station == self.station:
                return name, v.surface_z_mm
        return None

    def _track_bath(self) -> None:
        here = self.vessel_here()
        inside = here is not None and self.z_mm >= here[1] and self.part_present
        if inside and not self.in_bath and here is not None:
            self.entries.append(
                Entry(
                    self.t,
                    here[0],
                    self.o2_ppm,
                    self.temp_c,
                    self.door_closed,
                    self.vacuum_kpa >= self.loaded.config.holder.vacuum_hold_kpa,
                    self.o2_ppm <= 1000.0,
                )
            )
        self.in_bath = inside

    # ---------------------------------------------------------------- process image

    def snapshot(self) -> Snapshot:
        t = self.t
        moving = (
            self.station_goal_t is not None
            or abs(float(self.out("holder.z_target_mm", self.z_mm)) - self.z_mm) > 1e-6
        )
        if self.stall:
            moving = False
        if not self.o2_frozen:
            # A real cell never reads exactly the same twice: a little noise.
            self._last_o2_out = round(self.o2_ppm + 0.5 * math.sin(t * 7.0), 1)
        values: dict[str, float | bool] = {
            "io.door_closed": self.door_closed,
            "io.estop_ok": self.estop_ok,
            "io.exhaust_ok": bool(self.out("io.exhaust_fan", False)) and not self.exhaust_fail,
            "io.n2_supply_ok": self.n2_supply_ok,
            "io.high_limit_ok": self.high_limit_ok,
            "io.hook_engaged": False,
            "io.flux_lid_closed": self.flux_lid_closed,
            "io.watchdog_tripped": False,
            "io.layers_ok": True,
            "heater1.layers_ok": True,
            "holder.layers_ok": True,
            "io.vacuum_kpa": self.vacuum_kpa,
            "io.n2_flow_lpm": getattr(self, "n2_flow_lpm", 0.0),
            "io.flux_level_pct": self.flux_level_pct,
            "heater1.pv_c": 3276.7 if self.tc_open else round(self.temp_c, 1),
            "heater1.output_pct": self.output_pct,
            "heater1.tc_open": self.tc_open,
            "heater1.comm_lost": False,
            "heater1.running": float(self.out("heater1.run", 0)) >= 1,
            "heater1.alarm": False,
            "holder.station": self.station,
            "holder.z_mm": round(self.z_mm, 1),
            "holder.moving": moving,
            "holder.stall": self.stall,
            "holder.comm_lost": self.drive_comm_lost,
            "holder.in_position": not moving,
            "holder.limit_top": self.z_mm <= 0.01,
            "holder.limit_bottom": False,
            "o2.ppm": self._last_o2_out,
            "o2.status_ok": True,
        }
        signals: dict[str, Reading] = {}
        for name, v in values.items():
            q = self.dev_quality.get(name.split(".", 1)[0], Quality.GOOD)
            ts = t - 10.0 if q is Quality.STALE else t
            signals[name] = Reading(v, ts, q)
        return Snapshot(now=t, signals=signals)


class Loop:
    """Controller + plant on one virtual clock, scan by scan."""

    def __init__(self, plant: Plant, ctl: Any, period_s: float = 0.01) -> None:
        self.plant = plant
        self.ctl = ctl
        self.period_s = period_s
        self.events: list[Any] = []
        self.last: Any = None

    def tick(self) -> None:
        out = self.ctl.scan(self.plant.snapshot())
        self.plant.outputs.update(out.outputs)
        self.events.extend(out.events)
        self.last = out
        self.plant.step(self.period_s)

    def run_until(self, cond: Any, timeout_s: float, what: str) -> None:
        end = self.plant.t + timeout_s
        while not cond():
            if self.plant.t >= end:
                raise AssertionError(
                    f"virtual timeout after {timeout_s} s waiting for {what}; state "
                    f"{self.ctl.state}, status {self.ctl.status()}"
                )
            self.tick()

    def run_for(self, seconds: float) -> None:
        end = self.plant.t + seconds
        while self.plant.t < end:
            self.tick()

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def new_loop(**limits: Any) -> Loop:
    loaded = sim_config(**limits)
    from booth_ctl.control._controller import Controller

    return Loop(Plant(loaded), Controller(loaded))


def idle_loop(**limits: Any) -> Loop:
    """A booth brought to `idle` through `reset`, as an operator would."""
    loop = new_loop(**limits)
    loop.run_for(0.5)
    loop.ctl.reset()
    loop.run_until(lambda: loop.ctl.state == "idle", 120.0, "idle")
    return loop


def demo_recipe(loaded: LoadedConfig, **changes: Any) -> Any:
    import tomllib

    from booth_ctl.config._recipe import recipe_from_dict

    data = tomllib.loads((CONFIG / "recipes" / "demo.toml").read_text(encoding="utf-8"))
    dip = dict(data["dips"][0])
    for k, v in changes.items():
        if k.startswith("dip_"):
            dip[k[4:]] = v
        else:
            data[k] = v
    data["dips"] = [dip]
    return recipe_from_dict(data, loaded.config)


class Scanning(Protocol):
    """A controller scanned on a virtual clock that keeps its events (Loop and SimLoop)."""

    ctl: Any
    events: list[Any]

    def run_until(self, cond: Any, timeout_s: float, what: str) -> None: ...


def until_step(loop: Scanning, step: Any, timeout_s: float = 60.0) -> None:
    """Scan until the sequencer is at `step` (a Step), within `timeout_s` of virtual time."""

    def at() -> bool:
        seq = loop.ctl._seq
        return seq is not None and seq.step is step

    loop.run_until(at, timeout_s, f"step {step}")


def events_of(loop: Scanning, kind: str) -> list[dict[str, Any]]:
    """The data of every event of type `kind` so far."""
    return [e.data for e in loop.events if e.type == kind]


def try_command(ctl: Any, command: str, *args: Any) -> bool:
    """Call ``ctl.<command>(*args)``: True if it ran, False if refused with a code of
    MAY_REFUSE; any other refusal fails the test."""
    try:
        getattr(ctl, command)(*args)
    except CommandRefused as exc:
        assert exc.code in MAY_REFUSE, exc
        return False
    return True

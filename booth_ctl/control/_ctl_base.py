"""The controller's state and the steps every part of it shares: state changes, the trip
latch, the go-safe steps, the end of a job. The parts (trips, states, outputs, commands,
status) are mixins over this base; ``Controller`` puts them together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.config._recipe import Recipe
from booth_ctl.control._alarms import Alarms
from booth_ctl.control._events import Event
from booth_ctl.control._heater_verify import HeaterVerifier
from booth_ctl.control._image import Names
from booth_ctl.control._interlocks import (
    BASE,
    O2Monitor,
    O2State,
)
from booth_ctl.control._packml import HEATING
from booth_ctl.control._sequencer import Plant, Result, Sequencer

#: reset needs these: it starts heating, purging and moving the holder.
RESET_NEEDS = (*BASE, "high_limit_ok", "heaters_ok", "layers_ok", "heartbeats_ok")
#: start_job needs these; O2 and temperature are waited for in `starting`.
START_NEEDS = (*BASE, "high_limit_ok", "heaters_ok", "heartbeats_ok")
#: ready (idle and a job would start at once).
READY_NEEDS = (*START_NEEDS, "o2_ok", "solder_temp_ok")
#: The purge stops once O2 is this fraction of the limit, and restarts above PURGE_ON_FRACTION.
PURGE_OFF_FRACTION = 0.8
PURGE_ON_FRACTION = 0.9
#: Communication alarms wait this long after the first scan, while pollers fill the image.
STARTUP_GRACE_S = 3.0
#: In aborting/aborted, a stalled hoist is reset this often so that it retries the withdrawal.
STALL_RETRY_S = 2.0
UNITS_MAX = 100_000
LOT_ID_MAX = 64
#: A part may be below the top only in these states (finishing a dip in `holding`).
DIP_STATES = frozenset({"execute", "holding"})
#: No trip on lost I/O or holder in these: everything is already off and up.
RESTING = frozenset({"stopped", "aborted", "aborting", "clearing"})

_O2_OFF = O2State(False, None, False, 0.0, "no scan yet")


class ControllerBase:
    def __init__(self, loaded: LoadedConfig) -> None:
        cfg = loaded.config
        self._cfg = cfg
        self._n = Names.of(cfg)
        n = self._n
        self._o2 = O2Monitor(cfg, n)
        self._verifiers = {
            vessel: HeaterVerifier(
                vc.controller,
                cfg.limits,
                vc.heating_check_window_s or cfg.limits.heating_check_window_s,
                n.heater_stale_s,
            )
            for vessel, vc in cfg.vessels.items()
        }
        self._alarms = Alarms()
        self.state = "stopped"
        self._state_t0: float | None = None
        self._pending: list[Event] = []
        self._pulses: list[str] = []
        self._tripped = False
        self._trip_ids: set[str] = set()
        self._seq: Sequencer | None = None
        self._recipe_name = ""
        self._perm: dict[str, bool] = {}
        self._o2_state = _O2_OFF
        self._temps: dict[str, float | None] = {}
        self._sv = {v: vc.idle_setpoint_c for v, vc in cfg.vessels.items()}
        self._heating = False
        self._purge = False
        self._vacuum = cfg.holder.kind != "chain"
        self._holder_known = False
        #: Before adoption (the drive travels between stations): command the height only.
        self._z_only = False
        #: Since when exhaust_ok is lost (None: it is not), and whether the heaters are held at
        #: their idle setpoints for it.
        self._exhaust_lost_at: float | None = None
        self._exhaust_idle = False
        self._station_t = cfg.holder.load_station
        self._z_t = cfg.holder.z_travel_mm
        self._zspeed_t = cfg.holder.z_fast_speed_mm_s
        self._plant = Plant(0.0, None, None, None, {}, None, {})
        self._ok_since: float | None = None
        self._first_now: float | None = None
        self._stall_seen = False
        self._stall_reset_at = -STALL_RETRY_S
        self._now = 0.0
        self._wall: float | None = None
        self.vessel_dips = {v: 0 for v in cfg.vessels}
        self.flux_dips = 0
        self._surfaces: dict[int, tuple[str, float]] = {
            cfg.flux.station: ("flux", cfg.flux.surface_z_mm),
            **{vc.station: (v, vc.surface_z_mm) for v, vc in cfg.vessels.items()},
        }
        self._out_keys = self._output_names()
        io_map = loaded.maps.get(n.io)
        self._flux_lid_input = io_map is not None and "flux_lid_closed" in io_map.points
        self._written_devices = sorted(n for n, d in cfg.devices.items() if d.map is not None)

    def _go(self, state: str, reason: str, events: list[Event]) -> None:
        if state == self.state:
            return
        events.append(Event("state_changed", {"from": self.state, "to": state, "reason": reason}))
        self.state = state
        self._state_t0 = self._now
        self._ok_since = None

    def _trip(self, trip_id: str, code: str, text: str, events: list[Event]) -> None:
        """One-way: latch the alarm, then run every go-safe step, each even if another raises."""
        self._tripped = True
        self._trip_ids.add(trip_id)
        steps: list[Callable[[], None]] = [
            lambda: self._alarms.latch(trip_id, code, text, self._stamp(), events),
            self._safe_heaters,
            self._safe_holder,
            lambda: self._end_job(f"trip: {text}", events),
            lambda: (
                self._go("aborting", f"trip: {text}", events)
                if self.state not in ("aborting", "aborted")
                else None
            ),
        ]
        for step in steps:
            try:
                step()
            except Exception:
                continue

    def _safe_heaters(self) -> None:
        self._heating = False

    def _safe_holder(self) -> None:
        self._z_t = self._cfg.holder.z_travel_mm
        self._zspeed_t = self._cfg.holder.z_fast_speed_mm_s

    def _end_job(self, reason: str, events: list[Event]) -> None:
        seq = self._seq
        if seq is None:
            return
        res = Result()
        seq.stop_job(reason, res)
        self._take(seq, res, events)
        events.append(Event("job_aborted", {**self._job_result(seq), "reason": reason}))
        self._seq = None
        self._sv = self._idle_sv()

    def _take(self, seq: Sequencer, res: Result, events: list[Event]) -> None:
        self._station_t, self._z_t, self._zspeed_t = seq.station_target, seq.z_target, seq.z_speed
        self._vacuum = seq.vacuum
        for ev in res.events:
            if ev.type == "dip":
                vessel = str(ev.data["vessel"])
                self.vessel_dips[vessel] = self.vessel_dips.get(vessel, 0) + 1
            elif ev.type == "flux_dip":
                self.flux_dips += 1
        events.extend(res.events)

    def _job_summary(self, seq: Sequencer) -> dict[str, Any]:
        return {
            "lot_id": seq.lot_id,
            "recipe": self._recipe_name,
            "units": seq.units,
            "unit": seq.unit,
            "units_done": seq.units_done,
            "units_rejected": seq.units_rejected,
            "step": seq.step.value,
        }

    def _job_result(self, seq: Sequencer) -> dict[str, Any]:
        return {
            "lot_id": seq.lot_id,
            "recipe": self._recipe_name,
            "units": seq.units,
            "units_done": seq.units_done,
            "units_rejected": seq.units_rejected,
        }

    def _adopt_holder(self, z: float, station: int) -> None:
        """First sight of the holder: hold it where it is at a known station above any bath;
        down in a vessel or at a station this booth does not know, withdraw to the top."""
        self._holder_known = True
        self._station_t = station
        where = self._surfaces.get(station)
        tol = self._cfg.holder.z_tolerance_mm
        known = station == self._cfg.holder.load_station or where is not None
        # At a station this booth does not know, what is below is unknown too: up first.
        down_in_bath = where is not None and z >= where[1] - tol
        self._z_t = self._cfg.holder.z_travel_mm if down_in_bath or not known else z

    def _bands(self, job: bool) -> dict[str, tuple[float, float]]:
        seq = self._seq
        if job and seq is not None:
            return {
                d.vessel: (d.setpoint_c - d.band_c, d.setpoint_c + d.band_c)
                for d in seq.recipe.dips
            }
        return {
            v: (vc.idle_setpoint_c - vc.idle_band_c, vc.idle_setpoint_c + vc.idle_band_c)
            for v, vc in self._cfg.vessels.items()
        }

    def _exhaust_step(self, perm: dict[str, bool]) -> None:
        """Exhaust lost while heating: after ``limits.exhaust_loss_idle_s`` the heaters go to
        their idle setpoints until it is back (the alarm is raised at once)."""
        if perm.get("exhaust_ok", False):
            self._exhaust_lost_at = None
        elif self._exhaust_lost_at is None:
            self._exhaust_lost_at = self._now
        lost_s = 0.0 if self._exhaust_lost_at is None else self._now - self._exhaust_lost_at
        self._exhaust_idle = (
            self.state in HEATING and lost_s >= self._cfg.limits.exhaust_loss_idle_s
        )

    def _sv_out(self, vessel: str) -> float:
        """The setpoint sent to a vessel's controller: never above idle while the exhaust is
        lost for long."""
        sv = self._sv[vessel]
        if self._exhaust_idle:
            return min(sv, self._cfg.vessels[vessel].idle_setpoint_c)
        return sv

    def _idle_sv(self) -> dict[str, float]:
        return {v: vc.idle_setpoint_c for v, vc in self._cfg.vessels.items()}

    def _stable_s(self, recipe: Recipe) -> float:
        return max(recipe.o2_stable_s, self._cfg.limits.o2_stable_s)

    def _top_tol(self) -> float:
        return self._cfg.holder.z_travel_mm + self._cfg.holder.z_tolerance_mm

    def _stamp(self) -> float:
        return self._wall if self._wall is not None else self._now

    def _output_names(self) -> dict[str, str]:
        io, hd = self._n.io, self._n.holder
        return {
            "contactor": f"{io}.heater_contactor",
            "exhaust": f"{io}.exhaust_fan",
            "maintain": f"{io}.n2_maintain",
            "purge": f"{io}.n2_purge",
            "pump": f"{io}.vacuum_pump",
            "valve": f"{io}.vacuum_valve",
            "light_red": f"{io}.light_red",
            "light_amber": f"{io}.light_amber",
            "light_green": f"{io}.light_green",
            "buzzer": f"{io}.buzzer",
            "station": f"{hd}.station_target",
            "z": f"{hd}.z_target_mm",
            "speed": f"{hd}.z_speed_mm_s",
        }

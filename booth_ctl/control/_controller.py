"""The controller: interlocks, heater verification, PackML and the sequencer in one pure scan.

``scan`` reads no clock and does no I/O: everything comes from the snapshot, everything goes
out in the ScanOutput. Commands run between two scans and take effect at the next one. A trip is
a one-way latch: every go-safe step runs even if another raises, and the output stage forces the
heater off by two paths for as long as the latch holds, whatever the state logic computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.config._recipe import Recipe
from booth_ctl.control._alarms import Alarms
from booth_ctl.control._events import CommandRefused, Event, ScanOutput
from booth_ctl.control._heater_verify import TEXT as HEATER_TEXT
from booth_ctl.control._heater_verify import HeaterVerifier
from booth_ctl.control._image import Names, Snapshot, fresh_bit, fresh_value, quality
from booth_ctl.control._interlocks import (
    BASE,
    FLUX_ENTRY,
    FLUX_STAY,
    SOLDER_ENTRY,
    SOLDER_STAY,
    O2Monitor,
    O2State,
    evaluate,
    temperatures,
    unmet,
)
from booth_ctl.control._packml import ACCEPTS, HEATING, JOB, TARGET
from booth_ctl.control._sequencer import Mode, Plant, Result, Sequencer
from drivers import Quality

#: reset needs these: it starts heating, purging and moving the holder.
RESET_NEEDS = (*BASE, "high_limit_ok", "heaters_ok", "layers_ok")
#: start_job needs these; O2 and temperature are waited for in `starting`.
START_NEEDS = (*BASE, "high_limit_ok", "heaters_ok")
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


class Controller:
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

    # ================================================================== scan

    def scan(self, snap: Snapshot) -> ScanOutput:
        events = self._pending
        self._pending = []
        try:
            self._step(snap, events)
        except Exception as exc:
            self._trip("internal_error", "internal_error", f"internal error: {exc!r}", events)
        try:
            outputs = self._outputs()
        except Exception as exc:
            self._trip("internal_error", "internal_error", f"internal error: {exc!r}", events)
            outputs = self._safe_outputs()
        pulses, self._pulses = self._pulses, []
        return ScanOutput(outputs, events, pulses)

    def _step(self, snap: Snapshot, events: list[Event]) -> None:
        now = snap.now
        self._now, self._wall = now, snap.wall
        if self._first_now is None:
            self._first_now = now
        if self._state_t0 is None:
            self._state_t0 = now
        n, cfg = self._n, self._cfg
        z = fresh_value(snap, f"{n.holder}.z_mm", n.holder_stale_s)
        station_f = fresh_value(snap, f"{n.holder}.station", n.holder_stale_s)
        station = int(station_f) if station_f is not None else None
        moving = fresh_bit(snap, f"{n.holder}.moving", n.holder_stale_s)
        if not self._holder_known and z is not None and station is not None:
            # A drive travelling between stations (at the top, moving) still reports the station
            # it left: adopting that would send it back once it arrives. Let it arrive first.
            travelling = moving is not False and z <= self._top_tol()
            if not travelling:
                self._adopt_holder(z, station)

        seq = self._seq
        job = seq is not None and self.state in JOB
        if seq is not None and job:
            limit = seq.recipe.o2_limit_ppm
            stable_s = max(seq.recipe.o2_stable_s, cfg.limits.o2_stable_s)
        else:
            limit, stable_s = cfg.limits.o2_ready_ppm, cfg.limits.o2_stable_s
        o2 = self._o2.update(snap, limit, stable_s)
        self._o2_state = o2
        temps = temperatures(snap, n)
        self._temps = temps

        heaters_ok = True
        present: set[str] = set()
        trips: list[tuple[str, str, str]] = []
        for vessel, verifier in self._verifiers.items():
            verdict = verifier.check(snap, self._heating, self._sv[vessel])
            if verdict.present:
                heaters_ok = False
            for code in verdict.present:
                present.add(f"{code}.{vessel}")
            for code in verdict.trip:
                trips.append((f"{code}.{vessel}", code, f"{vessel}: {HEATER_TEXT[code]}"))

        perm = evaluate(
            snap,
            cfg,
            n,
            o2,
            temps_c=temps,
            bands_c=self._bands(job),
            flux_done=seq.flux_done if seq is not None else False,
            heaters_ok=heaters_ok,
        )
        self._perm = perm
        self._plant = Plant(now, z, station, moving, perm, o2.ppm, temps)

        self._collect_trips(snap, perm, present, trips)
        for tid in self._trip_ids:
            self._alarms.set_active(tid, tid in present)
        for tid, code, text in trips:
            self._trip(tid, code, text, events)
        self._condition_alarms(snap, perm, o2, limit, events)
        self._state_step(events)
        self._purge_step(o2, limit, perm)

    def _collect_trips(
        self,
        snap: Snapshot,
        perm: dict[str, bool],
        present: set[str],
        trips: list[tuple[str, str, str]],
    ) -> None:
        n = self._n
        estop = fresh_bit(snap, f"{n.io}.estop_ok", n.io_stale_s)
        high = fresh_bit(snap, f"{n.io}.high_limit_ok", n.io_stale_s)
        if estop is not True:
            present.add("estop")
        if estop is False:
            trips.append(("estop", "estop", "e-stop pressed"))
        if high is not True:
            present.add("high_limit")
        if high is False:
            trips.append(("high_limit", "high_limit", "high-limit controller tripped the heater"))
        if estop is None or high is None:
            present.add("io_comm_lost")
        stall = fresh_bit(snap, f"{n.holder}.stall", n.holder_stale_s)
        self._stall_seen = stall is True
        if stall is not False:
            present.add("holder_stall")
        # The drive withdrew by itself (its comm-loss timeout saw no heartbeat): whatever it
        # was doing for the sequence is void.
        drive_lost = fresh_bit(snap, f"{n.holder}.comm_lost", n.holder_stale_s)
        if drive_lost is not False:
            present.add("holder_comm_lost")
        if self.state in RESTING:
            return
        if estop is None or high is None:
            trips.append(("io_comm_lost", "io_comm_lost", "lost the I/O module's inputs"))
        if stall is True:
            trips.append(("holder_stall", "holder_stall", "holder drive stalled"))
        if drive_lost is True:
            trips.append(
                (
                    "holder_comm_lost",
                    "holder_comm_lost",
                    "holder drive lost the heartbeat and withdrew by itself",
                )
            )

    def _condition_alarms(
        self, snap: Snapshot, perm: dict[str, bool], o2: O2State, limit: float, ev: list[Event]
    ) -> None:
        assert self._first_now is not None
        if self._now - self._first_now < STARTUP_GRACE_S:
            return
        a, n, since = self._alarms, self._n, self._stamp()
        a.condition(
            "door_open",
            not perm["door_closed"],
            "door_open",
            "warning",
            "door open",
            since=since,
            events=ev,
        )
        a.condition(
            "exhaust_fail",
            not perm["exhaust_ok"],
            "exhaust_fail",
            "alarm",
            "exhaust air flow lost",
            since=since,
            events=ev,
        )
        a.condition(
            "n2_supply_low",
            not perm["n2_supply_ok"],
            "n2_supply_low",
            "alarm",
            "N2 supply pressure low",
            since=since,
            events=ev,
        )
        a.condition(
            "flux_low",
            not perm["flux_level_ok"],
            "flux_low",
            "warning",
            "flux level low",
            since=since,
            events=ev,
        )
        a.condition(
            "io_watchdog",
            fresh_bit(snap, f"{n.io}.watchdog_tripped", n.io_stale_s) is True,
            "io_watchdog",
            "alarm",
            "I/O module watchdog forced its outputs safe",
            since=since,
            events=ev,
        )
        analyzer_bad = o2.ppm is None or o2.frozen or o2.why == "O2 analyzer reports a fault"
        a.condition(
            "o2_analyzer",
            analyzer_bad,
            "o2_analyzer",
            "alarm",
            o2.why or "O2 analyzer fault",
            since=since,
            events=ev,
        )
        a.condition(
            "o2_high",
            o2.ppm is not None and o2.ppm > limit and self.state in HEATING,
            "o2_high",
            "warning",
            f"O2 over {limit:.0f} ppm",
            since=since,
            events=ev,
        )
        warn = self._cfg.limits
        for vessel, count in self.vessel_dips.items():
            a.condition(
                f"vessel_dips.{vessel}",
                count >= warn.vessel_dips_warn,
                "vessel_dips",
                "warning",
                f"{vessel}: {count} immersions, refresh the solder",
                since=since,
                events=ev,
            )
        a.condition(
            "flux_dips",
            self.flux_dips >= warn.flux_dips_warn,
            "flux_dips",
            "warning",
            f"{self.flux_dips} flux dips, refresh the flux",
            since=since,
            events=ev,
        )
        for dev, point in self._comm_points():
            a.condition(
                f"comm.{dev}",
                quality(snap, point) is Quality.NO_COMM,
                "comm_lost",
                "alarm",
                f"no communication with {dev}",
                since=since,
                events=ev,
            )

    def _comm_points(self) -> list[tuple[str, str]]:
        n = self._n
        pts = [(n.io, f"{n.io}.door_closed"), (n.holder, f"{n.holder}.z_mm"), (n.o2, f"{n.o2}.ppm")]
        pts += [(dev, f"{dev}.pv_c") for dev in n.heaters.values()]
        return pts

    # ================================================================== states

    def _state_step(self, events: list[Event]) -> None:
        st, plant, seq = self.state, self._plant, self._seq
        assert self._state_t0 is not None
        in_state_s = self._now - self._state_t0
        if st in ("stopping", "aborting"):
            if seq is not None:
                self._end_job(st, events)
            self._retry_stall()
            self._withdraw_then(
                plant, in_state_s, "stopped" if st == "stopping" else "aborted", events
            )
        elif st == "clearing":
            self._finish_clearing(events)
        elif st == "aborted":
            self._retry_stall()
        elif st == "stopped" and plant.z_mm is not None and plant.z_mm > self._top_tol():
            # Stopped with the holder down (a start found it so, or a stall kept it there): its
            # target is the top, so resetting a stalled drive only lets it withdraw.
            self._retry_stall()
        elif st == "resetting":
            self._park(plant)
            if not unmet(self._perm, (*RESET_NEEDS, "o2_ok", "solder_temp_ok")) and self._parked(
                plant
            ):
                self._go("idle", "ready", events)
        elif st in ("idle", "complete"):
            self._park(plant)
        elif seq is None:
            if st in JOB:
                self._go("stopping", "no job", events)
        elif st == "starting":
            if not unmet(self._perm, ("o2_ok", "solder_temp_ok")):
                self._go("execute", "recipe conditions met", events)
        elif st == "execute":
            res = self._run(seq, Mode.RUN, events)
            if res.done:
                self._go("completing", "all units done", events)
            elif res.suspend:
                self._go("suspending", "unmet: " + ", ".join(res.suspend), events)
        elif st == "holding":
            self._run(seq, Mode.FINISH, events)
            if not seq.in_dip() and seq.at_top(plant):
                self._go("held", "part up", events)
        elif st == "held":
            self._run(seq, Mode.WITHDRAW, events)
        elif st == "unholding":
            self._run(seq, Mode.WITHDRAW, events)
            self._go("execute", "unhold", events)
        elif st == "suspending":
            self._run(seq, Mode.WITHDRAW, events)
            if seq.at_top(plant):
                self._go("suspended", "part up", events)
        elif st == "suspended":
            self._run(seq, Mode.WITHDRAW, events)
            if unmet(self._perm, seq.required()):
                self._ok_since = None
            elif self._ok_since is None:
                self._ok_since = self._now
            elif self._now - self._ok_since >= self._stable_s(seq.recipe):
                self._go("unsuspending", "permissives back", events)
        elif st == "unsuspending":
            self._run(seq, Mode.WITHDRAW, events)
            self._go("execute", "resumed", events)
        elif st == "completing":
            self._park(plant)
            if self._parked(plant):
                events.append(Event("job_completed", self._job_result(seq)))
                self._seq = None
                self._sv = self._idle_sv()
                self._go("complete", "job completed", events)

    def _run(self, seq: Sequencer, mode: Mode, events: list[Event]) -> Result:
        res = seq.run(self._plant, mode)
        self._take(seq, res, events)
        return res

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

    def _withdraw_then(
        self, plant: Plant, in_state_s: float, then: str, events: list[Event]
    ) -> None:
        self._z_t, self._zspeed_t = self._cfg.holder.z_travel_mm, self._cfg.holder.z_fast_speed_mm_s
        up = plant.z_mm is not None and plant.z_mm <= self._top_tol()
        if up or not self._holder_known:
            self._go(then, "holder up", events)
        elif in_state_s >= self._cfg.limits.withdraw_timeout_s:
            self._alarms.condition(
                "withdraw_timeout",
                True,
                "withdraw_timeout",
                "alarm",
                "holder did not confirm the top",
                since=self._stamp(),
                events=events,
            )
            self._go(then, "withdraw not confirmed", events)

    def _finish_clearing(self, events: list[Event]) -> None:
        self._alarms.clear_latched(events)
        self._alarms.condition(
            "withdraw_timeout",
            False,
            "withdraw_timeout",
            "alarm",
            "",
            since=self._stamp(),
            events=events,
        )
        self._tripped = False
        self._trip_ids.clear()
        if self._stall_seen:
            self._pulses.append(f"{self._n.holder}.fault_reset")
        self._go("stopped", "cleared", events)

    def _retry_stall(self) -> None:
        """A stalled hoist cannot withdraw: reset the drive now and then so it tries again (its
        target is the top, the safe direction)."""
        if not self._stall_seen or not self._holder_known:
            return
        if self._now - self._stall_reset_at >= STALL_RETRY_S:
            self._stall_reset_at = self._now
            self._pulses.append(f"{self._n.holder}.fault_reset")

    def _park(self, plant: Plant) -> None:
        """Up first, then to the load station (only with the base permissives)."""
        self._z_t, self._zspeed_t = self._cfg.holder.z_travel_mm, self._cfg.holder.z_fast_speed_mm_s
        if plant.z_mm is not None and plant.z_mm <= self._top_tol() and not unmet(self._perm, BASE):
            self._station_t = self._cfg.holder.load_station
        if self._seq is not None:
            self._seq.station_target, self._seq.z_target = self._station_t, self._z_t

    def _parked(self, plant: Plant) -> bool:
        return (
            plant.station == self._cfg.holder.load_station
            and plant.moving is False
            and plant.z_mm is not None
            and plant.z_mm <= self._top_tol()
        )

    def _go(self, state: str, reason: str, events: list[Event]) -> None:
        if state == self.state:
            return
        events.append(Event("state_changed", {"from": self.state, "to": state, "reason": reason}))
        self.state = state
        self._state_t0 = self._now
        self._ok_since = None

    # ================================================================== trip latch

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

    # ================================================================== outputs

    def _outputs(self) -> dict[str, float | bool]:
        heating = self.state in HEATING and not self._tripped
        self._heating = heating
        out: dict[str, float | bool] = {}
        n = self._n
        for vessel, dev in n.heaters.items():
            out[f"{dev}.sv_c"] = self._sv[vessel]
            out[f"{dev}.run"] = 1 if heating else 0
        k = self._out_keys
        out[k["contactor"]] = heating
        out[k["exhaust"]] = True
        out[k["maintain"]] = True
        out[k["purge"]] = self._purge
        vac = self._vacuum and self._cfg.holder.kind != "chain"
        out[k["pump"]] = vac
        out[k["valve"]] = vac
        self._lights(out)
        if self._holder_known:
            self._bath_guard()
            out[k["station"]] = self._station_t
            out[k["z"]] = self._z_t
            out[k["speed"]] = self._zspeed_t
        if self._tripped:
            # The second line of defence: whatever the state logic said, the heater is off.
            for dev in n.heaters.values():
                out[f"{dev}.run"] = 0
            out[k["contactor"]] = False
        return out

    def _safe_outputs(self) -> dict[str, float | bool]:
        n, k = self._n, self._out_keys
        out: dict[str, float | bool] = {f"{dev}.run": 0 for dev in n.heaters.values()}
        out[k["contactor"]] = False
        out[k["exhaust"]] = True
        out[k["maintain"]] = True
        out[k["light_red"]] = True
        out[k["buzzer"]] = True
        if self._holder_known:
            out[k["z"]] = self._cfg.holder.z_travel_mm
            out[k["speed"]] = self._cfg.holder.z_fast_speed_mm_s
        return out

    def _bath_guard(self) -> None:
        """Independent of the sequencer: below a surface only in a dip state with every
        condition met; a part not yet in may not go past the surface without the entry ones."""
        plant = self._plant
        station = plant.station if plant.station is not None else self._station_t
        where = self._surfaces.get(station)
        if where is None:
            return
        name, surface = where
        tol = self._cfg.holder.z_tolerance_mm
        if self._z_t < surface - tol:
            return
        flux = name == "flux"
        stay = FLUX_STAY if flux else SOLDER_STAY
        if self._tripped or self.state not in DIP_STATES or unmet(self._perm, stay):
            self._safe_holder()
            return
        inside = plant.z_mm is not None and plant.z_mm >= surface - tol
        entry = FLUX_ENTRY if flux else (*SOLDER_ENTRY, f"solder_temp_ok.{name}")
        if not inside and unmet(self._perm, entry):
            self._safe_holder()

    def _lights(self, out: dict[str, float | bool]) -> None:
        k, st, a = self._out_keys, self.state, self._alarms
        red = self._tripped or st in ("aborting", "aborted") or a.any_of("critical", "alarm")
        normal = st in ("idle", "execute", "complete")
        out[k["light_red"]] = red
        out[k["light_amber"]] = not red and (not normal or a.any_of("warning"))
        out[k["light_green"]] = normal and not self._tripped
        out[k["buzzer"]] = a.any_of("critical", "alarm", unacked=True)

    def _purge_step(self, o2: O2State, limit: float, perm: dict[str, bool]) -> None:
        if self.state not in HEATING or not perm["door_closed"]:
            self._purge = False
        elif not o2.ok or o2.ppm is None or o2.ppm > PURGE_ON_FRACTION * limit:
            self._purge = True
        elif o2.ppm <= PURGE_OFF_FRACTION * limit:
            self._purge = False

    # ================================================================== commands

    def _accept(self, command: str) -> None:
        if self.state not in ACCEPTS[command]:
            raise CommandRefused(
                "invalid_state",
                f"{command} is not accepted in state {self.state}",
                {"state": self.state},
            )

    def _need(self, needed: tuple[str, ...], what: str) -> None:
        missing = unmet(self._perm, needed)
        if missing:
            raise CommandRefused(
                "interlock", f"{what} refused: {', '.join(missing)}", {"unmet": missing}
            )

    def _command(self, command: str, reason: str) -> dict[str, Any]:
        self._go(TARGET[command], reason, self._pending)
        return {"state": self.state}

    def reset(self) -> dict[str, Any]:
        self._accept("reset")
        self._need(RESET_NEEDS, "reset")
        self._sv = self._idle_sv()
        return self._command("reset", "reset command")

    def start_job(
        self, lot_id: str, recipe_name: str, recipe: Recipe, units: int
    ) -> dict[str, Any]:
        if not isinstance(lot_id, str) or not 1 <= len(lot_id) <= LOT_ID_MAX:
            raise CommandRefused("bad_request", f"lot_id must be 1-{LOT_ID_MAX} characters")
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= UNITS_MAX:
            raise CommandRefused("bad_request", f"units must be an integer 1-{UNITS_MAX}")
        if not isinstance(recipe, Recipe):
            raise CommandRefused("bad_request", "recipe is not a validated Recipe")
        if recipe.holder != self._cfg.holder.kind:
            raise CommandRefused(
                "bad_request",
                f"recipe holder {recipe.holder!r} is not this booth's {self._cfg.holder.kind!r}",
            )
        unknown = [d.vessel for d in recipe.dips if d.vessel not in self._cfg.vessels]
        if unknown:
            raise CommandRefused("bad_request", f"recipe names unknown vessels {unknown}")
        self._accept("start")
        self._need(START_NEEDS, "start_job")
        seq = Sequencer(self._cfg, lot_id, recipe, units)
        seq.station_target, seq.z_target = self._station_t, self._z_t
        seq.vacuum = self._vacuum
        self._seq = seq
        self._recipe_name = recipe_name
        self._sv = self._idle_sv()
        for dip in recipe.dips:
            self._sv[dip.vessel] = dip.setpoint_c
        self._pending.append(
            Event("job_started", {"lot_id": lot_id, "recipe": recipe_name, "units": units})
        )
        return {**self._command("start", f"job {lot_id}"), "lot_id": lot_id}

    def hold(self) -> dict[str, Any]:
        self._accept("hold")
        return self._command("hold", "hold command")

    def unhold(self) -> dict[str, Any]:
        self._accept("unhold")
        return self._command("unhold", "unhold command")

    def stop(self) -> dict[str, Any]:
        self._accept("stop")
        self._safe_holder()
        self._end_job("stopped", self._pending)
        return self._command("stop", "stop command")

    def abort(self) -> dict[str, Any]:
        self._accept("abort")
        for step in (
            self._safe_heaters,
            self._safe_holder,
            lambda: self._end_job("aborted", self._pending),
        ):
            try:
                step()
            except Exception:
                continue
        return self._command("abort", "abort command")

    def clear(self) -> dict[str, Any]:
        self._accept("clear")
        blocking = self._alarms.blocking_clear()
        if blocking:
            raise CommandRefused(
                "interlock",
                "clear refused: trip causes present or not acknowledged",
                {"unmet": blocking},
            )
        return self._command("clear", "clear command")

    def ack_alarm(self, alarm_id: str | None) -> dict[str, Any]:
        try:
            acked = self._alarms.ack(alarm_id)
        except KeyError:
            raise CommandRefused("bad_request", f"no alarm {alarm_id!r}") from None
        return {"acked": acked}

    def trip(self, reason: str) -> None:
        self._trip("runtime_trip", "trip", reason, self._pending)

    def safe_outputs(self) -> dict[str, float | bool]:
        """Every actuator's safe value (section 4), for a runtime whose scan cannot run."""
        return self._safe_outputs()

    # ================================================================== views

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "ready": self.ready,
            "job": self._job_summary(self._seq) if self._seq is not None else None,
            "alarms": self._alarms.as_list(),
            "interlocks": dict(self._perm),
        }

    @property
    def ready(self) -> bool:
        return self.state == "idle" and not self._tripped and not unmet(self._perm, READY_NEEDS)

    @property
    def tripped(self) -> bool:
        return self._tripped

    def counters(self) -> dict[str, Any]:
        return {"vessel_dips": dict(self.vessel_dips), "flux_dips": self.flux_dips}

    def restore_counters(self, vessel_dips: dict[str, int], flux_dips: int) -> None:
        """Counts since the last refresh, as the records kept them across restarts."""
        for vessel, count in vessel_dips.items():
            if vessel in self.vessel_dips:
                self.vessel_dips[vessel] = int(count)
        self.flux_dips = int(flux_dips)

    def refreshed(self, what: str) -> dict[str, Any]:
        """The solder of a vessel, or the flux (``"flux"``), was refreshed: its count restarts.

        A ``refreshed`` event puts it on record (the counts are rebuilt from the events at
        start), and the counter's warning, if standing, clears now. Nothing moves or heats.
        """
        if what == "flux":
            before, alarm_id, code = self.flux_dips, "flux_dips", "flux_dips"
            self.flux_dips = 0
        elif what in self.vessel_dips:
            before, alarm_id, code = self.vessel_dips[what], f"vessel_dips.{what}", "vessel_dips"
            self.vessel_dips[what] = 0
        else:
            known = ", ".join(["flux", *sorted(self.vessel_dips)])
            raise CommandRefused(
                "bad_request", f"no vessel {what!r}; known: {known}", {"known": known.split(", ")}
            )
        self._pending.append(Event("refreshed", {"what": what, "dips_before": before}))
        self._alarms.condition(
            alarm_id, False, code, "warning", "", since=self._stamp(), events=self._pending
        )
        return {"what": what, "dips_before": before}

    # ================================================================== helpers

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
        """First sight of the holder: hold it where it is, unless it is down in a vessel."""
        self._holder_known = True
        self._station_t = station
        where = self._surfaces.get(station)
        tol = self._cfg.holder.z_tolerance_mm
        self._z_t = self._cfg.holder.z_travel_mm if where and z >= where[1] - tol else z

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

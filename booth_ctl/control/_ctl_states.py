"""The PackML state step: what each state does with the plant and the sequencer."""

from __future__ import annotations

from booth_ctl.control._ctl_base import (
    PURGE_OFF_FRACTION,
    PURGE_ON_FRACTION,
    RESET_NEEDS,
    STALL_RETRY_S,
    ControllerBase,
)
from booth_ctl.control._events import Event
from booth_ctl.control._interlocks import (
    BASE,
    O2State,
    unmet,
)
from booth_ctl.control._packml import HEATING, JOB
from booth_ctl.control._sequencer import Mode, Plant, Result, Sequencer


class StateMachine(ControllerBase):
    def _state_step(self, events: list[Event]) -> None:
        st, plant, seq = self.state, self._plant, self._seq
        assert self._state_t0 is not None
        in_state_s = self._now - self._state_t0
        if (
            st in ("stopped", "aborted")
            and self._holder_known
            and plant.z_mm is not None
            and plant.z_mm < self._z_t - self._cfg.holder.z_tolerance_mm
        ):
            # At rest the holder is never sent down: one that rises by itself (a drive finishing
            # its own comm-loss withdrawal, adopted mid-way at a restart) goes on to the top.
            self._z_t = self._cfg.holder.z_travel_mm
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

    def _purge_step(self, o2: O2State, limit: float, perm: dict[str, bool]) -> None:
        if self.state not in HEATING or not perm["door_closed"]:
            self._purge = False
        elif not o2.ok or o2.ppm is None or o2.ppm > PURGE_ON_FRACTION * limit:
            self._purge = True
        elif o2.ppm <= PURGE_OFF_FRACTION * limit:
            self._purge = False

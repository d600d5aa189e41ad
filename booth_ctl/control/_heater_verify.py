"""Heater verification, apart from the control law (which lives in the temperature controller).

One ``HeaterVerifier`` per vessel watches what the controller reports and says which trip
conditions are present. It never drives the heater itself: the controller's trip latch does, by
two paths. Conditions that are about trusting the data (stale, no contact, open thermocouple)
trip only while the heater is meant to heat; with the heater already off they keep the booth from
being reset instead. Over-temperature and a rise with the output off trip always.
"""

from __future__ import annotations

from dataclasses import dataclass

from booth_ctl.config._booth import LimitsConfig
from booth_ctl.control._image import Snapshot, fresh_bit, fresh_value, quality
from drivers import Quality

#: The controller's output at or above this (percent) counts as "heating hard".
OUTPUT_HIGH_PCT = 95.0
#: ... and so does an output at the highest the controller has reported while heating (its own
#: output limit may cap it under OUTPUT_HIGH_PCT), if at least this.
OUTPUT_CAPPED_MIN_PCT = 50.0
#: An output within this of the highest reported counts as at the cap.
OUTPUT_CAP_TOL_PCT = 0.5
#: PV unchanged within this (C) while the output moves by FROZEN_OUTPUT_DELTA_PCT: a frozen input
#: (a thermocouple shorted at the cold end, a controller that stopped converting).
PV_RESOLUTION_C = 0.05
FROZEN_OUTPUT_DELTA_PCT = 20.0
#: At or under this the output counts as off.
OUTPUT_OFF_PCT = 0.5
#: After the heater is enabled, the controller may report comm_lost this long (it clears on the
#: first heartbeat it sees with run=1).
ENABLE_GRACE_S = 3.0

OVER_TEMP = "over_temp"
TC_OPEN = "tc_open"
TEMP_STALE = "temp_stale"
COMM_LOST = "heater_comm_lost"
STUCK_ON = "heater_stuck_on"
RUNAWAY = "heater_runaway"
NO_RISE = "heater_no_rise"
PV_FROZEN = "temp_frozen"

TEXT = {
    OVER_TEMP: "solder over temperature",
    TC_OPEN: "thermocouple fault",
    TEMP_STALE: "solder temperature reading stale",
    COMM_LOST: "lost contact with the temperature controller",
    STUCK_ON: "temperature rising with the heater off (stuck-on element)",
    RUNAWAY: "temperature off target too long (runaway)",
    NO_RISE: "heater output high without the expected rise",
    PV_FROZEN: "temperature reading frozen while the heater output changes",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    #: Conditions present now (the cause of a latched trip is gone when absent here).
    present: frozenset[str]
    #: Conditions that must trip now.
    trip: frozenset[str]


_NONE = Verdict(frozenset(), frozenset())


class HeaterVerifier:
    def __init__(self, device: str, limits: LimitsConfig, window_s: float, stale_s: float) -> None:
        """``window_s``: the vessel's rise window, long enough for the melt plateau; it applies
        only below the setpoint band (heating through the melt). At the setpoint, where the bath
        is molten, the general ``limits.heating_check_window_s`` applies."""
        self._pv = f"{device}.pv_c"
        self._out = f"{device}.output_pct"
        self._tc_open = f"{device}.tc_open"
        self._comm_lost = f"{device}.comm_lost"
        self._stale_s = stale_s
        self._max_c = limits.temp_max_c
        self._hyst_c = limits.runaway_hysteresis_c
        self._max_error_c_s = limits.runaway_max_error_c_s
        self._gain_c = limits.heating_check_gain_c
        self._window_s = window_s
        self._set_window_s = min(window_s, limits.heating_check_window_s)
        self._stuck_rise_c = limits.stuck_on_rise_c
        self._reset_heating(None)
        self._off_min_c: float | None = None
        self._last_now: float | None = None

    def _reset_heating(self, now: float | None) -> None:
        self._enabled_at = now
        self._last_target: float | None = None
        self._error_c_s = 0.0
        #: The same budget above target + hysteresis, counted while the output is not off.
        self._over_c_s = 0.0
        self._approaching = False
        self._goal_c = 0.0
        self._goal_t = 0.0
        self._high_goal_c: float | None = None
        self._high_goal_t = 0.0
        #: The highest output the controller reported since the heater was enabled.
        self._out_max_pct = 0.0
        #: The frozen-PV check: the PV last seen to move, the output then, when it swung since.
        self._pv_seen: float | None = None
        self._out_ref_pct: float | None = None
        self._swing_t: float | None = None

    def check(self, snap: Snapshot, heating: bool, target_c: float) -> Verdict:
        """``heating``: commanded on (run and contactor); ``target_c``: its setpoint."""
        now = snap.now
        dt = 0.0 if self._last_now is None else max(now - self._last_now, 0.0)
        self._last_now = now
        present: set[str] = set()
        pv = fresh_value(snap, self._pv, self._stale_s)
        q = quality(snap, self._pv)
        tc_open = fresh_bit(snap, self._tc_open, self._stale_s)
        if q is Quality.NO_COMM:
            present.add(COMM_LOST)
        elif q is Quality.BAD or tc_open is True:
            present.add(TC_OPEN)
        elif pv is None or tc_open is None:
            present.add(TEMP_STALE)
        if pv is not None and tc_open is not False:
            pv = None
        if pv is not None and pv > self._max_c:
            present.add(OVER_TEMP)
        if not heating:
            self._reset_heating(None)
            self._check_stuck_on(pv, present)
            return Verdict(frozenset(present), frozenset(present & {OVER_TEMP, STUCK_ON}))
        if self._enabled_at is None:
            self._reset_heating(now)
        assert self._enabled_at is not None
        comm_lost = fresh_bit(snap, self._comm_lost, self._stale_s)
        if comm_lost is True and now - self._enabled_at > ENABLE_GRACE_S:
            present.add(COMM_LOST)
        output = fresh_value(snap, self._out, self._stale_s)
        if output is not None and output <= OUTPUT_OFF_PCT:
            self._check_stuck_on(pv, present)
        else:
            self._off_min_c = None
        if pv is not None:
            self._check_runaway(now, dt, pv, target_c, output=output, present=present)
            at_setpoint = pv >= target_c - self._hyst_c
            window_s = self._set_window_s if at_setpoint else self._window_s
            self._check_rise(now, pv, output, window_s, present)
            self._check_frozen(now, pv, output, at_setpoint=at_setpoint, present=present)
        return Verdict(frozenset(present), frozenset(present))

    def _check_stuck_on(self, pv: float | None, present: set[str]) -> None:
        if pv is None:
            return
        if self._off_min_c is None or pv < self._off_min_c:
            self._off_min_c = pv
        if pv - self._off_min_c >= self._stuck_rise_c:
            present.add(STUCK_ON)

    def _check_runaway(
        self,
        now: float,
        dt: float,
        pv: float,
        target_c: float,
        *,
        output: float | None,
        present: set[str],
    ) -> None:
        """Klipper's verify_heater, integrated over time instead of counted per sample.

        Below target - hysteresis the error counts as Klipper's does. Above target + hysteresis
        it counts while the controller still drives its output (or the output is unknown): a bath
        held too hot by a heating controller (a lost setpoint write, a controller regulating to
        the wrong target, a shifted sensor) is "off target too long" too. Cooling down with the
        output off (a lowered setpoint) counts nothing.
        """
        if pv <= target_c + self._hyst_c:
            self._over_c_s = 0.0
        elif output is None or output > OUTPUT_OFF_PCT:
            self._over_c_s += (pv - target_c - self._hyst_c) * dt
            if self._over_c_s >= self._max_error_c_s:
                present.add(RUNAWAY)
        if pv >= target_c - self._hyst_c or target_c <= 0.0:
            self._approaching = False
            if pv <= target_c + self._hyst_c:
                self._error_c_s = 0.0
            self._last_target = target_c
            return
        self._error_c_s += (target_c - self._hyst_c - pv) * dt
        if not self._approaching:
            if target_c != self._last_target:
                self._approaching = True
                self._goal_c = pv + self._gain_c
                self._goal_t = now + self._window_s
            elif self._error_c_s >= self._max_error_c_s:
                present.add(RUNAWAY)
        elif pv >= self._goal_c:
            self._error_c_s = 0.0
            self._goal_c = pv + self._gain_c
            self._goal_t = now + self._window_s
        elif now >= self._goal_t:
            present.add(NO_RISE)
        self._last_target = target_c

    def _check_rise(
        self, now: float, pv: float, output: float | None, window_s: float, present: set[str]
    ) -> None:
        """Output pinned high must show a rise within the window, approaching or not. "High" is
        from the output the controller reports: 95 %, or its own cap if it limits the output."""
        if output is not None:
            self._out_max_pct = max(self._out_max_pct, output)
        capped = (
            output is not None
            and output >= OUTPUT_CAPPED_MIN_PCT
            and output >= self._out_max_pct - OUTPUT_CAP_TOL_PCT
        )
        if output is None or (output < OUTPUT_HIGH_PCT and not capped):
            self._high_goal_c = None
            return
        if self._high_goal_c is None or pv >= self._high_goal_c:
            self._high_goal_c = pv + self._gain_c
            self._high_goal_t = now + window_s
        elif now >= self._high_goal_t:
            present.add(NO_RISE)

    def _check_frozen(
        self, now: float, pv: float, output: float | None, *, at_setpoint: bool, present: set[str]
    ) -> None:
        """At the setpoint (molten: no plateau), a PV that does not move within the window after
        the output swung is not measuring the bath. A flat PV at a steady output is a bath in
        equilibrium, not a fault: the window counts from the swing."""
        moved = self._pv_seen is None or abs(pv - self._pv_seen) > PV_RESOLUTION_C
        if moved or not at_setpoint or output is None:
            self._pv_seen, self._out_ref_pct, self._swing_t = pv, output, None
            return
        ref = self._out_ref_pct
        if ref is None:
            self._out_ref_pct = output
        elif self._swing_t is None and abs(output - ref) >= FROZEN_OUTPUT_DELTA_PCT:
            self._swing_t = now
        if self._swing_t is not None and now - self._swing_t >= self._set_window_s:
            present.add(PV_FROZEN)

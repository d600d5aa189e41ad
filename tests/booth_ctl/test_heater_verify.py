"""The heater verifier on a virtual clock: hours of heating in milliseconds.

A small thermal model (heat capacity, losses, a melt plateau) and a proportional controller stand
for the vessel and its temperature controller. Each fault must trip within its window, and a
healthy heater must never trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from booth_ctl.config._booth import LimitsConfig
from booth_ctl.control._heater_verify import (
    COMM_LOST,
    ENABLE_GRACE_S,
    NO_RISE,
    OVER_TEMP,
    RUNAWAY,
    STUCK_ON,
    TC_OPEN,
    TEMP_STALE,
    HeaterVerifier,
)
from booth_ctl.control._image import Snapshot
from drivers import Quality, Reading

LIMITS = LimitsConfig()
WINDOW_S = LIMITS.heating_check_window_s
DT_S = 0.1


@dataclass
class Vessel:
    temp_c: float = 25.0
    sv_c: float = 250.0
    run: bool = True
    heat_w: float = 3000.0
    loss_w_per_c: float = 4.0
    cap_j_per_c: float = 2000.0
    melt_c: float = 183.0
    melt_left_j: float = 60_000.0
    dead: bool = False
    stuck_on: bool = False
    output_cap_pct: float = 100.0
    #: The setpoint the controller really regulates to (None: the supervisor's ``sv_c``).
    controller_sv_c: float | None = None
    t: float = 0.0
    quality: Quality = Quality.GOOD
    tc_open: bool = False
    comm_lost: bool = False
    age_s: float = 0.0

    @property
    def output_pct(self) -> float:
        if not self.run:
            return 0.0
        sv = self.sv_c if self.controller_sv_c is None else self.controller_sv_c
        return max(0.0, min(self.output_cap_pct, (sv - self.temp_c) * 20.0))

    def step(self, dt: float) -> None:
        self.t += dt
        pct = 100.0 if self.stuck_on else (0.0 if self.dead else self.output_pct)
        q = pct / 100.0 * self.heat_w - self.loss_w_per_c * (self.temp_c - 25.0)
        if self.melt_left_j > 0 and self.temp_c >= self.melt_c and q > 0:
            self.melt_left_j -= q * dt
            self.temp_c = self.melt_c
        else:
            self.temp_c += q * dt / self.cap_j_per_c

    def snapshot(self) -> Snapshot:
        ts = self.t - self.age_s
        q = self.quality
        return Snapshot(
            self.t,
            {
                "h.pv_c": Reading(round(self.temp_c, 1), ts, q),
                "h.output_pct": Reading(self.output_pct, ts, q),
                "h.tc_open": Reading(self.tc_open, ts, q),
                "h.comm_lost": Reading(self.comm_lost, ts, q),
            },
        )


def _verifier(window_s: float = WINDOW_S) -> HeaterVerifier:
    return HeaterVerifier("h", LIMITS, window_s, stale_s=1.0)


def run(v: Vessel, ver: HeaterVerifier, seconds: float) -> tuple[float, frozenset[str]] | None:
    """Steps until a trip; returns (time, trip codes) or None."""
    end = v.t + seconds
    while v.t < end:
        verdict = ver.check(v.snapshot(), v.run, v.sv_c)
        if verdict.trip:
            return v.t, verdict.trip
        v.step(DT_S)
    return None


def test_healthy_heat_up_through_the_melt_plateau_and_hours_at_setpoint() -> None:
    v, ver = Vessel(), _verifier()
    assert run(v, ver, 1800.0) is None
    assert abs(v.temp_c - 250.0) < 5.0
    for sv in (300.0, 250.0, 220.0, 250.0):
        v.sv_c = sv
        assert run(v, ver, 1800.0) is None, sv
    v.run = False
    assert run(v, ver, 3600.0) is None  # cooling with the heater off is fine
    assert v.temp_c < 60.0


def test_melt_plateau_longer_than_the_window_trips_so_size_the_window() -> None:
    v, ver = Vessel(melt_left_j=300_000.0), _verifier()
    result = run(v, ver, 3600.0)
    assert result is not None and NO_RISE in result[1]
    v2, ver2 = Vessel(melt_left_j=300_000.0), _verifier(window_s=300.0)
    assert run(v2, ver2, 3600.0) is None


def test_dead_heater_during_heat_up_trips_within_the_window_not_before() -> None:
    v, ver = Vessel(temp_c=100.0, melt_left_j=0.0, dead=True), _verifier()
    result = run(v, ver, 600.0)
    assert result is not None and NO_RISE in result[1]
    assert WINDOW_S - DT_S <= result[0] <= WINDOW_S + 1.0


def test_dead_heater_at_setpoint_trips() -> None:
    v, ver = Vessel(temp_c=250.0, melt_left_j=0.0), _verifier()
    assert run(v, ver, 600.0) is None
    v.dead = True
    t0 = v.t
    result = run(v, ver, 900.0)
    assert result is not None and result[1] & {NO_RISE, RUNAWAY}
    # The controller's output saturates once the bath has cooled ~5 C (about 10 s here); the
    # window runs from there.
    assert WINDOW_S <= result[0] - t0 <= WINDOW_S + 15.0


def test_a_heater_that_cannot_hold_target_trips_no_rise_at_its_output_cap() -> None:
    # Weak heater with its output capped (80 %) under "high": the output at the controller's own
    # cap arms the rise check (it used to be left to the slower error budget).
    v = Vessel(temp_c=250.0, melt_left_j=0.0, output_cap_pct=80.0)
    ver = _verifier()
    assert run(v, ver, 300.0) is None
    v.heat_w = 1000.0  # equilibrium ~225 C, under target - hysteresis (235 C)
    result = run(v, ver, 3600.0)
    assert result is not None and result[1] == {NO_RISE}
    # Within one window of the output reaching its cap (about 5 s after the change).
    assert result[0] <= 300.0 + 10.0 + WINDOW_S


def test_bath_held_above_target_while_heating_trips_runaway() -> None:
    # The controller keeps regulating to 300 C (a lost setpoint write) while the target is 250 C:
    # the bath sits 35 C over target + hysteresis with the output on, and nothing else trips.
    v = Vessel(temp_c=250.0, melt_left_j=0.0)
    ver = _verifier()
    assert run(v, ver, 300.0) is None
    v.sv_c, v.controller_sv_c = 300.0, 300.0
    assert run(v, ver, 600.0) is None
    v.sv_c = 250.0
    t0 = v.t
    result = run(v, ver, 600.0)
    assert result is not None and result[1] == {RUNAWAY}
    over_c = v.temp_c - 250.0 - LIMITS.runaway_hysteresis_c
    budget_s = LIMITS.runaway_max_error_c_s / over_c
    assert budget_s - 1.0 <= result[0] - t0 <= budget_s + 1.0
    assert v.output_pct > 0.0 and v.temp_c < LIMITS.temp_max_c


def test_cooling_down_above_target_with_the_output_off_is_fine() -> None:
    v = Vessel(temp_c=300.0, melt_left_j=0.0, sv_c=300.0)
    ver = _verifier()
    assert run(v, ver, 300.0) is None
    v.sv_c = 200.0  # a long cool-down far over target + hysteresis, output 0 meanwhile
    assert run(v, ver, 3600.0) is None
    assert abs(v.temp_c - 200.0) < 5.0


def test_over_target_budget_restarts_once_back_in_the_band() -> None:
    # Regulating to 280 C holds the bath ~13 C over 250 + hysteresis: 600 C s last ~45 s.
    v = Vessel(temp_c=280.0, melt_left_j=0.0, controller_sv_c=280.0)
    ver = _verifier()
    assert run(v, ver, 30.0) is None
    v.controller_sv_c = 260.0  # back into the band: the budget restarts
    assert run(v, ver, 120.0) is None
    assert v.temp_c < 250.0 + LIMITS.runaway_hysteresis_c
    v.controller_sv_c = 280.0  # heats back up: ~340 C s over the band in 40 s
    assert run(v, ver, 40.0) is None  # with the first 30 s' ~400 C s it would have tripped
    result = run(v, ver, 60.0)
    assert result is not None and result[1] == {RUNAWAY}


def test_stuck_on_element_trips_once_the_rise_is_reached_not_before() -> None:
    v, ver = Vessel(temp_c=240.0, melt_left_j=0.0, run=False), _verifier()
    assert run(v, ver, 60.0) is None
    v.stuck_on = True
    low = v.temp_c
    result = run(v, ver, 600.0)
    assert result is not None and STUCK_ON in result[1]
    rise = v.temp_c - low
    assert LIMITS.stuck_on_rise_c <= rise + 0.1 <= LIMITS.stuck_on_rise_c + 1.0


def test_stuck_on_is_seen_while_the_controller_runs_with_output_zero() -> None:
    v, ver = Vessel(temp_c=250.0, melt_left_j=0.0, sv_c=200.0), _verifier()
    v.stuck_on = True
    result = run(v, ver, 600.0)
    assert result is not None and result[1] & {STUCK_ON, OVER_TEMP}
    assert STUCK_ON in result[1]


def test_over_temperature_trips_even_with_the_heater_off() -> None:
    v, ver = Vessel(temp_c=LIMITS.temp_max_c + 1.0, melt_left_j=0.0, run=False), _verifier()
    result = run(v, ver, 1.0)
    assert result is not None and OVER_TEMP in result[1]


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ({"tc_open": True}, TC_OPEN),
        ({"quality": Quality.BAD}, TC_OPEN),
        ({"quality": Quality.STALE}, TEMP_STALE),
        ({"age_s": 2.0}, TEMP_STALE),
        ({"quality": Quality.NO_COMM}, COMM_LOST),
    ],
)
def test_data_faults_trip_at_once_while_heating_and_only_block_while_off(
    setup: dict[str, object], code: str
) -> None:
    v, ver = Vessel(temp_c=250.0, melt_left_j=0.0), _verifier()
    assert run(v, ver, 30.0) is None
    for k, val in setup.items():
        setattr(v, k, val)
    t0 = v.t
    result = run(v, ver, 5.0)
    assert result is not None and code in result[1]
    assert result[0] - t0 <= DT_S
    off, ver_off = Vessel(temp_c=250.0, melt_left_j=0.0, run=False), _verifier()
    for k, val in setup.items():
        setattr(off, k, val)
    verdict = ver_off.check(off.snapshot(), False, 250.0)
    assert code in verdict.present and not verdict.trip


def test_controller_comm_lost_bit_has_a_grace_after_enable() -> None:
    v, ver = Vessel(temp_c=250.0, melt_left_j=0.0, comm_lost=True), _verifier()
    result = run(v, ver, 30.0)
    assert result is not None and COMM_LOST in result[1]
    assert ENABLE_GRACE_S <= result[0] <= ENABLE_GRACE_S + 2 * DT_S
    v2, ver2 = Vessel(temp_c=250.0, melt_left_j=0.0, comm_lost=True), _verifier()
    assert run(v2, ver2, ENABLE_GRACE_S - 0.5) is None
    v2.comm_lost = False
    assert run(v2, ver2, 60.0) is None

"""The stateful test again, against the simulator's own physics and its fault names.

Fewer examples than the plant-model machine (the physics is heavier);
``BOOTH_STATEFUL_SIM_EXAMPLES`` raises them.
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from booth_ctl._events import CommandRefused
from booth_ctl._packml import STATES
from booth_ctl._sequencer import Step
from drivers import Quality
from tests.booth_ctl._plant import demo_recipe
from tests.booth_ctl._simloop import SimLoop

EXAMPLES = int(os.environ.get("BOOTH_STATEFUL_SIM_EXAMPLES", "10"))
#: A bench run with many examples may take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(max(120, EXAMPLES * 3))
PERIOD_S = 0.02
TOP = 0.0
O2_LIMIT_PPM = 1000.0
HOLD_KPA = 40.0

FAULTS: tuple[tuple[str, Any], ...] = (
    ("door_open", None),
    ("estop", None),
    ("exhaust_fail", None),
    ("n2_supply_loss", None),
    ("o2_leak", 600.0),
    ("o2_leak", 5000.0),
    ("o2_leak", 20_000.0),
    ("o2_analyzer_silent", None),
    ("tc_open", None),
    ("heater_stuck_on", None),
    ("heater_dead", None),
    ("high_limit_trip", None),
    ("vacuum_leak", None),
    ("hoist_stall", None),
    ("flux_low", None),
    ("device_offline", "heater1"),
    ("device_offline", "io"),
    ("device_offline", "holder"),
    ("device_offline", "o2"),
)


@functools.cache
def _idle_once() -> SimLoop:
    s = SimLoop("booth-sim.toml", PERIOD_S)
    s.run_for(0.5)
    s.ctl.reset()
    s.run_until(lambda: s.ctl.state == "idle", 30.0, "idle")
    return s


def _fresh() -> SimLoop:
    base = _idle_once()
    memo: dict[int, Any] = {
        id(base.loaded): base.loaded,
        id(base.loaded.config): base.loaded.config,
    }
    s = copy.deepcopy(base, memo)
    s.events.clear()
    return s


def _cause_visible(snap: Any, tripped: bool) -> bool:
    sig = snap.signals
    door, vac, o2 = sig["io.door_closed"], sig["io.vacuum_kpa"], sig["o2.ppm"]
    return (
        tripped
        or door.quality is not Quality.GOOD
        or door.value is not True
        or vac.quality is not Quality.GOOD
        or float(vac.value or 0.0) < HOLD_KPA
        or o2.quality is not Quality.GOOD
        or float(o2.value or 0.0) > O2_LIMIT_PPM
    )


class SimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = _fresh()
        self.o2_ok_since: float | None = None

    @initialize(units=st.integers(min_value=0, max_value=2))
    def maybe_a_job(self, units: int) -> None:
        if units:
            self.start_job(units)

    @rule(command=st.sampled_from(["reset", "hold", "unhold", "stop", "abort", "clear"]))
    def command(self, command: str) -> None:
        try:
            getattr(self.s.ctl, command)()
        except CommandRefused as exc:
            assert exc.code in ("invalid_state", "interlock"), exc

    @rule(units=st.integers(min_value=1, max_value=2))
    def start_job(self, units: int) -> None:
        try:
            self.s.ctl.start_job("LOT", "demo", demo_recipe(self.s.loaded), units)
        except CommandRefused as exc:
            assert exc.code in ("invalid_state", "interlock"), exc

    @rule()
    def ack_all(self) -> None:
        self.s.ctl.ack_alarm(None)

    @rule(fault=st.sampled_from(FAULTS))
    def inject(self, fault: tuple[str, Any]) -> None:
        self.s.phys.inject(*fault)

    @rule(name=st.sampled_from(sorted({f for f, _ in FAULTS})))
    def clear_fault(self, name: str) -> None:
        self.s.phys.clear(name)

    @rule()
    def heal(self) -> None:
        self.s.phys.clear()

    @rule(scans=st.sampled_from([1, 5, 50, 250]))
    def advance(self, scans: int) -> None:
        for _ in range(scans):
            self._checked_tick()

    @rule(step=st.sampled_from([Step.FLUX_DWELL, Step.DIP_APPROACH, Step.DIP_DWELL, Step.DIP_UP]))
    def advance_to(self, step: Step) -> None:
        for _ in range(int(15.0 / PERIOD_S)):
            seq = self.s.ctl._seq
            if seq is not None and seq.step is step:
                return
            self._checked_tick()

    def _checked_tick(self) -> None:
        s = self.s
        snap = s.snapshot()
        o2 = snap.signals["o2.ppm"]
        if o2.quality is Quality.GOOD and float(o2.value or 0.0) <= O2_LIMIT_PPM:
            if self.o2_ok_since is None:
                self.o2_ok_since = snap.now
        else:
            self.o2_ok_since = None
        visible = _cause_visible(snap, s.ctl.tripped)
        o2_stable = self.o2_ok_since is not None and snap.now - self.o2_ok_since >= 1.0
        in_bath = s.phys.part.in_vessel is not None
        entries = len(s.phys.bath_entries)
        s.tick()
        o = s.last.outputs
        state = s.ctl.state
        if s.ctl.tripped or state in ("stopped", "stopping", "aborting", "aborted", "clearing"):
            assert o["heater1.run"] == 0 and o["io.heater_contactor"] is False, state
        if state not in ("execute", "holding"):
            assert o["holder.z_target_mm"] == TOP, state
        assert o["io.exhaust_fan"] is True and o["io.n2_maintain"] is True
        if in_bath and visible:
            assert o["holder.z_target_mm"] == TOP, ("not withdrawn", state)
        if len(s.phys.bath_entries) > entries:
            assert not visible and o2_stable, f"entry against the rules in {state}"

    @invariant()
    def packml_state(self) -> None:
        assert self.s.ctl.state in STATES

    def teardown(self) -> None:
        dips = [e for e in self.s.events if e.type == "dip"]
        assert len(dips) == len(self.s.phys.bath_entries)


SimMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestSimMachine = SimMachine.TestCase

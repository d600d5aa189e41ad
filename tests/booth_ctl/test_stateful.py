"""Random commands, faults and timings against the controller and a plant on a virtual clock;
CONTRACT section 4 is checked after every scan, not only after every step.

``BOOTH_STATEFUL_EXAMPLES`` raises the number of examples (the bench runs thousands).
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

from booth_ctl.control._sequencer import Step
from drivers import Quality
from tests.booth_ctl._plant import STATE_COMMANDS, Loop, demo_recipe, idle_loop, try_command

EXAMPLES = int(os.environ.get("BOOTH_STATEFUL_EXAMPLES", "50"))
#: A bench run with many examples may take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(max(120, EXAMPLES * 1))
PERIOD_S = 0.02
TOP = 0.0
O2_LIMIT_PPM = 1000.0  # the demo recipe's
STABLE_S = 1.0
BAND = (240.0, 260.0)

FAULTS = (
    "door_open",
    "estop",
    "exhaust_fail",
    "n2_supply_loss",
    "o2_leak_low",
    "o2_leak_high",
    "o2_leak_air",
    "o2_stale",
    "o2_silent",
    "tc_open",
    "heater_stuck_on",
    "heater_dead",
    "high_limit_trip",
    "vacuum_leak",
    "hoist_stall",
    "heater_offline",
    "io_offline",
    "holder_offline",
)


@functools.cache
def _idle_once() -> Loop:
    return idle_loop()


def _base() -> Loop:
    base = _idle_once()
    loaded = base.plant.loaded
    # The config is immutable: share it instead of copying it for every example.
    memo: dict[int, Any] = {id(loaded): loaded, id(loaded.config): loaded.config}
    loop = copy.deepcopy(base, memo)
    loop.events.clear()
    loop.period_s = PERIOD_S
    return loop


def _apply(loop: Loop, fault: str, on: bool) -> None:
    p = loop.plant
    if fault == "door_open":
        p.door_closed = not on
    elif fault == "estop":
        p.estop_ok = not on
    elif fault == "exhaust_fail":
        p.exhaust_fail = on
    elif fault == "n2_supply_loss":
        p.n2_supply_ok = not on
    elif fault.startswith("o2_leak"):
        ppm = {"o2_leak_low": 500.0, "o2_leak_high": 3000.0, "o2_leak_air": 20_000.0}[fault]
        p.leak_o2(ppm if on else None)
    elif fault in ("o2_stale", "o2_silent"):
        q = Quality.STALE if fault == "o2_stale" else Quality.NO_COMM
        _quality(p.dev_quality, "o2", q, on)
    elif fault == "tc_open":
        p.tc_open = on
    elif fault == "heater_stuck_on":
        p.heater_stuck_on = on
    elif fault == "heater_dead":
        p.heater_dead = on
    elif fault == "high_limit_trip":
        p.high_limit_ok = not on
    elif fault == "vacuum_leak":
        p.vacuum_leak = on
    elif fault == "hoist_stall":
        p.stall = on
    else:
        dev = {"heater_offline": "heater1", "io_offline": "io", "holder_offline": "holder"}[fault]
        _quality(p.dev_quality, dev, Quality.NO_COMM, on)


def _quality(table: dict[str, Quality], dev: str, q: Quality, on: bool) -> None:
    if on:
        table[dev] = q
    else:
        table.pop(dev, None)


class BoothMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = _base()
        self.o2_ok_since: float | None = None
        self.scans = 0

    # ------------------------------------------------------------------ rules

    @initialize(units=st.integers(min_value=0, max_value=3))
    def maybe_a_job(self, units: int) -> None:
        if units:
            self.start_job(units)

    @rule(
        step=st.sampled_from(
            [Step.FLUX_DWELL, Step.DIP_APPROACH, Step.DIP_ENTER, Step.DIP_DWELL, Step.DIP_UP]
        )
    )
    def advance_to(self, step: Step) -> None:
        """Up to 20 s until the sequencer is at ``step``: faults then land mid-dip."""
        for _ in range(int(20.0 / PERIOD_S)):
            seq = self.loop.ctl._seq
            if seq is not None and seq.step is step:
                return
            self._checked_tick()

    @rule(command=st.sampled_from(STATE_COMMANDS))
    def command(self, command: str) -> None:
        try_command(self.loop.ctl, command)

    @rule(units=st.integers(min_value=1, max_value=3))
    def start_job(self, units: int) -> None:
        recipe = demo_recipe(self.loop.plant.loaded)
        try_command(self.loop.ctl, "start_job", "LOT", "demo", recipe, units)

    @rule()
    def ack_all(self) -> None:
        self.loop.ctl.ack_alarm(None)

    @rule(fault=st.sampled_from(FAULTS), on=st.booleans())
    def fault(self, fault: str, on: bool) -> None:
        _apply(self.loop, fault, on)

    @rule()
    def heal(self) -> None:
        for f in FAULTS:
            _apply(self.loop, f, False)

    @rule(scans=st.sampled_from([1, 3, 25, 100, 400]))
    def advance(self, scans: int) -> None:
        for _ in range(scans):
            self._checked_tick()

    # ------------------------------------------------------------------ the rules of s.4

    def _entry_allowed(self, snap: Any) -> list[str]:
        """What the snapshot the controller saw says against a part entering the solder."""
        sig = snap.signals
        ctl = self.loop.ctl

        def good(name: str) -> Any:
            r = sig.get(name)
            return r.value if r is not None and r.quality is Quality.GOOD else None

        why = []
        if good("io.door_closed") is not True:
            why.append("door")
        if good("io.estop_ok") is not True:
            why.append("estop")
        if good("io.exhaust_ok") is not True:
            why.append("exhaust")
        vac = good("io.vacuum_kpa")
        if vac is None or vac < 40.0:
            why.append("held")
        pv = good("heater1.pv_c")
        if pv is None or not BAND[0] <= pv <= BAND[1] or good("heater1.tc_open") is not False:
            why.append("temp")
        if self.o2_ok_since is None or snap.now - self.o2_ok_since < STABLE_S:
            why.append("o2")
        if ctl.tripped:
            why.append("tripped")
        return why

    def _track_o2(self, snap: Any) -> None:
        r = snap.signals.get("o2.ppm")
        ok = r is not None and r.quality is Quality.GOOD and r.value <= O2_LIMIT_PPM
        if not ok:
            self.o2_ok_since = None
        elif self.o2_ok_since is None:
            self.o2_ok_since = snap.now

    def _checked_tick(self) -> None:
        loop, p, ctl = self.loop, self.loop.plant, self.loop.ctl
        snap = p.snapshot()
        self._track_o2(snap)
        against = self._entry_allowed(snap)
        sig = snap.signals
        out = ctl.scan(snap)
        p.outputs.update(out.outputs)
        loop.events.extend(out.events)
        loop.last = out
        o = out.outputs
        self.scans += 1
        state = ctl.state
        # The heater is off by both paths whenever tripped or at rest.
        if ctl.tripped or state in ("stopped", "stopping", "aborting", "aborted", "clearing"):
            assert o["heater1.run"] == 0 and o["io.heater_contactor"] is False, (state, o)
        # Outside a dip the holder is sent up; the N2, exhaust and suction are never dropped.
        if state not in ("execute", "holding"):
            assert o["holder.z_target_mm"] == TOP, (state, o["holder.z_target_mm"])
        assert o["io.exhaust_fan"] is True and o["io.n2_maintain"] is True
        # A part in the bath is withdrawn in the scan that sees a cause.
        if p.in_bath:
            r_door = sig["io.door_closed"]
            r_o2 = sig["o2.ppm"]
            seen = (
                ctl.tripped
                or r_door.quality is not Quality.GOOD
                or r_door.value is not True
                or r_o2.quality is not Quality.GOOD
                or r_o2.value > O2_LIMIT_PPM
                or sig["io.vacuum_kpa"].quality is not Quality.GOOD
                or sig["io.vacuum_kpa"].value < 40.0
            )
            if seen:
                assert o["holder.z_target_mm"] == TOP, ("not withdrawn", state, o)
                if p.part_present and p.vacuum_kpa >= 40.0:
                    assert o["io.vacuum_pump"] and o["io.vacuum_valve"], "part dropped"
        entries = len(p.entries)
        p.step(loop.period_s)
        # No part enters unless everything held in the snapshot the controller acted on.
        if len(p.entries) > entries:
            assert not against, f"entry with {against} in state {state}"

    @invariant()
    def lights_follow_trips(self) -> None:
        out = self.loop.last.outputs if self.loop.last is not None else None
        if out is not None and self.loop.ctl.tripped:
            assert out["io.light_red"] is True

    @invariant()
    def state_is_a_packml_state(self) -> None:
        from booth_ctl.control._packml import STATES

        assert self.loop.ctl.state in STATES

    def teardown(self) -> None:
        from hypothesis import event

        event(f"bath entries: {min(len(self.loop.plant.entries), 3)}")
        event(f"final state: {self.loop.ctl.state}")
        # Every entry the events report is one the plant saw, and vice versa.
        dips = [e for e in self.loop.events if e.type == "dip"]
        assert len(dips) == len(self.loop.plant.entries)


BoothMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBoothMachine = BoothMachine.TestCase

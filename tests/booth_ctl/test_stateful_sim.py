"""CONTRACT section 4 as a hypothesis state machine over the supervisor and the simulator's
physics, on a virtual clock: random commands, faults, clears, supervisor crashes and restarts.

After every scan the rules are judged from the physics' truth (``BoothPhysics.state()``, what
``booth-sim state`` prints, with ``bath_entries``), never from what the controller believes:

a) every new bath entry: O2 at entry <= the recipe's limit (<= 10000) and no higher in the
   stable time before it, solder temperature within setpoint +/- band, and at that instant the
   door closed, the e-stop clear, the exhaust running, the part held, and no withdraw condition;
b) a part in the bath while a withdraw condition holds in physics (door open, O2 over the limit
   or its reading stale, e-stop, hold lost, any trip condition) is out within ``WITHDRAW_S`` of
   virtual time and its unit is rejected;
c) once a heater-off condition holds in physics (thermocouple open, over temperature, e-stop,
   high-limit, controller offline or comm lost, I/O lost, stuck-on element, runaway, no rise),
   both paths are off in physics within ``HEATER_OFF_S`` (+ the device's own timeout where the
   supervisor cannot reach it): the I/O contactor coil open and the controller not running, no
   heater power, and they stay off until a reset is accepted;
d) after a supervisor (re)start the state is ``stopped``, its outputs safe, the heater stays off
   and nothing lowers or travels until a reset; while no supervisor runs, the devices' own
   watchdogs make them safe. Restarted with the holder lowered at a station the booth does not
   know, the holder is at the top within ``ADOPT_UP_S``;
e) a device refusing the write of one point (``REFUSALS``) delays no other write: the judge gives
   a refused safe-direction point only the device's own timeout (its heartbeats are withheld);
   a drive whose heartbeats are lost withdraws by itself and the booth trips on its report;
f) a point answering a sentinel or an implausible raw value (``GARBAGE``: 0x8000 / 0x7FFF on the
   PV, a 3276.8 kPa vacuum, a negative z) is never taken as a value: the drivers' plausibility
   makes it BAD, and the judge holds it as the condition a missing reading is (a PV that is no
   reading cuts the heater as an open thermocouple does; a vacuum that is no reading is no hold;
   a position that is no reading is no holder), withdraw and entry rules included.

Each condition counts from when the supervisor could know it: the inputs the I/O module and the
controllers publish at their next step (one scan), O2 after the analyzer's report period and
response, a stale O2 reading after the stale time, the heater checks after their windows. The
booth config is the shipped simulator's with shorter heater-verification windows, so that runaway
and no-rise happen within a short sequence.

A directed pass lands every fault at each step of a dip under the same judge (hypothesis
alone dwells on a few faults in a few dozen sequences). What the judge reads that
``booth-sim state`` lacks: the heater contactor's coil (``heater_contactor_closed`` is the
contactor after the high-limit and e-stop wiring) and the holder's travel target; the O2, door,
e-stop, exhaust and hold at an entry are read from the state of the scan the entry appeared in
(one scan is one physics step).

``BOOTH_STATEFUL_SIM_EXAMPLES`` sets the number of sequences (bench/bench_stateful.py runs a
thousand), ``BOOTH_STATEFUL_SIM_STEPS`` their length.
"""

from __future__ import annotations

import atexit
import copy
import functools
import math
import os
import random
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from booth_ctl.config._booth import O2_ABSOLUTE_MAX_PPM
from booth_ctl.config._recipe import Recipe
from booth_ctl.control._controller import STALL_RETRY_S
from booth_ctl.control._events import CommandRefused
from booth_ctl.control._heater_verify import ENABLE_GRACE_S, OUTPUT_HIGH_PCT, OUTPUT_OFF_PCT
from booth_ctl.control._packml import STATES
from booth_ctl.control._sequencer import Step
from sim_hw._faults import FaultError
from sim_hw._physics import MAX_SUBSTEP_S
from tests._util import render_config
from tests.booth_ctl._plant import STATE_COMMANDS, demo_recipe, try_command
from tests.booth_ctl._simloop import SimLoop

EXAMPLES = int(os.environ.get("BOOTH_STATEFUL_SIM_EXAMPLES", "45"))
#: The suite's run explores the same sequences every time, so that a change is judged on what
#: it changed; a bench run (which sets the number of examples) explores new ones each time and is
#: where new findings come from (docs/safety.md lists the open ones).
EXPLORE = "BOOTH_STATEFUL_SIM_EXAMPLES" in os.environ
STEPS = int(os.environ.get("BOOTH_STATEFUL_SIM_STEPS", "30"))
#: A bench run with many examples may take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(max(120, EXAMPLES * 3))
PERIOD_S = 0.02
#: One scan is one physics substep: what the physics saw at an entry is its state after the scan.
assert PERIOD_S <= MAX_SUBSTEP_S
#: Once the supervisor can know a withdraw condition, this much virtual time at most until the
#: part is out of the bath (a withdrawal from the deepest dip takes some 20 ms at full speed) ...
WITHDRAW_S = 0.5
#: ... or, for a heater-off condition, until both heater paths are off.
HEATER_OFF_S = 1.0
#: Shorter heater-verification windows than the shipped config (same checks, reachable sooner).
SHORT_WINDOWS = {
    "runaway_hysteresis_c": 5.0,
    "runaway_max_error_c_s": 30.0,
    "heating_check_window_s": 20.0,
}

#: Points a device may refuse to write (as a device refusing a value does).
REFUSALS = (
    "heater1.sv_c",
    "heater1.run",
    "io.light_amber",
    "io.n2_purge",
    "io.heater_contactor",
    "holder.station_target",
    "holder.z_target_mm",
)
#: Raw answers no healthy instrument gives, per point (``dev.point`` -> raw register value), and
#: the condition each makes: the int16 extremes on the PV (under / over range), 0x8000 on the
#: vacuum (3276.8 kPa at 0.1 kPa: more than an atmosphere), and a z of -50 mm (above the top).
GARBAGE: tuple[tuple[str, int, str], ...] = (
    ("heater1.pv_c", 0x8000, "pv_bad"),
    ("heater1.pv_c", 0x7FFF, "pv_bad"),
    ("io.vacuum_kpa", 0x8000, "hold_unknown"),
    ("holder.z_mm", 0x10000 - 500, "z_unknown"),
)
#: A station no booth config names, and how far down the holder is jogged there.
UNKNOWN_STATION = 9
JOG_Z_MM = (5.0, 40.0)
#: Restarted lowered at an unknown station: at the top within this (a 40 mm climb at full speed
#: takes 0.2 s; the first scans find the drive).
ADOPT_UP_S = 1.0

FAULTS: tuple[tuple[str, Any], ...] = (
    ("door_open", None),
    ("estop", None),
    ("exhaust_fail", None),
    ("n2_supply_loss", None),
    ("o2_leak", 600.0),
    ("o2_leak", 2000.0),
    ("o2_leak", 5000.0),
    ("o2_leak", 20_000.0),
    ("o2_analyzer_silent", None),
    ("tc_open", None),
    ("heater_stuck_on", None),
    ("heater_dead", None),
    ("high_limit_trip", None),
    ("vacuum_leak", None),
    ("vacuum_leak", 0.0),
    ("hoist_stall", None),
    ("flux_low", None),
    ("device_offline", "heater1"),
    ("device_offline", "io"),
    ("device_offline", "holder"),
    ("device_offline", "o2"),
)
DIP_STEPS = (
    Step.FLUX_DWELL,
    Step.DIP_WAIT,
    Step.DIP_APPROACH,
    Step.DIP_ENTER,
    Step.DIP_DWELL,
    Step.DIP_UP,
)
#: Where the scenario's fault lands: in the bath (dwell, or entering) more often than not.
AT_STEPS = (Step.DIP_DWELL, Step.DIP_ENTER, Step.DIP_DWELL, *DIP_STEPS)
AT_SCANS = (0, 1, 3, 10, 25, 40)
#: Causes that only the controller's own view gives (extra to the physics', never instead).
CONTROLLER_CAUSES = frozenset({"ctl_tripped", "ctl_not_dipping", "ctl_resting"})
#: Trips: each cuts the heater and withdraws a part.
TRIP_CAUSES = frozenset(
    {
        "tc_open",
        "over_temp",
        "estop",
        "high_limit",
        "heater_offline",
        "comm_lost",
        "pv_bad",
        "drive_comm_lost",
        "io_offline",
        "io_watchdog",
        "stuck_on",
        "runaway",
        "no_rise",
        "restart",
        "ctl_tripped",
    }
)
HEATER_CAUSES = TRIP_CAUSES | {"ctl_resting"}
WITHDRAW_CAUSES = TRIP_CAUSES | {
    "door_open",
    "o2_over",
    "o2_stale",
    "hold_lost",
    "hold_unknown",
    "z_unknown",
    "ctl_not_dipping",
}
#: At entry, on top of every withdraw condition.
ENTRY_CAUSES = WITHDRAW_CAUSES | {"exhaust_off"}


def _ticks(seconds: float) -> int:
    return math.ceil(seconds / PERIOD_S - 1e-9)


# ---------------------------------------------------------------------- the booth


def _short_windows(data: dict[str, Any]) -> None:
    data["limits"].update(SHORT_WINDOWS)
    for vessel in data["vessels"].values():
        vessel["heating_check_window_s"] = SHORT_WINDOWS["heating_check_window_s"]


@functools.cache
def _idle_once() -> SimLoop:
    tmp = Path(tempfile.mkdtemp(prefix="stateful-sim-"))
    atexit.register(shutil.rmtree, tmp, True)
    path = render_config(tmp, overrides=_short_windows)
    s = SimLoop(period_s=PERIOD_S, path=path, runtime=True)
    s.reset_to_idle()
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


# ---------------------------------------------------------------------- the physics' judge


@dataclass(frozen=True)
class AtEntry:
    """A bath entry and what the physics showed at that instant."""

    t_s: float
    vessel: str
    o2_ppm: float
    solder_temp_c: float
    door_closed: bool
    estop_ok: bool
    exhaust_ok: bool
    part_held: bool
    vacuum_kpa: float
    faults: tuple[str, ...]
    #: Conditions the supervisor could know at that instant (and why the entry is wrong).
    against: tuple[str, ...]


@dataclass
class Episode:
    """One stay of a part in the bath."""

    tick: int
    ev_idx: int
    restarts: int
    entry: AtEntry
    causes: set[str] = field(default_factory=set)


@dataclass
class HeaterModel:
    """The verifier's windows restated over the physics (the controller's PV is ``tc_c``)."""

    heating: bool = False
    off_min_c: float | None = None
    last_sv: float | None = None
    error_c_s: float = 0.0
    approaching: bool = False
    goal_c: float = 0.0
    goal_t: float = 0.0
    high_goal_c: float | None = None
    high_goal_t: float = 0.0


class Truth:
    """Judges CONTRACT s.4 after every scan from ``BoothPhysics.state()`` and the fault set."""

    def __init__(self, s: SimLoop, recipe: Recipe) -> None:
        cfg = s.loaded.config
        phys = s.phys
        sim = phys.settings
        self.limit = min(recipe.o2_limit_ppm, O2_ABSOLUTE_MAX_PPM)
        self.bands = {
            d.vessel: (d.setpoint_c - d.band_c, d.setpoint_c + d.band_c) for d in recipe.dips
        }
        self.stable_ticks = _ticks(max(recipe.o2_stable_s, cfg.limits.o2_stable_s))
        #: The analyzer's noise at the limit, three sigma: truth within it is not "over".
        self.o2_margin = 3.0 * max(sim.o2_noise_ppm, self.limit * sim.o2_noise_pct / 100.0)
        self.o2_dev = cfg.device_of_kind("o2_analyzer")
        self.io_dev = cfg.device_of_kind("remote_io")
        self.holder_dev = cfg.device_of_kind("holder_drive")
        self.hold_kpa = cfg.holder.vacuum_hold_kpa
        self.temp_max_c = cfg.limits.temp_max_c
        self.stuck_rise_c = cfg.limits.stuck_on_rise_c
        self.hyst_c = cfg.limits.runaway_hysteresis_c
        self.max_error_c_s = cfg.limits.runaway_max_error_c_s
        self.gain_c = cfg.limits.heating_check_gain_c
        self.controller_of = {v: vc.controller for v, vc in cfg.vessels.items()}
        self.window_s = {
            v: vc.heating_check_window_s or cfg.limits.heating_check_window_s
            for v, vc in cfg.vessels.items()
        }
        #: How far the thermocouple may lag the solder (full power, its time constant).
        self.temp_lag_c = max(
            v.p.heater_w
            / (v.p.mass_kg * min(v.p.cp_liquid_j_kg_k, v.p.cp_solid_j_kg_k))
            * v.p.tc_tau_s
            for v in phys.vessels.values()
        )
        self.comm_timeout_ticks = _ticks(
            max(cfg.devices[d].comm_timeout_s or 0.0 for d in self.controller_of.values())
        )
        self.drive_timeout_ticks = _ticks(cfg.devices[self.holder_dev].comm_timeout_s or 0.0)
        self.io_watchdog_ticks = _ticks((cfg.devices[self.io_dev].watchdog_ms or 500) / 1000.0)
        self.withdraw_ticks = _ticks(WITHDRAW_S)
        self.heater_off_ticks = _ticks(HEATER_OFF_S)
        o2_stale_s = max(cfg.limits.o2_stale_s, cfg.devices[self.o2_dev].stale_s)
        report_s = (sim.o2_period_ms + sim.o2_t90_ms) / 1000.0
        # When the supervisor can know each condition, in scans after the physics shows it.
        self.lat = {
            "o2_over": _ticks(report_s) + 2,
            "o2_stale": _ticks(o2_stale_s + sim.o2_period_ms / 1000.0) + 2,
            "comm_lost": _ticks(ENABLE_GRACE_S) + 2,
            "io_watchdog": 2,
            "stuck_on": 2,
            "runaway": 2,
            "no_rise": 2,
            "restart": 0,
            "heater_offline": 0,
            "io_offline": 0,
            **{c: 0 for c in CONTROLLER_CAUSES},
        }
        # Anything else is an input a device publishes at its next step: one scan.
        self.tick = 0
        self.restarts = 0
        self.onset: dict[str, int] = {}
        self.heater_latch: dict[str, int] = {}
        self.models = {v: HeaterModel() for v in cfg.vessels}
        self.o2_hist: deque[tuple[int, float]] = deque(maxlen=self.stable_ticks + 2)
        self.n_entries = len(phys.bath_entries)
        self.n_drops = len(phys.part.drops)
        self.entries: list[AtEntry] = []
        #: Entries with a condition against them the supervisor could not know yet (latency).
        self.too_late_to_know: list[tuple[AtEntry, tuple[str, ...]]] = []
        self.unstoppable: list[AtEntry] = []
        self.episode: Episode | None = None
        self.pending_rejects: list[tuple[int, Episode]] = []
        self.blocked_tick = -(10**9)
        self.stall_fault_tick = -(10**9)
        self.unsupervised_tick: int | None = None
        #: After a (re)start, until a reset: (z cap, station, station being travelled to).
        self.restart_hold: tuple[float, int | None, int | None] | None = None
        self.dead_ticks = 0
        #: Devices refusing the write of a point now (the machine's ``refuse`` rule).
        self.refusing: set[str] = set()
        #: Points answering garbage now, with the condition each makes (the ``garbage`` rule).
        self.garbage: dict[str, str] = {}
        #: Devices whose heartbeats are lost now (the ``lose_heartbeats`` rule).
        self.beats_lost: set[str] = set()
        #: The tick of a restart with the holder lowered at an unknown station (rule d).
        self.unknown_restart_tick: int | None = None
        #: For the statistics: conditions seen with a part in the bath, and latching the heater.
        self.seen_in_bath: set[str] = set()
        self.seen_latched: set[str] = set()

    # -------------------------------------------------------------- events from the machine

    def reset_accepted(self) -> None:
        """A reset was accepted: the heater may run again; conditions still present count anew."""
        self.heater_latch.clear()
        for name in self.onset:
            if name in HEATER_CAUSES:
                self.onset[name] = self.tick
        self.onset.pop("restart", None)
        self.restart_hold = None

    def restarted(self, s: SimLoop) -> None:
        self.restarts += 1
        self.onset["restart"] = self.tick
        h = s.phys.holder
        self.restart_hold = (h.z_mm, h.station, h.travel_to)
        # A reject the old supervisor had not yet sent is its records' business (aborted job).
        self.pending_rejects.clear()

    # -------------------------------------------------------------- after every scan

    def after_tick(self, s: SimLoop, supervised: bool = True) -> None:
        self.tick += 1
        phys = s.phys
        truth = phys.state()
        faults = set(truth["faults"])
        offline = set(truth["fault_values"].get("device_offline", ()))
        if not supervised:
            self.dead_ticks += 1
        else:
            self.dead_ticks = 0
        if "hoist_stall" in faults:
            self.stall_fault_tick = self.tick
        stall_retry = truth["holder_stall"] and (
            self.tick - self.stall_fault_tick <= _ticks(STALL_RETRY_S) + 2
        )
        if not supervised or self.holder_dev in offline or "hoist_stall" in faults or stall_retry:
            self.blocked_tick = self.tick
        self.o2_hist.append((self.tick, float(truth["o2_ppm"])))

        active = self._conditions(s, truth, faults, offline)
        for name in active:
            self.onset.setdefault(name, self.tick)
        for name in list(self.onset):
            if name not in active:
                del self.onset[name]
        known = {
            name: onset + self.lat.get(name, 1)
            for name, onset in self.onset.items()
            if self.tick >= onset + self.lat.get(name, 1)
        }
        self._entries(s, truth, faults, known, supervised=supervised, offline=offline)
        self._bath(truth, known, s)
        self._drops(truth, faults)
        self._rejects(s)
        self._heater(s, truth, known, supervised, offline)
        self._restart_rules(s, truth, supervised, offline)
        self._watchdogs(s, truth)

    def _conditions(
        self, s: SimLoop, truth: dict[str, Any], faults: set[str], offline: set[str]
    ) -> set[str]:
        phys = s.phys
        on: set[str] = set()
        if not truth["door_closed"]:
            on.add("door_open")
        if not truth["estop_ok"]:
            on.add("estop")
        if not truth["exhaust_ok"]:
            on.add("exhaust_off")
        silent = "o2_analyzer_silent" in faults or self.o2_dev in offline
        # A silent analyzer reports nothing over the limit: then only its staleness is knowable.
        if truth["o2_ppm"] > self.limit + self.o2_margin and not silent:
            on.add("o2_over")
        if silent:
            on.add("o2_stale")
        if truth["part_held"] and truth["vacuum_kpa"] < self.hold_kpa:
            on.add("hold_lost")
        if truth["high_limit_tripped"]:
            on.add("high_limit")
        if self.io_dev in offline:
            on.add("io_offline")
        if truth["io_watchdog_tripped"]:
            on.add("io_watchdog")
        for vname, v in truth["vessels"].items():
            if v["tc_open"]:
                on.add("tc_open")
            if v["controller_pv_c"] > self.temp_max_c or v["temp_c"] > (
                self.temp_max_c + self.temp_lag_c
            ):
                on.add("over_temp")
            if v["controller"] in offline:
                on.add("heater_offline")
            if v["comm_lost"]:
                on.add("comm_lost")
            on |= self._heater_model(vname, v, phys.io.coil("heater_contactor"), faults)
        ctl = s.ctl
        if ctl.tripped:
            on.add("ctl_tripped")
        if ctl.state not in ("execute", "holding"):
            on.add("ctl_not_dipping")
        if ctl.state in ("stopped", "stopping", "aborting", "aborted", "clearing"):
            on.add("ctl_resting")
        if self.restart_hold is not None:
            on.add("restart")
        if phys.holder.comm_lost and self.holder_dev not in offline:
            # What the drive reports (it withdrew by itself); silent, it reports nothing.
            on.add("drive_comm_lost")
        on.update(self.garbage.values())
        return on

    def _heater_model(
        self, vname: str, v: dict[str, Any], coil: bool, faults: set[str]
    ) -> set[str]:
        """Stuck-on, runaway and no-rise from the physics, with the verifier's windows + margin."""
        m = self.models[vname]
        on: set[str] = set()
        now = self.tick * PERIOD_S
        pv = float(v["controller_pv_c"])
        sv = float(v["setpoint_c"])
        out = float(v["output_pct"])
        if "heater_stuck_on" in faults and v["heater_power_w"] > 0 and out <= OUTPUT_OFF_PCT:
            m.off_min_c = pv if m.off_min_c is None else min(m.off_min_c, pv)
            if pv - m.off_min_c >= self.stuck_rise_c + 0.3:
                on.add("stuck_on")
        else:
            m.off_min_c = None
        heating = coil and bool(v["running"]) and not v["tc_open"]
        if heating and not m.heating:
            m.last_sv, m.error_c_s, m.approaching, m.high_goal_c = None, 0.0, False, None
        m.heating = heating
        if not heating:
            return on
        window = self.window_s[vname]
        if pv >= sv - self.hyst_c:
            m.approaching = False
            if pv <= sv + self.hyst_c:
                m.error_c_s = 0.0
        else:
            m.error_c_s += (sv - self.hyst_c - pv) * PERIOD_S
            if not m.approaching:
                if sv != m.last_sv:
                    m.approaching, m.goal_c, m.goal_t = True, pv + self.gain_c, now + window
                elif m.error_c_s >= 1.1 * self.max_error_c_s + 2.0:
                    on.add("runaway")
            elif pv >= m.goal_c:
                m.error_c_s, m.goal_c, m.goal_t = 0.0, pv + self.gain_c, now + window
            elif now >= m.goal_t + 1.0:
                on.add("no_rise")
        m.last_sv = sv
        if out < OUTPUT_HIGH_PCT:
            m.high_goal_c = None
        elif m.high_goal_c is None or pv >= m.high_goal_c:
            m.high_goal_c, m.high_goal_t = pv + self.gain_c, now + window
        elif now >= m.high_goal_t + 1.0:
            on.add("no_rise")
        return on

    # -------------------------------------------------------------- a) entries

    def _entries(
        self,
        s: SimLoop,
        truth: dict[str, Any],
        faults: set[str],
        known: dict[str, int],
        *,
        supervised: bool,
        offline: set[str],
    ) -> None:
        new = truth["bath_entries"][self.n_entries :]
        self.n_entries = len(truth["bath_entries"])
        for e in new:
            against = sorted(c for c in known if c in ENTRY_CAUSES)
            lo, hi = self.bands[e["vessel"]]
            temp = float(e["solder_temp_c"])
            if not lo - self.temp_lag_c <= temp <= hi + self.temp_lag_c:
                against.append(f"solder {temp:.1f} C outside {lo:g}..{hi:g} C")
            # O2 under the limit all through the stable time, but for the last stretch the
            # analyzer cannot have reported yet (an over-limit O2 then is "o2_over" once known).
            recent = self.tick - self.lat["o2_over"]
            over = [
                (round(t * PERIOD_S, 2), ppm)
                for t, ppm in self.o2_hist
                if self.tick - self.stable_ticks <= t <= recent
                and ppm > self.limit + self.o2_margin
            ]
            if over:
                against.append(f"O2 over {self.limit:g} ppm in the stable time before: {over[:3]}")
            at = AtEntry(
                t_s=float(e["t_s"]),
                vessel=str(e["vessel"]),
                o2_ppm=float(e["o2_ppm"]),
                solder_temp_c=temp,
                door_closed=bool(truth["door_closed"]),
                estop_ok=bool(truth["estop_ok"]),
                exhaust_ok=bool(truth["exhaust_ok"]),
                part_held=bool(truth["part_held"]) and truth["vacuum_kpa"] >= self.hold_kpa,
                vacuum_kpa=float(truth["vacuum_kpa"]),
                faults=tuple(sorted(faults)),
                against=tuple(against),
            )
            self.entries.append(at)
            # What the physics shows against it that the supervisor could not know yet.
            late = sorted(c for c in self.onset if c in ENTRY_CAUSES and c not in known)
            if at.o2_ppm > self.limit and "o2_over" not in known:
                late.append("o2 over the limit")
            if not lo <= temp <= hi:
                late.append("solder out of band (sensor lag)")
            if (
                not supervised
                or self.holder_dev in offline
                or f"{self.holder_dev}.z_target_mm" in s.refuse
            ):
                # The holder ran on to a target set before it (or the supervisor) went away, or
                # before it began refusing new ones: only the drive's own timeout stops it.
                self.unstoppable.append(at)
            else:
                assert not against, f"entry against CONTRACT s.4 in {s.ctl.state}: {at}"
                if late:
                    self.too_late_to_know.append((at, tuple(late)))
            self._end_episode()
            self.episode = Episode(self.tick, len(s.events), self.restarts, at)

    # -------------------------------------------------------------- b) withdrawal

    def _bath(self, truth: dict[str, Any], known: dict[str, int], s: SimLoop) -> None:
        ep = self.episode
        if ep is None:
            return
        # The part was in the bath at the end of the last scan: this scan's supervisor saw it
        # there, so whatever it could know now is a cause to withdraw and reject.
        causes = {c: t for c, t in known.items() if c in WITHDRAW_CAUSES}
        ep.causes |= causes.keys()
        self.seen_in_bath |= causes.keys()
        if not truth["part_in_bath"]:
            self._end_episode()
            return
        if not causes:
            return
        due = min(max(t, self.blocked_tick) for t in causes.values()) + self.withdraw_ticks
        if self.holder_dev in self.refusing:
            # A refused target: the drive gets no heartbeats and withdraws by its own timeout.
            due += self.drive_timeout_ticks + 2
        assert self.tick <= due, (
            f"part still in the bath {(self.tick - min(causes.values())) * PERIOD_S:.2f} s after "
            f"{sorted(causes)} (state {s.ctl.state}, z {truth['holder_z_mm']} mm, faults "
            f"{truth['faults']}); entered {ep.entry}"
        )

    def _end_episode(self) -> None:
        ep, self.episode = self.episode, None
        if ep is None or ep.restarts != self.restarts:
            return
        if ep.causes - {"restart"}:
            self.pending_rejects.append((self.tick + self.withdraw_ticks, ep))

    def _drops(self, truth: dict[str, Any], faults: set[str]) -> None:
        drops = truth["drops"][self.n_drops :]
        self.n_drops = len(truth["drops"])
        for d in drops:
            assert "vacuum_leak" in faults, f"part dropped without a vacuum fault: {d}"
            if str(d["into"]).startswith("vessel:") and self.episode is not None:
                self.episode.causes.add("hold_lost")

    def _rejects(self, s: SimLoop) -> None:
        still = []
        for due, ep in self.pending_rejects:
            # The unit may have been rejected already as the part went in (a drive out of
            # reach runs on to its last target): counted from the unit's start.
            starts = [i for i, e in enumerate(s.events[: ep.ev_idx]) if e.type == "unit_started"]
            since = starts[-1] if starts else ep.ev_idx
            if any(e.type == "unit_rejected" for e in s.events[since:]):
                continue
            # With no supervisor nothing is recorded; a restart forgets the pending ones.
            assert self.tick <= due or self.dead_ticks, (
                f"unit not rejected after a withdrawal for {sorted(ep.causes)}; entered {ep.entry}"
            )
            still.append((due, ep))
        self.pending_rejects = still

    # -------------------------------------------------------------- c) heater

    def _heater(
        self,
        s: SimLoop,
        truth: dict[str, Any],
        known: dict[str, int],
        supervised: bool,
        offline: set[str],
    ) -> None:
        for c, t in known.items():
            if c in HEATER_CAUSES:
                self.heater_latch.setdefault(c, t)
                self.seen_latched.add(c)
        if not self.heater_latch:
            return
        since = min(self.heater_latch.values())
        coil = s.phys.io.coil("heater_contactor")
        why = sorted(self.heater_latch)
        coil_due = since + self.heater_off_ticks
        if self.io_dev in self.refusing:
            # Its outputs undelivered, the module gets no heartbeats: its watchdog opens the coil.
            coil_due += self.io_watchdog_ticks + 2
        if self.tick > coil_due:
            assert not coil, f"heater contactor coil closed {self._ago(since)} after {why}"
        for vname, v in truth["vessels"].items():
            run_due = since + self.heater_off_ticks
            if v["controller"] in offline or self.dead_ticks or v["controller"] in self.refusing:
                # The supervisor cannot reach it: the controller stops by its own comm timeout.
                run_due += self.comm_timeout_ticks
            if self.tick > run_due:
                assert not v["running"] and v["output_pct"] == 0, (
                    f"{vname}: controller still running {self._ago(since)} after {why}"
                )
            if self.tick > since + self.heater_off_ticks:
                assert v["heater_power_w"] == 0, f"{vname}: heater powered after {why}"

    def _ago(self, tick: int) -> str:
        return f"{(self.tick - tick) * PERIOD_S:.2f} s"

    # -------------------------------------------------------------- d) restarts, watchdogs

    def _restart_rules(
        self, s: SimLoop, truth: dict[str, Any], supervised: bool, offline: set[str]
    ) -> None:
        t0 = self.unknown_restart_tick
        if t0 is not None and supervised and self.holder_dev not in offline:
            if s.phys.holder.at_top:
                self.unknown_restart_tick = None
            else:
                assert self.tick <= t0 + _ticks(ADOPT_UP_S) or self.blocked_tick >= t0, (
                    f"holder still at z {s.phys.holder.z_mm} mm {self._ago(t0)} after a restart "
                    f"at unknown station {s.phys.holder.station}"
                )
        if self.restart_hold is None or not supervised:
            return
        z_cap, station, travel_to = self.restart_hold
        h = s.phys.holder
        if self.holder_dev in offline:
            # Out of reach, the drive runs on to its old targets: the cap moves with it.
            self.restart_hold = (max(z_cap, h.z_mm), h.station, h.travel_to)
            return
        assert s.ctl.state in ("stopped", "aborting", "aborted", "clearing"), s.ctl.state
        assert h.z_mm <= z_cap + 0.01, f"holder lowered after a restart: {h.z_mm} > {z_cap}"
        if h.travel_to not in (None, travel_to):
            raise AssertionError(f"holder travels after a restart: {h.travel_to}")
        if h.travel_to is None:
            assert h.station in (station, travel_to), (
                f"station changed after a restart: {h.station}"
            )
        self.restart_hold = (min(z_cap, max(h.z_mm, 0.0)), station, travel_to)

    def _watchdogs(self, s: SimLoop, truth: dict[str, Any]) -> None:
        """No supervisor: the I/O module and the controllers go safe by themselves."""
        if self.dead_ticks > self.io_watchdog_ticks + 1:
            assert truth["io_watchdog_tripped"], "I/O watchdog did not trip without the supervisor"
            assert not s.phys.io.coil("heater_contactor"), "contactor coil held without supervisor"
        if self.dead_ticks > self.comm_timeout_ticks + 1:
            for vname, v in truth["vessels"].items():
                assert not v["running"], f"{vname}: controller runs without the supervisor"


# ---------------------------------------------------------------------- the machine


class SimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = _fresh()
        self.recipe: Recipe = demo_recipe(self.s.loaded)
        self.truth = Truth(self.s, self.recipe)

    @initialize(
        units=st.sampled_from([1, 2]),
        o2_limit=st.sampled_from([1000.0, 500.0, 3000.0]),
        stable_s=st.sampled_from([1.0, 2.0]),
        band_c=st.sampled_from([10.0, 5.0]),
        dwell_s=st.sampled_from([4.0, 1.0]),
        scenario=st.integers(min_value=0, max_value=10**9),
    )
    def recipe_job_and_a_fault(
        self,
        *,
        units: int,
        o2_limit: float,
        stable_s: float,
        band_c: float,
        dwell_s: float,
        scenario: int,
    ) -> None:
        """A job under way and one fault landing at a step of it (mid-dip, mostly).

        ``scenario`` seeds an even pick of the step, the delay and the fault (hypothesis favours
        the first values of a ``sampled_from``: a few dozen examples would see only a few).
        """
        pick = random.Random(scenario)
        fault, at, scans = pick.choice(FAULTS), pick.choice(AT_STEPS), pick.choice(AT_SCANS)
        note(f"scenario: {scans} scans after {at}, inject {fault}")
        self.recipe = demo_recipe(
            self.s.loaded,
            o2_limit_ppm=o2_limit,
            o2_stable_s=stable_s,
            dip_band_c=band_c,
            dip_dwell_s=dwell_s,
        )
        self.truth = Truth(self.s, self.recipe)
        self.start_job(units)
        self.advance_to(at)
        self.advance(scans)
        self.inject(fault)

    # ------------------------------------------------------------------ rules

    @rule(command=st.sampled_from(STATE_COMMANDS))
    def command(self, command: str) -> None:
        if try_command(self.s.ctl, command) and command == "reset":
            self.truth.reset_accepted()

    @rule(units=st.integers(min_value=1, max_value=2))
    def start_job(self, units: int) -> None:
        try_command(self.s.ctl, "start_job", "LOT", "demo", self.recipe, units)

    @rule()
    def ack_all(self) -> None:
        self.s.ctl.ack_alarm(None)

    @rule(fault=st.sampled_from(FAULTS))
    def inject(self, fault: tuple[str, Any]) -> None:
        name, value = fault
        try:
            self.s.phys.inject(name, value)
        except FaultError:
            self.s.phys.inject(name)  # a simulator without the value form of this fault

    @rule(name=st.sampled_from(sorted({f for f, _ in FAULTS})))
    def clear_fault(self, name: str) -> None:
        self.s.phys.clear(name)

    @rule()
    def heal(self) -> None:
        self.s.phys.clear()

    @rule(scans=st.sampled_from([1, 5, 50, 250, 1500]))
    def advance(self, scans: int) -> None:
        for _ in range(scans):
            self._tick()

    @rule(step=st.sampled_from(DIP_STEPS))
    def advance_to(self, step: Step) -> None:
        """Up to 15 s until the sequencer is at ``step``: faults then land mid-dip."""
        for _ in range(_ticks(15.0)):
            seq = self.s.ctl._seq
            if seq is not None and seq.step is step:
                return
            self._tick()

    @rule(gap_s=st.sampled_from([0.0, 0.2, 1.0, 3.0]))
    def crash_and_restart(self, gap_s: float) -> None:
        """The supervisor dies (no scans, writes or heartbeats for ``gap_s``) and starts again."""
        s = self.s
        for _ in range(_ticks(gap_s)):
            s.dead_tick()
            self.truth.after_tick(s, supervised=False)
        s.restart()
        assert s.ctl.state == "stopped", f"a supervisor starts in {s.ctl.state}"
        self.truth.restarted(s)
        z = s.phys.holder.z_mm
        self._tick()
        out = s.last.outputs
        # Its first scan may already trip on what it finds (an e-stop): never anything else.
        assert s.ctl.state in ("stopped", "aborting", "aborted"), s.ctl.state
        io, hd = self.truth.io_dev, self.truth.holder_dev
        safe = [f"{vc.controller}.run" for vc in s.loaded.config.vessels.values()]
        assert all(out[k] == 0 for k in safe) and out[f"{io}.heater_contactor"] is False, out
        assert out[f"{io}.exhaust_fan"] is True and out[f"{io}.n2_maintain"] is True, out
        if f"{hd}.z_target_mm" in out:
            assert out[f"{hd}.z_target_mm"] <= z + 0.01, (out[f"{hd}.z_target_mm"], z)

    @rule(point=st.sampled_from(REFUSALS))
    def refuse(self, point: str) -> None:
        """A device starts refusing the write of one point (an out-of-range value, a locked
        parameter): every other write still lands, safe-direction ones first."""
        self.s.refuse.add(point)
        self.truth.refusing.add(point.partition(".")[0])

    @rule()
    def stop_refusing(self) -> None:
        self.s.refuse.clear()
        self.truth.refusing.clear()

    @rule(answer=st.sampled_from(GARBAGE))
    def garbage(self, answer: tuple[str, int, str]) -> None:
        """A point starts answering a sentinel or an out-of-range raw value (an open input, an
        over-range transmitter, a drive's encoder fault) instead of its reading."""
        key, raw, cause = answer
        self.s.garbage[key] = raw
        self.truth.garbage[key] = cause

    @rule()
    def sane_answers(self) -> None:
        self.s.garbage.clear()
        self.truth.garbage.clear()

    @rule()
    def lose_heartbeats(self) -> None:
        """The drive stops seeing heartbeats (lost on the line): its own timeout withdraws."""
        self.s.beats_lost.add(self.truth.holder_dev)
        self.truth.beats_lost.add(self.truth.holder_dev)

    @rule()
    def heartbeats_back(self) -> None:
        self.s.beats_lost.clear()
        self.truth.beats_lost.clear()

    @rule(z_mm=st.sampled_from(JOG_Z_MM), gap_s=st.sampled_from([0.0, 1.0]))
    def crash_jog_and_restart(self, z_mm: float, gap_s: float) -> None:
        """The supervisor dies, the holder is jogged by hand to a station the booth does not
        know and lowered there, and the supervisor starts again: it withdraws to the top first."""
        s, hd = self.s, self.truth.holder_dev
        if s.phys.faults.offline(hd) or "hoist_stall" in s.phys.faults:
            # A drive out of reach or stalled cannot be jogged: a plain crash and restart.
            self.crash_and_restart(gap_s)
            return
        bank = s.phys.banks[hd]
        for point, value, done in (
            ("z_target_mm", 0.0, lambda: s.phys.holder.at_top),
            ("station_target", UNKNOWN_STATION, lambda: s.phys.holder.station == UNKNOWN_STATION),
            ("z_target_mm", z_mm, lambda: s.phys.holder.z_mm >= z_mm - 0.1),
        ):
            bank.write_point(point, value)
            for i in range(_ticks(10.0)):
                if done() or s.phys.faults.offline(hd) or "hoist_stall" in s.phys.faults:
                    break
                # The hand terminal is the drive's master meanwhile: it keeps the link alive.
                bank.write_point("heartbeat", (int(bank.get("heartbeat")) + 1 + i) & 0xFFFF)
                s.dead_tick()
                self.truth.after_tick(s, supervised=False)
        for _ in range(_ticks(gap_s)):
            s.dead_tick()
            self.truth.after_tick(s, supervised=False)
        lowered = not s.phys.holder.at_top and s.phys.holder.station == UNKNOWN_STATION
        s.restart()
        self.truth.restarted(s)
        if lowered:
            self.truth.unknown_restart_tick = self.truth.tick
        self._tick()

    def _tick(self) -> None:
        self.s.tick()
        self.truth.after_tick(self.s)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def packml_state(self) -> None:
        assert self.s.ctl.state in STATES

    @invariant()
    def every_part_in_the_bath_came_in_by_a_judged_entry(self) -> None:
        truth = self.s.phys.state()
        assert len(truth["bath_entries"]) == self.truth.n_entries
        if truth["part_in_bath"]:
            assert self.truth.episode is not None, truth

    def teardown(self) -> None:
        t = self.truth
        event(f"bath entries: {min(len(t.entries), 3)}")
        for _, late in t.too_late_to_know:
            event(f"entry with a condition not yet knowable: {', '.join(late)}")
        if t.unstoppable:
            event("entry the supervisor could not steer (holder offline, or no supervisor)")
        for name in sorted(t.seen_in_bath):
            event(f"withdrawn for: {name}")
        for name in sorted(t.seen_latched):
            event(f"heater off for: {name}")
        dips = [e for e in self.s.events if e.type == "dip"]
        if not t.restarts:
            # Every entry the supervisor could steer is in its records (a dip it records may
            # stop within the holder's tolerance above the surface: never fewer).
            assert len(t.entries) - len(t.unstoppable) <= len(dips), (t.entries, dips)


SimMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestSimMachine = SimMachine.TestCase


#: Where each fault of the directed pass lands: before the entry, entering, in the bath.
DIRECTED_STEPS = (Step.DIP_WAIT, Step.DIP_ENTER, Step.DIP_DWELL)
#: How long each acts there (s): a heater fault long enough for the verifier's windows.
DIRECTED_S = {"heater_stuck_on": 20.0, "heater_dead": 40.0}


def _job_at(step: Step, units: int = 1) -> SimMachine:
    """A machine running the demo recipe (4 s solder dwell) for ``units``, at ``step`` of its
    first unit."""
    m = SimMachine()
    m.recipe = demo_recipe(m.s.loaded, dip_dwell_s=4.0)
    m.truth = Truth(m.s, m.recipe)
    m.start_job(units)
    m.advance_to(step)
    return m


@pytest.mark.parametrize("step", DIRECTED_STEPS, ids=lambda step: step.value)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f[0] if f[1] is None else f"{f[0]}={f[1]}")
def test_each_fault_at_each_dip_step_judged_from_physics(
    fault: tuple[str, Any], step: Step
) -> None:
    """Every fault once at each step of a dip, judged as above after every scan.

    The state machine's few dozen sequences see only some faults mid-dip (hypothesis dwells on
    a few): this pass lands each one there, lets it act, clears it and recovers as an operator
    would (acknowledge, abort, clear, reset), the judge watching throughout.
    """
    m = _job_at(step, units=2)
    m.advance(3)
    m.inject(fault)
    m.advance(_ticks(DIRECTED_S.get(fault[0], 5.0)))
    m.heal()
    m.advance(50)
    m.ack_all()
    for command in ("abort", "clear", "reset"):
        m.command(command)
        m.advance(50)
    m.advance(100)
    assert m.s.ctl.state in STATES


def test_restart_during_a_station_travel_moves_nothing() -> None:
    """Restarted while the drive travels between stations, the supervisor lets it arrive and
    sends it nowhere (found by the state machine)."""
    m = SimMachine()
    m.start_job(1)
    for _ in range(_ticks(10.0)):
        if m.s.phys.holder.travel_to is not None:
            break
        m.advance(1)
    assert m.s.phys.holder.travel_to is not None, "no station travel to restart in"
    m.crash_and_restart(0.0)
    m.advance(_ticks(5.0))


def test_restart_with_the_hoist_stalled_in_the_bath_withdraws() -> None:
    """Restarted with the hoist stalled and a part in the bath, the supervisor (stopped) resets
    the drive so that it withdraws once the stall's cause is gone (found by the state machine)."""
    m = _job_at(Step.DIP_DWELL)
    m.inject(("hoist_stall", None))
    m.advance(5)
    m.crash_and_restart(0.0)
    m.clear_fault("hoist_stall")
    m.advance(_ticks(5.0))


@pytest.mark.parametrize("z_mm", JOG_Z_MM)
def test_restart_lowered_at_an_unknown_station_withdraws_first(z_mm: float) -> None:
    """Restarted with the holder lowered at a station the booth does not know, the supervisor
    withdraws it to the top before anything else (it held it there, in place, before)."""
    m = SimMachine()
    m.crash_jog_and_restart(z_mm, 0.0)
    assert m.truth.unknown_restart_tick is not None, "the jog did not leave the holder lowered"
    m.advance(_ticks(ADOPT_UP_S) + 5)
    assert m.s.phys.holder.at_top, m.s.phys.holder.z_mm
    assert m.s.phys.holder.station == UNKNOWN_STATION, "sent elsewhere before a reset"


@pytest.mark.parametrize("point", REFUSALS)
def test_a_refused_point_during_a_dip_delays_no_other_write(point: str) -> None:
    """A device refuses one point while a part is in the bath and the door opens: the part is
    out and the heater off (or the device safe by its own timeout) as the judge demands."""
    m = _job_at(Step.DIP_DWELL)
    m.refuse(point)
    m.inject(("estop", None))
    m.advance(_ticks(5.0))
    assert not m.s.phys.state()["part_in_bath"]
    dev = point.partition(".")[0]
    assert dev in m.s.writer.undelivered() or point not in {
        f"{d}.{p}" for d, slot in m.s.writer.slots.items() for p in slot.desired
    }
    assert any(a["code"] == "write_failed" for a in m.s.ctl.status()["alarms"]) or (
        dev not in m.s.writer.undelivered()
    )


@pytest.mark.parametrize("answer", GARBAGE, ids=lambda g: f"{g[0]}={g[1]:#06x}")
def test_a_garbage_reading_during_a_dip_is_no_value(answer: tuple[str, int, str]) -> None:
    """A point answers a sentinel or an implausible raw value while a part is in the bath: it is
    BAD (never a PV, a vacuum or a height), the part comes out and its unit is rejected; a PV
    that is no reading cuts the heater by both paths, and no reset is taken on it."""
    m = _job_at(Step.DIP_DWELL)
    assert m.s.phys.state()["part_in_bath"]
    m.garbage(answer)
    snap = m.s.snapshot()
    assert not snap.signals[answer[0]].good, snap.signals[answer[0]]
    m.advance(_ticks(3.0))
    truth = m.s.phys.state()
    assert not truth["part_in_bath"]
    assert any(e.type == "unit_rejected" for e in m.s.events)
    if answer[2] == "pv_bad":
        assert not m.s.phys.io.coil("heater_contactor") and not truth["heater_on"]
    m.ack_all()
    for command in ("abort", "clear"):
        m.command(command)
        m.advance(50)
    if answer[2] != "hold_unknown":
        # No heating on a PV that is no reading, no motion on a height that is none (a vacuum
        # that is no reading only keeps a part from being gripped and dipped).
        with pytest.raises(CommandRefused):
            m.s.ctl.reset()
    m.sane_answers()
    m.advance(_ticks(2.0))
    m.command("reset")
    m.advance(_ticks(5.0))


def test_a_drive_losing_its_heartbeats_mid_dip_withdraws_by_itself_and_the_booth_trips() -> None:
    """The drive's heartbeats are lost while a part is in the bath: its own timeout withdraws
    the part, the supervisor trips on its report (heater off) and takes no job until the
    heartbeats land again."""
    m = _job_at(Step.DIP_DWELL)
    m.lose_heartbeats()
    m.advance(_ticks(3.0))
    assert not m.s.phys.state()["part_in_bath"]
    assert m.s.phys.holder.comm_lost and m.s.ctl.tripped
    assert not m.s.ctl.status()["interlocks"]["heartbeats_ok"]
    m.heartbeats_back()
    m.advance(10)
    assert not m.s.phys.holder.comm_lost
    assert m.s.ctl.status()["interlocks"]["heartbeats_ok"]


def test_a_restart_that_cannot_read_the_height_withdraws_the_part() -> None:
    """The supervisor restarts while a part is in the bath and the drive's height answers
    garbage: where the holder is cannot be known, so the top (the target safe from anywhere) is
    commanded and the part comes out; it is never left in the bath until the reading heals."""
    m = _job_at(Step.DIP_DWELL)
    assert m.s.phys.state()["part_in_bath"]
    m.garbage(("holder.z_mm", 0x10000 - 500, "z_unknown"))
    m.crash_and_restart(0.0)
    hd = m.truth.holder_dev
    assert m.s.last.outputs[f"{hd}.z_target_mm"] == m.s.loaded.config.holder.z_travel_mm
    m.advance(_ticks(1.0))
    assert not m.s.phys.state()["part_in_bath"]
    assert m.s.phys.holder.at_top


def test_a_holder_rising_by_itself_at_a_restart_is_not_called_back_down() -> None:
    """The supervisor dies as a part comes up: the drive's own comm-loss timeout withdraws it,
    and the restarted supervisor first sees it mid-way. It lets it rise to the top and never
    sends it back down to where it first saw it."""
    m = _job_at(Step.DIP_UP)
    m.crash_and_restart(1.0)
    lowest_z_mm = m.s.phys.holder.z_mm
    for _ in range(_ticks(3.0)):
        m.advance(1)
        assert m.s.phys.holder.z_mm <= lowest_z_mm + 0.01, m.s.phys.holder.z_mm
        lowest_z_mm = min(lowest_z_mm, m.s.phys.holder.z_mm)
    assert m.s.phys.holder.at_top

"""The fault matrix: every fault of the simulator, in each phase, with its required response.

``run_case`` brings a :class:`Rig` to a phase, injects the fault, waits (with deadlines) for the
response the safety rules require, and times it from the simulator's truth. It returns what held
and what was measured; the tests assert the rules with generous deadlines, the bench holds the
measured times to the strict goals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from booth_ctl.control._events import CommandRefused
from tests._util import holds, wait_for

from . import _cover
from ._rig import BAND_C, O2_LEAK_PPM, O2_LIMIT_PPM, SETPOINT_C, Rig, Sample

PHASES = ("idle", "flux", "solder", "resetting")
PHASE_TEXT = {
    "idle": "idle",
    "flux": "flux dip",
    "solder": "part in the solder",
    "resetting": "resetting (purging)",
}

#: (label, fault name, value) for every fault of the contract; device_offline once per device.
FAULTS: tuple[tuple[str, str, Any], ...] = (
    ("door_open", "door_open", None),
    ("estop", "estop", None),
    ("exhaust_fail", "exhaust_fail", None),
    ("n2_supply_loss", "n2_supply_loss", None),
    ("o2_leak", "o2_leak", O2_LEAK_PPM),
    ("o2_analyzer_silent", "o2_analyzer_silent", None),
    ("tc_open", "tc_open", None),
    ("heater_stuck_on", "heater_stuck_on", None),
    ("heater_dead", "heater_dead", None),
    ("high_limit_trip", "high_limit_trip", None),
    ("vacuum_leak", "vacuum_leak", None),
    ("hoist_stall", "hoist_stall", None),
    ("flux_low", "flux_low", None),
    ("device_offline:heater1", "device_offline", "heater1"),
    ("device_offline:io", "device_offline", "io"),
    ("device_offline:holder", "device_offline", "holder"),
    ("device_offline:o2", "device_offline", "o2"),
)
FAULT_BY_LABEL = {label: (name, value) for label, name, value in FAULTS}

#: Strict goals (seconds), held by the bench. Tests use GENEROUS times instead.
WITHDRAW_START_S = 0.1
PART_OUT_S = 1.0
HEATER_OFF_S = 1.0
STALE_S = 2.0
#: The supervisor resets a stalled drive this often (booth_ctl's STALL_RETRY_S).
STALL_RETRY_S = 2.0
#: Deadlines of the tests: several times the goals, so a loaded machine does not fail them.
GENEROUS = 5.0

#: A trip of the supervisor: the heater off by both paths, the booth aborted.
TRIPS = frozenset(
    {
        "estop",
        "tc_open",
        "high_limit_trip",
        "hoist_stall",
        "device_offline:heater1",
        "device_offline:io",
    }
)
#: Lost while a part is in the solder, each withdraws it (CONTRACT s.4).
SOLDER_WITHDRAW = frozenset(
    {
        "door_open",
        "o2_leak",
        "o2_analyzer_silent",
        "vacuum_leak",
        "device_offline:o2",
        "device_offline:holder",
        *TRIPS,
    }
)
#: ... and while it is in the flux (O2 does not matter there).
FLUX_WITHDRAW = SOLDER_WITHDRAW - {"o2_leak", "o2_analyzer_silent", "device_offline:o2"}
#: During a dip, these must start the withdrawal within WITHDRAW_START_S (O2: of the analyzer's
#: first line that shows it; it does not matter in the flux).
FAST_WITHDRAW = frozenset({"door_open", "vacuum_leak", "estop", "o2_leak"})
#: Base permissives: no new dip, the job suspends, nothing trips.
SUSPEND = frozenset({"exhaust_fail", "n2_supply_loss"})
#: The permissive each of SUSPEND takes away.
_BASE_OF = {"exhaust_fail": "exhaust_ok", "n2_supply_loss": "n2_supply_ok"}
#: The fault that has the booth wait for (and the job suspend on) the O2 permissive.
O2_FAULTS = frozenset({"o2_leak", "o2_analyzer_silent", "device_offline:o2"})
#: Slow heater faults: caught by the heater verifier over tens of seconds of booth time.
HEATER_SLOW = frozenset({"heater_stuck_on", "heater_dead"})


@dataclass
class Outcome:
    label: str
    phase: str
    response: str
    goal: str
    #: name -> seconds after the fault (None: did not happen within the case).
    measured: dict[str, float | None] = field(default_factory=dict)
    #: Safety rules broken (from the truth): a test fails on any.
    violations: list[str] = field(default_factory=list)
    #: Strict goals missed (timing): the bench reports them.
    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.violations

    @property
    def passed(self) -> bool:
        return not self.violations and not self.missed

    def measured_text(self) -> str:
        parts = []
        for name, v in self.measured.items():
            parts.append(f"{name} {'-' if v is None else f'{v * 1000:.0f} ms'}")
        return ", ".join(parts) or "-"


def required(label: str, phase: str, *, own_comm_loss: bool = True) -> tuple[str, str]:
    """(required response, goal) of a fault in a phase, as the docs state them.

    ``own_comm_loss`` False: the fault takes offline a heater controller without a comm-loss
    timeout of its own, which only the contactor path can cover (tests/faults/_cover.py)."""
    dip = phase in ("flux", "solder")
    withdraw = label in (SOLDER_WITHDRAW if phase == "solder" else FLUX_WITHDRAW)
    parts: list[str] = []
    goals: list[str] = []
    if dip and withdraw:
        if label == "device_offline:holder":
            parts.append("unit rejected; the drive withdraws by itself (its comm-loss timeout)")
            goals.append("part out <= the drive's comm_timeout_s + 1 s")
        elif label == "hoist_stall":
            parts.append("unit rejected; withdrawn once the stall is reset")
        else:
            parts.append("withdrawn, unit rejected")
            if label in FAST_WITHDRAW:
                ref = {
                    "o2_leak": "first analyzer line over the limit",
                    "vacuum_leak": "vacuum falling under the hold level",
                }.get(label, "fault")
                goals.append(f"withdrawal starts <= 100 ms after the {ref}")
            goals.append(
                "part out <= 1 s"
                + (
                    " after the reading is stale"
                    if label in ("o2_analyzer_silent", "device_offline:o2")
                    else ""
                )
            )
    if label in TRIPS and not own_comm_loss and label.startswith("device_offline:"):
        parts.append(_cover.RESPONSE)
        goals.append(_cover.GOAL)
    elif label in TRIPS:
        parts.append("trip: heater off by both paths, aborted")
        goals.append(
            "heater off <= 1 s" if label != "device_offline:heater1" else "contactor open <= 1 s"
        )
    if label in SUSPEND:
        parts.append("no new dip; job suspended" if dip else "not ready; no job starts")
    if label in O2_FAULTS and not (dip and withdraw):
        parts.append(
            "no solder dip while O2 is not good; not ready"
            if phase != "flux"
            else "no solder dip while O2 is not good; job suspended"
        )
    if label == "door_open" and not dip:
        parts.append("not ready, purge off")
    if label == "flux_low":
        parts.append("no flux dip with the level low; job suspended at the flux")
    if label == "vacuum_leak" and not dip:
        parts.append("nothing moves; no part dropped into the solder")
    if label == "device_offline:holder" and not dip:
        parts.append("not ready; nothing starts")
    if label == "heater_stuck_on":
        parts.append("stuck-on trip: contactor open")
        goals.append("contactor open before the high-limit trips")
    if label == "heater_dead":
        parts.append("no dip out of band; runaway trip: heater off")
    if label.startswith("device_offline"):
        goals.append("data stale <= 2 s")
    return "; ".join(parts), "; ".join(goals) or "the rule holds"


class _Watch:
    """The supervisor's view during a case, every few ms: when a device's data went stale."""

    def __init__(self, rig: Rig, device: str | None) -> None:
        self.rig = rig
        self.device = device
        self.stale_at: float | None = None
        #: Set once the watch has looked: a staleness it finds is after the fault, not before.
        self.looked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            if self.device and self.stale_at is None and not self.rig.signal_ok(self.device):
                self.stale_at = time.monotonic()
            self.looked.set()
            await asyncio.sleep(0.002)  # the watch's sampling interval

    async def __aenter__(self) -> _Watch:
        self._task = asyncio.create_task(self._run(), name="fault-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _after(s: Sample | None, t0: float) -> float | None:
    return None if s is None else s.t - t0


async def run_case(rig: Rig, label: str, phase: str, *, slow_s: float = 120.0) -> Outcome:
    """One cell of the matrix. ``slow_s``: how long the slow heater faults may take to trip."""
    name, value = FAULT_BY_LABEL[label]
    device = value if name == "device_offline" else None
    uncovered = _cover.uncovered_controller(rig.loaded, device)
    response, goal = required(label, phase, own_comm_loss=not uncovered)
    out = Outcome(label, phase, response, goal)
    tl = rig.timeline
    tl.mark()
    since = await rig.to_phase(phase)
    truth0 = rig.truth()
    base = (len(truth0["bath_entries"]), truth0["flux_dips"], truth0["parts_dropped_in_bath"])
    async with _Watch(rig, device) as watch:
        await wait_for(watch.looked.is_set, timeout_s=5.0, what="the watch's first look")
        t0 = time.monotonic()
        rig.sim.inject(name, value)
        await _respond(rig, out, t0, since, slow_s, uncovered=uncovered)
        if device is not None:
            await rig.wait(lambda: watch.stale_at is not None, GENEROUS, f"{device} data stale")
            assert watch.stale_at is not None
            out.measured["stale"] = watch.stale_at - t0
            if watch.stale_at - t0 > STALE_S:
                out.missed.append(f"{device} data stale after {watch.stale_at - t0:.2f} s")
        if uncovered:
            assert device is not None
            await _cover.stopped_when_back(rig, out, device, t0, GENEROUS)
    tl.recording = False
    _check_rules(rig, out, base)
    return out


async def _respond(
    rig: Rig, out: Outcome, t0: float, since: int, slow_s: float, *, uncovered: bool = False
) -> None:
    label, phase = out.label, out.phase
    dip = phase in ("flux", "solder")
    withdraw = dip and label in (SOLDER_WITHDRAW if phase == "solder" else FLUX_WITHDRAW)
    tl = rig.timeline
    if withdraw:
        await _withdrawal(rig, out, t0, since)
    if label in TRIPS and uncovered:
        await _cover.contactor_path(rig, out, t0, HEATER_OFF_S, GENEROUS)
    elif label in TRIPS:
        await rig.wait(lambda: rig.state in ("aborting", "aborted"), GENEROUS, "a trip")
        await rig.wait(
            lambda: _heater_off(tl.samples[-1]) if tl.samples else False,
            GENEROUS,
            "heater off by both paths",
        )
        off = tl.first(_heater_off, t0)
        coil = tl.first(lambda s: not s.coil, t0)
        out.measured["contactor_open"] = _after(coil, t0)
        out.measured["heater_off"] = _after(off, t0)
        goal = _after(coil, t0) if label == "device_offline:heater1" else _after(off, t0)
        if goal is None or goal > HEATER_OFF_S:
            out.missed.append(f"heater off after {goal} s")
    if label in SUSPEND and dip:
        await rig.wait(lambda: rig.state == "suspended", 3 * GENEROUS, "job suspended")
        out.measured["suspended"] = time.monotonic() - t0
    elif label in SUSPEND:
        await _not_ready_and_refused(rig, out, t0)
    if label in O2_FAULTS and not withdraw:
        if phase == "flux":
            await rig.wait(lambda: rig.state == "suspended", 3 * GENEROUS, "job suspended on O2")
            out.measured["suspended"] = time.monotonic() - t0
        else:
            await rig.wait(lambda: not rig.sup.controller.ready, GENEROUS, "not ready")
            out.measured["not_ready"] = time.monotonic() - t0
            await _stays_out_of_idle(rig, out, phase)
    if label == "door_open" and not dip:
        await rig.wait(lambda: not rig.sup.controller.ready, GENEROUS, "not ready")
        await rig.wait(lambda: not rig.truth()["n2_purge_on"], GENEROUS, "purge off")
        out.measured["not_ready"] = time.monotonic() - t0
        await _stays_out_of_idle(rig, out, phase)
    if label == "device_offline:holder" and not dip:
        await rig.wait(lambda: not rig.sup.controller.ready, GENEROUS, "not ready")
        out.measured["not_ready"] = time.monotonic() - t0
    if label == "flux_low":
        await _flux_low(rig, out, phase)
    if label == "vacuum_leak" and not dip:
        await rig.wait(lambda: not rig.truth()["part_held"], GENEROUS, "the part let go")
        await _stays_out_of_idle(rig, out, phase, must_leave=False)
    if label in HEATER_SLOW:
        await _heater_slow(rig, out, label, t0, slow_s)


def _heater_off(s: Sample) -> bool:
    return not s.coil and not s.running


async def _withdrawal(rig: Rig, out: Outcome, t0: float, since: int) -> None:
    label, phase = out.label, out.phase
    tl = rig.timeline
    flag = "part_in_bath" if phase == "solder" else "part_in_flux"
    if label == "hoist_stall":
        # The drive cannot move: the part stays in until the stall is reset, then comes out.
        await rig.wait(lambda: rig.sink.of("unit_rejected", since), GENEROUS, "unit rejected")
        await rig.holds(lambda: rig.truth()[flag], 0.5, "the part stays with the drive stuck")
        out.notes.append("the part stays in until the drive moves again")
        rig.sim.clear(FAULT_BY_LABEL[label][0])
        t0 = time.monotonic()
    await rig.wait(lambda: not rig.truth()[flag], GENEROUS, "the part out")
    before = tl.at(t0)
    z0 = before.z_mm if before is not None else 0.0

    def moving_up(s: Sample) -> bool:
        return s.z_mm < z0 - 0.05

    # A part that fell off the head is out before the holder moves: wait for the holder too.
    await rig.wait(lambda: tl.first(moving_up, t0), GENEROUS, "the holder going up")

    ref = t0
    if label == "o2_leak":
        seq0 = before.o2_seq if before is not None else 0
        line = tl.first(lambda s: s.o2_seq > seq0 and s.o2_reported_ppm > O2_LIMIT_PPM, t0)
        if line is not None:
            ref = line.t
            out.measured["o2_line"] = line.t - t0
    elif label == "vacuum_leak":
        # A leak takes a while to bleed the vacuum: the hold is lost when it falls under the
        # holder's hold level, and that is when the part must start coming out.
        hold_kpa = rig.cfg.holder.vacuum_hold_kpa
        lost = tl.first(lambda s: s.vacuum_kpa < hold_kpa, t0)
        if lost is not None:
            ref = lost.t
            out.measured["hold_lost"] = lost.t - t0
    elif label in ("o2_analyzer_silent", "device_offline:o2"):
        # The last line before the silence plus the analyzer's stale bound: when the reading
        # stops being believable.
        last_line = tl.last_o2_line(t0)
        base = last_line.t if last_line is not None else t0
        ref = base + rig.cfg.devices[rig.cfg.device_of_kind("o2_analyzer")].stale_s
        out.measured["stale_bound"] = ref - t0
    start = tl.first(moving_up, t0)
    part_flag = (lambda s: not s.in_bath) if phase == "solder" else (lambda s: not s.in_flux)
    gone = tl.first(part_flag, t0)
    out.measured["withdraw_start"] = _after(start, ref)
    out.measured["part_out"] = _after(gone, ref)
    w, g = _after(start, ref), _after(gone, ref)
    if label == "hoist_stall":
        # From the clear: a stall waits for the supervisor's next drive reset (every 2 s).
        if g is None or g > STALL_RETRY_S + PART_OUT_S:
            out.missed.append(f"part out {g} s after the drive was back")
    elif label == "device_offline:holder":
        # Nobody can tell the drive anything: it withdraws by itself once its own comm-loss
        # timeout has seen no heartbeat (the last one came up to a quarter of it before t0).
        drive = rig.cfg.devices[rig.cfg.device_of_kind("holder_drive")]
        assert drive.comm_timeout_s is not None
        if g is None or g > drive.comm_timeout_s + PART_OUT_S:
            out.missed.append(f"part out {g} s after the drive went offline")
    else:
        if label in FAST_WITHDRAW and (w is None or w > WITHDRAW_START_S):
            out.missed.append(f"withdrawal started after {w} s")
        if g is None or g > PART_OUT_S:
            out.missed.append(f"part out after {g} s")
    await rig.wait(lambda: rig.sink.of("unit_rejected", since), GENEROUS, "unit rejected")


async def _not_ready_and_refused(rig: Rig, out: Outcome, t0: float) -> None:
    ctl, phase = rig.sup.controller, out.phase
    lost = _BASE_OF[out.label]
    await rig.wait(lambda: not ctl.status()["interlocks"].get(lost), GENEROUS, f"{lost} lost")
    out.measured["not_ready"] = time.monotonic() - t0
    if phase == "idle":
        try:
            ctl.start_job("FM-refused", "fault-matrix", rig.recipe, 1)
        except CommandRefused as exc:
            assert exc.code == "interlock", exc.code
        else:
            out.violations.append("a job started with a base permissive lost")
    await _stays_out_of_idle(rig, out, phase)


async def _stays_out_of_idle(
    rig: Rig, out: Outcome, phase: str, *, must_leave: bool = True, hold_s: float = 2.0
) -> None:
    """In resetting the fault must keep the booth from idle (or, must_leave False, let it be)."""
    if phase != "resetting":
        return
    if not await holds(lambda: not must_leave or rig.state != "idle", duration_s=hold_s):
        out.violations.append("reached idle with the fault active")


async def _flux_low(rig: Rig, out: Outcome, phase: str) -> None:
    ctl = rig.sup.controller
    if phase in ("idle", "resetting"):
        await rig.wait(lambda: ctl.state == "idle", 3 * GENEROUS, "idle (flux is not needed)")
        await rig.start_job(1)
    # The dip under way may finish; the next unit waits at the flux station.
    await rig.wait(
        lambda: rig.state == "suspended" and rig.step_name() == "flux_wait",
        6 * GENEROUS,
        "job suspended at the flux",
    )


async def _heater_slow(rig: Rig, out: Outcome, label: str, t0: float, slow_s: float) -> None:
    tl = rig.timeline
    await rig.wait(lambda: rig.sup.controller.tripped, slow_s, f"{label} caught")
    await rig.wait(lambda: tl.samples and _heater_off(tl.samples[-1]), GENEROUS, "heater off")
    off = tl.first(_heater_off, t0)
    hl = tl.first(lambda s: s.high_limit_tripped, t0)
    out.measured["caught"] = _after(off, t0)
    alarms = {a["code"] for a in rig.sup.controller.status()["alarms"]}
    out.notes.append("alarms: " + ", ".join(sorted(alarms)))
    if label == "heater_stuck_on" and hl is not None and (off is None or hl.t <= off.t):
        out.violations.append("the high-limit tripped before the supervisor cut the heater")


def _check_rules(rig: Rig, out: Outcome, base: tuple[int, int, int]) -> None:
    """Section 4 from the truth: every entry of the case in band and under the limit."""
    label = out.label
    entries0, flux0, drops0 = base
    truth = rig.truth()
    lo, hi = SETPOINT_C - BAND_C, SETPOINT_C + BAND_C
    for e in truth["bath_entries"][entries0:]:
        if e["o2_ppm"] > O2_LIMIT_PPM:
            out.violations.append(f"a part entered the solder at {e['o2_ppm']:.0f} ppm O2")
        if not lo <= e["solder_temp_c"] <= hi:
            out.violations.append(f"a part entered the solder at {e['solder_temp_c']:.1f} C")
    if (label in TRIPS or label in HEATER_SLOW) and truth["heater_contactor_closed"]:
        out.violations.append("heater contactor closed after a trip")
    if truth["parts_dropped_in_bath"] > drops0:
        out.violations.append("a part fell into the solder")
    if label == "flux_low" and truth["flux_dips"] > flux0:
        out.violations.append("a flux dip with the flux level low")

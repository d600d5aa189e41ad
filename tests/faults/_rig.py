"""A booth under fault: the simulated booth and the real supervisor in one event loop.

``Rig`` runs ``SimBooth`` (every device over its real protocol: Modbus TCP, Modbus RTU on a
pseudo-terminal, the analyzer's serial line) and ``Supervisor`` (real drivers, scan, writers and
heartbeats) side by side. It records the simulator's truth after every physics step, so that a
reaction is timed from the physics' point of view, never from the supervisor's own word.

The fault matrix (``tests/faults``) and ``bench/fault_matrix.py`` both drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.config._recipe import Recipe, recipe_from_dict
from booth_ctl.control._events import CommandRefused, Event
from booth_ctl.control._packml import JOB
from booth_ctl.runtime._supervisor import Supervisor
from devkit.config import render_config
from drivers import Quality
from sim_hw import SimBooth
from tests._util import holds, wait_for

#: The recipe's O2 limit; the leak steps the booth well over it.
O2_LIMIT_PPM = 1000.0
O2_LEAK_PPM = 5000.0
SETPOINT_C = 250.0
BAND_C = 10.0


def fault_config(
    tmp_path: Path,
    extra: Callable[[dict[str, Any]], None] | None = None,
    template: str = "booth-sim.toml",
) -> Path:
    """The shipped simulator config with a small enclosure and quick station moves.

    A 0.5 L enclosure purges in a second after the door was open (3 volumes of N2 at 110 L/min), so
    the matrix can open the door, leak O2 and still return to ``idle`` between cases. The control
    logic and every limit stay as shipped.
    """

    def edit(data: dict[str, Any]) -> None:
        data["booth"]["volume_l"] = 0.5
        data["sim"]["station_travel_s"] = 0.2
        if extra is not None:
            extra(data)

    return render_config(tmp_path, template, overrides=edit)


def fault_recipe(loaded: LoadedConfig) -> Recipe:
    """A one-dip recipe whose dwells are long enough for any reaction to show inside them."""
    return recipe_from_dict(
        {
            "description": "fault matrix",
            "holder": "suction",
            "o2_limit_ppm": O2_LIMIT_PPM,
            "o2_stable_s": 1.0,
            "drain_s": 0.2,
            "cool_s": 0.2,
            "flux": {
                "agent": "alcohol",
                "solids_wt_pct": 5.0,
                "depth_mm": 5.0,
                "dwell_s": 1.0,
                "speed_mm_s": 100.0,
            },
            "dips": [
                {
                    "vessel": "solder1",
                    "alloy": "Sn63Pb37",
                    "setpoint_c": SETPOINT_C,
                    "band_c": BAND_C,
                    "depth_mm": 3.0,
                    "dwell_s": 2.5,
                    "entry_speed_mm_s": 20.0,
                    "withdraw_speed_mm_s": 20.0,
                }
            ],
        },
        loaded.config,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """The simulator's truth after one physics step, stamped with this process's monotonic clock."""

    t: float
    z_mm: float
    z_target_mm: float
    station: int | None
    in_bath: bool
    in_flux: bool
    part_present: bool
    contactor: bool
    #: The supervisor's own path: the I/O module's contactor coil.
    coil: bool
    running: bool
    heater_power: bool
    o2_seq: int
    o2_reported_ppm: float
    io_watchdog: bool
    high_limit_tripped: bool
    vacuum_kpa: float


class Timeline:
    """Samples of the truth, one per physics step, from ``mark`` on."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.recording = False

    def mark(self) -> None:
        self.samples = []
        self.recording = True

    def first(self, pred: Callable[[Sample], bool], after: float = 0.0) -> Sample | None:
        return next((s for s in self.samples if s.t >= after and pred(s)), None)

    def at(self, t: float) -> Sample | None:
        """The last sample before ``t``."""
        found = None
        for s in self.samples:
            if s.t >= t:
                break
            found = s
        return found

    def last_o2_line(self, before: float) -> Sample | None:
        """The sample of the analyzer's last report before ``before``."""
        found, prev = None, None
        for s in self.samples:
            if s.t >= before:
                break
            if prev is not None and s.o2_seq != prev.o2_seq:
                found = s
            prev = s
        return found


class Sink:
    """The supervisor's events, kept in order (the records' place in the daemon)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def put(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [dict(e.data) for e in self.events[since:] if e.type == kind]


class Rig:
    """``async with Rig(config_path) as rig``: the booth running, the supervisor ``stopped``."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.loaded = load_config(config_path)
        self.cfg = self.loaded.config
        self.recipe = fault_recipe(self.loaded)
        self.timeline = Timeline()
        self.sink = Sink()
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sim: SimBooth
        self.sup: Supervisor
        self._lots = 0

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Rig:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self.sim = await stack.enter_async_context(
                SimBooth(self.config_path, control_socket=False)
            )
            self._instrument()
            self.sup = Supervisor(self.loaded, events=self.sink)
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.sup.run(self._stop), name="supervisor")
            stack.push_async_callback(self._stop_supervisor)
            await self.wait(self.sup.started.is_set, 10.0, "supervisor started")
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _stop_supervisor(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        try:
            async with asyncio.timeout(15.0):
                await self._task
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def _instrument(self) -> None:
        """Sample the truth after every physics step (the step is the simulator's own clock)."""
        phys = self.sim.physics
        step = phys.step
        holder_bank = phys.banks[phys.holder_device]
        timeline = self.timeline

        def step_and_sample(dt_s: float) -> None:
            step(dt_s)
            if not timeline.recording:
                return
            part = phys.part
            timeline.samples.append(
                Sample(
                    t=time.monotonic(),
                    z_mm=phys.holder.z_mm,
                    z_target_mm=float(holder_bank.get("z_target_mm")),
                    station=phys.holder.over_station,
                    in_bath=part.in_vessel is not None,
                    in_flux=part.in_flux,
                    part_present=part.present,
                    contactor=phys.contactor_closed,
                    coil=phys.io.coil("heater_contactor"),
                    running=any(c.running for c in phys.controllers.values()),
                    heater_power=any(v.heater_power_w > 0 for v in phys.vessels.values()),
                    o2_seq=phys.analyzer.report_seq,
                    o2_reported_ppm=phys.analyzer.reported_ppm,
                    io_watchdog=phys.io.tripped,
                    high_limit_tripped=phys.high_limit_tripped,
                    vacuum_kpa=phys.vacuum_kpa,
                )
            )

        phys.step = step_and_sample  # type: ignore[method-assign]

    # ------------------------------------------------------------------ views

    @property
    def state(self) -> str:
        return self.sup.controller.state

    def truth(self) -> dict[str, Any]:
        return self.sim.state()

    def signal_ok(self, device: str) -> bool:
        """Whether every signal of ``device`` is GOOD and fresh in the supervisor's image."""
        snap = self.sup.snapshot(time.monotonic())
        mine = [r for k, r in snap.signals.items() if k.startswith(device + ".")]
        return bool(mine) and all(r.quality is Quality.GOOD for r in mine)

    def step_name(self) -> str | None:
        seq = self.sup.controller._seq
        return None if seq is None else seq.step.value

    async def wait(
        self, check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.005
    ) -> Any:
        """``wait_for``, its failure naming the booth's state, step, faults and alarms too."""
        try:
            return await wait_for(check, timeout_s=timeout_s, what=what, interval_s=interval_s)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; state {self.state}, step {self.step_name()}, "
                f"faults {self.sim.physics.faults.names()}, "
                f"alarms {[a['id'] for a in self.sup.controller.status()['alarms']]}"
            ) from None

    async def holds(self, check: Callable[[], Any], duration_s: float, what: str) -> None:
        """``check`` stays true for ``duration_s`` (something that must not happen, doesn't)."""
        kept = await holds(check, duration_s=duration_s, interval_s=0.005)
        assert kept, f"no longer true: {what}; state {self.state}, step {self.step_name()}"

    # ------------------------------------------------------------------ getting to a phase

    async def to_idle(self, timeout_s: float = 40.0) -> None:
        """From wherever the last case left the booth: faults cleared, then ``idle`` and ready."""
        self.sim.clear()
        ctl = self.sup.controller

        def advance() -> bool:
            """Idle and ready, or the next command towards it."""
            if ctl.state == "idle" and ctl.ready:
                return True
            st = ctl.state
            with contextlib.suppress(CommandRefused):
                if st in JOB:
                    ctl.abort()
                elif st == "aborted":
                    ctl.ack_alarm(None)
                    ctl.clear()
                elif st in ("stopped", "complete"):
                    ctl.reset()
            return False

        await self.wait(advance, timeout_s, "idle and ready again", interval_s=0.05)

    async def start_job(self, units: int = 2) -> int:
        """A job of ``units``; returns the index of its first event."""
        self._lots += 1
        since = len(self.sink.events)
        self.sup.controller.start_job(f"FM-{self._lots}", "fault-matrix", self.recipe, units)
        return since

    async def to_phase(self, phase: str) -> int:
        """Bring the booth to ``phase``; returns the index of the first event of that phase."""
        await self.to_idle()
        since = len(self.sink.events)
        if phase == "idle":
            return since
        if phase in ("flux", "solder"):
            since = await self.start_job()
            flag = "part_in_flux" if phase == "flux" else "part_in_bath"
            dwell = "flux_dwell" if phase == "flux" else "dip_dwell"
            # In the dwell: the part is in (the truth) and the supervisor knows it is.
            await self.wait(
                lambda: self.truth()[flag] and self.step_name() == dwell,
                20.0,
                f"the part {phase}-dipped",
            )
            return since
        if phase == "resetting":
            # Opening the door spends the purge: the next reset must purge three volumes of N2
            # and see O2 stable again before idle, which gives the fault a resetting booth.
            self.sup.controller.stop()
            await self.wait(lambda: self.state == "stopped", 10.0, "stopped")
            self.sim.inject("door_open")
            await self.wait(
                lambda: not self.sup.controller.status()["interlocks"].get("door_closed", True),
                5.0,
                "door seen open",
            )
            self.sim.clear("door_open")
            await self.wait(
                lambda: self.sup.controller.status()["interlocks"].get("door_closed"),
                5.0,
                "door seen closed",
            )
            since = len(self.sink.events)
            self.sup.controller.reset()
            await self.wait(lambda: self.truth()["n2_purge_on"], 5.0, "purging")
            assert self.state == "resetting"
            return since
        raise ValueError(f"unknown phase {phase!r}")

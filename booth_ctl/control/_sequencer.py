"""The unit sequencer: load -> flux dip -> transfer -> wait -> solder dip(s) -> drain -> unload.

It turns the job into holder targets and the suction command, one scan at a time. Its own
guard withdraws an immersed part in the scan that sees a lost condition and rejects the unit; a
part that is only approaching a surface is pulled back and the dip retried later (not rejected).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from booth_ctl.config._booth import BoothConfig
from booth_ctl.config._recipe import DipStep, Recipe
from booth_ctl.control._events import Event
from booth_ctl.control._interlocks import (
    BASE,
    FLUX_ENTRY,
    FLUX_STAY,
    SOLDER_ENTRY,
    SOLDER_STAY,
    unmet,
)


class Step(enum.Enum):
    LOAD_MOVE = "load_move"
    GRIP = "grip"
    FLUX_MOVE = "flux_move"
    FLUX_WAIT = "flux_wait"
    FLUX_APPROACH = "flux_approach"
    FLUX_ENTER = "flux_enter"
    FLUX_DWELL = "flux_dwell"
    FLUX_UP = "flux_up"
    DIP_MOVE = "dip_move"
    DIP_WAIT = "dip_wait"
    DIP_APPROACH = "dip_approach"
    DIP_ENTER = "dip_enter"
    DIP_DWELL = "dip_dwell"
    DIP_UP = "dip_up"
    DRAIN = "drain"
    REJECT_UP = "reject_up"
    UNLOAD_MOVE = "unload_move"
    COOL = "cool"
    RELEASE = "release"
    DONE = "done"


class Mode(enum.Enum):
    #: execute: advance through the steps.
    RUN = "run"
    #: holding: finish an immersion under way, advance nothing else.
    FINISH = "finish"
    #: suspending, suspended, stopping, aborting, held: everything up, nothing advances.
    WITHDRAW = "withdraw"


_APPROACH = frozenset({Step.FLUX_APPROACH, Step.DIP_APPROACH})
_DOWN = frozenset(
    {Step.FLUX_ENTER, Step.FLUX_DWELL, Step.FLUX_UP, Step.DIP_ENTER, Step.DIP_DWELL, Step.DIP_UP}
)
_ENTER = frozenset({Step.FLUX_ENTER, Step.DIP_ENTER})
#: A part in its dwell is in the bath, whatever the position readings said on the way down.
_DWELL = frozenset({Step.FLUX_DWELL, Step.DIP_DWELL})
_FLUX_STEPS = frozenset({Step.FLUX_APPROACH, Step.FLUX_ENTER, Step.FLUX_DWELL, Step.FLUX_UP})
_MOVES = frozenset({Step.LOAD_MOVE, Step.FLUX_MOVE, Step.DIP_MOVE, Step.UNLOAD_MOVE})
#: The holder has the unit's part, from the grip to its release at the load station.
_HELD = frozenset(
    {
        Step.FLUX_MOVE,
        Step.FLUX_WAIT,
        *_FLUX_STEPS,
        Step.DIP_MOVE,
        Step.DIP_WAIT,
        Step.DIP_APPROACH,
        Step.DIP_ENTER,
        Step.DIP_DWELL,
        Step.DIP_UP,
        Step.DRAIN,
        Step.UNLOAD_MOVE,
        Step.COOL,
    }
)


@dataclass(slots=True)
class Plant:
    """What the sequencer needs from one scan."""

    now: float
    z_mm: float | None
    station: int | None
    moving: bool | None
    permissives: Mapping[str, bool]
    o2_ppm: float | None
    temps_c: Mapping[str, float | None]
    #: How old the position reading is (s): the holder may be this times its speed further on.
    z_age_s: float = 0.0


@dataclass(slots=True)
class Result:
    #: Unmet permissives that stop the sequence (the controller suspends), or None.
    suspend: list[str] | None = None
    done: bool = False
    events: list[Event] = field(default_factory=list)


class Sequencer:
    def __init__(self, cfg: BoothConfig, lot_id: str, recipe: Recipe, units: int) -> None:
        self._cfg = cfg
        self.lot_id = lot_id
        self.recipe = recipe
        self.units = units
        self.unit = 0
        self.units_done = 0
        self.units_rejected = 0
        self.step = Step.LOAD_MOVE
        self.flux_done = False
        self.dip_i = 0
        #: The part has reached the surface of the current dip (within the holder's tolerance)
        #: and not yet left it. Set on entry at ``z >= surface - z_tolerance_mm`` and, at the
        #: latest, when the entry's target is reached, so it holds through the whole dwell.
        self.immersed = False
        self.unit_open = False
        self._t0 = 0.0
        self._top = cfg.holder.z_travel_mm
        self._tol = cfg.holder.z_tolerance_mm
        #: The solder dip the part is in: (when it entered, the surface, dip number, vessel),
        #: until the holder's position shows the part out again (``dip_withdrawn``).
        self._in_solder: tuple[float, float, int, str] | None = None
        self._fast = cfg.holder.z_fast_speed_mm_s
        self.station_target = cfg.holder.load_station
        self.z_target = self._top
        self.z_speed = self._fast
        self.vacuum = cfg.holder.kind != "chain"

    # ------------------------------------------------------------------ views

    @property
    def dip(self) -> DipStep:
        return self.recipe.dips[min(self.dip_i, len(self.recipe.dips) - 1)]

    def in_dip(self) -> bool:
        """The part is below the top for a dip (approaching, immersed or coming up)."""
        return self.step in _APPROACH or self.step in _DOWN

    def in_bath(self) -> bool:
        """The part may be in the bath: immersed, or in a dwell (which only follows an entry)."""
        return self.step in _DOWN and (self.immersed or self.step in _DWELL)

    def at_top(self, plant: Plant) -> bool:
        return plant.z_mm is not None and plant.z_mm <= self._top + self._tol

    def required(self) -> tuple[str, ...]:
        """Permissives the current step waits for (what a suspension waits on)."""
        if self.step in (Step.FLUX_WAIT, *_FLUX_STEPS):
            return FLUX_ENTRY
        if self.step in (Step.DIP_WAIT, Step.DIP_APPROACH, Step.DIP_ENTER):
            return (*SOLDER_ENTRY, f"solder_temp_ok.{self.dip.vessel}")
        return BASE

    # ------------------------------------------------------------------ stepping

    def run(self, plant: Plant, mode: Mode) -> Result:
        res = Result()
        self._note_withdrawal(plant, res)
        if self.step is Step.DONE:
            return res
        if self.unit_open and self.step in _HELD and not plant.permissives.get("part_held"):
            # The hold on the part was lost: it may have fallen anywhere, the bath included (a
            # drive that cannot be reached runs on to its last target), and it cannot be trusted.
            self._reject("lost: part_held", res)
        self._guard(plant, res)
        if mode is Mode.WITHDRAW or (mode is Mode.FINISH and not self.in_dip()):
            if self.in_bath():
                self._reject("withdrawn", res)
            elif self.step in _APPROACH or self.step in _ENTER:
                self._abandon()
            self._go_top()
            return res
        if mode is Mode.FINISH and (
            self.step in _APPROACH or (self.step in _ENTER and not self.immersed)
        ):
            self._abandon()
            self._go_top()
            return res
        if self.step not in _DOWN and self.step is not Step.REJECT_UP:
            missing = unmet(plant.permissives, BASE)
            if missing:
                self._go_top()
                res.suspend = missing
                return res
        self._advance(plant, res)
        return res

    def stop_job(self, reason: str, res: Result) -> None:
        """The job is cut short: withdraw, and reject the unit under way."""
        self._go_top()
        if self.unit_open:
            self._reject(reason, res)
        self.step = Step.DONE

    def _guard(self, plant: Plant, res: Result) -> None:
        """Section 4: withdraw an immersed part the moment a condition drops; never enter blind."""
        flux = self.step in _FLUX_STEPS
        if self.in_bath():
            missing = unmet(plant.permissives, FLUX_STAY if flux else SOLDER_STAY)
            if missing:
                self._reject("lost: " + ", ".join(missing), res)
        elif self.step in _APPROACH or self.step in _ENTER:
            missing = unmet(plant.permissives, self.required())
            if not missing:
                return
            if self.step in _ENTER and self._maybe_immersed(plant):
                # The holder's position and the lost condition come from devices polled apart:
                # a part that may already touch the surface counts as dipped (section 4).
                self._reject("lost: " + ", ".join(missing), res)
            else:
                self._abandon()
                self._go_top()

    def _maybe_immersed(self, plant: Plant) -> bool:
        """During an entry, the part is at (or near) the surface, or its position is unknown."""
        surface = (
            self._cfg.flux.surface_z_mm
            if self.step is Step.FLUX_ENTER
            else self._cfg.vessels[self.dip.vessel].surface_z_mm
        )
        # The reading is z_age_s old: at its speed the holder may be that much further down.
        lead_mm = max(plant.z_age_s, 0.0) * self.z_speed
        return plant.z_mm is None or plant.z_mm + lead_mm >= surface - self._tol

    def _reject(self, reason: str, res: Result) -> None:
        self._go_top()
        if self.unit_open:
            self.units_rejected += 1
            self.unit_open = False
            res.events.append(
                Event("unit_rejected", {"lot_id": self.lot_id, "unit": self.unit, "reason": reason})
            )
        self.immersed = False
        self.step = Step.REJECT_UP

    def _abandon(self) -> None:
        self.step = Step.FLUX_WAIT if self.step in _FLUX_STEPS else Step.DIP_WAIT
        self.immersed = False

    def _go_top(self) -> None:
        self.z_target = self._top
        self.z_speed = self._fast

    def _at_station(self, plant: Plant, station: int) -> bool:
        return plant.station == station and plant.moving is False and self.at_top(plant)

    def _reached(self, plant: Plant) -> bool:
        return plant.z_mm is not None and abs(plant.z_mm - self.z_target) <= self._tol

    def _advance(self, plant: Plant, res: Result) -> None:
        cfg = self._cfg
        s = self.step
        now = plant.now
        if s is Step.LOAD_MOVE:
            if not self.unit_open:
                self.unit += 1
                self.unit_open = True
                self.flux_done = False
                self.dip_i = 0
                res.events.append(Event("unit_started", {"lot_id": self.lot_id, "unit": self.unit}))
            self._move(plant, cfg.holder.load_station, Step.GRIP)
        elif s is Step.GRIP:
            self.vacuum = cfg.holder.kind != "chain"
            if plant.permissives.get("part_held", False):
                self.step = Step.FLUX_MOVE
        elif s is Step.FLUX_MOVE:
            self._move(plant, cfg.flux.station, Step.FLUX_WAIT)
        elif s is Step.FLUX_WAIT:
            missing = unmet(plant.permissives, FLUX_ENTRY)
            if missing:
                res.suspend = missing
            else:
                self.step = Step.FLUX_APPROACH
                self._approach(cfg.flux.surface_z_mm)
        elif s is Step.FLUX_APPROACH:
            if self._reached(plant):
                self.step = Step.FLUX_ENTER
                self.z_target = cfg.flux.surface_z_mm + self.recipe.flux.depth_mm
                self.z_speed = self.recipe.flux.speed_mm_s
        elif s is Step.FLUX_ENTER:
            self._enter(plant, cfg.flux.surface_z_mm, None, res)
            if self._reached(plant):
                self._enter(plant, cfg.flux.surface_z_mm, None, res, reached=True)
                self.step, self._t0 = Step.FLUX_DWELL, now
        elif s is Step.FLUX_DWELL:
            if now - self._t0 >= self.recipe.flux.dwell_s:
                self.step = Step.FLUX_UP
                self.z_target, self.z_speed = self._top, self.recipe.flux.speed_mm_s
        elif s is Step.FLUX_UP:
            self._leave(plant, cfg.flux.surface_z_mm)
            if self.at_top(plant):
                self.flux_done = True
                self.step = Step.DIP_MOVE
        elif s is Step.DIP_MOVE:
            self._move(plant, cfg.vessels[self.dip.vessel].station, Step.DIP_WAIT)
        elif s is Step.DIP_WAIT:
            missing = unmet(plant.permissives, self.required())
            if missing:
                res.suspend = missing
            else:
                self.step = Step.DIP_APPROACH
                self._approach(cfg.vessels[self.dip.vessel].surface_z_mm)
        elif s is Step.DIP_APPROACH:
            if self._reached(plant) and self._entry_too_fast(plant, self.dip.entry_speed_mm_s):
                self._reject(self._too_fast_text(plant, self.dip.entry_speed_mm_s), res)
            elif self._reached(plant):
                self.step = Step.DIP_ENTER
                self.z_target = cfg.vessels[self.dip.vessel].surface_z_mm + self.dip.depth_mm
                self.z_speed = self.dip.entry_speed_mm_s
        elif s is Step.DIP_ENTER:
            self._enter(plant, cfg.vessels[self.dip.vessel].surface_z_mm, self.dip, res)
            if self._reached(plant):
                self._enter(
                    plant, cfg.vessels[self.dip.vessel].surface_z_mm, self.dip, res, reached=True
                )
                self.step, self._t0 = Step.DIP_DWELL, now
        elif s is Step.DIP_DWELL:
            if now - self._t0 >= self.dip.dwell_s:
                self.step = Step.DIP_UP
                self.z_target, self.z_speed = self._top, self.dip.withdraw_speed_mm_s
        elif s is Step.DIP_UP:
            self._leave(plant, cfg.vessels[self.dip.vessel].surface_z_mm)
            if self.at_top(plant):
                self.step, self._t0 = Step.DRAIN, now
        elif s is Step.DRAIN:
            if now - self._t0 >= self.recipe.drain_s:
                if self.dip_i + 1 < len(self.recipe.dips):
                    self.dip_i += 1
                    self.step = Step.DIP_MOVE
                else:
                    self.step = Step.UNLOAD_MOVE
        elif s is Step.REJECT_UP:
            self._go_top()
            if self.at_top(plant):
                self.step = Step.UNLOAD_MOVE
        elif s is Step.UNLOAD_MOVE:
            if self._move(plant, cfg.holder.load_station, Step.COOL):
                self._t0 = now
        elif s is Step.COOL:
            if now - self._t0 >= self.recipe.cool_s:
                self.step = Step.RELEASE
        elif s is Step.RELEASE:
            self.vacuum = False
            # The unit is done only once the part has left the holder (vacuum gone, hook free):
            # gripping again at once would re-grip the same part and count it twice.
            if plant.permissives.get("part_held", True):
                return
            if self.unit_open:
                self.units_done += 1
                self.unit_open = False
                res.events.append(
                    Event("unit_completed", {"lot_id": self.lot_id, "unit": self.unit})
                )
            if self.unit >= self.units:
                self.step = Step.DONE
                res.done = True
            else:
                self.step = Step.LOAD_MOVE

    def _move(self, plant: Plant, station: int, then: Step) -> bool:
        self._go_top()
        if not self.at_top(plant):
            return False
        self.station_target = station
        if self._at_station(plant, station):
            self.step = then
            return True
        return False

    def _entry_too_fast(self, plant: Plant, speed_mm_s: float) -> bool:
        """At the approach height, the position reading's age times the entry speed reaches the
        gap to the surface: a condition lost during the entry could not be told from a part
        already in. Refused before entry (and recorded) instead of abandoned and re-dipped."""
        gap_mm = self._cfg.holder.approach_gap_mm - self._tol
        # With no gap the entry starts at the surface: any loss during it counts as dipped.
        return gap_mm > 0 and max(plant.z_age_s, 0.0) * speed_mm_s >= gap_mm

    def _too_fast_text(self, plant: Plant, speed_mm_s: float) -> str:
        lead_mm = max(plant.z_age_s, 0.0) * speed_mm_s
        return (
            f"entry refused: position reading {plant.z_age_s * 1000:.0f} ms old at "
            f"{speed_mm_s:g} mm/s ({lead_mm:.1f} mm) reaches the gap to the surface"
        )

    def _approach(self, surface_z_mm: float) -> None:
        self.z_target = max(self._top, surface_z_mm - self._cfg.holder.approach_gap_mm)
        self.z_speed = self._fast
        self.immersed = False

    def _enter(
        self,
        plant: Plant,
        surface_z_mm: float,
        dip: DipStep | None,
        res: Result,
        *,
        reached: bool = False,
    ) -> None:
        """Mark the part immersed and record the dip, once per dip.

        The part counts as in from ``surface - z_tolerance_mm`` on (a position within the
        tolerance of the surface may be at it, as ``_maybe_immersed`` and ``_leave`` judge it),
        and in any case once the entry's target is ``reached``: a dip shallower than the
        tolerance is still a dip, and its dwell is guarded as one.
        """
        if self.immersed:
            return
        if not reached and (plant.z_mm is None or plant.z_mm < surface_z_mm - self._tol):
            return
        self.immersed = True
        if dip is None:
            flux = self.recipe.flux
            res.events.append(
                Event(
                    "flux_dip",
                    {
                        "lot_id": self.lot_id,
                        "unit": self.unit,
                        "agent": flux.agent,
                        "depth_mm": flux.depth_mm,
                        "dwell_s": flux.dwell_s,
                    },
                )
            )
            return
        self._in_solder = (plant.now, surface_z_mm, self.dip_i + 1, dip.vessel)
        res.events.append(
            Event(
                "dip",
                {
                    "lot_id": self.lot_id,
                    "unit": self.unit,
                    "dip": self.dip_i + 1,
                    "vessel": dip.vessel,
                    "alloy": dip.alloy,
                    "o2_ppm": plant.o2_ppm,
                    "solder_temp_c": plant.temps_c.get(dip.vessel),
                    "depth_mm": dip.depth_mm,
                    "dwell_s": dip.dwell_s,
                },
            )
        )

    def _note_withdrawal(self, plant: Plant, res: Result) -> None:
        """The part of a solder dip is out (a finished dip or a withdrawal alike): how long it
        was in, for the dip's record."""
        if self._in_solder is None or plant.z_mm is None:
            return
        entered, surface, number, vessel = self._in_solder
        if plant.z_mm >= surface - self._tol:
            return
        self._in_solder = None
        res.events.append(
            Event(
                "dip_withdrawn",
                {
                    "lot_id": self.lot_id,
                    "unit": self.unit,
                    "dip": number,
                    "vessel": vessel,
                    "immersed_s": round(plant.now - entered, 3),
                },
            )
        )

    def _leave(self, plant: Plant, surface_z_mm: float) -> None:
        if plant.z_mm is not None and plant.z_mm < surface_z_mm - self._tol:
            self.immersed = False
            self.z_speed = self._fast

"""The sequencer's state and its moves: targets, entries and withdrawals, the dip records."""

from __future__ import annotations

from booth_ctl.config._booth import BoothConfig
from booth_ctl.config._recipe import DipStep, Recipe
from booth_ctl.control._events import Event
from booth_ctl.control._interlocks import (
    BASE,
    FLUX_ENTRY,
    SOLDER_ENTRY,
)
from booth_ctl.control._seq_steps import (
    _APPROACH,
    _DOWN,
    _DWELL,
    _FLUX_STEPS,
    Plant,
    Result,
    Step,
)


class SequencerBase:
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

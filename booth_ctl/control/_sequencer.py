"""The unit sequencer: load -> flux dip -> transfer -> wait -> solder dip(s) -> drain -> unload.

It turns the job into holder targets and the suction command, one scan at a time. Its own
guard withdraws an immersed part in the scan that sees a lost condition and rejects the unit; a
part that is only approaching a surface is pulled back and the dip retried later (not rejected).
"""

from __future__ import annotations

from booth_ctl.control._events import Event
from booth_ctl.control._interlocks import (
    BASE,
    FLUX_ENTRY,
    FLUX_STAY,
    SOLDER_STAY,
    unmet,
)
from booth_ctl.control._seq_base import SequencerBase
from booth_ctl.control._seq_steps import (
    _APPROACH,
    _DOWN,
    _ENTER,
    _FLUX_STEPS,
    _HELD,
    Mode,
    Plant,
    Result,
    Step,
)

__all__ = ["Mode", "Plant", "Result", "Sequencer", "Step"]


class Sequencer(SequencerBase):
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

"""Commands between two scans: each is checked against the state and the permissives."""

from __future__ import annotations

from typing import Any

from booth_ctl.config._recipe import Recipe
from booth_ctl.control._ctl_base import (
    LOT_ID_MAX,
    RESET_NEEDS,
    START_NEEDS,
    UNITS_MAX,
    ControllerBase,
)
from booth_ctl.control._events import CommandRefused, Event
from booth_ctl.control._interlocks import (
    unmet,
)
from booth_ctl.control._packml import ACCEPTS, TARGET
from booth_ctl.control._sequencer import Sequencer


class CommandIntake(ControllerBase):
    def _accept(self, command: str) -> None:
        if self.state not in ACCEPTS[command]:
            raise CommandRefused(
                "invalid_state",
                f"{command} is not accepted in state {self.state}",
                {"state": self.state},
            )

    def _need(self, needed: tuple[str, ...], what: str) -> None:
        missing = unmet(self._perm, needed)
        if missing:
            raise CommandRefused(
                "interlock", f"{what} refused: {', '.join(missing)}", {"unmet": missing}
            )

    def _command(self, command: str, reason: str) -> dict[str, Any]:
        self._go(TARGET[command], reason, self._pending)
        return {"state": self.state}

    def reset(self) -> dict[str, Any]:
        self._accept("reset")
        self._need(RESET_NEEDS, "reset")
        self._sv = self._idle_sv()
        return self._command("reset", "reset command")

    def start_job(
        self, lot_id: str, recipe_name: str, recipe: Recipe, units: int
    ) -> dict[str, Any]:
        if not isinstance(lot_id, str) or not 1 <= len(lot_id) <= LOT_ID_MAX:
            raise CommandRefused("bad_request", f"lot_id must be 1-{LOT_ID_MAX} characters")
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= UNITS_MAX:
            raise CommandRefused("bad_request", f"units must be an integer 1-{UNITS_MAX}")
        if not isinstance(recipe, Recipe):
            raise CommandRefused("bad_request", "recipe is not a validated Recipe")
        if recipe.holder != self._cfg.holder.kind:
            raise CommandRefused(
                "bad_request",
                f"recipe holder {recipe.holder!r} is not this booth's {self._cfg.holder.kind!r}",
            )
        unknown = [d.vessel for d in recipe.dips if d.vessel not in self._cfg.vessels]
        if unknown:
            raise CommandRefused("bad_request", f"recipe names unknown vessels {unknown}")
        self._accept("start")
        self._need(START_NEEDS, "start_job")
        seq = Sequencer(self._cfg, lot_id, recipe, units)
        seq.station_target, seq.z_target = self._station_t, self._z_t
        seq.vacuum = self._vacuum
        self._seq = seq
        self._recipe_name = recipe_name
        self._sv = self._idle_sv()
        for dip in recipe.dips:
            self._sv[dip.vessel] = dip.setpoint_c
        self._pending.append(
            Event("job_started", {"lot_id": lot_id, "recipe": recipe_name, "units": units})
        )
        return {**self._command("start", f"job {lot_id}"), "lot_id": lot_id}

    def hold(self) -> dict[str, Any]:
        self._accept("hold")
        return self._command("hold", "hold command")

    def unhold(self) -> dict[str, Any]:
        self._accept("unhold")
        return self._command("unhold", "unhold command")

    def stop(self) -> dict[str, Any]:
        self._accept("stop")
        self._safe_holder()
        self._end_job("stopped", self._pending)
        return self._command("stop", "stop command")

    def abort(self) -> dict[str, Any]:
        self._accept("abort")
        for step in (
            self._safe_heaters,
            self._safe_holder,
            lambda: self._end_job("aborted", self._pending),
        ):
            try:
                step()
            except Exception:
                continue
        return self._command("abort", "abort command")

    def clear(self) -> dict[str, Any]:
        self._accept("clear")
        blocking = self._alarms.blocking_clear()
        if blocking:
            raise CommandRefused(
                "interlock",
                "clear refused: trip causes present or not acknowledged",
                {"unmet": blocking},
            )
        return self._command("clear", "clear command")

    def ack_alarm(self, alarm_id: str | None) -> dict[str, Any]:
        try:
            acked = self._alarms.ack(alarm_id)
        except KeyError:
            raise CommandRefused("bad_request", f"no alarm {alarm_id!r}") from None
        return {"acked": acked}

    def trip(self, reason: str) -> None:
        self._trip("runtime_trip", "trip", reason, self._pending)

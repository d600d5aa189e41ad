"""The output stage: desired outputs of one scan, the bath guard, the safe outputs."""

from __future__ import annotations

from booth_ctl.control._ctl_base import (
    DIP_STATES,
    ControllerBase,
)
from booth_ctl.control._interlocks import (
    FLUX_ENTRY,
    FLUX_STAY,
    SOLDER_ENTRY,
    SOLDER_STAY,
    unmet,
)
from booth_ctl.control._packml import HEATING


class OutputStage(ControllerBase):
    def _outputs(self) -> dict[str, float | bool]:
        heating = self.state in HEATING and not self._tripped
        self._heating = heating
        out: dict[str, float | bool] = {}
        n = self._n
        for vessel, dev in n.heaters.items():
            out[f"{dev}.sv_c"] = self._sv_out(vessel)
            out[f"{dev}.run"] = 1 if heating else 0
        k = self._out_keys
        out[k["contactor"]] = heating
        out[k["exhaust"]] = True
        out[k["maintain"]] = True
        out[k["purge"]] = self._purge
        vac = self._vacuum and self._cfg.holder.kind != "chain"
        out[k["pump"]] = vac
        out[k["valve"]] = vac
        self._lights(out)
        if self._holder_known:
            self._bath_guard()
            out[k["station"]] = self._station_t
            out[k["z"]] = self._z_t
            out[k["speed"]] = self._zspeed_t
        elif self._z_only:
            out[k["z"]] = self._cfg.holder.z_travel_mm
            out[k["speed"]] = self._cfg.holder.z_fast_speed_mm_s
        if self._tripped:
            # The second line of defence: whatever the state logic said, the heater is off.
            for dev in n.heaters.values():
                out[f"{dev}.run"] = 0
            out[k["contactor"]] = False
        return out

    def _safe_outputs(self) -> dict[str, float | bool]:
        n, k = self._n, self._out_keys
        out: dict[str, float | bool] = {f"{dev}.run": 0 for dev in n.heaters.values()}
        out[k["contactor"]] = False
        out[k["exhaust"]] = True
        out[k["maintain"]] = True
        out[k["light_red"]] = True
        out[k["buzzer"]] = True
        if self._holder_known or self._z_only:
            out[k["z"]] = self._cfg.holder.z_travel_mm
            out[k["speed"]] = self._cfg.holder.z_fast_speed_mm_s
        return out

    def safe_values(self) -> dict[str, float | bool]:
        """The value of each output that is its safe direction (heater off, holder to the
        top...): a writer sends a point wanted at this value before any other."""
        out = self._safe_outputs()
        out[self._out_keys["z"]] = self._cfg.holder.z_travel_mm
        for key in ("light_red", "buzzer"):
            out.pop(self._out_keys[key], None)
        return out

    def _bath_guard(self) -> None:
        """Independent of the sequencer: below a surface only in a dip state with every
        condition met; a part not yet in may not go past the surface without the entry ones."""
        plant = self._plant
        station = plant.station if plant.station is not None else self._station_t
        where = self._surfaces.get(station)
        if where is None:
            return
        name, surface = where
        tol = self._cfg.holder.z_tolerance_mm
        if self._z_t < surface - tol:
            return
        flux = name == "flux"
        stay = FLUX_STAY if flux else SOLDER_STAY
        if self._tripped or self.state not in DIP_STATES or unmet(self._perm, stay):
            self._safe_holder()
            return
        inside = plant.z_mm is not None and plant.z_mm >= surface - tol
        entry = FLUX_ENTRY if flux else (*SOLDER_ENTRY, f"solder_temp_ok.{name}")
        if not inside and unmet(self._perm, entry):
            self._safe_holder()

    def _lights(self, out: dict[str, float | bool]) -> None:
        k, st, a = self._out_keys, self.state, self._alarms
        red = self._tripped or st in ("aborting", "aborted") or a.any_of("critical", "alarm")
        normal = st in ("idle", "execute", "complete")
        out[k["light_red"]] = red
        out[k["light_amber"]] = not red and (not normal or a.any_of("warning"))
        out[k["light_green"]] = normal and not self._tripped
        out[k["buzzer"]] = a.any_of("critical", "alarm", unacked=True)

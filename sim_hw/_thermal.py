"""Solder vessels and their temperature controllers. Pure: stepped by ``dt``, no I/O, no clock.

A vessel's state is its enthalpy, not its temperature: the latent heat of melting is spread across
the alloy's solidus..liquidus, so heating through the melting range absorbs energy with little or
no rise in temperature (the plateau of a real heat-up), and the integration stays exact across it.
"""

from __future__ import annotations

import logging
import math

from ._banks import RegisterBank
from ._commwatch import HeartbeatWatch
from ._settings import SimSettings, VesselPhysics

log = logging.getLogger(__name__)

#: What a controller's PV register shows with an open thermocouple: the top of its range.
PV_OVERRANGE_C = math.inf


def lag(value: float, target: float, dt_s: float, tau_s: float) -> float:
    """Exact first-order step toward ``target``: stable for any ``dt``."""
    return target + (value - target) * math.exp(-dt_s / tau_s)


class SolderVessel:
    """A pot of solder: enthalpy, heater power in, losses to ambient out."""

    def __init__(self, name: str, p: VesselPhysics, start_temp_c: float, ambient_c: float) -> None:
        self.name = name
        self.p = p
        self.ambient_c = ambient_c
        m = p.mass_kg
        # Enthalpy relative to 0 C, all solid: at the solidus, then all liquid at the liquidus.
        self._h_solidus_j = m * p.cp_solid_j_kg_k * p.solidus_c
        self._h_liquidus_j = (
            self._h_solidus_j
            + m * p.cp_solid_j_kg_k * (p.liquidus_c - p.solidus_c)
            + m * p.latent_heat_j_kg
        )
        self.enthalpy_j = self._enthalpy_at(start_temp_c)
        self.temp_c = self._temp_at(self.enthalpy_j)
        #: The controller's thermocouple and the high-limit's own sensor, each with its own lag.
        self.tc_c = self.temp_c
        self.high_limit_sensor_c = self.temp_c
        self.heater_power_w = 0.0

    def _enthalpy_at(self, temp_c: float) -> float:
        p = self.p
        m = p.mass_kg
        if temp_c <= p.solidus_c:
            return m * p.cp_solid_j_kg_k * temp_c
        if temp_c < p.liquidus_c:
            frac = (temp_c - p.solidus_c) / (p.liquidus_c - p.solidus_c)
            return self._h_solidus_j + frac * (self._h_liquidus_j - self._h_solidus_j)
        return self._h_liquidus_j + m * p.cp_liquid_j_kg_k * (temp_c - p.liquidus_c)

    def _temp_at(self, enthalpy_j: float) -> float:
        p = self.p
        m = p.mass_kg
        if enthalpy_j <= self._h_solidus_j:
            return enthalpy_j / (m * p.cp_solid_j_kg_k)
        if enthalpy_j < self._h_liquidus_j:
            frac = (enthalpy_j - self._h_solidus_j) / (self._h_liquidus_j - self._h_solidus_j)
            return p.solidus_c + frac * (p.liquidus_c - p.solidus_c)
        return p.liquidus_c + (enthalpy_j - self._h_liquidus_j) / (m * p.cp_liquid_j_kg_k)

    @property
    def liquid_fraction(self) -> float:
        span = self._h_liquidus_j - self._h_solidus_j
        return (
            min(1.0, max(0.0, (self.enthalpy_j - self._h_solidus_j) / span))
            if span > 0
            else (1.0 if self.temp_c > self.p.liquidus_c else 0.0)
        )

    def step(self, dt_s: float, heater_power_w: float) -> None:
        self.heater_power_w = heater_power_w
        loss_w = self.p.loss_w_k * (self.temp_c - self.ambient_c)
        self.enthalpy_j += (heater_power_w - loss_w) * dt_s
        self.temp_c = self._temp_at(self.enthalpy_j)
        self.tc_c = lag(self.tc_c, self.temp_c, dt_s, self.p.tc_tau_s)
        self.high_limit_sensor_c = lag(
            self.high_limit_sensor_c, self.temp_c, dt_s, self.p.high_limit_tau_s
        )


class TempController:
    """A single-loop PID controller on its own thermocouple, with a comm-loss timeout.

    Registers (tc-generic map): ``sv_c``, ``run``, ``heartbeat``, ``comm_timeout_s`` are written by
    the master; ``pv_c``, ``output_pct`` and ``status`` are the controller's. The comm-loss
    timeout arms at the first heartbeat write; from then on, when the heartbeat register has not
    changed for ``comm_timeout_s`` (0 disables it) the controller drops to stop (``run`` reads 0)
    and sets ``comm_lost``; it resumes only when ``run`` = 1 is written with the heartbeat fresh.
    A ``run`` = 1 written while the heartbeat is still stale is refused at the write itself (a
    bank write hook): a readback right after shows 0, what the controller really does.
    """

    def __init__(
        self,
        name: str,
        bank: RegisterBank,
        settings: SimSettings,
        *,
        setpoint_c: float,
        comm_timeout_s: float | None,
    ) -> None:
        self.name = name
        self.bank = bank
        self.s = settings
        bank.set("sv_c", setpoint_c)
        bank.set("run", 0)
        bank.set("comm_timeout_s", comm_timeout_s or 0.0)
        self.output_pct = 0.0
        self.comm_lost = False
        self.running = False
        self._integral_pct = 0.0
        self._last_pv_c: float | None = None
        self._watch = HeartbeatWatch(bank)
        bank.hook_write("run", self._on_run)

    def _on_run(self, old: int, written: int) -> int:
        if self.comm_lost and written and not self._watch.fresh_now():
            return 0  # comm lost, heartbeat still stale: the controller stays stopped
        return written

    def step(self, dt_s: float, pv_c: float, tc_open: bool) -> float:
        """Advance by ``dt_s``; returns the output % the controller drives its heater with."""
        bank = self.bank
        fresh = self._watch.step(dt_s)
        if not fresh and not self.comm_lost:
            self.comm_lost = True
            log.warning(
                "%s: heartbeat unchanged for %.1f s: output off (comm_lost)",
                self.name,
                self._watch.timeout_s,
            )
        if self.comm_lost:
            if fresh and bank.get("run"):
                self.comm_lost = False
                log.info("%s: comm_lost cleared by run with a fresh heartbeat", self.name)
            else:
                bank.set("run", 0)
        self.running = bool(bank.get("run")) and not self.comm_lost
        sv_c = float(bank.get("sv_c"))

        if not self.running or tc_open:
            # Stop, or an open thermocouple (burn-out): output forced off, no wind-up meanwhile.
            self.output_pct = 0.0
            self._integral_pct = 0.0
            self._last_pv_c = None
        else:
            self.output_pct = self._pid(dt_s, sv_c, pv_c)

        bank.set("pv_c", PV_OVERRANGE_C if tc_open else pv_c)
        bank.set("output_pct", self.output_pct)
        bank.set("tc_open", tc_open)
        bank.set("alarm", self.running and (tc_open or abs(sv_c - pv_c) > self.s.alarm_band_c))
        bank.set("comm_lost", self.comm_lost)
        bank.set("running", self.running)
        return self.output_pct

    def _pid(self, dt_s: float, sv_c: float, pv_c: float) -> float:
        s = self.s
        error_c = sv_c - pv_c
        proportional = s.pid_kp_pct_c * error_c
        # Derivative on the measurement, so a setpoint step does not kick the output.
        derivative = 0.0
        if self._last_pv_c is not None and dt_s > 0 and s.pid_td_s > 0:
            derivative = -s.pid_kp_pct_c * s.pid_td_s * (pv_c - self._last_pv_c) / dt_s
        self._last_pv_c = pv_c
        candidate = self._integral_pct + s.pid_kp_pct_c / s.pid_ti_s * error_c * dt_s
        unclamped = proportional + candidate + derivative
        # Conditional integration: the integral only grows while it can still act (anti-windup).
        if (
            0.0 <= unclamped <= 100.0
            or (unclamped > 100.0 and error_c < 0)
            or (unclamped < 0 and error_c > 0)
        ):
            self._integral_pct = min(100.0, max(-100.0, candidate))
        return min(100.0, max(0.0, proportional + self._integral_pct + derivative))

"""The controller: interlocks, heater verification, PackML and the sequencer in one pure scan.

``scan`` reads no clock and does no I/O: everything comes from the snapshot, everything goes
out in the ScanOutput. Commands run between two scans and take effect at the next one. A trip is
a one-way latch: every go-safe step runs even if another raises, and the output stage forces the
heater off by two paths for as long as the latch holds, whatever the state logic computed.
"""

from __future__ import annotations

from booth_ctl.control._ctl_base import (
    READY_NEEDS,
    RESET_NEEDS,
    STALL_RETRY_S,
    START_NEEDS,
    STARTUP_GRACE_S,
    ControllerBase,
)
from booth_ctl.control._ctl_commands import CommandIntake
from booth_ctl.control._ctl_outputs import OutputStage
from booth_ctl.control._ctl_states import StateMachine
from booth_ctl.control._ctl_status import StatusViews
from booth_ctl.control._ctl_trips import TripChecks
from booth_ctl.control._events import Event, ScanOutput
from booth_ctl.control._heater_verify import TEXT as HEATER_TEXT
from booth_ctl.control._image import Snapshot, fresh_bit, fresh_value
from booth_ctl.control._interlocks import (
    evaluate,
    temperatures,
)
from booth_ctl.control._packml import JOB
from booth_ctl.control._sequencer import Plant
from drivers import Quality

__all__ = [
    "READY_NEEDS",
    "RESET_NEEDS",
    "STALL_RETRY_S",
    "STARTUP_GRACE_S",
    "START_NEEDS",
    "Controller",
    "ControllerBase",
]


class Controller(TripChecks, StateMachine, OutputStage, CommandIntake, StatusViews):
    """The scan: reads the snapshot, runs the parts in order, returns the outputs and events."""

    def scan(self, snap: Snapshot) -> ScanOutput:
        events = self._pending
        self._pending = []
        try:
            self._step(snap, events)
        except Exception as exc:
            self._trip("internal_error", "internal_error", f"internal error: {exc!r}", events)
        try:
            outputs = self._outputs()
        except Exception as exc:
            self._trip("internal_error", "internal_error", f"internal error: {exc!r}", events)
            outputs = self._safe_outputs()
        pulses, self._pulses = self._pulses, []
        return ScanOutput(outputs, events, pulses)

    def _step(self, snap: Snapshot, events: list[Event]) -> None:
        now = snap.now
        self._now, self._wall = now, snap.wall
        if self._first_now is None:
            self._first_now = now
        if self._state_t0 is None:
            self._state_t0 = now
        n, cfg = self._n, self._cfg
        z = fresh_value(snap, f"{n.holder}.z_mm", n.holder_stale_s)
        station_f = fresh_value(snap, f"{n.holder}.station", n.holder_stale_s)
        station = int(station_f) if station_f is not None else None
        moving = fresh_bit(snap, f"{n.holder}.moving", n.holder_stale_s)
        z_reading = snap.signals.get(f"{n.holder}.z_mm")
        if not self._holder_known and z_reading is not None and z_reading.quality is Quality.BAD:
            # The drive answers but its height is no value (an encoder fault, after a restart):
            # the holder may be down in a bath, on its way to a target set before. The top is the
            # one target safe from anywhere: commanded until a good reading adopts the holder.
            self._z_only = True
        elif not self._holder_known and z is not None and station is not None:
            # A drive travelling between stations (at the top, moving) still reports the station
            # it left: adopting that would send it back once it arrives. Let it arrive first.
            travelling = moving is not False and z <= self._top_tol()
            if not travelling:
                self._adopt_holder(z, station)
            else:
                # Meanwhile only the height is commanded, to the top (where it already is): the
                # drive is never left without a target, and never sent anywhere.
                self._z_only = True

        seq = self._seq
        job = seq is not None and self.state in JOB
        if seq is not None and job:
            limit = seq.recipe.o2_limit_ppm
            stable_s = max(seq.recipe.o2_stable_s, cfg.limits.o2_stable_s)
        else:
            limit, stable_s = cfg.limits.o2_ready_ppm, cfg.limits.o2_stable_s
        o2 = self._o2.update(snap, limit, stable_s)
        self._o2_state = o2
        temps = temperatures(snap, n)
        self._temps = temps

        heaters_ok = True
        present: set[str] = set()
        trips: list[tuple[str, str, str]] = []
        for vessel, verifier in self._verifiers.items():
            verdict = verifier.check(snap, self._heating, self._sv_out(vessel))
            if verdict.present:
                heaters_ok = False
            for code in verdict.present:
                present.add(f"{code}.{vessel}")
            for code in verdict.trip:
                trips.append((f"{code}.{vessel}", code, f"{vessel}: {HEATER_TEXT[code]}"))

        perm = evaluate(
            snap,
            cfg,
            n,
            o2,
            temps_c=temps,
            bands_c=self._bands(job),
            flux_done=seq.flux_done if seq is not None else False,
            heaters_ok=heaters_ok,
            flux_lid_input=self._flux_lid_input,
        )
        self._perm = perm
        self._exhaust_step(perm)
        z_age_s = now - z_reading.ts if z is not None and z_reading is not None else 0.0
        self._plant = Plant(now, z, station, moving, perm, o2.ppm, temps, z_age_s)

        self._collect_trips(snap, perm, present, trips)
        for tid in self._trip_ids:
            self._alarms.set_active(tid, tid in present)
        for tid, code, text in trips:
            self._trip(tid, code, text, events)
        self._condition_alarms(snap, perm, o2, limit, events)
        self._state_step(events)
        self._purge_step(o2, limit, perm)

    def safe_outputs(self) -> dict[str, float | bool]:
        """Every actuator's safe value (section 4), for a runtime whose scan cannot run."""
        return self._safe_outputs()

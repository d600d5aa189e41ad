"""Which trip causes and alarm conditions are present in one scan."""

from __future__ import annotations

from booth_ctl.control._ctl_base import (
    RESTING,
    STARTUP_GRACE_S,
    ControllerBase,
)
from booth_ctl.control._events import Event
from booth_ctl.control._image import Snapshot, fresh_bit, quality
from booth_ctl.control._interlocks import (
    O2State,
)
from booth_ctl.control._packml import HEATING
from drivers import Quality


class TripChecks(ControllerBase):
    def _collect_trips(
        self,
        snap: Snapshot,
        perm: dict[str, bool],
        present: set[str],
        trips: list[tuple[str, str, str]],
    ) -> None:
        n = self._n
        estop = fresh_bit(snap, f"{n.io}.estop_ok", n.io_stale_s)
        high = fresh_bit(snap, f"{n.io}.high_limit_ok", n.io_stale_s)
        if estop is not True:
            present.add("estop")
        if estop is False:
            trips.append(("estop", "estop", "e-stop pressed"))
        if high is not True:
            present.add("high_limit")
        if high is False:
            trips.append(("high_limit", "high_limit", "high-limit controller tripped the heater"))
        if estop is None or high is None:
            present.add("io_comm_lost")
        stall = fresh_bit(snap, f"{n.holder}.stall", n.holder_stale_s)
        self._stall_seen = stall is True
        if stall is not False:
            present.add("holder_stall")
        # The drive withdrew by itself (its comm-loss timeout saw no heartbeat): whatever it
        # was doing for the sequence is void.
        drive_lost = fresh_bit(snap, f"{n.holder}.comm_lost", n.holder_stale_s)
        if drive_lost is not False:
            present.add("holder_comm_lost")
        if self.state in RESTING:
            return
        if estop is None or high is None:
            trips.append(("io_comm_lost", "io_comm_lost", "lost the I/O module's inputs"))
        if stall is True:
            trips.append(("holder_stall", "holder_stall", "holder drive stalled"))
        if drive_lost is True:
            trips.append(
                (
                    "holder_comm_lost",
                    "holder_comm_lost",
                    "holder drive lost the heartbeat and withdrew by itself",
                )
            )

    def _condition_alarms(
        self, snap: Snapshot, perm: dict[str, bool], o2: O2State, limit: float, ev: list[Event]
    ) -> None:
        assert self._first_now is not None
        if self._now - self._first_now < STARTUP_GRACE_S:
            return
        a, n, since = self._alarms, self._n, self._stamp()
        a.condition(
            "door_open",
            not perm["door_closed"],
            "door_open",
            "warning",
            "door open",
            since=since,
            events=ev,
        )
        a.condition(
            "exhaust_fail",
            not perm["exhaust_ok"],
            "exhaust_fail",
            "alarm",
            "exhaust air flow lost",
            since=since,
            events=ev,
        )
        a.condition(
            "n2_supply_low",
            not perm["n2_supply_ok"],
            "n2_supply_low",
            "alarm",
            "N2 supply pressure low",
            since=since,
            events=ev,
        )
        a.condition(
            "flux_low",
            not perm["flux_level_ok"],
            "flux_low",
            "warning",
            "flux level low",
            since=since,
            events=ev,
        )
        a.condition(
            "io_watchdog",
            fresh_bit(snap, f"{n.io}.watchdog_tripped", n.io_stale_s) is True,
            "io_watchdog",
            "alarm",
            "I/O module watchdog forced its outputs safe",
            since=since,
            events=ev,
        )
        analyzer_bad = o2.ppm is None or o2.frozen or o2.why == "O2 analyzer reports a fault"
        a.condition(
            "o2_analyzer",
            analyzer_bad,
            "o2_analyzer",
            "alarm",
            o2.why or "O2 analyzer fault",
            since=since,
            events=ev,
        )
        a.condition(
            "o2_high",
            o2.ppm is not None and o2.ppm > limit and self.state in HEATING,
            "o2_high",
            "warning",
            f"O2 over {limit:.0f} ppm",
            since=since,
            events=ev,
        )
        warn = self._cfg.limits
        for vessel, count in self.vessel_dips.items():
            a.condition(
                f"vessel_dips.{vessel}",
                count >= warn.vessel_dips_warn,
                "vessel_dips",
                "warning",
                f"{vessel}: {count} immersions, refresh the solder",
                since=since,
                events=ev,
            )
        a.condition(
            "flux_dips",
            self.flux_dips >= warn.flux_dips_warn,
            "flux_dips",
            "warning",
            f"{self.flux_dips} flux dips, refresh the flux",
            since=since,
            events=ev,
        )
        for dev, point in self._comm_points():
            a.condition(
                f"comm.{dev}",
                quality(snap, point) is Quality.NO_COMM,
                "comm_lost",
                "alarm",
                f"no communication with {dev}",
                since=since,
                events=ev,
            )
        a.condition(
            "exhaust_heater_idle",
            self._exhaust_idle,
            "exhaust_fail",
            "alarm",
            "exhaust lost too long: heaters held at their idle setpoints",
            since=since,
            events=ev,
        )
        for dev in self._written_devices:
            # The runtime could not deliver a wanted output; it withholds that device's
            # heartbeats so the device's own timeout takes it safe. Said here so it is seen.
            a.condition(
                f"write_failed.{dev}",
                dev in snap.undelivered,
                "write_failed",
                "alarm",
                f"outputs to {dev} not delivered (heartbeats withheld)",
                since=since,
                events=ev,
            )

    def _comm_points(self) -> list[tuple[str, str]]:
        n = self._n
        pts = [(n.io, f"{n.io}.door_closed"), (n.holder, f"{n.holder}.z_mm"), (n.o2, f"{n.o2}.ppm")]
        pts += [(dev, f"{dev}.pv_c") for dev in n.heaters.values()]
        return pts

"""The holder drive (station and height axes) and its registers. Pure: stepped by ``dt``.

z is the lowering distance from the top in mm (0 = raised, travel height), positive downwards.
The drive moves z toward ``z_target_mm`` at ``z_speed_mm_s``; it moves the station axis only
while z is at the top (a pending station move is done before any lowering). A stall stops both
axes until the master writes ``fault_reset``.

The drive has a comm-loss timeout of its own, as the temperature controller has: armed by the
first ``heartbeat`` write, when the heartbeat has not changed for ``comm_timeout_s`` (0 disables
it) the drive sets ``comm_lost`` and withdraws by itself: its z target becomes the top, at its
retract speed, and its station target the station it is at (or travelling to). While comm is lost
it refuses target writes (a readback shows the value it kept) unless the heartbeat is fresh
again; a fresh heartbeat clears ``comm_lost``, and the master's targets count from its next write.
"""

from __future__ import annotations

import logging

from ._banks import RegisterBank
from ._commwatch import HeartbeatWatch

log = logging.getLogger(__name__)

#: Within this of the top the holder counts as raised; within this of the target, in position.
Z_TOL_MM = 0.05
MAX_STATION = 15


class HolderDrive:
    def __init__(
        self,
        bank: RegisterBank,
        *,
        start_station: int,
        z_max_mm: float,
        speed_mm_s: float,
        station_travel_s: float,
        comm_timeout_s: float | None = None,
    ) -> None:
        self.bank = bank
        self.z_max_mm = z_max_mm
        self.station_travel_s = station_travel_s
        self.station = start_station
        self.z_mm = 0.0
        self.stall = False
        #: Station being travelled to, with the time left; None when the station axis is still.
        self.travel_to: int | None = None
        self._travel_left_s = 0.0
        #: The speed the drive withdraws at by itself when comm is lost.
        self.retract_speed_mm_s = speed_mm_s
        self.comm_lost = False
        bank.set("station_target", start_station)
        bank.set("z_target_mm", 0.0)
        bank.set("z_speed_mm_s", speed_mm_s)
        bank.set("comm_timeout_s", comm_timeout_s or 0.0)
        self._watch = HeartbeatWatch(bank)
        for target in ("station_target", "z_target_mm", "z_speed_mm_s"):
            bank.hook_write(target, self._on_target)
        self._publish(moving=False)

    def _on_target(self, old: int, written: int) -> int:
        if self.comm_lost and not self._watch.fresh_now():
            return old  # comm lost, heartbeat still stale: the drive keeps withdrawing
        return written

    def _watch_comm(self, dt_s: float) -> None:
        fresh = self._watch.step(dt_s)
        if not fresh and not self.comm_lost:
            self.comm_lost = True
            log.warning(
                "holder: heartbeat unchanged for %.1f s: withdrawing by itself (comm_lost)",
                self._watch.timeout_s,
            )
            bank = self.bank
            bank.set("z_target_mm", 0.0)
            bank.set("z_speed_mm_s", self.retract_speed_mm_s)
            at = self.travel_to if self.travel_to is not None else self.station
            bank.set("station_target", at)
        elif fresh and self.comm_lost:
            self.comm_lost = False
            log.info("holder: comm_lost cleared by a fresh heartbeat")

    @property
    def heartbeat_age_s(self) -> float:
        """How long the master's heartbeat has been unchanged (the comm-loss timeout's clock)."""
        return self._watch.age_s

    @property
    def at_top(self) -> bool:
        return self.z_mm <= Z_TOL_MM

    @property
    def over_station(self) -> int | None:
        """The station the holder is above, None while the station axis travels."""
        return None if self.travel_to is not None else self.station

    def step(self, dt_s: float, stall_fault: bool) -> None:
        bank = self.bank
        self._watch_comm(dt_s)
        if bank.get_raw("fault_reset"):
            bank.set("fault_reset", 0)
            if self.stall and not stall_fault:
                self.stall = False
                log.info("holder: stall reset")
        if stall_fault and not self.stall:
            self.stall = True
            log.warning("holder: hoist stalled; motion stopped until fault_reset")
        station_target = min(max(int(bank.get("station_target")), 0), MAX_STATION)
        z_target_mm = min(max(float(bank.get("z_target_mm")), 0.0), self.z_max_mm)
        speed_mm_s = max(float(bank.get("z_speed_mm_s")), 0.0)
        if not self.stall:
            if self.travel_to is not None:
                self._travel_left_s -= dt_s
                if self._travel_left_s <= 0:
                    self.station = self.travel_to
                    self.travel_to = None
            elif station_target != self.station and self.at_top:
                self.travel_to = station_target
                self._travel_left_s = self.station_travel_s
            if self.travel_to is None:
                step_mm = speed_mm_s * dt_s
                delta_mm = z_target_mm - self.z_mm
                self.z_mm = (
                    z_target_mm
                    if abs(delta_mm) <= step_mm
                    else self.z_mm + step_mm * (1 if delta_mm > 0 else -1)
                )
        z_moving = abs(z_target_mm - self.z_mm) > Z_TOL_MM and speed_mm_s > 0
        moving = not self.stall and (self.travel_to is not None or z_moving)
        self._publish(moving=moving, station_target=station_target, z_target_mm=z_target_mm)

    def _publish(
        self, *, moving: bool, station_target: int | None = None, z_target_mm: float = 0.0
    ) -> None:
        bank = self.bank
        bank.set("station", self.station)
        bank.set("z_mm", self.z_mm)
        bank.set("moving", moving)
        bank.set("stall", self.stall)
        bank.set("comm_lost", self.comm_lost)
        bank.set("limit_top", self.z_mm <= Z_TOL_MM)
        bank.set("limit_bottom", self.z_mm >= self.z_max_mm - Z_TOL_MM)
        bank.set(
            "in_position",
            not moving
            and not self.stall
            and (station_target is None or station_target == self.station)
            and abs(self.z_mm - z_target_mm) <= Z_TOL_MM,
        )

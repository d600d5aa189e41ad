"""What the controller shows: status, readiness, counters."""

from __future__ import annotations

from typing import Any

from booth_ctl.control._ctl_base import (
    READY_NEEDS,
    ControllerBase,
)
from booth_ctl.control._events import CommandRefused, Event
from booth_ctl.control._interlocks import (
    unmet,
)


class StatusViews(ControllerBase):
    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "ready": self.ready,
            "job": self._job_summary(self._seq) if self._seq is not None else None,
            "alarms": self._alarms.as_list(),
            "interlocks": dict(self._perm),
        }

    @property
    def ready(self) -> bool:
        return self.state == "idle" and not self._tripped and not unmet(self._perm, READY_NEEDS)

    @property
    def tripped(self) -> bool:
        return self._tripped

    def counters(self) -> dict[str, Any]:
        return {"vessel_dips": dict(self.vessel_dips), "flux_dips": self.flux_dips}

    def restore_counters(self, vessel_dips: dict[str, int], flux_dips: int) -> None:
        """Counts since the last refresh, as the records kept them across restarts."""
        for vessel, count in vessel_dips.items():
            if vessel in self.vessel_dips:
                self.vessel_dips[vessel] = int(count)
        self.flux_dips = int(flux_dips)

    def refreshed(self, what: str) -> dict[str, Any]:
        """The solder of a vessel, or the flux (``"flux"``), was refreshed: its count restarts.

        A ``refreshed`` event puts it on record (the counts are rebuilt from the events at
        start), and the counter's warning, if standing, clears now. Nothing moves or heats.
        """
        if what == "flux":
            before, alarm_id, code = self.flux_dips, "flux_dips", "flux_dips"
            self.flux_dips = 0
        elif what in self.vessel_dips:
            before, alarm_id, code = self.vessel_dips[what], f"vessel_dips.{what}", "vessel_dips"
            self.vessel_dips[what] = 0
        else:
            known = ", ".join(["flux", *sorted(self.vessel_dips)])
            raise CommandRefused(
                "bad_request", f"no vessel {what!r}; known: {known}", {"known": known.split(", ")}
            )
        self._pending.append(Event("refreshed", {"what": what, "dips_before": before}))
        self._alarms.condition(
            alarm_id, False, code, "warning", "", since=self._stamp(), events=self._pending
        )
        return {"what": what, "dips_before": before}

"""Alarms: set/clear, latched/acknowledged, each change reported as an event.

A condition alarm clears by itself when its condition goes away. A latched alarm (every trip)
stays until the ``clear`` command, which needs its cause gone and the alarm acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from booth_ctl.control._events import Event

Severity = Literal["critical", "alarm", "warning"]


@dataclass(slots=True)
class Alarm:
    id: str
    code: str
    severity: Severity
    text: str
    since: float
    latched: bool
    acked: bool = False
    #: Whether the cause is present now (a latched alarm outlives its cause).
    active: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "severity": self.severity,
            "text": self.text,
            "since": self.since,
            "acked": self.acked,
        }


class Alarms:
    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}
        self._view: list[dict[str, Any]] | None = []

    def __contains__(self, alarm_id: str) -> bool:
        return alarm_id in self._alarms

    def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    def condition(
        self,
        alarm_id: str,
        active: bool,
        code: str,
        severity: Severity,
        text: str,
        *,
        since: float,
        events: list[Event],
    ) -> None:
        """A self-clearing alarm following ``active``; cheap when nothing changes."""
        a = self._alarms.get(alarm_id)
        if active:
            if a is None:
                self._set(Alarm(alarm_id, code, severity, text, since, latched=False), events)
            else:
                a.active = True
        elif a is not None:
            a.active = False
            if not a.latched:
                self._remove(alarm_id, events)

    def latch(self, alarm_id: str, code: str, text: str, since: float, events: list[Event]) -> None:
        """A critical alarm that stays until cleared (a trip)."""
        a = self._alarms.get(alarm_id)
        if a is None:
            self._set(Alarm(alarm_id, code, "critical", text, since, latched=True), events)
        else:
            a.active = True
            if not a.latched:
                a.latched = True
                a.severity = "critical"
                a.acked = False
                self._view = None

    def set_active(self, alarm_id: str, active: bool) -> None:
        a = self._alarms.get(alarm_id)
        if a is not None:
            a.active = active

    def ack(self, alarm_id: str | None) -> list[str]:
        """Acknowledge one alarm or all; returns the ids newly acknowledged. KeyError if unknown."""
        if alarm_id is not None and alarm_id not in self._alarms:
            raise KeyError(alarm_id)
        targets = [self._alarms[alarm_id]] if alarm_id is not None else list(self._alarms.values())
        done = [a.id for a in targets if not a.acked]
        for a in targets:
            a.acked = True
        if done:
            self._view = None
        return done

    def blocking_clear(self) -> list[str]:
        """Latched alarms whose cause is still present or that nobody acknowledged."""
        return [
            f"{a.id} ({'active' if a.active else 'not acknowledged'})"
            for a in self._alarms.values()
            if a.latched and (a.active or not a.acked)
        ]

    def clear_latched(self, events: list[Event]) -> None:
        for a in [a for a in self._alarms.values() if a.latched and not a.active]:
            self._remove(a.id, events)

    def any_latched(self) -> bool:
        return any(a.latched for a in self._alarms.values())

    def any_of(self, *severities: Severity, unacked: bool = False) -> bool:
        return any(
            a.severity in severities and (not unacked or not a.acked) for a in self._alarms.values()
        )

    def as_list(self) -> list[dict[str, Any]]:
        if self._view is None:
            self._view = [a.as_dict() for a in self._alarms.values()]
        return [dict(d) for d in self._view]

    def _set(self, a: Alarm, events: list[Event]) -> None:
        self._alarms[a.id] = a
        self._view = None
        events.append(
            Event(
                "alarm_set",
                {"id": a.id, "code": a.code, "severity": a.severity, "text": a.text},
            )
        )

    def _remove(self, alarm_id: str, events: list[Event]) -> None:
        a = self._alarms.pop(alarm_id)
        self._view = None
        events.append(Event("alarm_cleared", {"id": a.id, "code": a.code}))

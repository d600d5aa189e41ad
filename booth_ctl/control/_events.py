"""What the controller reports: events (CONTRACT section 3) and the result of one scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from booth_ctl.codes import CommandRefused

__all__ = ["CommandRefused", "Event", "ScanOutput"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event; the runtime adds ``seq`` and ``ts`` when it stores it."""

    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class ScanOutput:
    #: Desired value of every writable point the controller drives, ``"<device>.<point>"``.
    outputs: dict[str, float | bool]
    events: list[Event]
    #: Command points to pulse (write 1 once) after this scan, e.g. ``"holder.fault_reset"``.
    pulses: list[str] = field(default_factory=list)

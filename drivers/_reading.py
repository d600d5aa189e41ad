"""A value read from a device, with when it was read and whether it can be trusted."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.Enum):
    """How far a reading can be trusted. Only GOOD may ever satisfy a permissive."""

    GOOD = "good"
    #: The last good value is older than the device's staleness bound.
    STALE = "stale"
    #: The device answered, but the answer is unusable (exception reply, garbled, sensor fault).
    BAD = "bad"
    #: The device did not answer at all (timeout, link down, never connected).
    NO_COMM = "no_comm"


@dataclass(frozen=True, slots=True)
class Reading:
    """One input of the process image.

    ``ts`` is ``time.monotonic()`` when the value was received; ``value`` is in engineering units
    (bool for bits). A reading that is not GOOD keeps the last value seen, for display only.
    """

    value: float | bool | None
    ts: float
    quality: Quality = Quality.GOOD

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD and self.value is not None

    def age_s(self, now: float) -> float:
        return now - self.ts

    def fresh(self, now: float, max_age_s: float) -> bool:
        """GOOD and no older than ``max_age_s``: the only kind of reading a permissive accepts."""
        return self.good and (now - self.ts) <= max_age_s

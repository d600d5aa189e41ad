"""Per-device communication health: log when it goes bad and when it comes back, not every poll."""

from __future__ import annotations

import logging
import time

from ._errors import DeviceError
from ._reading import Quality, Reading

log = logging.getLogger("drivers")

#: Backoff between attempts at a device that does not answer: first after the minimum, doubling up
#: to the cap. It keeps a dead unit from eating the time of the live ones on a shared line.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0


class Health:
    """One episode of trouble is logged once when it starts (or changes kind) and once when over."""

    def __init__(self, device: str) -> None:
        self.device = device
        #: Kind of the current trouble (the error's class name), or None while healthy.
        self.fault: str | None = None
        self.since_s = 0.0
        self.failures = 0
        self.retry_at_s = 0.0
        self._backoff_s = BACKOFF_MIN_S

    @property
    def ok(self) -> bool:
        return self.fault is None

    def succeeded(self) -> None:
        self._backoff_s = BACKOFF_MIN_S
        self.retry_at_s = 0.0
        if self.fault is not None:
            log.warning(
                "%s: communication restored after %.1f s",
                self.device,
                time.monotonic() - self.since_s,
            )
            self.fault = None

    def failed(self, exc: DeviceError, *, backoff: bool = True) -> None:
        self.failures += 1
        kind = type(exc).__name__
        if self.fault != kind:
            if self.fault is None:
                self.since_s = time.monotonic()
            log.error("%s", exc)
            self.fault = kind
        if backoff:
            self.retry_at_s = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)

    def due(self, now_s: float) -> bool:
        """Whether the next attempt may go out now (backoff after a failure)."""
        return now_s >= self.retry_at_s


def aged(reading: Reading, now_s: float, stale_s: float) -> Reading:
    """A GOOD reading older than the device's bound is STALE; a failed one keeps its quality.

    A failed read stays NO_COMM / BAD however old, so that why a value is unusable stays visible.
    """
    if reading.quality is Quality.GOOD and now_s - reading.ts > stale_s:
        return Reading(reading.value, reading.ts, Quality.STALE)
    return reading

"""Pollers: one task per device fills the process image, paced at full or rest rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from booth_ctl.runtime._histograms import PollTimes
from booth_ctl.runtime._ticker import Clock, SleepClock
from booth_ctl.runtime._writer import honour_cancel
from drivers import Device, Quality, Reading

log = logging.getLogger("booth_ctl.runtime")

#: A device not heard from this long after start is reported down (before that: still coming up).
STARTUP_GRACE_S = 3.0


class PollPacer:
    """Paces one device's poller on a grid of its own: ``fast_hz`` while ``active`` is set, else
    ``rest_hz``. Setting ``active`` ends a rest-rate wait at once, so that a job's first scans do
    not wait out a slow period. The waits end on ``clock`` (the scan's ticker in the runtime)."""

    def __init__(
        self,
        fast_hz: float,
        rest_hz: float,
        active: asyncio.Event,
        offset_s: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.fast_period_s = 1.0 / fast_hz
        self.rest_period_s = 1.0 / rest_hz
        self._active = active
        self._next = time.monotonic() + offset_s
        self._clock = clock if clock is not None else SleepClock()

    async def first(self) -> None:
        """Until the first poll (the stagger offset)."""
        await self._clock.until(self._next)

    async def wait(self) -> None:
        """Until the next poll is due."""
        resting = not self._active.is_set() and self.rest_period_s > self.fast_period_s
        self._next += self.rest_period_s if resting else self.fast_period_s
        now = time.monotonic()
        delay = self._next - now
        if delay < 0:
            # Late (a slow device, a busy loop): poll now and keep the grid from there.
            self._next = now
            return
        if not resting:
            await self._clock.until(self._next)
            return
        if await self._clock.until(self._next, wake=self._active):
            self._next = time.monotonic()  # woken by activity: poll now, then at full rate


class DeviceHealth:
    """Logs each device's loss and return of communication once per episode."""

    def __init__(self) -> None:
        self._down: set[str] = set()
        self._seen: set[str] = set()
        self.started_s = time.monotonic()

    def update(self, name: str, readings: Mapping[str, Reading]) -> None:
        bad = any(r.quality is Quality.NO_COMM for r in readings.values())
        if bad and name not in self._seen and time.monotonic() - self.started_s < STARTUP_GRACE_S:
            return  # not heard from yet: a first line or connect takes a moment
        self._seen.add(name)
        if bad and name not in self._down:
            self._down.add(name)
            log.error("device %s: no communication", name)
        elif not bad and name in self._down:
            self._down.discard(name)
            log.warning("device %s: communication restored", name)


async def poll(
    name: str,
    dev: Device,
    signals: dict[str, Reading],
    *,
    health: DeviceHealth,
    pacer: PollPacer,
    times: PollTimes | None = None,
) -> None:
    """Polls ``dev`` forever into ``signals`` (keys ``name.point``); ``times`` gets each
    poll's duration."""
    prefix = f"{name}."
    await pacer.first()
    while True:
        start_s = time.monotonic()
        readings = await dev.poll()
        honour_cancel()
        if times is not None:
            times.record(name, time.monotonic() - start_s)
        for point, reading in readings.items():
            signals[prefix + point] = reading
        health.update(name, readings)
        await pacer.wait()

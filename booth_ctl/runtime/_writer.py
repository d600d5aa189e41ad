"""The output writer: one task per Modbus device sends what the controller wants of it.

Each point is written on its own: a refused or failed write leaves that point undelivered and is
retried, it never stops the writes after it. Every ``REASSERT_PERIOD_S`` the device is asked
what it holds (a block read-back): a point it no longer shows at its wanted value (the device
reset, an output changed by hand) is written again, the same as a changed one. Points whose
wanted value is the safe one (heater run off, contactor open, holder to the top) go first, so
that a refusal elsewhere cannot delay them. A device with an undelivered point is reported
(``undelivered``): its heartbeats stop, so its own watchdog or comm-loss timeout takes it safe,
and the controller raises an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from drivers import Device, DeviceError

log = logging.getLogger("booth_ctl.runtime")

#: Every desired output is checked this often, even unchanged (a device may have reset): read back
#: from the device, and written again where it differs.
REASSERT_PERIOD_S = 2.0
#: After a failed write, wait this long before the writer tries that device's failed points again.
WRITE_RETRY_S = 0.2
#: Points written by the runtime itself, never by the controller's outputs.
RUNTIME_POINTS = frozenset({"watchdog_refresh", "heartbeat", "watchdog_clear", "fault_reset"})


def honour_cancel() -> None:
    """Re-raise a cancellation that a library swallowed.

    On Python 3.11 ``asyncio.wait_for`` (which pymodbus awaits) returns the reply instead of
    raising when a cancel arrives as the reply does; the task's cancel request is still counted,
    so a loop that checks it after each device call stops as asked instead of running forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class DeviceOutputs:
    """What the controller wants of one device, and what was last written to it."""

    desired: dict[str, float | bool] = field(default_factory=dict)
    written: dict[str, float | bool] = field(default_factory=dict)
    #: The safe value of each point the controller declares one for (written first).
    safe: dict[str, float | bool] = field(default_factory=dict)
    #: Points whose last write failed (refused, timed out): not delivered until one succeeds.
    failed: set[str] = field(default_factory=set)
    #: Command points to write once (a drive's fault reset), in the order asked.
    pulses: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def order(self, todo: Mapping[str, float | bool]) -> list[str]:
        """Safe-direction writes first, then the rest, each group in the controller's order."""
        first = [p for p, v in todo.items() if p in self.safe and self.safe[p] == v]
        return first + [p for p in todo if p not in first]


class OutputWriter:
    """The desired outputs of every Modbus device and the tasks that deliver them."""

    def __init__(self, devices: list[str], safe: Mapping[str, float | bool]) -> None:
        self.slots: dict[str, DeviceOutputs] = {name: DeviceOutputs() for name in devices}
        #: Each output key's slot and point (``None``: not written by this writer), learned once:
        #: the scan dispatches the same keys 100 times a second.
        self._routes: dict[str, tuple[DeviceOutputs, str] | None] = {}
        #: ``undelivered()``, kept until a point's failed set changes (the scan asks every time).
        self._undelivered: frozenset[str] | None = None
        for key, value in safe.items():
            dev, _, point = key.partition(".")
            if dev in self.slots:
                self.slots[dev].safe[point] = value

    def _route(self, key: str) -> tuple[DeviceOutputs, str] | None:
        dev, _, point = key.partition(".")
        slot = self.slots.get(dev)
        route = None if slot is None or point in RUNTIME_POINTS else (slot, point)
        self._routes[key] = route
        return route

    def dispatch(self, outputs: Mapping[str, float | bool]) -> None:
        routes = self._routes
        for key, value in outputs.items():
            route = routes[key] if key in routes else self._route(key)
            if route is None:
                continue
            slot, point = route
            if slot.desired.get(point) != value:
                slot.desired[point] = value
                slot.changed.set()

    def dispatch_pulses(self, pulses: list[str]) -> None:
        for key in pulses:
            dev, _, point = key.partition(".")
            slot = self.slots.get(dev)
            if slot is not None and point not in slot.pulses:
                slot.pulses.append(point)
                slot.changed.set()

    def all_written(self) -> bool:
        return all(o.desired == o.written for o in self.slots.values())

    def undelivered(self) -> frozenset[str]:
        """Devices with at least one wanted output whose last write failed."""
        if self._undelivered is None:
            self._undelivered = frozenset(n for n, slot in self.slots.items() if slot.failed)
        return self._undelivered

    def delivering(self, name: str) -> bool:
        slot = self.slots.get(name)
        return slot is None or not slot.failed

    def resend(self, name: str) -> None:
        """Have every output of ``name`` written again (after its watchdog was re-armed)."""
        slot = self.slots[name]
        slot.written.clear()
        slot.changed.set()

    def due(self, name: str, *, also: Collection[str] = ()) -> list[tuple[str, float | bool]]:
        """The writes owed to ``name`` now, safe-direction ones first: every point changed since
        it was last written (or failed), and the points named in ``also`` (a re-assert's)."""
        slot = self.slots[name]
        todo = {p: v for p, v in slot.desired.items() if p in also or slot.written.get(p) != v}
        return [(p, todo[p]) for p in slot.order(todo)]

    def settled(self, name: str) -> dict[str, float | bool]:
        """The points of ``name`` written as now wanted: what a re-assert checks on the device."""
        slot = self.slots[name]
        return {p: v for p, v in slot.desired.items() if p in slot.written and slot.written[p] == v}

    def landed(self, name: str, point: str, value: float | bool) -> None:
        slot = self.slots[name]
        slot.written[point] = value
        if point in slot.failed:
            slot.failed.discard(point)
            self._undelivered = None
            log.warning("writing %s.%s works again", name, point)

    def refused(self, name: str, point: str, value: float | bool, why: object) -> None:
        """The write of one point failed: it stays owed, and the device counts undelivered."""
        slot = self.slots[name]
        slot.written.pop(point, None)
        if point not in slot.failed:
            log.error("writing %s.%s = %r failed: %s", name, point, value, why)
        slot.failed.add(point)
        self._undelivered = None

    def settle(self, name: str) -> None:
        """A point the controller no longer wants is no longer owed."""
        slot = self.slots[name]
        if not slot.failed <= slot.desired.keys():
            slot.failed &= set(slot.desired)
            self._undelivered = None

    async def run(self, name: str, dev: Device) -> None:
        slot = self.slots[name]
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REASSERT_PERIOD_S):
                    await slot.changed.wait()
            slot.changed.clear()
            now = time.monotonic()
            full = now - last_full >= REASSERT_PERIOD_S
            # What changed first: the re-assert's read-back must not delay a safe write.
            any_failed = await self._write(name, dev, self.due(name))
            if full and (also := await self._unconfirmed(name, dev)):
                any_failed |= await self._write(name, dev, self.due(name, also=also))
            self.settle(name)
            any_failed |= await self._write_pulses(name, dev, slot)
            if any_failed:
                await asyncio.sleep(WRITE_RETRY_S)
                slot.changed.set()
                continue
            if full:
                last_full = now

    async def _write(
        self, name: str, dev: Device, owed: list[tuple[str, float | bool]]
    ) -> bool:
        """Writes each point on its own (a refusal must not keep the next one unwritten);
        returns whether any failed."""
        any_failed = False
        for point, value in owed:
            try:
                await dev.write(point, value)
            except DeviceError as exc:
                self.refused(name, point, value, exc)
                any_failed = True
                continue
            finally:
                honour_cancel()
            self.landed(name, point, value)
        return any_failed

    async def _unconfirmed(self, name: str, dev: Device) -> Collection[str]:
        """The re-assert's points: those the device does not show as written. A device that
        cannot be read back gets every point written again, each failure then its own report."""
        settled = self.settled(name)
        if not settled:
            return ()
        try:
            return await dev.unconfirmed(settled)
        except DeviceError:
            return settled.keys()
        finally:
            honour_cancel()

    async def _write_pulses(self, name: str, dev: Device, slot: DeviceOutputs) -> bool:
        failed = False
        while slot.pulses:
            # Sent once; a failed pulse is not repeated blindly: the controller asks again.
            point = slot.pulses.pop(0)
            try:
                await dev.write(point, 1)
            except DeviceError as exc:
                log.error("pulse %s.%s failed: %s", name, point, exc)
                failed = True
            finally:
                honour_cancel()
        return failed

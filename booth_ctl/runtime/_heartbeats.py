"""Heartbeats: each device with a watchdog of its own is refreshed only while the scan is
healthy and the device's outputs are being delivered; otherwise its own layer takes it safe."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from booth_ctl.config._booth import BoothConfig
from booth_ctl.runtime._ticker import Clock, SleepClock
from booth_ctl.runtime._writer import OutputWriter, honour_cancel
from drivers import Device, DeviceError, Reading

log = logging.getLogger("booth_ctl.runtime")

#: Each device's own timeout (the I/O watchdog, the controller's comm-loss timeout) sees this
#: many heartbeats: three may be lost before the device goes safe by itself.
HEARTBEATS_PER_TIMEOUT = 4
#: Device kinds with a timeout of their own that the runtime refreshes.
HEARTBEAT_KINDS = ("remote_io", "temp_controller", "holder_drive")


def heartbeat_devices(cfg: BoothConfig) -> list[str]:
    return [
        n
        for n, d in cfg.devices.items()
        if d.kind in HEARTBEAT_KINDS
        # a controller without a comm-loss timeout has no heartbeat (the I/O watchdog covers it)
        and (d.kind == "remote_io" or d.comm_timeout_s is not None)
    ]


def heartbeat_period_s(cfg: BoothConfig, name: str) -> float:
    """A quarter of the device's own timeout: the I/O watchdog, or the comm-loss timeout of a
    heater controller or the holder drive."""
    dev = cfg.devices[name]
    if dev.kind == "remote_io":
        assert dev.watchdog_ms is not None  # required by the booth config
        timeout_s = dev.watchdog_ms / 1000.0
    else:
        assert dev.comm_timeout_s is not None  # required by the booth config
        timeout_s = dev.comm_timeout_s
    return timeout_s / HEARTBEATS_PER_TIMEOUT


class Heartbeats:
    def __init__(
        self,
        cfg: BoothConfig,
        writer: OutputWriter,
        signals: dict[str, Reading],
        *,
        scan_healthy: Callable[[], bool],
        state: Callable[[], str],
        trip: Callable[[str], None],
    ) -> None:
        self._cfg = cfg
        self._writer = writer
        self._signals = signals
        self._scan_healthy = scan_healthy
        self._state = state
        self._trip = trip
        self._withheld: set[str] = set()
        #: Devices whose last heartbeat tick did not land (withheld, or the write failed): their
        #: own timeout runs on until the next one lands.
        self._failing: set[str] = set()
        self._names = tuple(heartbeat_devices(cfg))

    def unbeaten(self, undelivered: frozenset[str]) -> frozenset[str]:
        """Heartbeated devices that may go safe by themselves any moment: the last heartbeat did
        not land, or their outputs are not delivered (their heartbeats are withheld from the next
        tick on). A device back after a comm loss counts here until a heartbeat has landed again:
        the readiness that a start or a reset needs waits for it, so that the device's own
        timeout cannot bite the moment after (a drive withdrawing a job's first unit)."""
        if not self._failing and not undelivered:
            return frozenset()
        return frozenset(n for n in self._names if n in self._failing or n in undelivered)

    def _may_beat(self, name: str) -> bool:
        if not self._scan_healthy():
            return False  # let the watchdog bite: that is what it is for
        if not self._writer.delivering(name) and not self._gone_safe(name):
            # An output the controller wants (perhaps the safe one) is not landing: the device's
            # own timeout must take over instead of being fed. Once it has (it reports its comm
            # lost), it refuses targets until it sees a heartbeat again: beats resume so that
            # it can come back; the controller has tripped on that report meanwhile.
            if name not in self._withheld:
                log.error("device %s: outputs not delivered, heartbeats withheld", name)
                self._withheld.add(name)
            return False
        if name in self._withheld:
            log.warning("device %s: outputs delivered again, heartbeats resume", name)
            self._withheld.discard(name)
        return True

    async def run(self, name: str, dev: Device, clock: Clock | None = None) -> None:
        """Refreshes one device's own watchdog while allowed (see ``_may_beat``), on a grid of
        its period; the waits end on ``clock`` (the scan's ticker in the runtime: a beat is at
        most one scan period later than its grid point, far inside the device's timeout)."""
        is_io = dev.config.kind == "remote_io"
        point = "watchdog_refresh" if is_io else "heartbeat"
        period_s = heartbeat_period_s(self._cfg, name)
        clock = clock if clock is not None else SleepClock()
        counter = 0
        due_s = time.monotonic()
        while True:
            # On a grid, not a sleep after each beat: the time a write takes does not add up.
            due_s = max(due_s + period_s, time.monotonic())
            await clock.until(due_s)
            if is_io and self._io_tripped(name):
                # A tripped module refuses its outputs (so they count undelivered); re-arming it
                # is what lets them land again.
                self._failing.add(name)
                await self._clear_io_watchdog(name, dev)
                continue
            if not self._may_beat(name):
                self._failing.add(name)
                continue
            counter = (counter + 1) & 0xFFFF
            try:
                await dev.write(point, counter)
            except DeviceError:
                self._failing.add(name)  # the poller reports the device's health per episode
            else:
                self._failing.discard(name)
            finally:
                honour_cancel()

    def _gone_safe(self, name: str) -> bool:
        lost = self._signals.get(f"{name}.comm_lost")
        return lost is not None and lost.good and bool(lost.value)

    def _io_tripped(self, io_name: str) -> bool:
        tripped = self._signals.get(f"{io_name}.watchdog_tripped")
        return tripped is not None and tripped.good and bool(tripped.value)

    async def _clear_io_watchdog(self, io_name: str, dev: Device) -> None:
        """After the module's watchdog forced its outputs safe, re-arm it only from a safe state."""
        if self._state() not in ("stopped", "aborted"):
            self._trip("I/O module watchdog tripped: its outputs were forced safe")
            return
        if not self._scan_healthy():
            return
        # A tripped module holds its outputs safe and refuses writes to them, so the controller's
        # (safe, in these states) outputs cannot land first: clear, then have the writer send
        # every output again.
        try:
            await dev.write("watchdog_clear", 1)
        except DeviceError as exc:
            log.error("re-arming the I/O watchdog failed: %s", exc)
            return
        finally:
            honour_cancel()
        log.warning("I/O module watchdog re-armed")
        self._writer.resend(io_name)

"""The supervisor at run time: one TaskGroup of named tasks around a fixed-period scan.

Tasks: one poller per device (fills the process image; full rate unless the booth is at rest),
the scan (snapshot -> controller -> desired outputs and events; awaits nothing but its tick), one
writer per Modbus device (writes what changed, re-asserts the rest), one heartbeat per device
with a watchdog of its own (the I/O module, the heater controllers, the holder drive: only while
the scan is healthy), the event sink (records, then the MES), telemetry, and the MES link. What
starts a task cancels and awaits it: leaving ``run`` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.control._controller import Controller
from booth_ctl.control._events import Event
from booth_ctl.control._image import Snapshot
from booth_ctl.control._packml import AT_REST
from booth_ctl.runtime._scanstats import ScanStats
from booth_ctl.runtime._sdnotify import SdNotifier
from booth_ctl.runtime._ticker import Ticker
from drivers import Device, DeviceError, DeviceSet, Quality, Reading

log = logging.getLogger("booth_ctl.runtime")

#: Each device's own timeout (the I/O watchdog, the controller's comm-loss timeout) sees this
#: many heartbeats: three may be lost before the device goes safe by itself.
HEARTBEATS_PER_TIMEOUT = 4
#: The scan counts as healthy while its last on-time scan is younger than this many periods.
HEALTHY_SCANS = 5
#: Every desired output is written again this often, even unchanged (a device may have reset).
REASSERT_PERIOD_S = 2.0
#: After a failed write, wait this long before the writer tries that device again.
WRITE_RETRY_S = 0.2
#: On a graceful stop, scans continue this long so the holder can withdraw before outputs freeze.
STOP_GRACE_S = 5.0
#: The GIL is handed between threads at least this often. The default (5 ms) would let the
#: record store's thread keep the GIL for up to 5 ms while the scan's tick waits.
GIL_SWITCH_INTERVAL_S = 0.0005
#: A device not heard from this long after start is reported down (before that: still coming up).
STARTUP_GRACE_S = 3.0
#: Points written by the runtime itself, never by the controller's outputs.
_RUNTIME_POINTS = frozenset({"watchdog_refresh", "heartbeat", "watchdog_clear", "fault_reset"})


def _honour_cancel() -> None:
    """Re-raise a cancellation that a library swallowed.

    On Python 3.11 ``asyncio.wait_for`` (which pymodbus awaits) returns the reply instead of
    raising when a cancel arrives as the reply does; the task's cancel request is still counted,
    so a loop that checks it after each device call stops as asked instead of running forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class EventSink(Protocol):
    """Where scan events go: stored first (an outbox), then published."""

    async def put(self, event: Event) -> None: ...


class StatusSink(Protocol):
    def status_changed(self, status: dict[str, Any]) -> None: ...

    def telemetry(self, data: dict[str, Any]) -> None: ...


@dataclass
class _DeviceOutputs:
    """What the controller wants of one device, and what was last written to it."""

    desired: dict[str, float | bool] = field(default_factory=dict)
    written: dict[str, float | bool] = field(default_factory=dict)
    #: Command points to write once (a drive's fault reset), in the order asked.
    pulses: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class PollPacer:
    """Paces one device's poller on a grid of its own: ``fast_hz`` while ``active`` is set, else
    ``rest_hz``. Setting ``active`` ends a rest-rate wait at once, so that a job's first scans do
    not wait out a slow period."""

    def __init__(
        self, fast_hz: float, rest_hz: float, active: asyncio.Event, offset_s: float = 0.0
    ) -> None:
        self.fast_period_s = 1.0 / fast_hz
        self.rest_period_s = 1.0 / rest_hz
        self._active = active
        self._next = time.monotonic() + offset_s

    async def wait(self) -> None:
        """Until the next poll is due."""
        resting = not self._active.is_set() and self.rest_period_s > self.fast_period_s
        self._next += self.rest_period_s if resting else self.fast_period_s
        now = time.monotonic()
        delay = self._next - now
        if delay < 0:
            # Late (a slow device, a busy loop): poll now and keep the grid from there.
            self._next = now
            delay = 0.0
        if not resting:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._active.wait()
            self._next = time.monotonic()  # woken by activity: poll now, then at full rate


class Supervisor:
    """Owns the devices, the controller and every task; ``await run(stop)`` until ``stop``."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        controller: Controller | None = None,
        events: EventSink | None = None,
        status: StatusSink | None = None,
        extra_tasks: Mapping[str, Callable[[], Coroutine[Any, Any, None]]] | None = None,
    ) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.controller = controller if controller is not None else Controller(loaded)
        self.period_s = self.cfg.scan.period_ms / 1000.0
        self.stats = ScanStats(self.period_s)
        self.signals: dict[str, Reading] = {}
        self._stale_s = {name: dev.stale_s for name, dev in self.cfg.devices.items()}
        self._outputs: dict[str, _DeviceOutputs] = {
            name: _DeviceOutputs() for name, dev in self.cfg.devices.items() if dev.map is not None
        }
        self._events = events
        self._event_q: asyncio.Queue[Event] = asyncio.Queue()
        self._status = status
        self._extra_tasks = dict(extra_tasks or {})
        self._last_good_scan_s = 0.0
        self._last_status: dict[str, Any] | None = None
        self._sd = SdNotifier()
        self._down: set[str] = set()
        self._seen: set[str] = set()
        self._t0 = time.monotonic()
        self.devices: DeviceSet | None = None
        self.started = asyncio.Event()
        #: Set while the booth is not at rest: the pollers run at full rate (see ``at_rest``).
        self._active = asyncio.Event()
        self._active.set()
        self._holder_z_key = f"{self.cfg.device_of_kind('holder_drive')}.z_mm"
        self._holder_up_max_mm = self.cfg.holder.z_travel_mm + 1.0

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        try:
            async with contextlib.AsyncExitStack() as stack:
                self.devices = await stack.enter_async_context(
                    DeviceSet(self.cfg.devices, self.loaded.maps)
                )
                ticker = await stack.enter_async_context(Ticker(self.period_s))
                async with asyncio.TaskGroup() as tg:
                    tasks = []
                    n_dev = len(self.devices.devices)
                    for i, (name, dev) in enumerate(self.devices.devices.items()):
                        # Staggered so that the devices' requests do not all go out on one tick.
                        offset_s = i / n_dev / dev.config.poll_hz
                        tasks.append(
                            tg.create_task(self._poll(name, dev, offset_s), name=f"poll:{name}")
                        )
                        if name in self._outputs:
                            tasks.append(
                                tg.create_task(self._write(name, dev), name=f"write:{name}")
                            )
                    tasks.append(tg.create_task(self._scan_loop(ticker), name="scan"))
                    for name in self._heartbeat_devices():
                        tasks.append(
                            tg.create_task(self._heartbeat(name), name=f"heartbeat:{name}")
                        )
                    if self._status is not None:
                        tasks.append(tg.create_task(self._telemetry(), name="telemetry"))
                    if self._events is not None:
                        tasks.append(tg.create_task(self._drain_events(), name="events"))
                    for tname, factory in self._extra_tasks.items():
                        tasks.append(tg.create_task(factory(), name=tname))
                    self._sd.notify("READY=1")
                    self.started.set()
                    log.info("supervisor of booth %s running", self.cfg.booth_id)
                    await stop.wait()
                    self._sd.notify("STOPPING=1")
                    await self._go_safe_for_stop()
                    for t in tasks:
                        t.cancel()
        finally:
            sys.setswitchinterval(switch_interval)
            self._sd.close()

    async def _go_safe_for_stop(self) -> None:
        """Trip the controller and keep scanning until the holder is up and outputs are written."""
        self.controller.trip("supervisor stopping")
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(self.period_s)
            if self._holder_up() and self._all_written():
                return
        log.error("stopping with the holder not confirmed up after %.0f s", STOP_GRACE_S)

    def _holder_up(self) -> bool:
        z = self.signals.get(self._holder_z_key)
        return z is not None and z.good and float(z.value or 0.0) <= self._holder_up_max_mm

    def _all_written(self) -> bool:
        return all(o.desired == o.written for o in self._outputs.values())

    # ------------------------------------------------------------------ process image

    @property
    def at_rest(self) -> bool:
        """No job, no motion commanded (``AT_REST``) and the holder seen up: the pollers run at
        their devices' ``rest_poll_hz``."""
        return not self._active.is_set()

    def _update_rest(self) -> None:
        resting = self.controller.state in AT_REST and self._holder_up()
        if resting == self.at_rest:
            return
        if resting:
            self._active.clear()
        else:
            self._active.set()
        log.debug("booth %s: polling at %s rates", self.cfg.booth_id, "rest" if resting else "full")

    async def _poll(self, name: str, dev: Device, offset_s: float) -> None:
        prefix = f"{name}."
        pacer = PollPacer(dev.config.poll_hz, dev.config.rest_hz, self._active, offset_s)
        await asyncio.sleep(offset_s)
        while True:
            readings = await dev.poll()
            _honour_cancel()
            for point, reading in readings.items():
                self.signals[prefix + point] = reading
            self._log_device_health(name, readings)
            await pacer.wait()

    def _log_device_health(self, name: str, readings: Mapping[str, Reading]) -> None:
        bad = any(r.quality is Quality.NO_COMM for r in readings.values())
        if bad and name not in self._seen and time.monotonic() - self._t0 < STARTUP_GRACE_S:
            return  # not heard from yet: a first line or connect takes a moment
        self._seen.add(name)
        if bad and name not in self._down:
            self._down.add(name)
            log.error("device %s: no communication", name)
        elif not bad and name in self._down:
            self._down.discard(name)
            log.warning("device %s: communication restored", name)

    def snapshot(self, now: float) -> Snapshot:
        """The process image for the scan: a GOOD reading past its device's bound is STALE."""
        signals: dict[str, Reading] = {}
        for key, reading in self.signals.items():
            if reading.quality is Quality.GOOD:
                dev = key.split(".", 1)[0]
                if now - reading.ts > self._stale_s.get(dev, 0.5):
                    reading = Reading(reading.value, reading.ts, Quality.STALE)  # noqa: PLW2901
            signals[key] = reading
        return Snapshot(now=now, signals=signals, wall=time.time())

    # ------------------------------------------------------------------ scan

    async def _scan_loop(self, ticker: Ticker) -> None:
        skipped_seen = 0
        scan_failing = False
        watchdog_every_s = (self._sd.watchdog_s or 0.0) / 4
        last_wd = 0.0
        while True:
            deadline = await ticker.next()
            start = time.monotonic()
            try:
                out = self.controller.scan(self.snapshot(start))
            except Exception:
                # The controller is pure and must not raise; if it does, latch a trip, hand the
                # writers the safe outputs (they would keep re-sending the last wanted ones) and
                # let the heartbeats lapse so the devices' own layers back it up.
                if not scan_failing:
                    log.exception("scan raised: tripping")
                    scan_failing = True
                self._trip_safely("internal error in the scan")
                self._dispatch_safe_outputs()
                self._active.set()
                self._last_good_scan_s = -1e9
                continue
            if scan_failing:
                log.warning("the scan runs again (the trip stays latched until cleared)")
                scan_failing = False
            self._dispatch_outputs(out.outputs)
            self._dispatch_pulses(out.pulses)
            if self._events is not None:
                for ev in out.events:
                    # Queue order is scan order; the sink stores each event before it publishes.
                    self._event_q.put_nowait(ev)
            self._update_rest()
            if self._status is not None:
                status = self.controller.status()
                if status != self._last_status:
                    self._last_status = status
                    self._status.status_changed(status)
            end = time.monotonic()
            overrun = self.stats.record(start, start - deadline, end - start)
            if ticker.skipped != skipped_seen:
                self.stats.record_skipped(end, ticker.skipped - skipped_seen)
                skipped_seen = ticker.skipped
                overrun = True
            if not overrun:
                self._last_good_scan_s = end
                if watchdog_every_s and end - last_wd >= watchdog_every_s:
                    self._sd.notify("WATCHDOG=1")
                    last_wd = end

    def _trip_safely(self, reason: str) -> None:
        try:
            self.controller.trip(reason)
        except Exception:
            log.exception("trip raised; heartbeats stop so the devices go safe by themselves")
            self._last_good_scan_s = -1e9

    def _dispatch_safe_outputs(self) -> None:
        try:
            self._dispatch_outputs(self.controller.safe_outputs())
        except Exception:
            log.exception("safe outputs could not be computed; the devices' watchdogs take over")

    def _dispatch_outputs(self, outputs: Mapping[str, float | bool]) -> None:
        for key, value in outputs.items():
            dev, _, point = key.partition(".")
            slot = self._outputs.get(dev)
            if slot is None or point in _RUNTIME_POINTS:
                continue
            if slot.desired.get(point) != value:
                slot.desired[point] = value
                slot.changed.set()

    def _dispatch_pulses(self, pulses: list[str]) -> None:
        for key in pulses:
            dev, _, point = key.partition(".")
            slot = self._outputs.get(dev)
            if slot is not None and point not in slot.pulses:
                slot.pulses.append(point)
                slot.changed.set()

    async def _drain_events(self) -> None:
        """Hands events to the sink one by one, in scan order, off the scan's path."""
        assert self._events is not None
        while True:
            ev = await self._event_q.get()
            await self._events.put(ev)

    @property
    def scan_healthy(self) -> bool:
        return time.monotonic() - self._last_good_scan_s <= HEALTHY_SCANS * self.period_s

    # ------------------------------------------------------------------ outputs

    async def _write(self, name: str, dev: Device) -> None:
        slot = self._outputs[name]
        last_full = 0.0
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REASSERT_PERIOD_S):
                    await slot.changed.wait()
            slot.changed.clear()
            now = time.monotonic()
            full = now - last_full >= REASSERT_PERIOD_S
            todo = {p: v for p, v in slot.desired.items() if full or slot.written.get(p) != v}
            try:
                for point, value in todo.items():
                    await dev.write(point, value)
                    _honour_cancel()
                    slot.written[point] = value
                while slot.pulses:
                    # Sent once; a failed pulse is not repeated blindly: the controller asks again.
                    point = slot.pulses.pop(0)
                    await dev.write(point, 1)
                    _honour_cancel()
            except DeviceError as exc:
                slot.written.clear()
                if not failing:
                    log.error("writing %s failed: %s", name, exc)
                    failing = True
                await asyncio.sleep(WRITE_RETRY_S)
                slot.changed.set()
                continue
            if failing:
                log.warning("writing %s works again", name)
                failing = False
            if full:
                last_full = now

    def _heartbeat_devices(self) -> list[str]:
        return [
            n
            for n, d in self.cfg.devices.items()
            if d.kind in ("remote_io", "temp_controller", "holder_drive")
            # a controller without a comm-loss timeout has no heartbeat (the I/O covers it)
            and (d.kind == "remote_io" or d.comm_timeout_s is not None)
        ]

    def heartbeat_period_s(self, name: str) -> float:
        """A quarter of the device's own timeout: the I/O watchdog, or the comm-loss timeout of a
        heater controller or the holder drive."""
        dev = self.cfg.devices[name]
        if dev.kind == "remote_io":
            assert dev.watchdog_ms is not None  # required by the booth config
            timeout_s = dev.watchdog_ms / 1000.0
        else:
            assert dev.comm_timeout_s is not None  # required by the booth config
            timeout_s = dev.comm_timeout_s
        return timeout_s / HEARTBEATS_PER_TIMEOUT

    async def _heartbeat(self, name: str) -> None:
        """Refreshes one device's own watchdog, only while the scan is healthy."""
        assert self.devices is not None
        dev = self.devices.devices[name]
        is_io = dev.config.kind == "remote_io"
        point = "watchdog_refresh" if is_io else "heartbeat"
        period_s = self.heartbeat_period_s(name)
        counter = 0
        while True:
            await asyncio.sleep(period_s)
            if not self.scan_healthy:
                continue  # let the watchdog bite: that is what it is for
            counter = (counter + 1) & 0xFFFF
            try:
                await dev.write(point, counter)
            except DeviceError:
                pass  # the poller reports the device's health once per episode
            finally:
                _honour_cancel()
            if is_io:
                await self._clear_io_watchdog(name)

    async def _clear_io_watchdog(self, io_name: str) -> None:
        """After the module's watchdog forced its outputs safe, re-arm it only from a safe state."""
        assert self.devices is not None
        tripped = self.signals.get(f"{io_name}.watchdog_tripped")
        if tripped is None or not tripped.good or not tripped.value:
            return
        if self.controller.state not in ("stopped", "aborted"):
            self._trip_safely("I/O module watchdog tripped: its outputs were forced safe")
            return
        # A tripped module holds its outputs safe and refuses writes to them, so the controller's
        # (safe, in these states) outputs cannot land first: clear, then have the writer send
        # every output again.
        slot = self._outputs[io_name]
        try:
            await self.devices.devices[io_name].write("watchdog_clear", 1)
        except DeviceError as exc:
            log.error("re-arming the I/O watchdog failed: %s", exc)
            return
        log.warning("I/O module watchdog re-armed")
        slot.written.clear()
        slot.changed.set()

    # ------------------------------------------------------------------ telemetry

    def telemetry(self) -> dict[str, Any]:
        """Readings for the MES, at the configured rate."""
        cfg = self.cfg
        io = cfg.device_of_kind("remote_io")
        holder = cfg.device_of_kind("holder_drive")
        o2 = cfg.device_of_kind("o2_analyzer")

        def val(key: str) -> Any:
            r = self.signals.get(key)
            if r is None or r.value is None:
                return None
            return round(r.value, 2) if isinstance(r.value, float) else r.value

        vessels = {}
        for vname, v in cfg.vessels.items():
            vessels[vname] = {
                "temp_c": val(f"{v.controller}.pv_c"),
                "setpoint_c": val(f"{v.controller}.sv_c"),
                "heater_output_pct": val(f"{v.controller}.output_pct"),
            }
        first = next(iter(vessels.values()))
        return {
            "solder_temp_c": first["temp_c"],
            "solder_setpoint_c": first["setpoint_c"],
            "heater_output_pct": first["heater_output_pct"],
            "vessels": vessels,
            "o2_ppm": val(f"{o2}.ppm"),
            "n2_flow_lpm": val(f"{io}.n2_flow_lpm"),
            "holder_station": val(f"{holder}.station"),
            "holder_z_mm": val(f"{holder}.z_mm"),
            "vacuum_kpa": val(f"{io}.vacuum_kpa"),
            "door_closed": val(f"{io}.door_closed"),
            "estop_ok": val(f"{io}.estop_ok"),
            "flux_level_pct": val(f"{io}.flux_level_pct"),
            "state": self.controller.state,
            "scan": self.stats.figures().as_telemetry(),
        }

    async def _telemetry(self) -> None:
        assert self._status is not None
        while True:
            await asyncio.sleep(self.cfg.telemetry.period_s)
            self._status.telemetry(self.telemetry())

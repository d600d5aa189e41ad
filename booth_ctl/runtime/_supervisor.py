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
from typing import Any, Protocol

from booth_ctl.config._booth import LoadedConfig
from booth_ctl.control._controller import Controller
from booth_ctl.control._events import Event
from booth_ctl.control._image import Snapshot
from booth_ctl.control._packml import AT_REST
from booth_ctl.runtime._heartbeats import (
    HEARTBEATS_PER_TIMEOUT,
    Heartbeats,
    heartbeat_devices,
    heartbeat_period_s,
)
from booth_ctl.runtime._histograms import PollTimes
from booth_ctl.runtime._pollers import STARTUP_GRACE_S, DeviceHealth, PollPacer, poll
from booth_ctl.runtime._scanstats import ScanStats
from booth_ctl.runtime._sdnotify import SdNotifier
from booth_ctl.runtime._ticker import Ticker
from booth_ctl.runtime._writer import REASSERT_PERIOD_S, OutputWriter
from drivers import DeviceSet, Quality, Reading

log = logging.getLogger("booth_ctl.runtime")

#: Re-exported: tests and tools read these from the supervisor.
__all__ = [
    "HEARTBEATS_PER_TIMEOUT",
    "REASSERT_PERIOD_S",
    "EventSink",
    "PollPacer",
    "StatusSink",
    "Supervisor",
]

#: The scan counts as healthy while its last on-time scan is younger than this many periods.
HEALTHY_SCANS = 5
#: On a graceful stop, scans continue this long so the holder can withdraw before outputs freeze.
STOP_GRACE_S = 5.0
#: The GIL is handed between threads at least this often. The default (5 ms) would let the
#: record store's thread keep the GIL for up to 5 ms while the scan's tick waits.
GIL_SWITCH_INTERVAL_S = 0.0005


class EventSink(Protocol):
    """Where scan events go: stored first (an outbox), then published."""

    async def put(self, event: Event) -> None: ...


class StatusSink(Protocol):
    def status_changed(self, status: dict[str, Any]) -> None: ...

    def telemetry(self, data: dict[str, Any]) -> None: ...


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
        ready: asyncio.Event | None = None,
    ) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.controller = controller if controller is not None else Controller(loaded)
        self.period_s = self.cfg.scan.period_ms / 1000.0
        self.stats = ScanStats(self.period_s)
        self.signals: dict[str, Reading] = {}
        self._stale_s = {name: dev.stale_s for name, dev in self.cfg.devices.items()}
        #: Each signal key's staleness bound (its device's ``stale_s``), learned at first sight.
        self._stale_by_key: dict[str, float] = {}
        self.writer = OutputWriter(
            [name for name, dev in self.cfg.devices.items() if dev.map is not None],
            self.controller.safe_values(),
        )
        self._outputs = self.writer.slots
        self._events = events
        self._event_q: asyncio.Queue[Event] = asyncio.Queue()
        self._status = status
        #: Set after the first scan of a complete process image, its status handed to the sink.
        self.ready = ready if ready is not None else asyncio.Event()
        self._extra_tasks = dict(extra_tasks or {})
        self._last_good_scan_s = 0.0
        self._last_status: dict[str, Any] | None = None
        self._sd = SdNotifier()
        self._health = DeviceHealth()
        #: Each device's poll durations, for the metrics endpoint.
        self.poll_times = PollTimes()
        self._heartbeats = Heartbeats(
            self.cfg,
            self.writer,
            self.signals,
            scan_healthy=lambda: self.scan_healthy,
            state=lambda: self.controller.state,
            trip=self._trip_safely,
        )
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
                        pacer = PollPacer(
                            dev.config.poll_hz, dev.config.rest_hz, self._active, offset_s, ticker
                        )
                        poller = poll(
                            name, dev, self.signals, health=self._health, pacer=pacer,
                            times=self.poll_times,
                        )
                        tasks.append(tg.create_task(poller, name=f"poll:{name}"))
                        if name in self._outputs:
                            tasks.append(
                                tg.create_task(self.writer.run(name, dev), name=f"write:{name}")
                            )
                    tasks.append(tg.create_task(self._scan_loop(ticker), name="scan"))
                    for name in heartbeat_devices(self.cfg):
                        hb = self._heartbeats.run(name, self.devices.devices[name], ticker)
                        tasks.append(tg.create_task(hb, name=f"heartbeat:{name}"))
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
        return self.writer.all_written()

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

    def _image_complete(self, now: float) -> bool:
        """Every device has answered once (or the start-up grace is over: a device that never
        answers is then reported as such, not waited for)."""
        if now - self._health.started_s >= STARTUP_GRACE_S:
            return True
        heard = {
            k.split(".", 1)[0] for k, r in self.signals.items() if r.quality is not Quality.NO_COMM
        }
        return heard >= self.cfg.devices.keys()

    def snapshot(self, now: float) -> Snapshot:
        """The process image for the scan: a GOOD reading past its device's bound is STALE."""
        # Every scan: one copy, then only the stale entries replaced (same keys, same size).
        signals, bounds = self.signals.copy(), self._stale_by_key
        for key, reading in signals.items():
            if reading.quality is Quality.GOOD:
                if (bound_s := bounds.get(key)) is None:
                    bound_s = bounds[key] = self._stale_s.get(key.split(".", 1)[0], 0.5)
                if now - reading.ts > bound_s:
                    signals[key] = Reading(reading.value, reading.ts, Quality.STALE)
        undelivered = self.writer.undelivered()
        unbeaten = self._heartbeats.unbeaten(undelivered)
        return Snapshot(now, signals, time.time(), undelivered=undelivered, unbeaten=unbeaten)

    # ------------------------------------------------------------------ scan

    async def _scan_loop(self, ticker: Ticker) -> None:
        skipped_seen = 0
        scan_failing = False
        watchdog_every_s = (self._sd.watchdog_s or 0.0) / 4
        last_wd = 0.0
        while True:
            deadline = await ticker.next()
            start = time.monotonic()
            complete = self.ready.is_set() or self._image_complete(start)
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
            if complete and not self.ready.is_set():
                self.ready.set()
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
        self.writer.dispatch(outputs)

    def _dispatch_pulses(self, pulses: list[str]) -> None:
        self.writer.dispatch_pulses(pulses)

    async def _drain_events(self) -> None:
        """Hands events to the sink one by one, in scan order, off the scan's path."""
        assert self._events is not None
        while True:
            ev = await self._event_q.get()
            await self._events.put(ev)

    @property
    def scan_healthy(self) -> bool:
        return time.monotonic() - self._last_good_scan_s <= HEALTHY_SCANS * self.period_s

    # ------------------------------------------------------------------ heartbeats

    def heartbeat_period_s(self, name: str) -> float:
        return heartbeat_period_s(self.cfg, name)

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

"""The controller coupled to the simulator's pure physics on a virtual clock (no sockets).

Each scan the harness reads the register banks into a snapshot, as the pollers would, calls
``scan``, writes the outputs back as a Modbus master would, and refreshes the heartbeats.

With ``runtime=True`` it also does what the runtime adds around the scan
(booth_ctl.runtime._supervisor):
every output is written again every ``REASSERT_PERIOD_S`` even unchanged (the runtime writes
those its read-back finds changed: the same end), and a tripped I/O
watchdog is re-armed only in ``stopped``/``aborted`` (in any other state it trips the
controller). Outputs go through the runtime's own ``OutputWriter`` (safe-direction points
first, each on its own); ``refuse`` names points (``dev.point``) whose writes the device refuses,
and a device with an undelivered output gets no heartbeats, as in the runtime (which then holds
the booth from ready: ``Snapshot.unbeaten``). ``garbage`` has points answer a raw value of their
own choosing (a sentinel, an implausible number), judged by the drivers' own plausibility rules as
a poll would be; ``beats_lost`` names devices whose heartbeats are lost on the way. ``restart``
replaces the controller as a supervisor (re)start does, and
``dead_tick`` advances the booth with no supervisor at all (a crash: no scans, no writes, no
heartbeats), so the devices' own watchdogs act.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.control._controller import Controller
from booth_ctl.control._image import Snapshot
from booth_ctl.runtime._heartbeats import heartbeat_devices
from booth_ctl.runtime._writer import REASSERT_PERIOD_S, OutputWriter
from drivers import Quality, Reading
from drivers._codec import decode
from drivers._plausible import implausible
from sim_hw._physics import BoothPhysics

CONFIG = Path(__file__).resolve().parents[2] / "config"
#: Points the runtime writes, not the controller.
RUNTIME_POINTS = {"watchdog_refresh", "heartbeat", "watchdog_clear", "fault_reset"}


class SimLoop:
    def __init__(
        self,
        config: str = "booth-sim.toml",
        period_s: float = 0.01,
        path: Path | None = None,
        *,
        runtime: bool = False,
    ) -> None:
        path = path if path is not None else CONFIG / config
        self.phys = BoothPhysics.from_config(path)
        self.loaded: LoadedConfig = load_config(path)
        self.ctl = Controller(self.loaded)
        self.period_s = period_s
        self.t = 0.0
        self.o2_dev = self.loaded.config.device_of_kind("o2_analyzer")
        self._o2_seq = -1
        self._o2: tuple[float, bool, float] = (self.phys.analyzer.reported_ppm, True, 0.0)
        self.writer = self._new_writer()
        #: Points (``dev.point``) whose writes the device refuses, as a device refusing a value.
        self.refuse: set[str] = set()
        #: Points (``dev.point``) answering this raw value instead of their own (a sentinel, an
        #: out-of-range code): the drivers' plausibility decides what the supervisor sees.
        self.garbage: dict[str, int] = {}
        #: Devices whose heartbeat writes are lost (the device never sees them).
        self.beats_lost: set[str] = set()
        self._beat_devs = heartbeat_devices(self.loaded.config)
        self._beat = 0
        self.events: list[Any] = []
        self.last: Any = None
        self.runtime = runtime
        self._since_full_s = 0.0
        self.io_dev = self.loaded.config.device_of_kind("remote_io")

    def snapshot(self) -> Snapshot:
        t, phys = self.t, self.phys
        signals: dict[str, Reading] = {}
        for dev, bank in phys.banks.items():
            q = Quality.NO_COMM if phys.faults.offline(dev) else Quality.GOOD
            for point, value in bank.snapshot().items():
                signals[f"{dev}.{point}"] = Reading(value, t, q)
            signals[f"{dev}.layers_ok"] = Reading(True, t, q)  # the drivers' read-back
        for key, raw in self.garbage.items():
            dev, _, name = key.partition(".")
            point = self.loaded.maps[dev].points[name]
            value = decode(point, raw)
            kind = self.loaded.config.devices[dev].kind
            bad = implausible(kind, name, point, raw, value) is not None
            q = Quality.NO_COMM if phys.faults.offline(dev) else Quality.GOOD
            signals[key] = Reading(value, t, Quality.BAD if bad and q is Quality.GOOD else q)
        cell = phys.analyzer
        silent = "o2_analyzer_silent" in phys.faults or phys.faults.offline(self.o2_dev)
        if cell.report_seq != self._o2_seq and not silent:
            self._o2_seq = cell.report_seq
            self._o2 = (cell.reported_ppm, cell.status == "OK", t)
        ppm, ok, ts = self._o2
        stale_s = self.loaded.config.devices[self.o2_dev].stale_s
        q = Quality.STALE if t - ts > stale_s else Quality.GOOD
        signals[f"{self.o2_dev}.ppm"] = Reading(ppm, ts, q)
        signals[f"{self.o2_dev}.status_ok"] = Reading(ok, ts, q)
        undelivered = self.writer.undelivered()
        # The runtime's heartbeats: a device offline, owed an output or losing its beats has not
        # had one land (it may go safe by itself any moment).
        unbeaten = frozenset(
            d
            for d in self._beat_devs
            if phys.faults.offline(d) or d in undelivered or d in self.beats_lost
        )
        return Snapshot(t, signals, undelivered=undelivered, unbeaten=unbeaten)

    def _new_writer(self) -> OutputWriter:
        devices = [n for n, d in self.loaded.config.devices.items() if d.map is not None]
        return OutputWriter(devices, self.ctl.safe_values())

    def tick(self) -> None:
        out = self.ctl.scan(self.snapshot())
        self.last = out
        self.events.extend(out.events)
        full = False
        if self.runtime:
            self._since_full_s += self.period_s
            if self._since_full_s >= REASSERT_PERIOD_S:
                self._since_full_s, full = 0.0, True
        writer = self.writer
        writer.dispatch(out.outputs)
        for dev in writer.slots:
            if self.phys.faults.offline(dev):
                continue  # the runtime's write would time out: tried again next time
            owed = writer.due(dev, also=writer.slots[dev].desired if full else ())
            for point, value in owed:
                if f"{dev}.{point}" in self.refuse:
                    writer.refused(dev, point, value, "refused by the device")
                    continue
                self.phys.banks[dev].write_point(point, value)
                writer.landed(dev, point, value)
            writer.settle(dev)
        for key in out.pulses:
            dev, _, point = key.partition(".")
            self.phys.banks[dev].write_point(point, 1)
        self._beat = (self._beat + 1) & 0xFFFF
        for dev in self._beat_devs:
            if self.phys.faults.offline(dev) or dev in self.beats_lost:
                continue
            bank = self.phys.banks[dev]
            if dev == self.io_dev:
                if writer.delivering(dev):
                    bank.write_point("watchdog_refresh", self._beat)
            # As the runtime: no beats while an output is owed, unless the device went safe.
            elif writer.delivering(dev) or bank.get("comm_lost"):
                bank.write_point("heartbeat", self._beat)
        if self.runtime:
            self._rearm_io_watchdog()
        self.phys.step(self.period_s)
        self.t += self.period_s

    def _rearm_io_watchdog(self) -> None:
        """The runtime's ``_clear_io_watchdog``: re-arm only from a safe state, else trip."""
        io = self.io_dev
        if self.phys.faults.offline(io) or not self.phys.banks[io].get("watchdog_tripped"):
            return
        if self.ctl.state not in ("stopped", "aborted"):
            self.ctl.trip("I/O module watchdog tripped: its outputs were forced safe")
            return
        self.phys.banks[io].write_point("watchdog_clear", 1)

    def dead_tick(self) -> None:
        """One period of booth time with no supervisor: no scan, no write, no heartbeat."""
        self.phys.step(self.period_s)
        self.t += self.period_s

    def restart(self) -> None:
        """A supervisor (re)start: a new controller, and a runtime that has written nothing."""
        self.ctl = Controller(self.loaded)
        self.writer = self._new_writer()
        self._since_full_s = 0.0
        self.last = None

    def run_until(self, cond: Any, timeout_s: float, what: str) -> None:
        end = self.t + timeout_s
        while not cond():
            if self.t >= end:
                raise AssertionError(
                    f"virtual timeout after {timeout_s} s waiting for {what}: "
                    f"{self.ctl.status()} truth {self.truth()}"
                )
            self.tick()

    def run_for(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.tick()

    def reset_to_idle(self, *, settle_s: float = 0.5, within_s: float = 30.0) -> None:
        """Let the devices report for ``settle_s``, reset, and run until ``idle`` (CONTRACT s.2:
        within 30 s of a reset on a warm booth)."""
        self.run_for(settle_s)
        self.ctl.reset()
        self.run_until(lambda: self.ctl.state == "idle", within_s, f"idle within {within_s} s")

    def truth(self) -> dict[str, Any]:
        return self.phys.state()

"""The controller coupled to the simulator's pure physics on a virtual clock (no sockets).

Each scan the harness reads the register banks into a snapshot, as the pollers would, calls
``scan``, writes the outputs back as a Modbus master would, and refreshes the heartbeats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from booth_ctl._config import LoadedConfig, load_config
from booth_ctl._controller import Controller
from booth_ctl._image import Snapshot
from drivers import Quality, Reading
from sim_hw._physics import BoothPhysics

CONFIG = Path(__file__).resolve().parents[2] / "config"
#: Points the runtime writes, not the controller.
RUNTIME_POINTS = {"watchdog_refresh", "heartbeat", "watchdog_clear", "fault_reset"}


class SimLoop:
    def __init__(
        self, config: str = "booth-sim.toml", period_s: float = 0.01, path: Path | None = None
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
        self._written: dict[str, float | bool] = {}
        self._beat = 0
        self.events: list[Any] = []
        self.last: Any = None

    def snapshot(self) -> Snapshot:
        t, phys = self.t, self.phys
        signals: dict[str, Reading] = {}
        for dev, bank in phys.banks.items():
            q = Quality.NO_COMM if phys.faults.offline(dev) else Quality.GOOD
            for point, value in bank.snapshot().items():
                signals[f"{dev}.{point}"] = Reading(value, t, q)
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
        return Snapshot(t, signals)

    def tick(self) -> None:
        out = self.ctl.scan(self.snapshot())
        self.last = out
        self.events.extend(out.events)
        for key, value in out.outputs.items():
            if self._written.get(key) == value:
                continue
            dev, _, point = key.partition(".")
            if point in RUNTIME_POINTS or self.phys.faults.offline(dev):
                continue
            self.phys.banks[dev].write_point(point, value)
            self._written[key] = value
        for key in out.pulses:
            dev, _, point = key.partition(".")
            self.phys.banks[dev].write_point(point, 1)
        self._beat = (self._beat + 1) & 0xFFFF
        io = self.loaded.config.device_of_kind("remote_io")
        if not self.phys.faults.offline(io):
            self.phys.banks[io].write_point("watchdog_refresh", self._beat)
        for vc in self.loaded.config.vessels.values():
            if not self.phys.faults.offline(vc.controller):
                self.phys.banks[vc.controller].write_point("heartbeat", self._beat)
        self.phys.step(self.period_s)
        self.t += self.period_s

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

    def truth(self) -> dict[str, Any]:
        return self.phys.state()

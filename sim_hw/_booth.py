"""SimBooth: the physics stepped in real time, behind every endpoint the config names.

    async with SimBooth(config_path) as sim:
        sim.bank("io").get("door_closed")
        sim.inject("door_open"); sim.clear()
        sim.state()

It runs in the current event loop: the physics task and the servers start on entry and are all
stopped, closed and unlinked on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from drivers import ConfigError, RtuTransport, SerialTransport, TcpTransport

from ._analyzer import AnalyzerServer, ModbusAnalyzer
from ._banks import RegisterBank
from ._control import ControlServer
from ._faults import FaultError
from ._modbus import ModbusResponder, ModbusRtuServer, ModbusTcpServer, Unit
from ._physics import BoothPhysics
from ._settings import LoadedSim, load_sim_config
from ._wire import WireTiming
from .personalities import Personality, personality_responder
from .personalities._bridge import BankPersonality, Bridge

log = logging.getLogger(__name__)

#: After a stall of the event loop (a debugger, a suspended process) the physics does not try to
#: integrate more than this in one go: the booth "pauses" instead.
MAX_CATCH_UP_S = 1.0


class SimBooth:
    """The simulated booth in this event loop: physics, Modbus servers, analyzer, control socket."""

    def __init__(self, config_path: Path | str, *, control_socket: bool = True) -> None:
        self.config_path = Path(config_path)
        self.loaded: LoadedSim = load_sim_config(self.config_path)
        self.physics = BoothPhysics(self.loaded, epoch_s=time.time())
        #: Devices served by a vendor personality, coupled to the physics by role.
        self.bridges = {
            name: Bridge(model, name, self.physics.banks[name], self.physics.analyzer)
            for name, model in self.loaded.config.sim.personalities.items()
        }
        self._with_control = control_socket
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None
        self._analyzers: list[AnalyzerServer | ModbusAnalyzer] = []
        #: Physics steps taken so far (a test can wait for the next one).
        self.steps = 0

    # -- the public surface

    @property
    def banks(self) -> dict[str, RegisterBank]:
        return self.physics.banks

    def bank(self, device: str) -> RegisterBank:
        return self.physics.banks[device]

    @property
    def control_socket(self) -> Path:
        return self.loaded.control_socket

    def inject(self, name: str, value: Any = None) -> None:
        """Inject a fault (FaultError if the name or value is bad)."""
        self.physics.inject(name, value)

    def clear(self, name: str | None = None) -> None:
        """Clear one fault, or all of them."""
        self.physics.clear(name)

    def state(self) -> dict[str, Any]:
        """The physical truth (``booth-sim state``)."""
        state = self.physics.state()
        io = self.physics.io_device
        if io in self.bridges:
            state["io_watchdog_tripped"] = self.bridges[io].tripped  # the coupler's own watchdog
        return state

    # -- lifetime

    async def __aenter__(self) -> SimBooth:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(et, e, tb)

    async def _start(self, stack: AsyncExitStack) -> None:
        cfg = self.loaded.config
        if self._with_control:
            # First, so that a second simulator on the same config is refused before it
            # touches the first one's links.
            await stack.enter_async_context(ControlServer(self.control_socket, self._control))
        faults = self.physics.faults
        o2_modbus = {
            n
            for n, d in cfg.devices.items()
            if d.kind == "o2_analyzer" and not isinstance(d.transport, SerialTransport)
        }

        def offline(device: str) -> bool:
            # A Modbus analyzer that falls silent does not answer on its line.
            return faults.offline(device) or (
                device in o2_modbus and "o2_analyzer_silent" in faults
            )

        for name in sorted(o2_modbus):
            self._analyzers.append(ModbusAnalyzer(self.banks[name], self.physics.analyzer))
        tcp: dict[tuple[str, int], dict[int, Unit]] = {}
        rtu: dict[str, dict[int, Unit]] = {}
        rtu_transports: dict[str, RtuTransport] = {}
        for name, dev in cfg.devices.items():
            tr = dev.transport
            if isinstance(tr, TcpTransport):
                _add_unit(
                    tcp.setdefault((tr.host, tr.port), {}),
                    tr.unit,
                    Unit(name, self.banks[name]),
                    name,
                )
            elif isinstance(tr, RtuTransport):
                _add_unit(rtu.setdefault(tr.port, {}), tr.unit, Unit(name, self.banks[name]), name)
                # The units of one line agree on its settings (the drivers refuse otherwise).
                rtu_transports.setdefault(tr.port, tr)
            elif isinstance(tr, SerialTransport):
                analyzer = AnalyzerServer(
                    self.loaded.resolve(tr.port),
                    self.physics.analyzer,
                    self._silent_check(name),
                    tr.protocol,
                )
                self._analyzers.append(await stack.enter_async_context(analyzer))
        for (host, port), units in tcp.items():
            await stack.enter_async_context(
                ModbusTcpServer(host, port, self._responder(units, offline, tcp=True))
            )
        for path, units in rtu.items():
            line = rtu_transports[path]
            await stack.enter_async_context(
                ModbusRtuServer(
                    self.loaded.resolve(path),
                    self._responder(units, offline, tcp=False),
                    WireTiming(line.baudrate, line.parity, line.stopbits),
                    turnaround_s=cfg.sim.rtu_turnaround_ms / 1000.0,
                )
            )
        # Records carry wall-clock times: sim time 0 is now, when the physics starts running.
        self.physics.epoch_s = time.time() - self.physics.t_s
        self._task = asyncio.create_task(self._run(), name="booth-sim physics")
        stack.push_async_callback(self._stop_task)
        log.info(
            "simulated booth %s: %d TCP endpoint(s), %d RTU line(s), %d analyzer(s)",
            cfg.booth_id,
            len(tcp),
            len(rtu),
            len(self._analyzers),
        )

    def _silent_check(self, device: str) -> Callable[[], bool]:
        faults = self.physics.faults
        return lambda: faults.offline(device) or "o2_analyzer_silent" in faults

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_failed(self) -> None:
        """Return (raising its error) only if the physics task dies: a simulator whose physics
        stopped must not go on serving frozen registers."""
        if self._task is None:
            raise RuntimeError("the simulator is not running")
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        """Step the physics at a fixed period, by the real time elapsed."""
        try:
            await self._pace()
        except Exception:
            log.exception("the physics failed; the simulator stops")
            raise

    async def _pace(self) -> None:
        period_s = self.loaded.config.sim.step_ms / 1000.0
        last = time.monotonic()
        deadline = last + period_s
        while True:
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for bridge in self.bridges.values():
                bridge.before_step()
            self.physics.step(min(now - last, MAX_CATCH_UP_S))
            for bridge in self.bridges.values():
                bridge.after_step()
            last = now
            for analyzer in self._analyzers:
                analyzer.after_step()
            self.steps += 1
            deadline += period_s
            if deadline < now:
                deadline = now + period_s

    def _responder(
        self, units: dict[int, Unit], offline: Callable[[str], bool], *, tcp: bool
    ) -> ModbusResponder:
        """Generic banks answer by themselves; an endpoint with a vendor device answers through
        the personalities (its generic banks wrapped as such)."""
        if not any(u.device in self.bridges for u in units.values()):
            return ModbusResponder(units, offline, tcp=tcp)
        devices: dict[int, Personality] = {
            uid: self.bridges[u.device].device
            if u.device in self.bridges
            else BankPersonality(u.device, u.bank)
            for uid, u in units.items()
        }
        return personality_responder(devices, offline, tcp=tcp)

    def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        try:
            if cmd == "ping":
                return {"ok": True}
            if cmd == "state":
                return {"ok": True, "state": self.state()}
            if cmd == "fault":
                name = req.get("name")
                if not isinstance(name, str):
                    return {"ok": False, "error": "fault: 'name' must be a fault name"}
                self.inject(name, req.get("value"))
                return {"ok": True, "faults": self.physics.faults.names()}
            if cmd == "clear":
                name = req.get("name")
                if name is not None and not isinstance(name, str):
                    return {"ok": False, "error": "clear: 'name' must be a fault name or null"}
                self.clear(name)
                return {"ok": True, "faults": self.physics.faults.names()}
            if cmd == "flux_lid":
                closed = req.get("closed")
                if not isinstance(closed, bool):
                    return {"ok": False, "error": "flux_lid: 'closed' must be true or false"}
                # The operator opens or closes the lid.
                self.physics.handling.flux_lid_closed = closed
                return {"ok": True, "flux_lid_closed": closed}
        except FaultError as exc:
            return {"ok": False, "error": str(exc)}
        return {
            "ok": False,
            "error": f"unknown command {cmd!r} (state, fault, clear, flux_lid, ping)",
        }


def _add_unit(units: dict[int, Unit], unit_id: int, unit: Unit, name: str) -> None:
    if unit_id in units:
        other = units[unit_id].device
        raise ConfigError(f"devices.{name}: unit {unit_id} is already {other} on that endpoint")
    units[unit_id] = unit

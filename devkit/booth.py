"""A whole simulated booth as processes: a private Mosquitto, ``booth-sim`` and ``boothctl run``.

``BoothStack`` is what the demo, the process-level tests and the benchmarks start: every part a
real process on loopback, driven only through the contract's outside (MQTT, the CLI, the
simulator's control socket). Leaving the ``with`` block stops everything it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from sim_hw import SimNotRunning, request

from ._proc import stop_process
from .broker import Broker
from .config import render_config

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def _bin(name: str) -> str:
    """A console script of this environment (next to the running interpreter)."""
    return str(Path(sys.executable).with_name(name))


class Process:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, *, kill: bool = False) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        stop_process(proc, kill=kill, timeout_s=STOP_TIMEOUT_S)
        return proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


class BoothStack:
    """Broker + simulator + supervisor in ``workdir``; a context manager."""

    def __init__(
        self,
        workdir: Path,
        template: str = "booth-sim.toml",
        overrides: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = render_config(workdir, template, overrides)
        self.data = tomllib.loads(self.config.read_text(encoding="utf-8"))
        self.booth_id: str = self.data["booth_id"]
        self.control_socket = Path(self.data["sim"]["control_socket"])
        self.broker = Broker(workdir / "broker", port=int(self.data["mqtt"]["port"]))
        self.sim = Process(
            "booth-sim", [_bin("booth-sim"), "--config", str(self.config)], workdir / "sim.log"
        )
        self.supervisor = Process(
            "boothctl run",
            [_bin("boothctl"), "run", "--config", str(self.config)],
            workdir / "supervisor.log",
        )

    @property
    def mqtt_host(self) -> str:
        return str(self.data["mqtt"]["host"])

    @property
    def mqtt_port(self) -> int:
        return int(self.data["mqtt"]["port"])

    def __enter__(self) -> BoothStack:
        try:
            self.broker.start()
            self.start_sim()
            self.start_supervisor()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start_sim(self) -> None:
        self.sim.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                request(self.control_socket, {"cmd": "ping"}, timeout_s=1.0)
                return
            except SimNotRunning:
                pass
            if not self.sim.running or time.monotonic() > deadline:
                raise RuntimeError(
                    f"booth-sim did not come up within {START_TIMEOUT_S} s:\n{self.sim.log_tail()}"
                )
            time.sleep(0.05)

    def start_supervisor(self) -> None:
        """Start ``boothctl run``; its readiness is seen on MQTT (``online``), by the caller."""
        self.supervisor.start()

    def stop(self) -> None:
        self.supervisor.stop()
        self.sim.stop()
        self.broker.stop()

    # ------------------------------------------------------------------ the simulator's truth

    def sim_state(self) -> dict[str, Any]:
        reply = request(self.control_socket, {"cmd": "state"})
        state: dict[str, Any] = reply["state"]
        return state

    def fault(self, name: str, value: Any = None) -> None:
        reply = request(self.control_socket, {"cmd": "fault", "name": name, "value": value})
        if not reply.get("ok"):
            raise RuntimeError(f"fault {name}: {json.dumps(reply)}")

    def clear(self, name: str | None = None) -> None:
        reply = request(self.control_socket, {"cmd": "clear", "name": name})
        if not reply.get("ok"):
            raise RuntimeError(f"clear {name}: {json.dumps(reply)}")

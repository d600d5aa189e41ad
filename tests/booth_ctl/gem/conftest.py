"""A simulated booth (broker, booth-sim, boothctl run) with the GEM link on a free port, shared by
the host tests of a module: starting one takes seconds, each test's host connects anew."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.booth import BoothStack
from devkit.config import free_port
from tests._util import wait_until
from tests.booth_ctl.gem._host import WAIT_S, Host


def boothctl(stack: BoothStack, *args: str) -> tuple[int, str]:
    exe = str(Path(sys.executable).with_name("boothctl"))
    proc = subprocess.run(
        [exe, *args, "--config", str(stack.config)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    return proc.returncode, proc.stdout


def mqtt_send(stack: BoothStack, command: str, args: dict[str, Any] | None = None) -> Any:
    code, out = boothctl(stack, "send", command, *(["--json", json.dumps(args)] if args else []))
    assert code in (0, 1), f"boothctl send {command}: exit {code}"
    return json.loads(out)


def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
        except OSError:
            return False
        return True

    wait_until(accepts, timeout_s, f"GEM port {port} listening", interval_s=0.05)


class GemBooth:
    def __init__(self, stack: BoothStack, port: int) -> None:
        self.stack = stack
        self.port = port

    def host(self, **kw: Any) -> Host:
        return Host(self.port, **kw)

    def restart_supervisor(self) -> None:
        """Stop and start ``boothctl run``; back when its GEM port listens (no host connects,
        so whatever is spooled stays for the next host)."""
        self.stack.supervisor.stop()
        self.stack.start_supervisor()
        wait_listening(self.port)

    def ready(self) -> None:
        wait_listening(self.port)
        # Ready when the runtime has a status (state is not empty).
        with self.host() as h:
            h.wait(lambda: h.ask(1, 3, [1]).get()[0] != "", "a first status", WAIT_S * 2)

    @property
    def pid(self) -> int:
        proc = self.stack.supervisor.proc
        assert proc is not None
        return proc.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@pytest.fixture(scope="module")
def gem_booth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GemBooth]:
    port = free_port()

    def overrides(d: dict[str, Any]) -> None:
        d["gem"] = {"port": port, "t3_s": 5.0}

    with BoothStack(tmp_path_factory.mktemp("gem"), overrides=overrides) as stack:
        booth = GemBooth(stack, port)
        booth.ready()
        yield booth

"""The runtime says ready only after a scan of a complete process image, its status handed on.

Before that the command authority answers ``not_ready`` and the link does not say ``online``
(tests/booth_ctl/test_authority.py); here, against the simulated booth, ready must not come
with a status that lists permissives as unmet that are met (the door is closed in the sim).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from booth_ctl.config._booth import load_config
from booth_ctl.runtime._supervisor import STARTUP_GRACE_S, Supervisor
from drivers import Quality
from sim_hw import SimBooth
from tests._util import render_config


class StatusAtReady:
    """The status sink: keeps the last status handed on before the runtime said ready."""

    def __init__(self, ready: asyncio.Event) -> None:
        self.ready = ready
        self.before_ready: list[dict[str, Any]] = []

    def status_changed(self, status: dict[str, Any]) -> None:
        if not self.ready.is_set():
            self.before_ready.append(status)

    def telemetry(self, data: dict[str, Any]) -> None:
        pass


async def test_ready_comes_after_every_device_answered_with_a_true_status(tmp_path: Path) -> None:
    path = render_config(tmp_path)
    loaded = load_config(path)
    ready = asyncio.Event()
    sink = StatusAtReady(ready)
    async with SimBooth(path):
        sup = Supervisor(loaded, status=sink, ready=ready)
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop), name="supervisor")
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            heard = {
                key.split(".", 1)[0]
                for key, r in sup.signals.items()
                if r.quality is not Quality.NO_COMM
            }
            assert heard == set(loaded.config.devices), "ready before every device answered"
            assert sink.before_ready, "ready before any status was handed on"
            first = sink.before_ready[-1]
            assert first["interlocks"]["door_closed"] is True, first["interlocks"]
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


async def test_a_device_that_never_answers_delays_ready_only_by_the_start_up_grace(
    tmp_path: Path,
) -> None:
    path = render_config(tmp_path)
    loaded = load_config(path)
    ready = asyncio.Event()
    async with SimBooth(path) as sim:
        sim.inject("device_offline", "holder")
        sup = Supervisor(loaded, status=StatusAtReady(ready), ready=ready)
        stop = asyncio.Event()
        t0 = time.monotonic()
        task = asyncio.create_task(sup.run(stop), name="supervisor")
        try:
            async with asyncio.timeout(STARTUP_GRACE_S + 5):
                await ready.wait()
            # Not before the grace (the other devices answered long before), and then at once:
            # the booth comes online reporting the silent device, it does not wait for it.
            assert time.monotonic() - t0 >= STARTUP_GRACE_S
            assert all(
                r.quality is Quality.NO_COMM
                for key, r in sup.signals.items()
                if key.startswith("holder.")
            )
        finally:
            sim.clear("device_offline")  # the stop then sees the holder up at once
            stop.set()
            async with asyncio.timeout(15):
                await task

"""The whole booth built of vendor devices (config/booth-sim-vendor.toml): an Omron E5CC on the
RS-485 line and a WAGO 750-352 coupler, served by their personalities, driven through the shipped
maps by the real supervisor. The simulator's truth judges, as in test_runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import load_config
from booth_ctl.runtime._supervisor import Supervisor
from sim_hw import SimBooth
from tests._util import render_config, wait_for

from .test_runtime import IDLE_TIMEOUT_S, JOB_TIMEOUT_S, Running, Sink, _demo

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def vendor_booth(tmp_path: Path) -> AsyncIterator[Running]:
    def faster_telemetry(d: dict[str, Any]) -> None:
        d["telemetry"]["period_s"] = 0.2

    path = render_config(tmp_path, "booth-sim-vendor.toml", overrides=faster_telemetry)
    loaded = load_config(path)
    sink = Sink()
    async with SimBooth(path) as sim:
        sup = Supervisor(loaded, events=sink, status=sink)
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop), name="supervisor")
        try:
            await wait_for(lambda: sup.started.is_set() or task.done(), timeout_s=10, what="start")
            yield Running(sim, sup, sink, loaded, stop, task)
        finally:
            stop.set()
            async with asyncio.timeout(15):
                await task


async def test_vendor_booth_runs_a_unit_and_its_coupler_watchdog_bites(tmp_path: Path) -> None:
    async with vendor_booth(tmp_path) as r:
        e5cc = r.sim.bridges["heater1"].device
        wago = r.sim.bridges["io"].device
        needed = ("door_closed", "exhaust_ok", "io_ok", "holder_ok", "heaters_ok", "layers_ok")

        def permissives_met() -> bool:
            interlocks = r.sup.controller.status()["interlocks"]
            return all(interlocks.get(k) for k in needed)

        await wait_for(permissives_met, timeout_s=10, what=f"permissives {needed}")
        r.sup.controller.reset()
        await wait_for(
            lambda: r.sup.controller.state == "idle", timeout_s=IDLE_TIMEOUT_S, what="idle"
        )
        # Through the maps: the E5CC's communications writing on, its SP and RUN as commanded;
        # the coupler's watchdog time as the config wants it (500 ms = 5 x 100 ms).
        assert e5cc.comm_writing and not e5cc.stopped  # type: ignore[attr-defined]
        assert e5cc.sp_c == pytest.approx(250.0)  # type: ignore[attr-defined]
        assert wago.wd_time == 5 and wago.wd_state == 1  # type: ignore[attr-defined]
        r.sup.controller.start_job("LOT-VENDOR", "demo", _demo(r), 1)
        await wait_for(
            lambda: r.sup.controller.state == "complete",
            timeout_s=JOB_TIMEOUT_S,
            what="state complete",
        )
        truth = r.sim.state()
        assert len(truth["bath_entries"]) == 1
        entry = truth["bath_entries"][0]
        assert entry["o2_ppm"] <= 1000.0 and 240.0 <= entry["solder_temp_c"] <= 260.0
        assert truth["parts_loaded"] == truth["parts_unloaded"] == 1
        assert truth["parts_dropped"] == 0
        assert truth["heater_contactor_closed"]
        # The supervisor goes away: the coupler's own watchdog opens the contactor (the E5CC has
        # no comm-loss timeout: this is the layer that covers it), and keeps suction, N2 and the
        # exhaust on through the wiring (every output raw 0).
        r.stop.set()
        await wait_for(
            lambda: r.sim.state()["io_watchdog_tripped"], timeout_s=5.0, what="watchdog tripped"
        )
        truth = r.sim.state()
        assert not truth["heater_contactor_closed"] and not truth["heater_on"]
        assert not any(wago.do)  # type: ignore[attr-defined]
        assert truth["n2_maintain_on"] and truth["exhaust_ok"]

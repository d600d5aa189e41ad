"""The whole booth built of vendor devices (config/booth-sim-vendor.toml): an Omron E5CC on the
RS-485 line and a WAGO 750-352 coupler, served by their personalities, driven through the shipped
maps by the real supervisor. The simulator's truth judges, as in test_runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._util import wait_for

from .test_runtime import _one_clean_unit, _until_idle, running_booth

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


async def test_vendor_booth_runs_a_unit_and_its_coupler_watchdog_bites(tmp_path: Path) -> None:
    async with running_booth(tmp_path, "booth-sim-vendor.toml") as r:
        e5cc = r.sim.bridges["heater1"].device
        wago = r.sim.bridges["io"].device
        await _until_idle(
            r,
            (
                "door_closed",
                "exhaust_ok",
                "io_ok",
                "holder_ok",
                "heaters_ok",
                "layers_ok",
                "heartbeats_ok",
            ),
        )
        # Through the maps: the E5CC's communications writing on, its SP and RUN as commanded;
        # the coupler's watchdog time as the config wants it (500 ms = 5 x 100 ms).
        assert e5cc.comm_writing and not e5cc.stopped  # type: ignore[attr-defined]
        assert e5cc.sp_c == pytest.approx(250.0)  # type: ignore[attr-defined]
        assert wago.wd_time == 5 and wago.wd_state == 1  # type: ignore[attr-defined]
        truth = await _one_clean_unit(r, "LOT-VENDOR")
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

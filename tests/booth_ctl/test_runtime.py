"""The supervisor's runtime against the simulated booth, over real Modbus TCP/RTU and serial.

Every check of the booth's behaviour reads the simulator's truth, not the supervisor's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from booth_ctl.config._booth import LoadedConfig, load_config
from booth_ctl.config._recipe import load_recipe
from booth_ctl.control._events import Event
from booth_ctl.runtime._supervisor import (
    HEARTBEATS_PER_TIMEOUT,
    REASSERT_PERIOD_S,
    PollPacer,
    Supervisor,
)
from drivers import Quality
from sim_hw import SimBooth
from tests._util import CONFIG_DIR, render_config, wait_for

pytestmark = pytest.mark.hil

IDLE_TIMEOUT_S = 40.0
JOB_TIMEOUT_S = 40.0


@dataclass
class Sink:
    """Collects what the runtime hands to the records and the MES link."""

    events: list[Event] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    telemetries: list[dict[str, Any]] = field(default_factory=list)

    async def put(self, event: Event) -> None:
        self.events.append(event)

    def status_changed(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def telemetry(self, data: dict[str, Any]) -> None:
        self.telemetries.append(data)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@dataclass
class Running:
    sim: SimBooth
    sup: Supervisor
    sink: Sink
    loaded: LoadedConfig
    stop: asyncio.Event
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_booth(
    tmp_path: Path, template: str = "booth-sim.toml"
) -> AsyncIterator[Running]:
    """The supervisor on the config `template` against the simulator of the same config."""

    def faster_telemetry(d: dict[str, Any]) -> None:
        d["telemetry"]["period_s"] = 0.2

    path = render_config(tmp_path, template, overrides=faster_telemetry)
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


def _demo(r: Running) -> Any:
    return load_recipe(CONFIG_DIR / "recipes" / "demo.toml", r.loaded.config)


async def _until_idle(
    r: Running,
    needed: tuple[str, ...] = (
        "door_closed",
        "io_ok",
        "holder_ok",
        "heaters_ok",
        "high_limit_ok",
        "heartbeats_ok",
    ),
) -> None:
    def permissives_met() -> bool:
        interlocks = r.sup.controller.status()["interlocks"]
        return all(interlocks.get(k) for k in needed)

    await wait_for(permissives_met, timeout_s=10, what=f"permissives {needed}")
    r.sup.controller.reset()
    await wait_for(
        lambda: r.sup.controller.state == "idle", timeout_s=IDLE_TIMEOUT_S, what="state idle"
    )


async def _job_until(r: Running, lot: str, units: int, truth: str) -> None:
    """From idle, start a job of `units` of the demo recipe; wait for the simulator's truth
    `truth` (a flag of its state) to become true."""
    await _until_idle(r)
    r.sup.controller.start_job(lot, "demo", _demo(r), units)
    await wait_for(lambda: r.sim.state()[truth], timeout_s=JOB_TIMEOUT_S, what=truth)


async def _one_clean_unit(r: Running, lot: str) -> dict[str, Any]:
    """Run a one-unit job of the demo recipe to complete; the simulator's truth must show one
    dip in the O2 and temperature window and the part back out. Returns that truth."""
    r.sup.controller.start_job(lot, "demo", _demo(r), 1)
    await wait_for(
        lambda: r.sup.controller.state == "complete",
        timeout_s=JOB_TIMEOUT_S,
        what="state complete",
    )
    truth = r.sim.state()
    assert len(truth["bath_entries"]) == 1
    entry = truth["bath_entries"][0]
    assert entry["o2_ppm"] <= 1000.0
    assert 240.0 <= entry["solder_temp_c"] <= 260.0
    assert truth["parts_loaded"] == truth["parts_unloaded"] == 1
    assert truth["parts_dropped"] == 0
    return truth


async def test_starts_safe_then_reset_and_a_unit_with_the_physics_agreeing(
    tmp_path: Path,
) -> None:
    async with running_booth(tmp_path) as r:
        await wait_for(lambda: r.sink.statuses, timeout_s=5, what="a first status")
        truth = r.sim.state()
        assert r.sup.controller.state == "stopped"
        assert not truth["heater_contactor_closed"] and not truth["heater_on"]
        assert truth["holder_z_mm"] == pytest.approx(0.0, abs=0.5)

        await _until_idle(r)
        truth = await _one_clean_unit(r, "LOT-RT")
        assert not truth["part_in_bath"]
        entry = truth["bath_entries"][0]

        await wait_for(
            lambda: "job_completed" in r.sink.types(), timeout_s=5, what="job_completed event"
        )
        types = r.sink.types()
        for kind in ("job_started", "unit_started", "dip", "unit_completed", "job_completed"):
            assert kind in types, f"no {kind} event in {types}"
        assert types.index("dip") < types.index("unit_completed") < types.index("job_completed")
        assert types.index("dip") < types.index("dip_withdrawn") < types.index("unit_completed")
        out = next(e.data for e in r.sink.events if e.type == "dip_withdrawn")
        # In for the recipe's dwell, plus the last of the entry and the first of the rise.
        assert 1.0 <= out["immersed_s"] < 2.0, out
        dip = next(e.data for e in r.sink.events if e.type == "dip")
        assert dip["o2_ppm"] == pytest.approx(entry["o2_ppm"], abs=25.0)
        assert dip["solder_temp_c"] == pytest.approx(entry["solder_temp_c"], abs=2.0)

        await wait_for(lambda: r.sink.telemetries, timeout_s=5, what="telemetry")
        tele = r.sink.telemetries[-1]
        assert tele["scan"]["period_ms"] == 10.0
        assert tele["solder_temp_c"] == pytest.approx(truth["solder_temp_c"], abs=3.0)
        assert r.sup.stats.total_scans > 1000


async def _time_for_reads(r: Running, device: str, table: str, n: int, timeout_s: float) -> float:
    """Seconds until the supervisor has made ``n`` more ``table`` reads of ``device``."""
    bank = r.sim.bank(device)
    start, t0 = bank.reads[table], time.monotonic()
    await wait_for(
        lambda: bank.reads[table] >= start + n,
        timeout_s=timeout_s,
        what=f"{n} {table} reads of {device}",
    )
    return time.monotonic() - t0


async def test_at_rest_the_devices_are_polled_slower_and_a_job_brings_full_rate_back(
    tmp_path: Path,
) -> None:
    async with running_booth(tmp_path) as r:
        io = r.loaded.config.devices["io"]
        assert io.rest_hz == 5.0 < io.poll_hz == 50.0
        await _until_idle(r)
        await wait_for(lambda: r.sup.at_rest, timeout_s=2, what="at rest in idle")
        # Discrete inputs are read by the poller alone (no write reads them back). Ten polls take
        # 1.8 s at the rest rate, 0.18 s at full rate; a slow machine only makes them longer.
        assert await _time_for_reads(r, "io", "discrete", 10, timeout_s=10) >= 0.6

        r.sup.controller.start_job("LOT-RATE", "demo", _demo(r), 1)
        await wait_for(lambda: not r.sup.at_rest, timeout_s=1, what="full rate once started")
        # Fifty polls take 1 s at full rate, 10 s at the rest rate.
        assert await _time_for_reads(r, "io", "discrete", 50, timeout_s=10) < 3.0
        assert r.sup.controller.state in ("starting", "execute")

        await wait_for(
            lambda: r.sup.controller.state == "complete",
            timeout_s=JOB_TIMEOUT_S,
            what="state complete",
        )
        await wait_for(lambda: r.sup.at_rest, timeout_s=2, what="at rest again once complete")


async def test_a_rest_rate_wait_ends_at_once_when_the_booth_becomes_active() -> None:
    active = asyncio.Event()
    pacer = PollPacer(fast_hz=50.0, rest_hz=0.01, active=active)  # a 100 s rest period
    waiting = asyncio.create_task(pacer.wait())
    await wait_for(lambda: not waiting.done(), timeout_s=1, what="the pacer waiting")
    active.set()
    await wait_for(waiting.done, timeout_s=5, what="the wait ended by activity")
    # From there on, full rate.
    t0 = time.monotonic()
    await pacer.wait()
    await pacer.wait()
    assert time.monotonic() - t0 < 5.0


async def test_each_device_is_refreshed_at_a_quarter_of_its_own_timeout(tmp_path: Path) -> None:
    async with running_booth(tmp_path) as r:
        devices = r.loaded.config.devices
        io, heater, drive = devices["io"], devices["heater1"], devices["holder"]
        assert io.watchdog_ms is not None and heater.comm_timeout_s is not None
        assert drive.comm_timeout_s is not None
        assert r.sup.heartbeat_period_s("io") == io.watchdog_ms / 1000 / HEARTBEATS_PER_TIMEOUT
        assert r.sup.heartbeat_period_s("heater1") == heater.comm_timeout_s / 4
        assert r.sup.heartbeat_period_s("holder") == drive.comm_timeout_s / 4
        await _until_idle(r)
        io_bank, tc_bank, hd_bank = r.sim.bank("io"), r.sim.bank("heater1"), r.sim.bank("holder")
        io0, tc0 = io_bank.write_seq("watchdog_refresh"), tc_bank.write_seq("heartbeat")
        hd0 = hd_bank.write_seq("heartbeat")
        holding0 = io_bank.reads["holding"]
        await wait_for(
            lambda: tc_bank.write_seq("heartbeat") >= tc0 + 4,
            timeout_s=10,
            what="four heater heartbeats",
        )
        # The I/O watchdog (500 ms) is refreshed four times as often as the controller (2 s),
        # the drive (1 s) twice as often.
        assert io_bank.write_seq("watchdog_refresh") - io0 >= 10
        assert hd_bank.write_seq("heartbeat") - hd0 >= 6
        # A refresh is answered by its echo: nothing reads the watchdog registers back.
        assert io_bank.reads["holding"] == holding0
        truth = r.sim.state()
        assert not truth["io_watchdog_tripped"] and not truth["holder_comm_lost"]


async def test_a_stop_in_the_bath_withdraws_the_part_and_cuts_the_heater(tmp_path: Path) -> None:
    async with running_booth(tmp_path) as r:
        await _job_until(r, "LOT-STOP", 2, "part_in_bath")
        r.stop.set()
        async with asyncio.timeout(15):
            await r.task
        truth = r.sim.state()
        assert not truth["part_in_bath"]
        assert truth["holder_z_mm"] <= 1.0
        assert not truth["heater_contactor_closed"]
        assert truth["parts_dropped"] == 0
        assert "job_aborted" in r.sink.types()


async def test_a_device_that_goes_silent_is_no_comm_then_good_again(tmp_path: Path) -> None:
    async with running_booth(tmp_path) as r:
        await wait_for(
            lambda: r.sup.signals.get("holder.z_mm") is not None
            and r.sup.signals["holder.z_mm"].good,
            timeout_s=10,
            what="holder readings",
        )
        r.sim.inject("device_offline", "holder")
        await wait_for(
            lambda: r.sup.signals["holder.z_mm"].quality is Quality.NO_COMM,
            timeout_s=2.0,
            what="holder.z_mm NO_COMM within 2 s",
        )
        r.sim.clear("device_offline")
        await wait_for(
            lambda: r.sup.signals["holder.z_mm"].good, timeout_s=5.0, what="holder back GOOD"
        )
        # The other devices were read all along.
        assert r.sup.signals["io.door_closed"].good


async def test_a_stalled_hoist_is_reset_through_the_drive_by_a_pulse(tmp_path: Path) -> None:
    async with running_booth(tmp_path) as r:
        await _job_until(r, "LOT-STALL", 1, "holder_moving")
        r.sim.inject("hoist_stall")
        await wait_for(
            lambda: r.sup.controller.state == "aborted", timeout_s=20, what="aborted on stall"
        )
        r.sim.clear("hoist_stall")
        r.sup.controller.ack_alarm(None)
        # The controller asks the drive for a fault reset; the writer sends it as a pulse.
        await wait_for(
            lambda: not r.sim.state()["holder_stall"], timeout_s=10, what="stall reset"
        )

        def cleared() -> bool:
            try:
                r.sup.controller.clear()
            except Exception:
                return False
            return True

        await wait_for(cleared, timeout_s=10, what="clear accepted")
        await wait_for(
            lambda: r.sup.controller.state == "stopped", timeout_s=10, what="stopped after clear"
        )


async def test_a_scan_that_raises_sends_the_safe_outputs_and_lets_the_watchdog_bite(
    tmp_path: Path,
) -> None:
    """The controller must not raise; if it does, the writers get the safe outputs at once
    (not the last wanted ones, heater on) and the heartbeats stop, so the I/O module's own
    watchdog backs the runtime up."""
    async with running_booth(tmp_path) as r:
        await _until_idle(r)
        await wait_for(
            lambda: r.sim.state()["heater_contactor_closed"], timeout_s=10, what="contactor closed"
        )

        def broken_scan(_snapshot: Any) -> Any:
            raise RuntimeError("a bug in the scan")

        r.sup.controller.scan = broken_scan  # type: ignore[method-assign]
        # Well inside the I/O watchdog's 500 ms: the runtime's own safe outputs, not the module's.
        await wait_for(
            lambda: not r.sim.state()["heater_contactor_closed"],
            timeout_s=0.25,
            what="contactor open after the scan raised",
        )
        await wait_for(
            lambda: r.sim.state()["io_watchdog_tripped"],
            timeout_s=3.0,
            what="the I/O watchdog trips once the heartbeats stop",
        )
        truth = r.sim.state()
        assert not truth["heater_on"]
        assert truth["n2_maintain_on"] or truth["n2_purge_on"], "N2 keeps flowing"
        assert r.sup.controller.tripped


async def test_after_an_io_watchdog_trip_the_module_is_re_armed_and_takes_writes_again(
    tmp_path: Path,
) -> None:
    """A tripped module refuses writes to its outputs, so the runtime clears its watchdog first
    (only in ``stopped``) and then sends every output again."""
    async with running_booth(tmp_path) as r:
        await wait_for(
            lambda: r.sim.physics.io.armed, timeout_s=10, what="the module's watchdog armed"
        )
        r.sim.inject("device_offline", "io")
        await wait_for(
            lambda: r.sim.state()["io_watchdog_tripped"], timeout_s=3.0, what="watchdog tripped"
        )
        # The writer's periodic re-assert fails on the silent module: nothing counts as written.
        await wait_for(
            lambda: not r.sup._outputs["io"].written,
            timeout_s=REASSERT_PERIOD_S + 2.0,
            what="the I/O writer failing while the module is away",
        )
        r.sim.clear("device_offline")
        await wait_for(
            lambda: not r.sim.state()["io_watchdog_tripped"],
            timeout_s=5.0,
            what="the supervisor re-arms the module's watchdog",
        )
        assert r.sup.controller.state == "stopped"
        await _until_idle(r)
        await wait_for(
            lambda: r.sim.state()["heater_contactor_closed"],
            timeout_s=5.0,
            what="outputs written again: contactor closed in idle",
        )


async def test_systemd_hears_ready_then_watchdog_pings_only_from_on_time_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Type=notify: READY=1 once running, WATCHDOG=1 while the scan runs on time, none once it
    stops (systemd then kills and restarts the supervisor), STOPPING=1 at a clean stop."""
    import socket

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    heard: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                heard.append(sock.recv(256).decode())
            except BlockingIOError:
                return heard

    try:
        async with running_booth(tmp_path) as r:
            await wait_for(lambda: "READY=1" in drain(), timeout_s=5, what="READY=1")
            await wait_for(
                lambda: drain().count("WATCHDOG=1") >= 3, timeout_s=5, what="watchdog pings"
            )

            def broken_scan(_snapshot: Any) -> Any:
                raise RuntimeError("a bug in the scan")

            r.sup.controller.scan = broken_scan  # type: ignore[method-assign]
            await wait_for(lambda: not r.sup.scan_healthy, timeout_s=1, what="scan unhealthy")
            before = drain().count("WATCHDOG=1")
            # Over the next half second or more (until the I/O module's watchdog bites, which
            # needs 500 ms without heartbeats) systemd must hear nothing: it would restart us.
            await wait_for(
                lambda: r.sim.state()["io_watchdog_tripped"],
                timeout_s=3,
                what="the I/O watchdog trips with the heartbeats stopped",
            )
            assert drain().count("WATCHDOG=1") == before, "pinged while the scan was failing"
        assert "STOPPING=1" in drain()
    finally:
        sock.close()

"""``boothctl device read|write|check|watch`` against the simulated booth (CONTRACT s.2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from booth_ctl.cli import main
from devkit.broker import Broker
from sim_hw import SimBooth
from tests._util import render_config, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


async def boothctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in a thread (it runs its own event loop), beside the sim in this one."""
    capsys.readouterr()
    rc = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
async def sim(tmp_path: Path) -> Any:
    path = render_config(tmp_path)
    async with SimBooth(path, control_socket=False) as booth:
        await wait_for(lambda: booth.steps >= 2, timeout_s=5.0, what="the sim's first steps")
        yield booth, path


async def test_read_prints_every_point_as_the_contract_says(
    sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    booth, path = sim
    rc, out, _err = await boothctl(capsys, "device", "read", "heater1", "--config", str(path))
    body = json.loads(out)
    assert rc == 0 and body["device"] == "heater1"
    for name in ("pv_c", "sv_c", "output_pct", "tc_open", "running"):
        row = body["points"][name]
        assert set(row) == {"value", "raw", "quality", "unit"} and row["quality"] == "good"
    assert body["points"]["pv_c"]["unit"] == "C"
    assert body["points"]["pv_c"]["value"] == pytest.approx(booth.state()["solder_temp_c"], abs=2)
    assert isinstance(body["points"]["tc_open"]["value"], bool)
    # one point only; an unknown point or device is a usage error
    rc, out, _ = await boothctl(
        capsys, "device", "read", "io", "door_closed", "--config", str(path)
    )
    assert rc == 0 and list(json.loads(out)["points"]) == ["door_closed"]
    rc, _, err = await boothctl(capsys, "device", "read", "io", "nope", "--config", str(path))
    assert rc == 2 and "nope" in err
    rc, _, err = await boothctl(capsys, "device", "read", "ghost", "--config", str(path))
    assert rc == 2 and "ghost" in err


async def test_a_sensor_fault_reads_bad_with_its_raw_and_exit_1(
    sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    booth, path = sim
    booth.inject("tc_open")
    rc, out, _ = await boothctl(capsys, "device", "read", "heater1", "--config", str(path))
    body = json.loads(out)
    assert body["points"]["tc_open"]["value"] is True
    pv = body["points"]["pv_c"]
    assert rc == 1 and pv["quality"] == "bad" and pv["value"] is None and pv["raw"] is not None


async def test_offline_device_exits_1_naming_it(
    sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    booth, path = sim
    booth.inject("device_offline", "holder")
    rc, out, err = await boothctl(capsys, "device", "read", "holder", "--config", str(path))
    assert rc == 1 and "holder does not answer" in err
    row = json.loads(out)["points"]["z_mm"]
    assert row["quality"] == "no_comm" and row["value"] is None


async def test_write_with_readback_and_check_then_fix(
    sim: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    booth, path = sim
    cfg = str(path)
    rc, out, _ = await boothctl(
        capsys, "device", "write", "heater1", "sv_c", "255.5", "--config", cfg
    )
    assert rc == 0, out
    assert booth.bank("heater1").get("sv_c") == pytest.approx(255.5)
    rc, _, err = await boothctl(capsys, "device", "write", "heater1", "pv_c", "1", "--config", cfg)
    assert rc == 2 and "read-only" in err
    rc, _, err = await boothctl(
        capsys, "device", "write", "heater1", "sv_c", "9999", "--config", cfg
    )
    assert rc == 1 and "sv_c" in err and "out of range" in err
    # check: the watchdog as the config wants it (the write above set the device up)
    rc, out, _ = await boothctl(capsys, "device", "check", "io", "--config", cfg)
    booth.bank("io").set("watchdog_timeout_ms", 2000)
    rc, out, _ = await boothctl(capsys, "device", "check", "io", "--config", cfg)
    assert rc == 1 and "DIFFERS" in out
    rc, out, _ = await boothctl(capsys, "device", "check", "io", "--fix", "--config", cfg)
    assert rc == 0 and "DIFFERS" not in out
    assert booth.bank("io").get("watchdog_timeout_ms") == 500
    # The generic module keeps substitute values of its own that its map cannot read.
    assert "io: safe values: " in out and "they are NOT read back" in out
    assert "io.heater_contactor: safe value False\n" in out


async def test_watch_prints_raw_and_scaled(sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _booth, path = sim
    rc, out, _ = await boothctl(
        capsys,
        "device",
        "watch",
        "heater1",
        "--count",
        "1",
        "--interval",
        "0",
        "--config",
        str(path),
    )
    assert rc == 0
    pv = next(line for line in out.splitlines() if line.startswith("pv_c"))
    assert " C " in pv and "0x" in pv and pv.endswith("good")


async def test_write_refused_while_a_supervisor_holds_the_booth(
    tmp_path: Path, broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    def on_broker(data: dict[str, Any]) -> None:
        data["mqtt"]["port"] = broker.port

    path = render_config(tmp_path, overrides=on_broker)
    booth_id = "sim-held-" + tmp_path.name[-8:]
    text = path.read_text().replace('booth_id = "', f'booth_id = "{booth_id}', 1)
    path.write_text(text)
    booth_id = next(x.split('"')[1] for x in text.splitlines() if x.startswith("booth_id"))
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(f"booth/{booth_id}/online", b"true", qos=1, retain=True)
        try:
            rc, _, err = await boothctl(
                capsys, "device", "write", "heater1", "sv_c", "250", "--config", str(path)
            )
        finally:
            await client.publish(f"booth/{booth_id}/online", b"", qos=1, retain=True)
    assert rc == 2 and "a supervisor holds booth" in err


async def test_device_tools_on_the_vendor_booth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = render_config(tmp_path, "booth-sim-vendor.toml")
    cfg = str(path)
    async with SimBooth(path, control_socket=False) as booth:
        await wait_for(lambda: booth.steps >= 2, timeout_s=5.0, what="the sim's first steps")
        rc, out, _ = await boothctl(capsys, "device", "read", "heater1", "--config", cfg)
        points = json.loads(out)["points"]
        assert rc == 0, out
        assert points["pv_c"]["value"] == pytest.approx(booth.state()["solder_temp_c"], abs=2)
        assert points["status"]["raw"] is not None and points["running"]["value"] is True
        # read-only: the E5CC's communications writing was not switched on by a read
        assert not booth.bridges["heater1"].device.comm_writing  # type: ignore[attr-defined]
        rc, out, _ = await boothctl(
            capsys, "device", "write", "heater1", "running", "false", "--config", cfg
        )
        assert rc == 0, out
        assert booth.bridges["heater1"].device.stopped  # type: ignore[attr-defined]
        rc, out, _ = await boothctl(capsys, "device", "check", "heater1", "--config", cfg)
        assert rc == 0 and "covered by: io: its watchdog drops heater_contactor" in out
        rc, out, _ = await boothctl(capsys, "device", "check", "io", "--config", cfg)
        assert rc == 1 and "DIFFERS" in out  # the coupler's watchdog time is still 0
        rc, out, _ = await boothctl(capsys, "device", "check", "io", "--fix", "--config", cfg)
        assert rc == 0, out
        assert booth.bridges["io"].device.wd_time == 5  # type: ignore[attr-defined]
        # The 750-352 holds no fall-back values to read: said plainly, with what 0 means.
        assert "io: safe values: on a watchdog trip the module sets every output to 0" in out
        assert "nothing is read back" in out and "750-352 manual" in out
        assert "io.heater_contactor: safe value False (raw 0)" in out
        assert "io.vacuum_valve: safe value True (raw 0, inverted wiring)" in out


async def test_read_the_serial_analyzer(sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _booth, path = sim
    rc, out, _ = await boothctl(capsys, "device", "read", "o2", "--config", str(path))
    body = json.loads(out)
    assert rc == 0 and set(body["points"]) == {"ppm", "status_ok"}
    assert body["points"]["ppm"]["quality"] == "good"

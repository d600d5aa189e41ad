"""The simulator over real protocols: pymodbus masters on TCP and on RTU over a pty."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU

from sim_hw import SimBooth
from tests._util import render_config, wait_for

from .conftest import config_data

pytestmark = pytest.mark.timeout(30)

#: A master's reply timeout in these tests: the simulator answers in well under a millisecond.
TIMEOUT_S = 0.3


def is_pty_link(path: str) -> bool:
    return os.path.islink(path) and os.readlink(path).startswith("/dev/pts/")


def lexists(path: str) -> bool:
    return os.path.lexists(path)


def open_raw(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


async def exchange(path: str, frame: bytes, expect_len: int, timeout_s: float = 0.5) -> bytes:
    """Send raw bytes on the line; what comes back within ``timeout_s`` (up to expect_len)."""
    fd = open_raw(path)
    loop = asyncio.get_running_loop()
    got = bytearray()
    enough = asyncio.Event()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(fd, 256))
        if len(got) >= expect_len:
            enough.set()

    loop.add_reader(fd, readable)
    try:
        os.write(fd, frame)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await enough.wait()
        return bytes(got)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


#: The inter-frame silence a master keeps on the simulated 19200 baud line (3.5 characters,
#: 1.82 ms) with a margin: the simulator loses a frame that starts sooner, as a real unit would.
RTU_SILENCE_S = 0.0025


async def quiet() -> None:
    """Keep the line's inter-frame silence before the next request (Modbus serial 2.5.1.1)."""
    await asyncio.sleep(RTU_SILENCE_S)


def rtu(payload_hex: str) -> bytes:
    payload = bytes.fromhex(payload_hex)
    return payload + FramerRTU.compute_CRC(payload).to_bytes(2, "big")


@asynccontextmanager
async def tcp_client(cfg: dict[str, Any], device: str) -> AsyncIterator[AsyncModbusTcpClient]:
    tr = cfg["devices"][device]["transport"]
    client = AsyncModbusTcpClient(tr["host"], port=tr["port"], timeout=TIMEOUT_S, retries=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


@asynccontextmanager
async def rtu_client(port: str) -> AsyncIterator[AsyncModbusSerialClient]:
    client = AsyncModbusSerialClient(
        port, framer=FramerType.RTU, baudrate=19200, timeout=TIMEOUT_S, retries=0
    )
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


async def test_tcp_master_reads_and_writes_the_io_module(sim: SimBooth, sim_config: Path) -> None:
    cfg = config_data(sim_config)
    async with tcp_client(cfg, "io") as c:
        di = await c.read_discrete_inputs(0, count=8, device_id=1)
        assert not di.isError()
        # door, e-stop, exhaust (the fan is on at power-up), N2 supply, high-limit all healthy
        assert di.bits[:5] == [True] * 5
        assert (await c.write_coil(1, True, device_id=1)).bits[0] is True  # n2_purge
        assert sim.bank("io").get("n2_purge") is True
        s = sim.physics.settings
        expected_lpm = s.n2_purge_lpm + s.n2_maintain_lpm  # maintain is on at power-up

        async def flow_lpm() -> bool:
            r = await c.read_input_registers(1, count=1, device_id=1)
            return r.registers[0] / 10 == pytest.approx(expected_lpm, abs=0.2)

        await wait_for(flow_lpm, timeout_s=2, what=f"N2 flow {expected_lpm} L/min")
        # An address the map does not name, a write to an input: exception 02, as strict devices do.
        bad = await c.read_input_registers(0, count=10, device_id=1)
        assert bad.isError() and bad.exception_code == 2
        bad = await c.write_register(7, 1, device_id=1)
        assert bad.isError() and bad.exception_code == 2
        # A lone TCP device also answers unit 0 and 255 ("the device itself"), not others.
        for unit in (0, 255):
            assert (await c.read_coils(0, count=1, device_id=unit)).bits[0] is False
        with pytest.raises(ModbusIOException):
            await c.read_coils(0, count=1, device_id=7)


async def test_tcp_master_drives_the_holder(sim: SimBooth, sim_config: Path) -> None:
    cfg = config_data(sim_config)
    async with tcp_client(cfg, "holder") as c:
        assert not (await c.write_registers(1, [300, 500], device_id=1)).isError()  # 30 mm, 50 mm/s

        async def at_30() -> bool:
            r = await c.read_input_registers(0, count=3, device_id=1)
            return r.registers[1] == 300 and bool(r.registers[2] & 0x10)  # z_mm, in_position

        await wait_for(at_30, timeout_s=3, what="holder at 30 mm")
        assert sim.state()["holder_z_mm"] == pytest.approx(30.0)


async def test_watchdog_trips_and_clears_over_tcp(sim: SimBooth, sim_config: Path) -> None:
    cfg = config_data(sim_config)
    async with tcp_client(cfg, "io") as c:
        assert not (await c.write_register(1, 200, device_id=1)).isError()  # 200 ms
        assert not (await c.write_coils(0, [True, True, False], device_id=1)).isError()
        assert not (await c.write_register(0, 1, device_id=1)).isError()

        async def tripped() -> bool:
            return bool((await c.read_discrete_inputs(7, count=1, device_id=1)).bits[0])

        await wait_for(tripped, timeout_s=2, what="watchdog trip")
        coils = (await c.read_coils(0, count=4, device_id=1)).bits[:4]
        assert coils == [False, False, True, True]  # contactor open, N2 maintain and exhaust on
        assert sim.state()["io_watchdog_tripped"]
        # A write while tripped is answered with the usual echo, but does not take effect: the
        # very next read shows the safe value (the module refuses it at the write).
        reply = await c.write_coil(0, True, device_id=1)
        assert not reply.isError() and reply.bits[0] is True
        assert (await c.read_coils(0, count=1, device_id=1)).bits[0] is False
        assert not (await c.write_coils(0, [True, True], device_id=1)).isError()
        assert (await c.read_coils(0, count=2, device_id=1)).bits[:2] == [False, False]
        # The clear acts at its write; the command reads back 0 (its echo is still the request).
        reply = await c.write_register(2, 1, device_id=1)
        assert not reply.isError() and reply.registers == [1]
        assert not sim.state()["io_watchdog_tripped"]
        assert (await c.read_holding_registers(2, count=1, device_id=1)).registers == [0]
        assert not (await c.write_coil(0, True, device_id=1)).isError()
        assert (await c.read_coils(0, count=1, device_id=1)).bits[0] is True


async def test_device_offline_silences_a_tcp_endpoint(sim: SimBooth, sim_config: Path) -> None:
    cfg = config_data(sim_config)
    async with tcp_client(cfg, "io") as c:
        assert not (await c.read_coils(0, count=1, device_id=1)).isError()
        sim.inject("device_offline", "io")
        t_sim = sim.physics.t_s
        with pytest.raises(ModbusIOException):
            await c.read_coils(0, count=1, device_id=1)
        assert sim.physics.t_s > t_sim  # the physics goes on meanwhile
    sim.clear("device_offline")
    async with tcp_client(cfg, "io") as c:
        assert not (await c.read_coils(0, count=1, device_id=1)).isError()


def _two_heaters_on_one_line(data: dict[str, Any]) -> None:
    line = data["devices"]["heater1"]["transport"]
    data["devices"]["heater2"] = {
        "kind": "temp_controller",
        "map": data["devices"]["heater1"]["map"],
        "transport": {**line, "unit": 2},
    }
    data["vessels"]["solder2"] = {
        **data["vessels"]["solder1"],
        "controller": "heater2",
        "station": 3,
        "idle_setpoint_c": 230.0,
    }


async def test_rtu_line_serves_two_units_on_one_pty(tmp_path: Path) -> None:
    config = render_config(tmp_path, overrides=_two_heaters_on_one_line)
    port = config_data(config)["devices"]["heater1"]["transport"]["port"]
    async with SimBooth(config) as sim:
        assert is_pty_link(port)
        async with rtu_client(port) as c:
            one = await c.read_holding_registers(0, count=4, device_id=1)
            await quiet()
            two = await c.read_holding_registers(0, count=4, device_id=2)
            assert one.registers[0] == 2500 and two.registers[0] == 2300  # sv_c, 0.1 C
            await quiet()
            assert not (await c.write_register(0, 2400, device_id=2)).isError()
            assert sim.bank("heater2").get("sv_c") == 240.0
            assert sim.bank("heater1").get("sv_c") == 250.0
            await quiet()
            pv = await c.read_input_registers(0, count=3, device_id=1)
            assert pv.registers[0] / 10 == pytest.approx(sim.state()["solder_temp_c"], abs=0.5)
            # Nobody is unit 9 on this line: no answer at all; the line still works after.
            await quiet()
            with pytest.raises(ModbusIOException):
                await c.read_holding_registers(0, count=1, device_id=9)
            # One unit offline: silent, while the other still answers on the same line.
            sim.inject("device_offline", "heater2")
            await quiet()
            with pytest.raises(ModbusIOException):
                await c.read_holding_registers(0, count=1, device_id=2)
            await quiet()
            assert (await c.read_holding_registers(0, count=1, device_id=1)).registers == [2500]
            sim.clear("device_offline")
            await quiet()
            assert (await c.read_holding_registers(0, count=1, device_id=2)).registers == [2400]
            await quiet()
            bad = await c.read_input_registers(5, count=1, device_id=1)
            assert bad.isError() and bad.exception_code == 2
        # Raw frames: a good one is answered byte for byte; a bad CRC is not answered at all.
        await quiet()
        assert await exchange(port, rtu("010300000001"), 7) == rtu("01030209c4")  # 2500
        await quiet()
        assert await exchange(port, rtu("010300000001")[:-1] + b"\x00", 7) == b""
    assert not lexists(port)  # the link goes with the simulator


async def test_a_second_simulator_on_the_same_config_is_refused(
    sim: SimBooth, sim_config: Path
) -> None:
    with pytest.raises(FileExistsError, match="already running"):
        async with SimBooth(sim_config):
            pass
    assert sim.state()["faults"] == []  # the first one is untouched
    port = config_data(sim_config)["devices"]["heater1"]["transport"]["port"]
    assert is_pty_link(port)


async def test_a_physics_failure_is_not_silent(
    sim_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with SimBooth(sim_config) as sim:

            def broken(dt_s: float) -> None:
                raise RuntimeError("boom")

            monkeypatch.setattr(sim.physics, "step", broken)
            async with asyncio.timeout(5):
                await sim.wait_failed()
    assert not lexists(config_data(sim_config)["sim"]["control_socket"])  # still cleaned up

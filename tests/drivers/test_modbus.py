"""Modbus drivers over real TCP and RTU (pty) links, against honest and hostile units."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers import (
    DeviceConfig,
    DeviceDisconnected,
    DeviceError,
    DeviceSet,
    DeviceTimeout,
    ModbusDevice,
    ModbusExceptionReply,
    ProtocolError,
    Quality,
    RegisterMap,
    WriteRefusedError,
    WriteVerifyError,
    open_device,
)
from tests._util import free_port, wait_for

from ._fakes import HOLDER_MAP, IO_MAP, TC_MAP, Bank, HostileTcpServer, PtyRtuServer

pytestmark = pytest.mark.timeout(30)


def tcp_config(port: int, kind: str = "temp_controller", unit: int = 1, **kw: Any) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "kind": kind,
            "map": "unused.toml",
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": port, "unit": unit},
            "timeout_s": 0.05,
            **kw,
        }
    )


def rtu_config(port: Path, unit: int, kind: str = "temp_controller", **kw: Any) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "kind": kind,
            "map": "unused.toml",
            "transport": {"type": "rtu", "port": str(port), "baudrate": 115200, "unit": unit},
            "timeout_s": 0.05,
            **kw,
        }
    )


def tc_bank(pv_raw: int = 2500, status: int = 0b1000) -> Bank:
    bank = Bank()
    bank.tables["input"][0:3] = [pv_raw & 0xFFFF, 456, status]
    bank.tables["holding"][0:4] = [2500, 1, 0, 0]
    return bank


@contextlib.asynccontextmanager
async def tc_device(bank: Bank, **cfg: Any) -> AsyncIterator[ModbusDevice]:
    """The generic temperature controller ``heater1`` (TC_MAP) over TCP, served by `bank`."""
    async with (
        HostileTcpServer({1: bank}) as server,
        open_device("heater1", tcp_config(server.port, **cfg), TC_MAP) as dev,
    ):
        assert isinstance(dev, ModbusDevice)
        yield dev


async def poll_until(dev: Any, point: str, quality: Quality, timeout_s: float = 5.0) -> Any:
    async def check() -> Any:
        r = (await dev.poll())[point]
        return r if r.quality is quality else None

    return await wait_for(check, timeout_s=timeout_s, what=f"{dev.name}.{point} {quality}")


# ---------------------------------------------------------------------- plain pymodbus server


def _sim_device(unit: int) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
        ),
    )


@pytest.fixture
async def pymodbus_server() -> AsyncIterator[ModbusTcpServer]:
    server = ModbusTcpServer([_sim_device(1)], address=("127.0.0.1", free_port()))
    await server.serve_forever(background=True)
    yield server
    await server.shutdown()
    await asyncio.sleep(0)  # one loop turn: the server's closing callbacks run before the loop ends


def _port(server: ModbusTcpServer) -> int:
    src = server.comm_params.source_address
    assert src is not None
    return int(src[1])


async def test_tcp_reads_every_point_and_bit_scaled(pymodbus_server: ModbusTcpServer) -> None:
    # pv -12.5 C exercises the int16 sign; status 0b1000 = running.
    await pymodbus_server.async_setValues(1, 4, 0, [(-125) & 0xFFFF, 456, 0b1000])
    cfg = tcp_config(_port(pymodbus_server))
    async with open_device("heater1", cfg, TC_MAP) as dev:
        before = time.monotonic()
        readings = await dev.poll()
    assert set(readings) == set(TC_MAP.points) | set(TC_MAP.bits)
    assert all(r.quality is Quality.GOOD for r in readings.values()), readings
    assert all(r.ts >= before for r in readings.values())
    assert readings["pv_c"].value == pytest.approx(-12.5)
    assert readings["output_pct"].value == pytest.approx(45.6)
    assert readings["tc_open"].value is False
    assert readings["running"].value is True
    assert readings["alarm"].value is False
    # tc_open (0b0001) makes the PV BAD, never a value, whatever the register holds
    await pymodbus_server.async_setValues(1, 4, 0, [(-125) & 0xFFFF, 456, 0b1001])
    async with open_device("heater1", cfg, TC_MAP) as dev:
        readings = await dev.poll()
    assert readings["tc_open"].value is True
    assert readings["pv_c"].quality is Quality.BAD and readings["pv_c"].value is None


async def test_tcp_write_is_verified_and_setup_written_on_connect(
    pymodbus_server: ModbusTcpServer,
) -> None:
    cfg = tcp_config(_port(pymodbus_server), comm_timeout_s=2.0)
    async with open_device("heater1", cfg, TC_MAP) as dev:
        await dev.poll()
        assert await pymodbus_server.async_getValues(1, 3, 3, 1) == [20]  # 2.0 s at 0.1 s
        await dev.write("sv_c", 262.4)
        assert await pymodbus_server.async_getValues(1, 3, 0, 1) == [2624]
        await dev.write("sv_c", -10.0)
        assert await pymodbus_server.async_getValues(1, 3, 0, 1) == [(-100) & 0xFFFF]
        readings = await dev.poll()
        assert readings["sv_c"].value == pytest.approx(-10.0)


async def test_tcp_coils_of_the_io_module(pymodbus_server: ModbusTcpServer) -> None:
    await pymodbus_server.async_setValues(1, 2, 0, [True, True, False, True])
    cfg = tcp_config(_port(pymodbus_server), kind="remote_io", watchdog_ms=500)
    async with open_device("io", cfg, IO_MAP) as dev:
        readings = await dev.poll()
        assert readings["door_closed"].value is True
        assert readings["exhaust_ok"].value is False
        assert await pymodbus_server.async_getValues(1, 3, 1, 1) == [500]
        await dev.write("n2_purge", True)
        await dev.write("watchdog_clear", 1)  # a command: not read back
        assert (await pymodbus_server.async_getValues(1, 1, 1, 1))[0] is True
        # The coils are written and read back, not polled (poll = false in the map).
        assert "n2_purge" not in await dev.poll()


async def test_write_refusals_name_the_point_and_bound(pymodbus_server: ModbusTcpServer) -> None:
    cfg = tcp_config(_port(pymodbus_server))
    async with open_device("heater1", cfg, TC_MAP) as dev:
        with pytest.raises(WriteRefusedError, match=r"sv_c.*maximum 3276\.7"):
            await dev.write("sv_c", 4000.0)
        with pytest.raises(WriteRefusedError, match="read-only"):
            await dev.write("pv_c", 1.0)
        with pytest.raises(WriteRefusedError, match="no point"):
            await dev.write("nope", 1.0)
        with pytest.raises(WriteRefusedError, match=r"comm_timeout_s.*minimum 0"):
            await dev.write("comm_timeout_s", -1.0)


# ---------------------------------------------------------------------- hostile TCP


@pytest.mark.parametrize(
    ("mode", "error", "quality"),
    [
        ("silent", DeviceTimeout, Quality.NO_COMM),
        ("exception", ModbusExceptionReply, Quality.BAD),
        ("wrong_fc", ProtocolError, Quality.BAD),
        ("short", ProtocolError, Quality.BAD),
        ("odd_byte_count", ProtocolError, Quality.BAD),
        ("byte_count_beyond", ProtocolError, Quality.BAD),
        ("wrong_unit", ProtocolError, Quality.BAD),
        ("truncated", ProtocolError, Quality.BAD),
        ("garbage", ProtocolError, Quality.BAD),
        ("wrong_tid", ProtocolError, Quality.BAD),
    ],
)
async def test_hostile_tcp_server_gives_bad_quality_in_bounded_time(
    mode: str, error: type[DeviceError], quality: Quality
) -> None:
    bank = tc_bank()
    async with HostileTcpServer({1: bank}) as server:
        cfg = tcp_config(server.port, retries=2)
        async with open_device("heater1", cfg, TC_MAP) as dev:
            assert (await dev.poll())["pv_c"].quality is Quality.GOOD
            bank.mode = mode
            start = time.monotonic()
            readings = await dev.poll()
            elapsed = time.monotonic() - start
            assert {r.quality for r in readings.values()} == {quality}, readings
            assert readings["pv_c"].value == pytest.approx(250.0)  # last value kept
            # One block at most: 3 attempts of 50 ms; the failure stops the poll.
            assert elapsed < 0.5
            with pytest.raises(error) as info:
                await dev.write("sv_c", 100.0)
            assert info.value.device == "heater1"
            assert info.value.address == 0
            if isinstance(info.value, ModbusExceptionReply):
                assert info.value.code == 2
            bank.mode = "ok"
            await poll_until(dev, "pv_c", Quality.GOOD)


@pytest.mark.parametrize("code", range(1, 12))
async def test_every_exception_code_is_typed(code: int) -> None:
    bank = tc_bank()
    bank.mode = "exception"
    bank.exception_code = code
    async with tc_device(bank) as dev:
        readings = await dev.poll()
        # 0A/0B: a gateway says the device behind it does not answer.
        expected = Quality.NO_COMM if code in (0x0A, 0x0B) else Quality.BAD
        assert {r.quality for r in readings.values()} == {expected}
        with pytest.raises(ModbusExceptionReply) as info:
            await dev.write("run", 1)
        assert (info.value.device, info.value.address, info.value.code) == ("heater1", 1, code)
        # An exception reply is an answer: not retried. The device's own stops nothing else;
        # a gateway's stops the poll at the first block.
        assert bank.requests == (2 if expected is Quality.NO_COMM else 3)


async def test_reads_are_retried_at_most_config_retries_times() -> None:
    bank = tc_bank()
    bank.mode = "silent"
    async with tc_device(bank, retries=1) as dev:
        await dev.poll()
        assert bank.requests == 2  # first block: 1 + 1 retry; the second is not tried


async def test_write_verify_failure() -> None:
    bank = tc_bank()
    bank.mode = "ignore_writes"
    async with tc_device(bank) as dev:
        with pytest.raises(WriteVerifyError, match=r"sv_c = 300\.0 \(raw 3000\).*250\.0"):
            await dev.write("sv_c", 300.0)
        assert bank.requests == 2  # the write and its readback
    holder = Bank()
    holder.mode = "ignore_writes"
    async with HostileTcpServer({1: holder}) as server:
        cfg = tcp_config(server.port, kind="holder_drive")
        async with open_device("holder", cfg, HOLDER_MAP) as dev:
            await dev.write("fault_reset", 1)  # a command point: not read back
            assert holder.requests == 1


async def test_write_is_never_retried_blindly() -> None:
    bank = tc_bank()
    bank.mode = "silent"
    async with tc_device(bank, retries=2) as dev:
        with pytest.raises(DeviceTimeout, match=r"no reply within 0\.05 s"):
            await dev.write("sv_c", 100.0)
        assert bank.requests == 1


async def test_reconnect_after_the_server_goes_away_and_comes_back() -> None:
    bank = tc_bank()
    port = free_port()
    server = HostileTcpServer({1: bank}, port=port)
    await server.start()
    cfg = tcp_config(port, comm_timeout_s=3.0)
    async with open_device("heater1", cfg, TC_MAP) as dev:
        try:
            assert (await dev.poll())["pv_c"].quality is Quality.GOOD
            assert bank.tables["holding"][3] == 30
            await server.stop()
            bank.tables["holding"][3] = 0  # the controller restarted with its default
            r = await poll_until(dev, "pv_c", Quality.NO_COMM)
            assert r.value == pytest.approx(250.0)
            with pytest.raises(DeviceDisconnected):
                await dev.write("sv_c", 100.0)
            bank.tables["input"][0] = 2600
            server = HostileTcpServer({1: bank}, port=port)
            await server.start()
            r = await poll_until(dev, "pv_c", Quality.GOOD, timeout_s=6.0)
            assert r.value == pytest.approx(260.0)
            assert bank.tables["holding"][3] == 30  # set up again on reconnect
        finally:
            await server.stop()


async def test_enter_does_not_fail_when_the_device_is_down() -> None:
    cfg = tcp_config(free_port())
    async with open_device("heater1", cfg, TC_MAP) as dev:
        start = time.monotonic()
        readings = await dev.poll()
        readings = await dev.poll()  # within the backoff: answered at once
        assert time.monotonic() - start < 1.0
        assert {r.quality for r in readings.values()} == {Quality.NO_COMM}
        assert all(r.value is None for r in readings.values())


async def test_good_readings_go_stale_when_not_refreshed() -> None:
    bank = tc_bank()
    async with tc_device(bank, stale_s=0.05) as dev:
        await dev.poll()
        dev.health.retry_at_s = time.monotonic() + 60  # hold the next attempt back
        r = await poll_until(dev, "pv_c", Quality.STALE, timeout_s=2.0)
        assert r.value == pytest.approx(250.0)


async def test_episode_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    bank = tc_bank()
    async with tc_device(bank, retries=0) as dev:
        await dev.poll()
        bank.mode = "silent"
        for _ in range(5):
            dev.health.retry_at_s = 0.0
            await dev.poll()
        bank.mode = "ok"
        dev.health.retry_at_s = 0.0
        await dev.poll()
    errors = [r for r in caplog.records if r.name == "drivers" and r.levelname == "ERROR"]
    restored = [r for r in caplog.records if "restored" in r.getMessage()]
    assert len(errors) == 1 and len(restored) == 1, caplog.text


# ---------------------------------------------------------------------- RTU over a pty


@pytest.fixture
def maps() -> dict[str, RegisterMap]:
    return {"heater1": TC_MAP, "heater2": TC_MAP, "holder": HOLDER_MAP}


async def test_rtu_two_units_one_line_one_dead(
    tmp_path: Path, maps: dict[str, RegisterMap]
) -> None:
    link = tmp_path / "rs485"
    live = tc_bank(pv_raw=2345)
    async with PtyRtuServer(link, {1: live}):
        devices = {"heater1": rtu_config(link, 1), "heater2": rtu_config(link, 2)}
        async with DeviceSet(devices, maps) as dset:
            h1, h2 = dset.devices["heater1"], dset.devices["heater2"]
            assert isinstance(h2, ModbusDevice)
            dead_polls = 0

            async def hammer_the_dead_unit(until: asyncio.Event) -> None:
                # No backoff: the dead unit holds the line for its full timeouts, every time.
                nonlocal dead_polls
                while not until.is_set():
                    h2.health.retry_at_s = 0.0
                    await h2.poll()
                    dead_polls += 1

            stop = asyncio.Event()
            task = asyncio.create_task(hammer_the_dead_unit(stop))
            try:
                for _ in range(10):
                    r = (await h1.poll())["pv_c"]
                    assert r.quality is Quality.GOOD, r
                    assert r.value == pytest.approx(234.5)
                assert dead_polls >= 2
                assert (await h2.poll())["pv_c"].quality is Quality.NO_COMM
                await h1.write("sv_c", 240.0)
                assert live.tables["holding"][0] == 2400
            finally:
                stop.set()
                await task


@pytest.mark.parametrize(
    ("mode", "quality"),
    [
        ("bad_crc", Quality.BAD),
        ("truncated", Quality.BAD),
        ("garbage", Quality.BAD),
        ("wrong_unit", Quality.BAD),
        ("exception", Quality.BAD),
        ("short", Quality.BAD),
        ("silent", Quality.NO_COMM),
    ],
)
async def test_rtu_hostile_unit_does_not_disturb_its_neighbour(
    tmp_path: Path, maps: dict[str, RegisterMap], mode: str, quality: Quality
) -> None:
    link = tmp_path / "rs485"
    good, bad = tc_bank(pv_raw=1000), tc_bank(pv_raw=2000)
    async with PtyRtuServer(link, {1: good, 2: bad}):
        devices = {"heater1": rtu_config(link, 1), "heater2": rtu_config(link, 2)}
        async with DeviceSet(devices, maps) as dset:
            h1, h2 = dset.devices["heater1"], dset.devices["heater2"]
            assert (await h2.poll())["pv_c"].quality is Quality.GOOD
            bad.mode = mode
            r2 = await poll_until(h2, "pv_c", quality)
            assert r2.value == pytest.approx(200.0)
            for _ in range(5):
                r1 = (await h1.poll())["pv_c"]
                assert r1.quality is Quality.GOOD and r1.value == pytest.approx(100.0)
            bad.mode = "ok"
            await poll_until(h2, "pv_c", Quality.GOOD)


async def test_rtu_port_vanishes_and_comes_back(
    tmp_path: Path, maps: dict[str, RegisterMap]
) -> None:
    link = tmp_path / "ttyUSB0"
    bank = tc_bank()
    line = PtyRtuServer(link, {1: bank})
    line.appear()
    try:
        cfg = rtu_config(link, 1, comm_timeout_s=1.5)
        async with DeviceSet({"heater1": cfg}, maps) as dset:
            dev = dset.devices["heater1"]
            assert (await dev.poll())["pv_c"].quality is Quality.GOOD
            assert bank.tables["holding"][3] == 15
            line.vanish()
            await poll_until(dev, "pv_c", Quality.NO_COMM)
            bank.tables["holding"][3] = 0
            line.appear()
            await poll_until(dev, "pv_c", Quality.GOOD, timeout_s=6.0)
            assert bank.tables["holding"][3] == 15
    finally:
        line.vanish()


async def test_rtu_port_replaced_while_open_is_reopened(
    tmp_path: Path, maps: dict[str, RegisterMap]
) -> None:
    """The old node stays open but silent (no hang-up): the link notices the path moved."""
    link = tmp_path / "ttyUSB0"
    old = PtyRtuServer(link, {1: tc_bank(pv_raw=1000)})
    new = PtyRtuServer(link, {1: tc_bank(pv_raw=1500)})
    old.appear()
    try:
        async with DeviceSet({"heater1": rtu_config(link, 1)}, maps) as dset:
            dev = dset.devices["heater1"]
            assert (await dev.poll())["pv_c"].value == pytest.approx(100.0)
            old.banks[1].mode = "silent"
            new.appear()  # the link now names another node; the old one is still open

            async def moved() -> bool:
                r = (await dev.poll())["pv_c"]
                return r.quality is Quality.GOOD and r.value == pytest.approx(150.0)

            await wait_for(moved, timeout_s=6.0, what="reading from the new port")
    finally:
        old.vanish()
        new.vanish()


async def test_devices_on_one_line_must_agree_on_its_settings(
    tmp_path: Path, maps: dict[str, RegisterMap]
) -> None:
    link = tmp_path / "rs485"
    a = rtu_config(link, 1)
    b = DeviceConfig.model_validate(
        {**a.model_dump(), "transport": {**a.transport.model_dump(), "baudrate": 9600, "unit": 2}}
    )
    with pytest.raises(ValueError, match="line settings differ"):
        DeviceSet({"heater1": a, "heater2": b}, maps)

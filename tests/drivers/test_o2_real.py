"""Real analyzers' line protocols: Yokogawa OX400 and Teledyne 3000, parsed and over a pty against
the simulator's personalities (sim_hw._analyzer, written from the manuals)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from drivers import DeviceConfig, Quality, open_device
from drivers._o2 import O2Analyzer
from drivers._o2ascii import parse_ox400, parse_teledyne3000
from drivers._o2proto import LineError
from sim_hw._analyzer import AnalyzerServer
from sim_hw._atmosphere import AnalyzerCell
from tests._util import wait_for

pytestmark = pytest.mark.timeout(30)


def test_ox400_packets() -> None:
    m = parse_ox400(b"0012.345,ppm,0000,0000\r")
    assert m.ppm == pytest.approx(12.345) and m.ok
    assert parse_ox400(b"0020.900,%,0000,0001").ppm == pytest.approx(209_000.0)
    # A non-zero error word: the value is no measurement.
    assert parse_ox400(b"0012.345,ppm,0004,0000").status == "ERR"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\x00\xff\x13garbage",
        b"0012.345,ppb,0000,0000",  # unknown unit
        b"0012.345,ppm,00G0,0000",  # not hex
        b"0012.345,ppm,0000",  # a field missing
        b"12345678.9,ppm,0000,0000",  # too many digits
        b"0" * 200,
    ],
)
def test_ox400_garbage_is_refused(line: bytes) -> None:
    with pytest.raises(LineError):
        parse_ox400(line)


def test_teledyne_status_lines() -> None:
    m = parse_teledyne3000(b"ST, 0.00 PPM, RA-LO 0-100 PPM, AL-1 DISABLED, AL-2 ON,\r\n")
    assert m.ppm == 0.0 and m.ok
    assert parse_teledyne3000(b"ST, 12.5 PPM, RF-MED 0-1000 PPM,").ppm == 12.5
    assert parse_teledyne3000(b"ST, 2.1 %, RA-HI 0-25 %,").ppm == pytest.approx(21_000.0)
    assert parse_teledyne3000(b"ST, 3.0 PPM, RA-CAL 0-100 PPM,").status == "CAL"


@pytest.mark.parametrize(
    "line",
    [
        b"Teledyne Model 3000T Oxygen Analyzer",  # the power-up heading
        b"ST, abc PPM, RA-LO 0-100 PPM,",
        b"ST, 1.0 PPM, XX-LO,",
        b"ST, 1.0 PPM",
        b"ST, -5.0 PPM, RA-LO 0-100 PPM,",
        b"\xff\xfe",
    ],
)
def test_teledyne_garbage_is_refused(line: bytes) -> None:
    with pytest.raises(LineError):
        parse_teledyne3000(line)


def _config(port: Path, protocol: str, baudrate: int) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "kind": "o2_analyzer",
            "transport": {
                "type": "serial",
                "port": str(port),
                "baudrate": baudrate,
                "protocol": protocol,
            },
            "stale_s": 1.0,
            "timeout_s": 0.2,
        }
    )


async def _run_cell(cell: AnalyzerCell, server: AnalyzerServer, stop: asyncio.Event) -> None:
    while not stop.is_set():
        cell.step(0.05, 150.0)
        server.after_step()
        await asyncio.sleep(0.05)  # the cell's time runs with the wall clock, as a real one's


@pytest.mark.parametrize(("protocol", "baudrate"), [("ox400", 38400), ("teledyne3000", 2400)])
async def test_real_protocols_against_their_personalities(
    tmp_path: Path, protocol: str, baudrate: int
) -> None:
    cell = AnalyzerCell(150.0, 100, 200, 2.5)  # zeroing outlasts stale_s
    silent = False
    path = tmp_path / "o2"
    async with AnalyzerServer(path, cell, lambda: silent, protocol) as server:
        stop = asyncio.Event()
        stepper = asyncio.create_task(_run_cell(cell, server, stop))
        dev = open_device("o2", _config(path, protocol, baudrate))
        assert isinstance(dev, O2Analyzer)
        try:
            async with dev:

                async def good() -> bool:
                    r = (await dev.poll())["ppm"]
                    return r.quality is Quality.GOOD and abs(float(r.value) - 150.0) < 1.0  # type: ignore[arg-type]

                await wait_for(good, timeout_s=5.0, what=f"{protocol} ppm GOOD near 150")
                assert dev.bad_lines == 0
                if protocol == "teledyne3000":
                    # az: the analyzer zeroes and sends nothing meanwhile; the reading goes stale.
                    await dev.write("zero", True)

                    async def stale() -> bool:
                        return (await dev.poll())["ppm"].quality is not Quality.GOOD

                    await wait_for(stale, timeout_s=3.0, what="teledyne silent while zeroing")
                    await wait_for(good, timeout_s=5.0, what="teledyne back after zeroing")
                # Silence: the reading goes stale, never stays GOOD.
                silent = True

                async def went_stale() -> bool:
                    return (await dev.poll())["ppm"].quality is Quality.STALE

                await wait_for(went_stale, timeout_s=3.0, what=f"{protocol} STALE when silent")
        finally:
            stop.set()
            await stepper


async def test_a_reading_is_stamped_when_its_first_byte_arrives(tmp_path: Path) -> None:
    """A line whose bytes trickle in over 0.3 s is stamped with its first byte's arrival."""
    master, slave = os.openpty()
    link = tmp_path / "o2"
    os.symlink(os.ttyname(slave), link)
    dev = open_device("o2", _config(link, "teledyne3000", 2400))
    assert isinstance(dev, O2Analyzer)
    try:
        async with dev:
            await wait_for(lambda: dev.connected, timeout_s=5.0, what="port open")
            line = b"ST, 42.00 PPM, RA-LO 0-1000 PPM,\r\n"
            first_s = time.monotonic()
            os.write(master, line[:5])
            await asyncio.sleep(0.3)  # the pause inside the line is the thing under test
            os.write(master, line[5:])

            async def got() -> bool:
                return (await dev.poll())["ppm"].value == 42.0

            await wait_for(got, timeout_s=3.0, what="ppm 42")
            ts = (await dev.poll())["ppm"].ts
            assert first_s <= ts < first_s + 0.15  # not the last byte's time (+0.3 s)
    finally:
        os.close(master)
        os.close(slave)


async def test_an_ox400_that_restarted_is_asked_again(tmp_path: Path) -> None:
    """After a power cycle the OX400 sends nothing until TS: the driver asks again on silence."""
    cell = AnalyzerCell(150.0, 100, 200, 1.0)
    path = tmp_path / "o2"
    async with AnalyzerServer(path, cell, lambda: False, "ox400") as server:
        stop = asyncio.Event()
        stepper = asyncio.create_task(_run_cell(cell, server, stop))
        dev = open_device("o2", _config(path, "ox400", 38400))
        assert isinstance(dev, O2Analyzer)
        try:
            async with dev:

                async def good() -> bool:
                    return (await dev.poll())["ppm"].quality is Quality.GOOD

                await wait_for(good, timeout_s=5.0, what="ox400 GOOD")
                server._streaming = False  # the analyzer restarted: silent until TS

                async def stale() -> bool:
                    return (await dev.poll())["ppm"].quality is Quality.STALE

                await wait_for(stale, timeout_s=3.0, what="ox400 STALE after a restart")
                await wait_for(good, timeout_s=5.0, what="ox400 GOOD again after TS")
        finally:
            stop.set()
            await stepper

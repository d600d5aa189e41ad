"""The O2 analyzer: its line format and checksum, and its serial line on a pty."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import serial_asyncio_fast

from sim_hw import ChecksumError, SimBooth, checksum, frame, o2_line, parse
from sim_hw._analyzer import handle_command
from sim_hw._atmosphere import AnalyzerCell

from .conftest import config_data

pytestmark = pytest.mark.timeout(30)


def test_line_format_and_checksum() -> None:
    # XOR of "O2,412.3,OK": the two hex digits after the star.
    x = 0
    for ch in b"O2,412.3,OK":
        x ^= ch
    assert o2_line(412.34, "OK") == f"$O2,412.3,OK*{x:02X}\r\n".encode()
    assert o2_line(412.3, "OK") == b"$O2,412.3,OK*53\r\n"  # the example of docs/hardware.md
    assert checksum("ZERO") == "{:02X}".format(ord("Z") ^ ord("E") ^ ord("R") ^ ord("O"))
    assert parse(o2_line(209000, "CAL")) == "O2,209000.0,CAL"
    assert frame("ACK,ZERO") == b"$ACK,ZERO*" + checksum("ACK,ZERO").encode() + b"\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"$O2,412.3,OK*00\r\n",  # wrong checksum
        b"$O2,412.4,OK*" + checksum("O2,412.3,OK").encode() + b"\r\n",  # one digit garbled
        b"O2,412.3,OK*4A\r\n",  # no $
        b"$O2,412.3,OK\r\n",  # no checksum
    ],
)
def test_a_garbled_line_fails_its_checksum(line: bytes) -> None:
    with pytest.raises(ChecksumError):
        parse(line)


def test_commands() -> None:
    cell = AnalyzerCell(400.0, t90_ms=300, period_ms=200, cal_s=1.0)
    assert handle_command("RATE,500", cell) == "ACK,RATE,500" and cell.period_ms == 500
    assert handle_command("RATE,5", cell) == "NAK,RATE,RANGE" and cell.period_ms == 500
    assert handle_command("RATE,x", cell) == "NAK,RATE,BADVAL"
    assert handle_command("FOO", cell) == "NAK,FOO,UNKNOWN"
    assert handle_command("ZERO", cell) == "ACK,ZERO"
    cell.step(0.5, 400.0)
    assert cell.status == "CAL"
    cell.step(1.0, 400.0)
    assert cell.status == "OK"


def test_cell_follows_a_step_with_its_t90() -> None:
    cell = AnalyzerCell(0.0, t90_ms=300, period_ms=50, cal_s=0)
    cell.step(0.3, 1000.0)
    assert cell.cell_ppm == pytest.approx(900.0, rel=0.01)  # 90 % of a step in t90


def test_reports_in_a_steady_booth_are_never_frozen(physics) -> None:
    physics.step(1800)  # five time constants of the maintain flow: steady
    reports = set()
    for _ in range(50):
        physics.step(physics.analyzer.period_ms / 1000)
        reports.add(f"{physics.analyzer.reported_ppm:.1f}")
    assert len(reports) > 10
    assert all(abs(float(r) - physics.o2_ppm) < 5 for r in reports)


@asynccontextmanager
async def open_line(
    path: str,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=9600)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await writer.wait_closed()


async def read_body(reader: asyncio.StreamReader, timeout_s: float = 2.0) -> str:
    async with asyncio.timeout(timeout_s):
        return parse(await reader.readline())


async def test_analyzer_reports_on_its_pty_and_takes_commands(sim: SimBooth, sim_config) -> None:
    path = config_data(sim_config)["devices"]["o2"]["transport"]["port"]
    period_s = sim.physics.settings.o2_period_ms / 1000
    async with open_line(path) as (reader, writer):
        await read_body(reader)  # the first line may have waited in the buffer
        t0 = time.monotonic()
        bodies = [await read_body(reader) for _ in range(5)]
        mean_s = (time.monotonic() - t0) / 5
        assert mean_s == pytest.approx(period_s, rel=0.3)
        kind, ppm, status = bodies[-1].split(",")
        assert kind == "O2" and status == "OK"
        assert float(ppm) == pytest.approx(sim.state()["o2_ppm"], rel=0.05)

        writer.write(frame("RATE,100"))

        async def until(prefix: str) -> str:
            while not (body := await read_body(reader)).startswith(prefix):
                pass
            return body

        assert await until("ACK") == "ACK,RATE,100"
        writer.write(b"$ZERO*00\r\n")
        assert await until("NAK") == "NAK,ZERO,CHECKSUM"
        writer.write(frame("ZERO"))
        assert await until("ACK") == "ACK,ZERO"
        assert (await until("O2")).endswith(",CAL")

        # An O2 step reaches the line through the cell's response.
        sim.inject("o2_leak", "5000")

        async def reports_5000() -> bool:
            body = await until("O2")
            return body.endswith(",OK") and float(body.split(",")[1]) > 4900

        async with asyncio.timeout(sim.physics.settings.o2_cal_s + 3):
            while not await reports_5000():
                pass


@pytest.mark.parametrize(
    ("fault", "value"), [("o2_analyzer_silent", None), ("device_offline", "o2")]
)
async def test_a_silent_analyzer_sends_nothing(sim: SimBooth, sim_config, fault, value) -> None:
    path = config_data(sim_config)["devices"]["o2"]["transport"]["port"]
    async with open_line(path) as (reader, writer):
        await read_body(reader)
        sim.inject(fault, value)
        with contextlib.suppress(TimeoutError):
            await read_body(reader, timeout_s=0.3)  # at most a line already on its way
        with pytest.raises(TimeoutError):
            await read_body(reader, timeout_s=1.0)
        writer.write(frame("ZERO"))
        with pytest.raises(TimeoutError):
            await read_body(reader, timeout_s=0.5)
        sim.clear(fault)
        assert (await read_body(reader)).startswith("O2,")

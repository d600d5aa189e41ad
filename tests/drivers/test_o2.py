"""The O2 analyzer driver over a pseudo-terminal: good, garbled and silent lines; a lost port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers import (
    DeviceConfig,
    DeviceDisconnected,
    DeviceTimeout,
    O2Analyzer,
    ProtocolError,
    Quality,
    WriteRefusedError,
    open_device,
)
from drivers._o2proto import LineError, Measurement, Reply, checksum, frame, parse_line
from tests._util import wait_for

from ._fakes import PtyLine

pytestmark = pytest.mark.timeout(30)


def o2_config(port: Path, **kw: object) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "kind": "o2_analyzer",
            "transport": {"type": "serial", "port": str(port), "baudrate": 9600},
            "stale_s": 1.0,
            "timeout_s": 0.2,
            **kw,
        }
    )


class Analyzer(PtyLine):
    """Answers ZERO with ACK (or NAK when told); records the commands it got."""

    def __init__(self, link: Path) -> None:
        super().__init__(link)
        self.commands: list[bytes] = []
        self.answer = True
        self.nak = False

    def received(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line.strip():
                self.commands.append(line.strip())
                if self.answer:
                    self.send(frame("NAK,ZERO,BUSY" if self.nak else "ACK,ZERO"))

    def report(self, ppm: float, status: str = "OK") -> None:
        self.send(frame(f"O2,{ppm:.1f},{status}"))


@contextlib.asynccontextmanager
async def analyzer(
    tmp_path: Path, *, connected: bool = True, **kw: object
) -> AsyncIterator[tuple[Analyzer, O2Analyzer]]:
    """A fake analyzer on a pty and the driver open on it (its port open if `connected`); the
    pty goes away at the end whatever the test did with it."""
    line = Analyzer(tmp_path / "o2")
    line.appear()
    dev = open_device("o2", o2_config(line.link, **kw))
    assert isinstance(dev, O2Analyzer)
    try:
        async with dev:
            if connected:
                await wait_for(lambda: dev.connected, timeout_s=5.0, what="port open")
            yield line, dev
    finally:
        line.vanish()


async def reading(dev: O2Analyzer, point: str, quality: Quality, value: object = None) -> None:
    async def check() -> bool:
        r = (await dev.poll())[point]
        return r.quality is quality and (value is None or r.value == value)

    await wait_for(check, timeout_s=5.0, what=f"o2.{point} {quality} {value}")


def test_protocol_round_trip_and_checksum() -> None:
    assert checksum(b"ACK,ZERO") == 0x67
    line = frame("O2,123.4,OK")
    assert line.startswith(b"$O2,123.4,OK*") and line.endswith(b"\r\n")
    assert parse_line(line) == Measurement(123.4, "OK")
    assert parse_line(frame("ACK,ZERO")) == Reply("ZERO", True)
    assert parse_line(frame("NAK,ZERO,BUSY")) == Reply("ZERO", False, "BUSY")
    # The example of the protocol's documentation, with a bare line feed.
    assert parse_line(b"$O2,412.3,OK*53\n") == Measurement(412.3, "OK")


@pytest.mark.parametrize(
    "line",
    [
        b"$O2,123.4,OK*00\r\n",  # bad checksum
        b"O2,123.4,OK*05\r\n",  # no $
        b"$O2,123.4,OK\r\n",  # no checksum
        b"\xff\xfe\x00garbage\r\n",
        frame("O2,abc,OK"),
        frame("O2,-5.0,OK"),
        frame("O2,nan,OK"),
        frame("O2,12.0,MAYBE"),
        frame("O2,12.0"),
        frame("HELLO"),
        b"$" + b"A" * 200 + b"*00",
        b"$O2,1.0,OK*zz",
    ],
)
def test_garbled_lines_are_refused(line: bytes) -> None:
    with pytest.raises(LineError):
        parse_line(line)


async def test_lines_become_readings_with_status(tmp_path: Path) -> None:
    async with analyzer(tmp_path, connected=False) as (line, dev):
        r = await dev.poll()
        assert {x.quality for x in r.values()} == {Quality.NO_COMM}
        await wait_for(lambda: dev.connected, timeout_s=5.0, what="port open")
        line.report(412.5)
        await reading(dev, "ppm", Quality.GOOD, 412.5)
        assert (await dev.poll())["status_ok"].value is True
        line.report(9999.9, "ERR")
        await reading(dev, "status_ok", Quality.GOOD, False)
        ppm = (await dev.poll())["ppm"]
        assert ppm.quality is Quality.BAD and ppm.value == 9999.9
        line.report(300.0, "CAL")
        await reading(dev, "ppm", Quality.BAD, 300.0)
        line.report(298.0)
        await reading(dev, "ppm", Quality.GOOD, 298.0)


async def test_garbage_and_bad_checksums_are_bad_and_counted(tmp_path: Path) -> None:
    async with analyzer(tmp_path) as (line, dev):
        line.report(100.0)
        await reading(dev, "ppm", Quality.GOOD, 100.0)
        line.send(b"$O2,101.0,OK*00\r\n")
        await reading(dev, "ppm", Quality.BAD, 100.0)  # last good value kept
        line.send(b"\x00\xff" * 300)  # no line end at all: garbage, not a hang
        line.send(b"\r\n$O2,1")
        line.send(b"02.0,OK*" + f"{checksum(b'O2,102.0,OK'):02X}".encode() + b"\r\n")
        await reading(dev, "ppm", Quality.GOOD, 102.0)  # a line split across reads
        assert dev.bad_lines >= 3
        assert dev.good_lines == 2


async def test_silent_analyzer_goes_stale(tmp_path: Path) -> None:
    async with analyzer(tmp_path, stale_s=0.1) as (line, dev):
        line.report(50.0)
        await reading(dev, "ppm", Quality.GOOD)
        await reading(dev, "ppm", Quality.STALE, 50.0)


async def test_zero_command_acknowledged(tmp_path: Path) -> None:
    absent = open_device("o2", o2_config(tmp_path / "nothing-here"))
    async with absent:
        with pytest.raises(DeviceDisconnected, match="not open"):
            await absent.write("zero", True)
    async with analyzer(tmp_path) as (line, dev):
        await dev.write("zero", True)
        assert line.commands[-1] == frame("ZERO").strip()
        line.nak = True
        with pytest.raises(ProtocolError, match="refused ZERO: BUSY"):
            await dev.write("zero", True)
        line.answer = False
        with pytest.raises(DeviceTimeout, match=r"no \$ACK,ZERO within 0\.5 s"):
            await dev.write("zero", True)
        with pytest.raises(WriteRefusedError):
            await dev.write("ppm", 1.0)
        with pytest.raises(WriteRefusedError):
            await dev.write("zero", False)


async def test_port_vanishes_and_comes_back(tmp_path: Path) -> None:
    async with analyzer(tmp_path) as (line, dev):
        line.report(10.0)
        await reading(dev, "ppm", Quality.GOOD, 10.0)
        line.vanish()
        await reading(dev, "ppm", Quality.NO_COMM, 10.0)
        line.appear()
        await wait_for(lambda: dev.connected, timeout_s=5.0, what="port reopened")
        line.report(11.0)
        await reading(dev, "ppm", Quality.GOOD, 11.0)


async def test_port_replaced_while_open_is_reopened(tmp_path: Path) -> None:
    """The old node stays open but silent: after a silence the path is found to have moved."""
    async with analyzer(tmp_path, stale_s=0.5) as (old, dev):
        new = Analyzer(old.link)
        try:
            old.report(10.0)
            await reading(dev, "ppm", Quality.GOOD, 10.0)
            new.appear()

            async def reports() -> bool:
                if new.master is not None:
                    new.report(20.0)
                r = (await dev.poll())["ppm"]
                return r.quality is Quality.GOOD and r.value == 20.0

            await wait_for(
                reports, timeout_s=6.0, what="reading from the new port", interval_s=0.05
            )
        finally:
            new.vanish()
